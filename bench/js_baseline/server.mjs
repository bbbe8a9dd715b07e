// The baseline's serving side: an automerge-repo Repo behind its websocket server adapter on
// 127.0.0.1, holding the documents read from DOCS_FILE (u32 big-endian length + Automerge
// save() bytes, repeated). Prints "listening PORT" and then one line "urls FILE" once the
// document urls are written to URLS_FILE. Runs until stdin closes or it gets SIGTERM.
//
// Set up as automerge-repo's own sync server (automerge-repo-sync-server) is: it only answers
// what a client asks for (sharePolicy false: it announces nothing, so it writes each document
// once, as Notewell's `sync serve` does, not an announcement and then the document). Its
// keepalive (a ping every KEEPALIVE_MS; a client that has not answered the previous one is cut
// off) is set long enough that a client busy loading what it received is not dropped: with
// the adapter's default of 5 s a loaded client missed a pong, the connection was cut, every
// document still in flight became "unavailable", and the run took several times as long.
import { readFileSync, writeFileSync } from "node:fs";
import { WebSocketServer } from "ws";
import { Repo } from "@automerge/automerge-repo";
import { WebSocketServerAdapter } from "@automerge/automerge-repo-network-websocket";

const [docsFile, urlsFile] = process.argv.slice(2);
const data = readFileSync(docsFile);

const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
await new Promise((resolve) => wss.once("listening", resolve));
const KEEPALIVE_MS = 10 * 60 * 1000;
const repo = new Repo({ network: [new WebSocketServerAdapter(wss, KEEPALIVE_MS)], sharePolicy: async () => false });

const urls = [];
for (let pos = 0; pos < data.length; ) {
  const len = data.readUInt32BE(pos);
  pos += 4;
  const handle = repo.import(new Uint8Array(data.subarray(pos, pos + len)));
  pos += len;
  urls.push(handle.url);
}
writeFileSync(urlsFile, JSON.stringify(urls));
console.log(`listening ${wss.address().port}`);
console.log(`urls ${urlsFile}`);

const stop = async () => {
  await repo.shutdown();
  wss.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.stdin.on("end", stop);
process.stdin.resume();
