// The baseline's fetching side: an empty Repo with automerge-repo's own file storage in
// STORE_DIR connects through the websocket client adapter and asks for every document url in
// URLS_FILE. Like Notewell's receiving side, it stores what it receives: the time runs until
// every document is ready here and the Repo's storage has written it (flush). Prints one JSON
// line: the wall time, and how many heads arrived.
import { readFileSync } from "node:fs";
import { Repo } from "@automerge/automerge-repo";
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket";
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs";
import * as A from "@automerge/automerge";

const [port, urlsFile, storeDir] = process.argv.slice(2);
const urls = JSON.parse(readFileSync(urlsFile, "utf8"));

const started = performance.now();
const repo = new Repo({
  network: [new WebSocketClientAdapter(`ws://127.0.0.1:${port}`)],
  storage: new NodeFSStorageAdapter(storeDir),
  sharePolicy: async () => true,
});
// Asking before the server is known as a peer reports every document unavailable at once.
await new Promise((resolve) => repo.networkSubsystem.once("peer", resolve));
// A find that reports "unavailable" is waited on until the document arrives after all (an
// application would do the same), and counted. It is not a race in automerge-repo: the ones
// measured before came from the server cutting off a client too busy loading documents to
// answer its keepalive ping (see server.mjs). On a heavily loaded machine a few can still
// come from automerge-repo's own request timeout (60 s per document, DocHandle's timeoutDelay)
// when the answers queue up behind the loading; the count says how many.
let retries = 0;
async function findOrWait(url) {
  try {
    return await repo.find(url);
  } catch (e) {
    retries += 1;
    const { handle } = repo.findWithProgress(url);
    await Promise.race([
      handle.whenReady(["ready"]),
      new Promise((_, reject) => setTimeout(() => reject(e), 120000)),
    ]);
    return handle;
  }
}
const handles = await Promise.all(urls.map(findOrWait));
await repo.flush(); // what was received is on disk, as Notewell's side commits it
const elapsedMs = performance.now() - started;

let withHeads = 0;
for (const h of handles) if (A.getHeads(h.doc()).length > 0) withHeads += 1;
console.log(JSON.stringify({ documents: handles.length, withHeads, retries, elapsedMs }));
await repo.shutdown();
process.exit(0);
