"""Backup, verify and restore of a vault of 10,000 progress notes: time and size.

    python -m bench.backup_bench            # medians of 3 runs each
    python -m bench.backup_bench --runs 5

The vault is bench/out's synthetic one (10,000 notes across 200 clients, 200 process notes).
Each figure is measured in this process through the store API (store/backup.py), after the
vault is unlocked, so the passphrase's key derivation (Argon2id, about 0.2 s, once per
command) is not in it; the command line adds that and its start-up. Where the time of a
backup goes is printed too, and the two ways of copying a live SQLCipher database that were
considered: SQLite's online backup into a file under the same key (the one used) and
`sqlcipher_export` into an attached database.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import sqlcipher3

from bench.common import OUT, PASSPHRASE, synthetic_vault
from store import backup as backup_mod
from store.backup import restore_backup, verify_backup, write_backup
from store.vault import Vault


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def _copy_ways(vault_path: Path, key: bytes, work: Path) -> dict[str, float]:
    """The online backup API versus sqlcipher_export, copying record.db once each."""
    statement = f"PRAGMA key = \"x'{key.hex()}'\""
    source = sqlcipher3.connect(str(vault_path / "record.db"), isolation_level=None)
    source.execute("PRAGMA cipher_log_level = NONE")
    source.execute(statement)
    out: dict[str, float] = {}
    try:
        target_path = work / "copy-backup-api.db"
        target = sqlcipher3.connect(str(target_path), isolation_level=None)
        target.execute("PRAGMA cipher_log_level = NONE")
        target.execute(statement)
        out["online backup API, same key"], _ = _timed(lambda: source.backup(target, pages=-1))
        target.close()
        export_path = work / "copy-export.db"
        def export() -> None:
            source.execute(f"ATTACH DATABASE '{export_path}' AS copy KEY \"x'{key.hex()}'\"")
            source.execute("SELECT sqlcipher_export('copy')").fetchall()
            source.execute("DETACH DATABASE copy")
        out["sqlcipher_export, same key"], _ = _timed(export)
    finally:
        source.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    vault_path = synthetic_vault("backup", 10_000, 200)
    work = Path(tempfile.mkdtemp(prefix="backup-bench-", dir=OUT))
    try:
        vault = Vault.open(vault_path, PASSPHRASE)
        try:
            counts = None
            times: dict[str, list[float]] = {"backup": [], "verify": [], "restore": []}
            phases: dict[str, list[float]] = {}
            sizes = []
            original = {
                "snapshot": backup_mod.BackupSource._copy_database,
                "count": backup_mod._count_contents,
                "hash": backup_mod._entry,
                "seal and write": backup_mod._write_file,
            }

            def timing(label, fn):
                def wrapped(*a, **k):
                    t0 = time.perf_counter()
                    try:
                        return fn(*a, **k)
                    finally:
                        phases.setdefault(label, []).append(time.perf_counter() - t0)
                return wrapped

            backup_mod.BackupSource._copy_database = timing("snapshot", original["snapshot"])
            backup_mod._count_contents = timing("count", original["count"])
            backup_mod._entry = timing("hash", original["hash"])
            backup_mod._write_file = timing("seal and write", original["seal and write"])
            try:
                for run in range(args.runs):
                    folder = work / f"drive-{run}"
                    folder.mkdir()
                    seconds, written = _timed(lambda: write_backup(vault, folder))
                    times["backup"].append(seconds)
                    sizes.append(written.size)
                    counts = written.manifest.counts
                    seconds, _ = _timed(lambda: verify_backup(written.path, vault=vault))
                    times["verify"].append(seconds)
                    target = work / f"restored-{run}"
                    seconds, _ = _timed(lambda: restore_backup(
                        written.path, target, passphrase=PASSPHRASE, device_name="bench restore"))
                    times["restore"].append(seconds)
                    shutil.rmtree(target)
            finally:
                backup_mod.BackupSource._copy_database = original["snapshot"]
                backup_mod._count_contents = original["count"]
                backup_mod._entry = original["hash"]
                backup_mod._write_file = original["seal and write"]
            ways = _copy_ways(vault_path, bytes(vault._db_keys[0]), work)
        finally:
            vault.close()
        vault_bytes = sum((vault_path / n).stat().st_size for n in ("record.db", "private.db", "vault.json"))
        print(f"vault: {counts.progress_notes:,} progress notes, {counts.clients} clients, "
              f"{counts.process_notes} process notes; {vault_bytes / 1e6:.1f} MB on disk")
        print(f"backup file: {statistics.median(sizes) / 1e6:.1f} MB ({statistics.median(sizes) / vault_bytes:.3f} of the vault)")
        for label, values in times.items():
            print(f"{label}: median {statistics.median(values):.2f} s (runs: {', '.join(f'{v:.2f}' for v in values)})")
        per_run = {label: sum(v) / args.runs for label, v in phases.items()}
        print("where a backup's time goes (mean per backup): " + ", ".join(f"{k} {v:.2f} s" for k, v in per_run.items()))
        for label, seconds in ways.items():
            print(f"copying record.db once, {label}: {seconds:.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
