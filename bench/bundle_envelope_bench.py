"""The bundle envelope alone: format 1 (the sync-group key) against format 2 (a fresh key per
bundle wrapped to each recipient, sync/recipients.py), alternately in one process.

    python -m bench.bundle_envelope_bench [--documents 1050] [--recipients 3] [--rounds 7]

Writes and opens a bundle of `--documents` synthetic documents (about the size of a progress
note) both ways, in turn, and prints the medians with the load average. What the envelope
costs, apart from reading and writing the documents themselves (bench/sync_bench.py measures
the whole mailbox run). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from automerge.core import ROOT, Document, ObjType, ScalarType

from store.device_identity import generate_identity
from sync import bundle as fmt


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (5 min {five:.2f})"


def _documents(count: int) -> list[tuple[str, bytes]]:
    out = []
    for i in range(count):
        doc = Document()
        with doc.transaction() as tx:
            tx.put(ROOT, "id", ScalarType.Str, f"doc-{i}")
            text = tx.put_object(ROOT, "body", ObjType.Text)
            tx.splice_text(text, 0, 0, f"Synthetic session text {i}. " * 40)
        out.append((f"doc-{i}", doc.save()))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1050)
    parser.add_argument("--recipients", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)

    sender = generate_identity("sender")
    readers = [generate_identity(f"reader {i}") for i in range(args.recipients)]
    reader = readers[0]
    group_key = os.urandom(32)
    entries = _documents(args.documents)
    recipients = {r.device_id: r.private_key().public_key() for r in readers}
    key = sender.key_pem.encode()
    times: dict[str, list[float]] = {"1 write": [], "1 open": [], "2 write": [], "2 open": []}
    sizes = {}
    print(f"{args.documents} documents, {sum(len(d) for _i, d in entries) // 1024} KiB, "
          f"{args.recipients} recipients; {_load()}")
    for _ in range(args.rounds):
        t = time.perf_counter()
        one = fmt.encode(entries, sender_id=sender.device_id, seq=1, group_key=group_key, private_key=key)
        times["1 write"].append(time.perf_counter() - t)
        t = time.perf_counter()
        fmt.decode(one, sender_cert=sender.cert_pem, group_key=group_key)
        times["1 open"].append(time.perf_counter() - t)
        t = time.perf_counter()
        two = fmt.encode_for(entries, sender_id=sender.device_id, seq=1, recipients=recipients, private_key=key)
        times["2 write"].append(time.perf_counter() - t)
        t = time.perf_counter()
        fmt.decode_for(two, sender_cert=sender.cert_pem, device_id=reader.device_id, private_key=reader.key_pem.encode())
        times["2 open"].append(time.perf_counter() - t)
        sizes = {"1": len(one), "2": len(two)}
    for name, values in times.items():
        print(f"format {name}: median {statistics.median(values) * 1000:.1f} ms "
              f"(min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f}, n={len(values)})")
    print(f"bundle size: format 1 {sizes['1']} bytes, format 2 {sizes['2']} bytes "
          f"(+{sizes['2'] - sizes['1']}: the recipients' stanzas)")
    print(f"done; {_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
