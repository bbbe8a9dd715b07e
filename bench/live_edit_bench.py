"""The live-sync cost of one edit, and how it grows with the size of the vault.

    python -m bench.live_edit_bench [--sizes 1000,10000] [--edits 30]

Prints figures; asserts nothing. For each size: the synthetic vault (bench/common.py) copied
twice, opened as two devices holding the same documents, joined by two `SyncSession`s in
live mode in this process (sans-IO: frames handed across, so sockets and TLS add nothing).
Then --edits one-character edits on the first device, each to a draft note, one at a time:
- propagation: from the commit of the edit until neither session has anything left to send
  (the editing side's look at the store, its sync message, the other side's merge and its
  own look, and the replies), median and 90th percentile;
- look: the editing side's `poll_local()` alone, which finds what changed and builds the
  message (before issue 10 it re-read every document's heads).
A fixed cost per edit shows as the same figure at 1,000 and 10,000 notes.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import PASSPHRASE, pct, synthetic_vault
from store.vault import Vault
from sync.protocol import SyncSession

OFFICE, HOME = "bench-office-device", "bench-home-device"


def _pump(client: SyncSession, server: SyncSession, to_server: list, to_client: list) -> None:
    """Hands frames across until both sides are quiet, each side looking at its store after
    what it received, as its live loop does."""
    while to_server or to_client:
        replies = [r for f in to_server for r in server.receive(f)] + server.poll_local()
        to_server = []
        to_client = to_client + replies
        answers = [r for f in to_client for r in client.receive(f)] + client.poll_local()
        to_client = []
        to_server = answers


def measure(notes: int, edits: int) -> dict:
    source = synthetic_vault("live-edit", notes, max(20, notes // 50))
    with tempfile.TemporaryDirectory(prefix="nw-live-edit-") as tmp:
        a_path, b_path = Path(tmp) / "office", Path(tmp) / "home"
        for path in (a_path, b_path):
            shutil.copytree(source, path)
        va, vb = Vault.open(a_path, PASSPHRASE), Vault.open(b_path, PASSPHRASE)
        try:
            client = SyncSession(va.record.replica, device_id=OFFICE, device_name="office", role="client",
                                 peer_device_id=HOME, live=True)
            server = SyncSession(vb.record.replica, device_id=HOME, device_name="home", role="server",
                                 peer_device_id=OFFICE)
            client.start()
            to_client = server.start()
            while to_client:  # the first exchange (the same documents on both sides)
                to_server = [r for f in to_client for r in client.receive(f)]
                to_client = [r for f in to_server for r in server.receive(f)]
            assert client.live and server.live, "the session did not go live"
            _pump(client, server, client.poll_local(), server.poll_local())  # the first looks
            drafts = [row.note_id for row in va.record.list_notes() if row.status.value == "draft"]
            propagation, look = [], []
            for i in range(edits):
                note = drafts[i % len(drafts)]
                text = va.record.get_note(note).sections
                key = next(iter(text))
                va.record.set_section(note, key, text[key] + "x")
                t0 = time.perf_counter()
                frames = client.poll_local()
                t1 = time.perf_counter()
                _pump(client, server, frames, [])
                t2 = time.perf_counter()
                look.append((t1 - t0) * 1000)
                propagation.append((t2 - t0) * 1000)
                assert vb.record.get_note(note).sections[key] == text[key] + "x", "the edit did not arrive"
        finally:
            va.close()
            vb.close()
    return {
        "notes": notes,
        "propagation_median_ms": statistics.median(propagation),
        "propagation_p90_ms": pct(propagation, 90),
        "look_median_ms": statistics.median(look),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--edits", type=int, default=30)
    args = parser.parse_args()
    for notes in (int(n) for n in args.sizes.split(",")):
        r = measure(notes, args.edits)
        print(f"live edit at {r['notes']:>6} notes: propagation median {r['propagation_median_ms']:.2f} ms "
              f"(p90 {r['propagation_p90_ms']:.2f} ms), the editing side's look {r['look_median_ms']:.2f} ms",
              flush=True)


if __name__ == "__main__":
    main()
