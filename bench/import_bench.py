"""`notewell import` of a large file: wall time, the child's peak memory, and how fast a repeat
of the same file is refused.

    python -m bench.import_bench            # 1,000 and 10,000 notes
    python -m bench.import_bench --large    # and 100,000 notes (a few minutes)

The file is built from store/synthetic.py's invented clients and notes (60% signed, the rest
drafts; a process note per 50 notes) in the import format, the way `notewell export` writes it.
Each size imports into a fresh empty vault, through the real command in its own process, so
the peak RSS printed is that process's alone (RUSAGE_CHILDREN of a parent that starts nothing
else). Then the same file is imported again, which must be refused.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from bench.common import OUT, PASSPHRASE, SETTINGS
from store.export import _client_json, _note_json
from store.models import NoteStatus, Signature
from store.synthetic import PROCESS_THOUGHTS, make_client, make_note

REPO = Path(__file__).resolve().parents[1]


def write_import_file(path: Path, notes: int, *, clients: int | None = None, seed: int = 7) -> int:
    """Writes an import file of `notes` progress notes; returns its size in bytes.

    Written item by item, so building a 100,000-note file needs little memory.
    """
    rng = random.Random(seed)
    clients = clients or max(1, notes // 50)
    today = date.today()
    made = [make_client(rng, i) for i in range(clients)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        f.write('{"kind": "notewell-import", "version": 1,\n"clients": [\n')
        for i, c in enumerate(made):
            f.write(("," if i else "") + json.dumps(_client_json(c)) + "\n")
        f.write('],\n"progress_notes": [\n')
        for i in range(notes):
            client = made[i % clients]
            on = today - timedelta(days=1 + (notes - i) * 400 // notes + rng.randrange(0, 3))
            note = make_note(rng, client, i, on)
            if rng.random() < 0.6:
                ended = datetime.combine(on, note.facts.stop_time, tzinfo=timezone.utc)
                note = note.model_copy(update={
                    "status": NoteStatus.SIGNED,
                    "signature": Signature(signer=SETTINGS.clinician_name, credentials=SETTINGS.credentials,
                                           signed_at=min(ended + timedelta(hours=rng.choice([2, 5, 20])),
                                                         datetime.now(timezone.utc) - timedelta(minutes=1)),
                                           device_id="", heads=[], content_hash=""),
                })
            f.write(("," if i else "") + json.dumps(_note_json(note)) + "\n")
        f.write('],\n"process_notes": [\n')
        for i in range(notes // 50):
            item = {"id": f"process{i:06d}", "client_id": made[i % clients].id,
                    "session_date": (today - timedelta(days=rng.randrange(1, 30))).isoformat(),
                    "body": rng.choice(PROCESS_THOUGHTS)}
            f.write(("," if i else "") + json.dumps(item) + "\n")
        f.write("]}\n")
    return path.stat().st_size


def _notewell(vault: Path, secret: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTEWELL_")}
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "tui.cli", "--vault", str(vault), "--passphrase-file", str(secret), *args],
                         capture_output=True, text=True, env=env, cwd=REPO)
    return run, time.perf_counter() - t0


def _new_vault(path: Path) -> None:
    from store.vault import Vault

    if path.exists():
        shutil.rmtree(path)
    vault, _ = Vault.create(path, PASSPHRASE, device_name="bench", settings=SETTINGS)
    vault.close()


def write_lock_seconds(file: Path) -> float:
    """How long an import holds record.db's write lock: from its first write (the first
    progress report follows it) to the end of its transaction, measured in this process."""
    from store.importer import apply_import, read_import, read_import_file
    from store.keys import KdfParams, allow_test_kdf
    from store.vault import Vault

    allow_test_kdf()  # this vault uses the cheap test KDF (store/keys.py)
    path = OUT / "import-lock-vault"
    if path.exists():
        shutil.rmtree(path)
    vault, _ = Vault.create(path, PASSPHRASE, device_name="bench", settings=SETTINGS,
                            kdf=KdfParams(memory_kib=8192, time_cost=1, parallelism=1))
    first: list[float] = []
    try:
        plan = read_import(read_import_file(file))
        apply_import(vault, plan, progress=lambda done, total: first or first.append(time.perf_counter()))
        end = time.perf_counter()
    finally:
        vault.close()
        shutil.rmtree(path, ignore_errors=True)
    return end - first[0]


def bench(notes: int, lock: bool = False) -> None:
    file = OUT / f"import-{notes}.json"
    if not file.exists():
        size = write_import_file(file, notes)
    else:
        size = file.stat().st_size
    vault = OUT / f"import-vault-{notes}"
    secret = OUT / "import-passphrase"
    secret.write_text(PASSPHRASE + "\n", encoding="utf-8")
    _new_vault(vault)
    # Every child so far was small; the import is the largest child this process has had,
    # which is what RUSAGE_CHILDREN's ru_maxrss reports.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run, wall = _notewell(vault, secret, "import", str(file))
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_mb = usage.ru_maxrss / 1024
    cpu = usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime
    if run.returncode != 0:
        print(f"{notes} notes: import failed: {run.stderr.strip()}")
        return
    again, refuse = _notewell(vault, secret, "import", str(file))
    refused = again.returncode != 0 and "Traceback" not in again.stderr
    load = os.getloadavg()[0]
    print(f"{notes:>7} notes ({size / 1e6:.1f} MB file): import {wall:.1f} s (CPU {cpu:.1f} s, its workers included), "
          f"peak RSS {peak_mb:.0f} MB; repeat {'refused' if refused else 'NOT refused'} in {refuse:.1f} s; "
          f"load average {load:.1f}")
    if lock:
        print(f"{notes:>7} notes: write lock held {write_lock_seconds(file):.1f} s (in-process import into a fresh vault)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="also 100,000 notes")
    parser.add_argument("--sizes", type=int, nargs="*", help="these sizes instead")
    parser.add_argument("--lock", action="store_true", help="also measure how long the write lock is held")
    args = parser.parse_args()
    sizes = args.sizes or [1_000, 10_000] + ([100_000] if args.large else [])
    # Each size in its own process: RUSAGE_CHILDREN's peak is then that size's own.
    if len(sizes) > 1:
        for n in sizes:
            subprocess.run([sys.executable, "-m", "bench.import_bench", "--sizes", str(n)] + (["--lock"] if args.lock else []),
                           check=True, cwd=REPO)
        return
    bench(sizes[0], lock=args.lock)


if __name__ == "__main__":
    main()
