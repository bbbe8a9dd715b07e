// The Automerge runtime alone: how long JS Automerge (wasm) takes to load every document of
// DOCS_FILE (u32 big-endian length + save() bytes, repeated), the same bytes the baseline
// syncs. Prints one JSON line. bench/sync_bench.py compares it with the Python binding
// (native Rust) loading the same bytes, to tell the runtime's share of the baseline ratio
// from the protocol's.
import { readFileSync } from "node:fs";
import * as A from "@automerge/automerge";

const data = readFileSync(process.argv[2]);
const docs = [];
for (let pos = 0; pos < data.length; ) {
  const len = data.readUInt32BE(pos);
  pos += 4;
  docs.push(new Uint8Array(data.subarray(pos, pos + len)));
  pos += len;
}
A.load(docs[0]); // the wasm module is compiled before the clock starts
const started = performance.now();
for (const bytes of docs) A.load(bytes);
console.log(JSON.stringify({ documents: docs.length, elapsedMs: performance.now() - started }));
