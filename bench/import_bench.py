"""`notewell import` of a large file: wall time, CPU time, peak memory of the command and its
worker processes together, and how fast a repeat of the same file is refused.

    python -m bench.import_bench            # 1,000 and 10,000 notes
    python -m bench.import_bench --large    # and 100,000 notes (a few minutes)
    python -m bench.import_bench --baseline main [--sizes 10000 100000] [--rounds 1]
                                            # main's import and this tree's, alternately,
                                            # at each size (10,000 notes without --sizes)

The file is built from store/synthetic.py's invented clients and notes (60% signed, the rest
drafts; a process note per 50 notes) in the import format, the way `notewell export` writes it.
Each size imports into a fresh empty vault, through the real command in its own process.
CPU time is the command's and its workers' (RUSAGE_CHILDREN: the command reaps its workers);
peak RSS is the largest sum of the resident sets of the command and its workers at one moment
(sampled from /proc every 20 ms). Then the same file is imported again, which must be
refused. The one-minute load average is printed beside every figure: the machine is shared.
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
import tempfile
import threading
import time
from dataclasses import dataclass
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


def _tree_pids(root: int) -> list[int]:
    """`root` and its descendants (the import's worker processes), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _sample(pid: int) -> tuple[int, float] | None:
    """(resident bytes, CPU seconds so far) of one process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    # After the ")": state is field 0, utime 11, stime 12, rss 21 (pages).
    return int(fields[21]) * _PAGE, (int(fields[11]) + int(fields[12])) / _TICK


@dataclass
class Run:
    wall: float
    code: int
    stderr: str
    cpu: float  # the command and every worker it started (reaped by it)
    parent_cpu: float  # the command's own, as last seen (within the sampling interval)
    peak_rss: int  # the largest sum of the resident sets of the command and its workers at once
    workers: int  # worker processes seen
    load: tuple[float, float]  # one-minute load average at the start and at the end


def _notewell(vault: Path, secret: Path, *args: str, tree: Path = REPO) -> Run:
    """Runs `notewell ARGS` from `tree` (this one, or a baseline's worktree), sampling the
    resident memory of it and its workers every 20 ms."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTEWELL_")}
    env["PYTHONPATH"] = str(tree)  # the tree's own packages, ahead of the installed copy
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "tui.cli", "--vault", str(vault), "--passphrase-file", str(secret),
                             *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=tree)
    peak, parent_cpu, seen = 0, 0.0, set()
    err: list[bytes] = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
    reader.start()
    while proc.poll() is None:
        pids = _tree_pids(proc.pid)
        seen.update(pids)
        total = 0
        for pid in pids:
            got = _sample(pid)
            if got is not None:
                total += got[0]
                if pid == proc.pid:
                    parent_cpu = got[1]
        peak = max(peak, total)
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    reader.join()
    return Run(wall, proc.returncode, b"".join(err).decode("utf-8", "replace"), 0.0, parent_cpu, peak,
               len(seen) - 1, (load0, os.getloadavg()[0]))


def _timed_import(vault: Path, secret: Path, file: Path, tree: Path = REPO) -> Run:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = _notewell(vault, secret, "import", str(file), tree=tree)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    run.cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return run


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


def _file(notes: int) -> tuple[Path, int]:
    file = OUT / f"import-{notes}.json"
    if not file.exists():
        write_import_file(file, notes)
    return file, file.stat().st_size


def _measure(notes: int, tree: Path = REPO, label: str = "") -> None:
    """One import of `notes` into a fresh vault, then the same file again (refused)."""
    file, size = _file(notes)
    vault = OUT / f"import-vault-{notes}"
    secret = OUT / "import-passphrase"
    secret.write_text(PASSPHRASE + "\n", encoding="utf-8")
    _new_vault(vault)
    run = _timed_import(vault, secret, file, tree)
    head = f"{notes:>7} notes ({size / 1e6:.1f} MB file){label}"
    if run.code != 0:
        print(f"{head}: import failed: {run.stderr.strip()[-400:]}")
        return
    again = _notewell(vault, secret, "import", str(file), tree=tree)
    refused = again.code != 0 and "Traceback" not in again.stderr
    # On two idle cores the building is shared by the command and its worker; the writing
    # after it is the command's alone. The larger of "all CPU over two cores" and "the
    # command's own CPU" is what an idle machine could not beat.
    idle = max(run.cpu / 2, run.parent_cpu)
    print(f"{head}: import {run.wall:.1f} s, CPU {run.cpu:.1f} s = {1000 * run.cpu / notes:.2f} ms a note "
          f"(the command {run.parent_cpu:.1f} s, {run.workers} worker(s) {run.cpu - run.parent_cpu:.1f} s; "
          f"on two idle cores >= {idle:.1f} s), peak RSS {run.peak_rss / 2**20:.0f} MB (command and workers); "
          f"load average {run.load[0]:.1f} -> {run.load[1]:.1f}; "
          f"repeat {'refused' if refused else 'NOT refused'} in {again.wall:.1f} s (load {again.load[0]:.1f})",
          flush=True)


def _baseline_tree(rev: str) -> Path:
    tree = Path(tempfile.mkdtemp(prefix="nw-import-base-")) / "tree"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(tree), rev], check=True)
    return tree


def compare(rev: str, notes: int, rounds: int) -> None:
    """The import of `rev` (checked out into a temporary worktree) and of this tree, in turn."""
    base = _baseline_tree(rev)
    try:
        for i in range(rounds):
            _measure(notes, base, f" [{rev}, round {i + 1}]")
            _measure(notes, REPO, f" [this tree, round {i + 1}]")
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], check=False)
        shutil.rmtree(base.parent, ignore_errors=True)


def bench(notes: int, lock: bool = False) -> None:
    _measure(notes)
    if lock:
        file, _size = _file(notes)
        print(f"{notes:>7} notes: write lock held {write_lock_seconds(file):.1f} s (in-process import into a fresh vault)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="also 100,000 notes")
    parser.add_argument("--sizes", type=int, nargs="*", help="these sizes instead")
    parser.add_argument("--lock", action="store_true", help="also measure how long the write lock is held")
    parser.add_argument("--baseline", metavar="REV", help="import with REV's code and this tree's, alternately "
                        "(REV checked out into a temporary worktree), at --sizes (default 10,000 notes)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the comparison (default 2)")
    args = parser.parse_args()
    if args.baseline:
        # With --sizes, each of those sizes in turn (REV's import and this tree's alternating).
        for n in args.sizes or [10_000]:
            compare(args.baseline, n, args.rounds)
        return
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
