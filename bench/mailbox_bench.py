"""Mailbox figures: export and import of a whole record, at growing sizes.

    python -m bench.mailbox_bench [--sizes 1000,10000] [--with-50k] [--profile] [--vaults DIR]

For each size: vault A (a synthetic record of N progress notes, built once by bench.common
and copied) writes a full bundle of every document into an empty folder (`sync_mailbox(...,
full=True)`: the export); then a fresh vault C, paired with A, runs the mailbox on that
folder (`sync_mailbox`: the import, then the relay bundle C writes of what it received) with
worker processes, as `notewell sync mailbox` has them. Wall time of each, the bundle's size,
the load average beside each figure and this process's peak RSS. 1,000 notes with 50 clients
are the 1,050 documents of issue 12's figure. After each size, the least any receiver of those
documents can take here (bench/least_work.py) and the import's time against it. Prints
figures; asserts nothing.

Uses only what older revisions have too (sync_mailbox, PreparePool), so bench.before_after
runs it on both sides.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import OUT, PASSPHRASE as BENCH_PASSPHRASE
from store.device_identity import ensure_identity
from store.keys import KdfParams, allow_test_kdf
from store.models import ClinicianSettings
from store.prepare_pool import PreparePool
from store.vault import Vault
from sync.mailbox import sync_mailbox
from sync.peers import PeerBook, ensure_group_key, set_group_key

FAST_KDF = KdfParams(memory_kib=8192, time_cost=1)
allow_test_kdf()
SETTINGS = ClinicianSettings(clinician_name="Dr. Bench Example", credentials="PhD")


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def clients_for(notes: int) -> int:
    return {1000: 50, 10000: 200, 50000: 1000}.get(notes, max(1, notes // 50))


def pair(x: Vault, y: Vault) -> None:
    ix, iy = ensure_identity(x.record.replica, x.device_name), ensure_identity(y.record.replica, y.device_name)
    set_group_key(y.record.replica, ensure_group_key(x.record.replica))
    PeerBook(x.record.replica).add(iy.device_id, iy.name, iy.cert_pem)
    PeerBook(y.record.replica).add(ix.device_id, ix.name, ix.cert_pem)


def source_vault(vaults: Path, notes: int) -> Path:
    """The synthetic record of `notes` notes, built once (bench.common) and only ever copied:
    bench.before_after points both revisions at this tree's copy, so neither builds its own."""
    path = vaults / f"mailbox-vault-{notes}-{clients_for(notes)}"
    if not (path / "done").exists():
        subprocess.run([sys.executable, "-m", "bench.common", str(path), str(notes), str(clients_for(notes))], check=True)
    return path


def one_size(notes: int, tmp: Path, profile: bool, vaults: Path) -> None:
    source = source_vault(vaults, notes)
    a_path = tmp / f"a{notes}"
    shutil.copytree(source, a_path)
    a = Vault.open(a_path, BENCH_PASSPHRASE)
    c, _ = Vault.create(tmp / f"c{notes}", "bench c passphrase", device_name="bench-c", kdf=FAST_KDF, settings=SETTINGS)
    box = tmp / f"box{notes}"
    box.mkdir()
    try:
        pair(a, c)
        identity_a = ensure_identity(a.record.replica, a.device_name)
        identity_c = ensure_identity(c.record.replica, c.device_name)
        docs = len(a.record.replica.doc_heads())
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        children_cpu = children.ru_utime + children.ru_stime
        with PreparePool() as pool:
            pool.wait_ready()
            c.record.replica.prepare_pool = pool
            before = load()
            t, cpu = time.perf_counter(), time.process_time()
            written = sync_mailbox(a.record.replica, identity_a, box, full=True)
            export_s, export_cpu = time.perf_counter() - t, time.process_time() - cpu
            size = (box / written.bundles.written).stat().st_size
            between = load()
            prof = cProfile.Profile() if profile else None
            t, cpu = time.perf_counter(), time.process_time()
            if prof:
                prof.enable()
            got = sync_mailbox(c.record.replica, identity_c, box)
            if prof:
                prof.disable()
            import_s, import_cpu = time.perf_counter() - t, time.process_time() - cpu
            c.record.replica.prepare_pool = None
        # The worker process's CPU (it only works for the import), once it has exited.
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        worker_cpu = children.ru_utime + children.ru_stime - children_cpu
        print(
            f"mailbox {notes} notes ({docs} documents): export {export_s:.2f} s (CPU {export_cpu:.2f} s; {before}), "
            f"import {import_s:.2f} s (CPU {import_cpu:.2f} s + its worker {worker_cpu:.2f} s; {between}; "
            f"received {got.received}, relayed {got.sent}; {load()} after), "
            f"bundle {size / 1024 / 1024:.1f} MiB, peak RSS {peak_rss_mb():.0f} MB",
            flush=True,
        )
        if prof:
            pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
        least_line(a, import_s)
    finally:
        a.close()
        c.close()
        shutil.rmtree(a_path, ignore_errors=True)
        shutil.rmtree(box, ignore_errors=True)
        shutil.rmtree(tmp / f"c{notes}", ignore_errors=True)


def least_line(a: Vault, import_s: float) -> None:
    """The least any import of these documents can take here (bench/least_work.py), beside
    the import's time. Absent from older revisions: skipped there."""
    try:
        from bench.least_work import describe, least_cpu, least_on_cores
    except ImportError:
        return
    replica = a.record.replica
    docs = [(doc_id, replica.stored_doc(doc_id)[0]) for doc_id in sorted(replica.doc_heads())]
    least = least_cpu(docs, replica.device_trust())
    print(f"mailbox: {describe(least)}; the import took {import_s / least_on_cores(least):.2f}x that", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated note counts")
    parser.add_argument("--with-50k", action="store_true", help="also 50,000 notes (slow on the old code)")
    parser.add_argument("--profile", action="store_true", help="print a profile of each import")
    parser.add_argument("--vaults", type=Path, default=OUT, help="where the synthetic records are kept")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.with_50k:
        sizes.append(50000)
    tmp = Path(tempfile.mkdtemp(prefix="nw-mailbox-bench-"))
    try:
        for notes in sizes:
            one_size(notes, tmp, args.profile, args.vaults)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
