"""Store figures on a vault of 10,000 synthetic progress notes across 200 clients.

Prints: time to persist one edit (p50, p99); time to open the vault and list a client's
notes, excluding the key derivation; full-text search latency (p50, p95); peak RSS; and the
ratio of the same write-and-query workload on SQLCipher to plain SQLite, both run here.

    python -m bench.store_bench [--notes 10000] [--clients 200] [--rebuild]

The vault is built once into bench/out/ and reused (building it takes about two minutes).
"""

from __future__ import annotations

import argparse
import random
import resource
import sqlite3
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from bench.common import PASSPHRASE, SETTINGS, pct, synthetic_vault, timed_kdf
from store.database import open_database
from store.models import ProgressNote, SessionFacts
from store.record import RecordStore
from store.synthetic import make_client
from store.vault import Vault

QUERIES = ["worry", "sleep", "thought record", "exposure", "cognitive restructuring", "grounding",
           "sibling", "planner", "breathing", "avoidance", "restful", "homework"]


def ms(x: float) -> str:
    return f"{x * 1000:.2f} ms"


def bench_edits(vault: Vault, n: int = 400) -> list[float]:
    client = vault.record.list_clients()[0]
    note = vault.record.create_note(
        ProgressNote(client_id=client.client_id, format="SOAP", facts=SessionFacts(date_of_service=date.today()))
    )
    text = ""
    times = []
    for i in range(n):
        text += "abcdefghij klmnopqrstuvwxyz "[i % 27]  # one keystroke at a time
        t0 = time.perf_counter()
        vault.record.set_section(note.id, "subjective", text)
        times.append(time.perf_counter() - t0)
    return times


def bench_search(vault: Vault, n: int = 200) -> list[float]:
    times = []
    for i in range(n):
        q = QUERIES[i % len(QUERIES)]
        t0 = time.perf_counter()
        vault.search(q, limit=50)
        times.append(time.perf_counter() - t0)
    return times


def bench_open_and_list(path: Path, runs: int = 5) -> tuple[float, float]:
    """Median open+list time, and the median KDF time inside it (to subtract)."""
    totals = []
    with timed_kdf() as kdf_times:
        for _ in range(runs):
            t0 = time.perf_counter()
            vault = Vault.open(path, PASSPHRASE)
            clients = vault.record.list_clients()
            vault.record.notes_for_client(clients[len(clients) // 2].client_id)
            totals.append(time.perf_counter() - t0)
            vault.close()
    return statistics.median(totals), statistics.median(kdf_times)


def workload(conn, rounds: int = 300) -> float:
    """The same write-and-query mix on any connection: create, edit, list, search."""
    store = RecordStore(conn, device_id="ab" * 32, settings=lambda: SETTINGS)
    rng = random.Random(3)
    t0, cpu0 = time.perf_counter(), time.process_time()
    clients = [make_client(rng, i) for i in range(20)]
    for c in clients:
        store.create_client(c)
    for i in range(rounds):
        c = clients[i % len(clients)]
        note = store.create_note(
            ProgressNote(client_id=c.id, format="DAP", facts=SessionFacts(date_of_service=date(2026, 1, 1 + i % 28)))
        )
        for j in range(5):
            store.set_section(note.id, "data", f"Client reported better sleep, round {i} step {j}.")
        store.notes_for_client(c.id)
        store.search("sleep", 20)
    return time.perf_counter() - t0, time.process_time() - cpu0


def _plain(path: Path):
    conn = sqlite3.connect(str(path), isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "temp_store=MEMORY", "secure_delete=ON", "foreign_keys=ON"):
        conn.execute(f"PRAGMA {pragma}")
    return conn


def bench_cipher_ratio() -> tuple[float, float, float]:
    """Median workload time on SQLCipher and on plain SQLite, alternating fresh files, and the
    ratio of their median CPU times. The wall times include hundreds of fsyncs, whose own
    slow spells move a run by 20% or more either way; the CPU time is the cost of the
    encryption itself and barely moves."""
    t_plain, t_cipher = [], []
    with tempfile.TemporaryDirectory() as d:
        for i in range(3):
            t_plain.append(workload(_plain(Path(d) / f"plain{i}.db")))
            t_cipher.append(workload(open_database(Path(d) / f"cipher{i}.db", bytes(range(32)), create=True)))
    cpu_ratio = statistics.median(c for _, c in t_cipher) / statistics.median(c for _, c in t_plain)
    return statistics.median(w for w, _ in t_cipher), statistics.median(w for w, _ in t_plain), cpu_ratio


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--notes", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args()
    path = synthetic_vault("store", args.notes, args.clients, rebuild=args.rebuild)

    open_list, kdf = bench_open_and_list(path)
    vault = Vault.open(path, PASSPHRASE)
    try:
        edits = bench_edits(vault)
        searches = bench_search(vault)
    finally:
        vault.close()
    t_cipher, t_plain, cpu_ratio = bench_cipher_ratio()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"vault: {args.notes} progress notes across {args.clients} clients")
    print(f"persist one edit:        p50 {ms(pct(edits, 50))}   p99 {ms(pct(edits, 99))}   (target p99 <= 5 ms)")
    print(f"open + list (no KDF):    {ms(open_list - kdf)}   (KDF alone {ms(kdf)}; target <= 500 ms)")
    print(f"full-text search:        p50 {ms(pct(searches, 50))}   p95 {ms(pct(searches, 95))}   (target p95 <= 20 ms)")
    print(f"peak RSS:                {rss_mb:.0f} MB   (target <= 200 MB)")
    print(f"SQLCipher / SQLite:      {t_cipher / t_plain:.2f}  ({t_cipher:.2f} s vs {t_plain:.2f} s; target <= 1.3); "
          f"CPU time alone {cpu_ratio:.2f}")


if __name__ == "__main__":
    main()
