// The baseline's fetching side: an empty Repo connects through the websocket client adapter
// and asks for every document url in URLS_FILE. Prints one JSON line: the wall time from
// connecting until every document is ready here, and how many heads arrived.
import { readFileSync } from "node:fs";
import { Repo } from "@automerge/automerge-repo";
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket";
import * as A from "@automerge/automerge";

const [port, urlsFile] = process.argv.slice(2);
const urls = JSON.parse(readFileSync(urlsFile, "utf8"));

const started = performance.now();
const repo = new Repo({ network: [new WebSocketClientAdapter(`ws://127.0.0.1:${port}`)], sharePolicy: async () => true });
// Asking before the server is known as a peer reports every document unavailable at once.
await new Promise((resolve) => repo.networkSubsystem.once("peer", resolve));
// With many documents requested at once, automerge-repo now and then reports one unavailable
// before the server's answer for it has arrived; the handle still becomes ready when it does,
// so wait for that (an application would do the same) and count how often it happened.
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
const elapsedMs = performance.now() - started;

let withHeads = 0;
for (const h of handles) if (A.getHeads(h.doc()).length > 0) withHeads += 1;
console.log(JSON.stringify({ documents: handles.length, withHeads, retries, elapsedMs }));
await repo.shutdown();
process.exit(0);
