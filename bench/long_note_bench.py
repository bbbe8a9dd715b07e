"""A peer one edit behind on a note edited thousands of times (issue 14), against the control.

    python -m bench.long_note_bench [--edits 5000] [--runs 7]

Vault A holds two draft notes with the same final text: the long note, written by --edits
one-character edits (one Automerge change each, as typing makes them), and the control,
written in one edit. Vault B, paired, serves with `notewell sync serve` in its own process
and holds both after a first sync. Then, in turn, --runs times: one character appended to the
long note on A and `sync_now` over a new connection, then the same for the control. Printed
per case: the bytes on the wire (both directions, TLS records included, counted at a relay on
127.0.0.1) and the frames by type, the wall time of `sync_now` (the handshake included) and
this process's CPU time for it, medians of the runs, with the load average.

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from bench.sync_bench import CountingRelay, _load, log, make_vault, pair, serving
from store.device_identity import ensure_identity
from store.synthetic import make_client, make_note
from sync.direct import sync_now
from sync.framing import HEADER, FrameType


def write_notes(a, edits: int) -> tuple[str, str]:
    """(the long note's id, the control's id): the same text, in `edits` changes and in one."""
    rng = random.Random(14)
    client = a.record.create_client(make_client(rng, 0))
    long_note = a.record.create_note(make_note(rng, client, 1, date(2026, 3, 2), complete=False))
    made = make_note(rng, client, 1, date(2026, 3, 3), complete=False)  # the same format
    control = a.record.create_note(made.model_copy(update={"id": made.id + "-control"}))
    key = a.record.get_note(long_note.id).section_keys[0]
    text = a.record.get_note(long_note.id).sections[key]
    t = time.perf_counter()
    for start in range(0, edits, 500):
        with a.record.transaction():
            for _ in range(start, min(edits, start + 500)):
                text += "x"
                a.record.set_section(long_note.id, key, text)
    a.record.set_section(control.id, key, text)
    log(f"setup: {edits} one-character edits of the long note in {time.perf_counter() - t:.1f} s; "
        f"its stored document {len(a.record.replica.stored_doc(long_note.id)[0]):,} bytes, the control's "
        f"{len(a.record.replica.stored_doc(control.id)[0]):,}")
    return long_note.id, control.id


def one_edit_synced(a, identity, port: int, note_id: str) -> tuple[int, dict[str, int], float, float]:
    """Appends a character to the note on A, then syncs over a new connection through a
    counting relay: (bytes on the wire, frame bytes by type, wall s, CPU s of this process)."""
    note = a.record.get_note(note_id)
    key = note.section_keys[0]
    a.record.set_section(note_id, key, note.sections[key] + "y")
    relay = CountingRelay(port)
    by_type: dict[str, int] = {}

    def tap(_direction: str, frame: bytes) -> None:
        name = FrameType(frame[HEADER.size - 1]).name
        by_type[name] = by_type.get(name, 0) + len(frame)

    cpu, wall = time.process_time(), time.perf_counter()
    report = sync_now(a.record.replica, identity, "127.0.0.1", relay.port, frame_tap=tap)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    relay.wait()
    assert report.ok, report.summary()
    return relay.up + relay.down, by_type, wall, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edits", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="notewell-long-note-") as tmp:
        a, b = make_vault(Path(tmp) / "a", "bench-a"), make_vault(Path(tmp) / "b", "bench-b")
        pair(a, b)
        b_path = b.path
        b.close()
        long_id, control_id = write_notes(a, args.edits)
        identity = ensure_identity(a.record.replica, a.device_name)
        figures: dict[str, list] = {"long": [], "control": []}
        with serving(b_path) as port:
            sync_now(a.record.replica, identity, "127.0.0.1", port)  # B holds both
            sync_now(a.record.replica, identity, "127.0.0.1", port)  # and both sides the same baseline
            for run in range(args.runs):
                for case, note_id in (("long", long_id), ("control", control_id)):
                    load = _load()
                    size, by_type, wall, cpu = one_edit_synced(a, identity, port, note_id)
                    figures[case].append((size, wall, cpu))
                    log(f"run {run + 1}, {case}: {size:,} bytes on the wire ("
                        + ", ".join(f"{k} {v}" for k, v in sorted(by_type.items()))
                        + f"), {wall * 1000:.1f} ms wall, {cpu * 1000:.1f} ms CPU here; load {load}")
        a.close()
    med = {case: [statistics.median(x[i] for x in rows) for i in range(3)] for case, rows in figures.items()}
    log("")
    log(f"| a peer one edit behind ({args.edits:,}-edit note vs the same text in one edit) | bytes | wall | CPU (this side) |")
    log("|---|---|---|---|")
    for case in ("long", "control"):
        size, wall, cpu = med[case]
        log(f"| {case} | {size:,.0f} | {wall * 1000:.1f} ms | {cpu * 1000:.1f} ms |")
    log(f"| ratio long / control | {med['long'][0] / med['control'][0]:.2f} | {med['long'][1] / med['control'][1]:.2f} "
        f"| {med['long'][2] / med['control'][2]:.2f} |")
    log(f"load average at the end: {_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
