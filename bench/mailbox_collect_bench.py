"""The mailbox folder's size as the record grows, with collection on and off.

    python -m bench.mailbox_collect_bench [--edits 1500] [--notes 30] [--hours-per-edit 1] [--only-on]

Two groups of three devices each (real vaults, paired with each other), each group with its
own folder. Device A writes `--notes` progress notes; then `--edits` edits go round the three
devices of each group in turn (one edit to one note section each). After each edit every
device of the group does what a watcher's round does: brings in the files new since it last
looked (`Mailbox.import_paths`), writes its bundle, and, in the group with collection on,
collects (`Collector.collect`, the 7-day grace period, on a clock that moves `--hours-per-edit`
hours per edit, so 168 edits are a week at 1 hour). The two groups take turns edit by edit in
this one process. Printed every tenth of the way: the folder's files and bytes in each group,
with the load average. Asserts nothing.

`--only-on` runs the group with collection on alone: without collection every bundle stays, so
that folder only grows (a 1,500-edit run shows how fast), and each round lists it whole, which
makes a 10,000-edit run of both groups take hours.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from datetime import date
from pathlib import Path

from store.device_identity import ensure_identity
from store.keys import KdfParams, allow_test_kdf
from store.models import Client, ClinicianSettings, ProgressNote, SessionFacts
from store.vault import Vault
from sync.mailbox import mailbox_for
from sync.mailbox_collect import DEFAULT_GRACE_SECONDS, Collector
from sync.peers import PeerBook, ensure_group_key, set_group_key
from sync.report import BundleCounts, SyncReport

FAST_KDF = KdfParams(memory_kib=8192, time_cost=1)
SETTINGS = ClinicianSettings(clinician_name="Dr. Bench Example", credentials="PhD")
allow_test_kdf()


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}"


class Device:
    """One vault and what its watcher would keep: the files it has looked at."""

    def __init__(self, path: Path, name: str, box: Path, collect: bool, clock) -> None:
        self.vault, _ = Vault.create(path, "bench passphrase", device_name=name, kdf=FAST_KDF, settings=SETTINGS)
        self.identity = ensure_identity(self.vault.record.replica, name)
        self.box, self.collect, self.clock = box, collect, clock
        self.known: dict[str, tuple[int, int]] = {}
        self.mailbox = None
        self.collector = None

    def start(self) -> None:
        self.mailbox = mailbox_for(self.vault.record.replica, self.identity)
        self.collector = Collector(self.mailbox, self.box, grace_seconds=DEFAULT_GRACE_SECONDS, clock=self.clock)

    def round(self) -> None:
        """A watcher's round: what is new in the folder, this device's bundle, collection."""
        new = []
        for p in self.box.iterdir():
            if p.name.endswith(".nwb"):
                st = p.stat()
                if self.known.get(p.name) != (st.st_size, st.st_mtime_ns):
                    self.known[p.name] = (st.st_size, st.st_mtime_ns)
                    new.append(p)
        report = SyncReport(bundles=BundleCounts(folder=str(self.box)))
        self.mailbox.import_paths(self.box, new, report)
        self.mailbox.export(self.box, report)
        if self.collect:
            self.collector.collect(report)

    def close(self) -> None:
        self.vault.close()


def pair(x: Device, y: Device) -> None:
    rx, ry = x.vault.record.replica, y.vault.record.replica
    set_group_key(ry, ensure_group_key(rx))
    PeerBook(rx).add(y.identity.device_id, y.identity.name, y.identity.cert_pem)
    PeerBook(ry).add(x.identity.device_id, x.identity.name, x.identity.cert_pem)


def folder_size(box: Path) -> tuple[int, int]:
    files = [p for p in box.iterdir() if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=1500)
    parser.add_argument("--notes", type=int, default=30)
    parser.add_argument("--hours-per-edit", type=float, default=1.0)
    parser.add_argument("--only-on", action="store_true", help="only the group with collection on")
    args = parser.parse_args()
    rng = random.Random(15)
    now = [1_900_000_000.0]

    def clock() -> float:
        return now[0]

    with tempfile.TemporaryDirectory(prefix="nw-collect-bench-") as tmp:
        groups = {}
        kinds = (True,) if args.only_on else (True, False)
        for collect in kinds:
            box = Path(tmp) / f"box-{'on' if collect else 'off'}"
            box.mkdir()
            devices = [Device(Path(tmp) / f"{n}-{collect}", n, box, collect, clock) for n in ("office", "home", "laptop")]
            pair(devices[0], devices[1])
            pair(devices[0], devices[2])
            pair(devices[1], devices[2])
            for d in devices:
                d.start()
            record = devices[0].vault.record
            client = record.create_client(Client(display_name="Synthetic Person"))
            notes = [record.create_note(ProgressNote(client_id=client.id, format="DAP",
                                                     facts=SessionFacts(date_of_service=date(2026, 3, 2)))).id
                     for _ in range(args.notes)]
            for _ in range(2):
                for d in devices:
                    d.round()
            groups[collect] = (devices, notes, box)
        print(f"{args.edits} edits across three devices, {args.notes} notes, {args.hours_per_edit:g} h per edit, "
              f"grace {DEFAULT_GRACE_SECONDS / 86400:g} days", flush=True)
        cpu = {True: 0.0, False: 0.0}
        started = time.perf_counter()
        for i in range(1, args.edits + 1):
            now[0] += args.hours_per_edit * 3600
            note_at, section_text = rng.randrange(args.notes), f"synthetic edit {i} " + "x" * rng.randrange(20, 400)
            for collect in kinds:  # alternately, under the same load
                devices, notes, _box = groups[collect]
                c0 = time.process_time()
                editor = devices[i % 3]
                editor.vault.record.set_section(notes[note_at], "data", section_text)
                for d in devices:
                    d.round()
                cpu[collect] += time.process_time() - c0
            if i % max(1, args.edits // 10) == 0 or i == args.edits:
                on_files, on_bytes = folder_size(groups[True][2])
                off = ""
                if False in groups:
                    off_files, off_bytes = folder_size(groups[False][2])
                    off = f" | off {off_files:4d} files {off_bytes / 1024:8.1f} KiB"
                print(f"after {i:5d} edits ({i * args.hours_per_edit / 24:5.1f} days): collection on "
                      f"{on_files:4d} files {on_bytes / 1024:8.1f} KiB{off} ({load()})", flush=True)
        same = {}
        for collect, (devices, _notes, _box) in groups.items():
            for _ in range(2):  # the last edit's bundle and its relays reach the devices before its editor
                for d in devices:
                    d.round()
            heads = [d.vault.record.replica.doc_heads() for d in devices]
            same[collect] = all(h == heads[0] for h in heads)
        agreed = ", ".join(f"collection {'on' if c else 'off'} {same[c]}" for c in kinds)
        spent = ", ".join(f"{'on' if c else 'off'} {cpu[c]:.1f}" for c in kinds)
        print(f"every device has the same record: {agreed}; CPU seconds for the rounds: {spent}; "
              f"wall {time.perf_counter() - started:.0f} s ({load()})", flush=True)
        for devices, _n, _b in groups.values():
            for d in devices:
                d.close()


if __name__ == "__main__":
    main()
