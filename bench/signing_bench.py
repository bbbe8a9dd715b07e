"""Signature figures on a vault of 10,000 synthetic progress notes across 200 clients, most of
them signed (store/synthetic.py signs about three in four, by this device's key).

Prints: the time to sign a note (sign_note: checklist, canonical encoding, Ed25519, the write);
the time to verify one note (signature_state: the note's document read and every signed entry
checked against its device's key), cold (the document loaded) and warm (cached), and the
Ed25519 check alone; the time to open the vault and list a client's notes with each note's
signature verified (the list's labels), the first time and once the verified states are kept;
and the To do list's signature scan over every signed note, cold and warm.

    python -m bench.signing_bench [--notes 10000] [--clients 200] [--rebuild]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import date

from bench.common import PASSPHRASE, pct, synthetic_vault
from store import documents as D
from store.signing import open_entry
from store.synthetic import make_note
from store.vault import Vault


def ms(x: float) -> str:
    return f"{x * 1000:.2f} ms"


def bench_sign(vault: Vault, n: int = 100) -> list[float]:
    rng = random.Random(5)
    client = vault.record.get_client(vault.record.list_clients()[0].client_id)
    times = []
    for i in range(n):
        note = make_note(rng, client, 10_000 + i, date(2026, 3, 1 + i % 27), complete=True)
        vault.record.create_note(note)
        t0 = time.perf_counter()
        vault.record.sign_note(note.id)
        times.append(time.perf_counter() - t0)
    return times


def bench_verify(vault: Vault, n: int = 300) -> tuple[list[float], list[float], list[float]]:
    record = vault.record
    signed = [r.note_id for r in record.list_notes() if r.signed_at is not None]
    sample = random.Random(9).sample(signed, min(n, len(signed)))
    cold, warm, crypto = [], [], []
    for note_id in sample:
        record._docs.forget_all()  # the document loaded from record.db, as on first read
        t0 = time.perf_counter()
        state = record.signature_state(note_id)
        cold.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        record.signature_state(note_id)
        warm.append(time.perf_counter() - t0)
        assert state.signed, note_id
        doc = record.load_doc(note_id)
        key_for = record.replica.device_trust().public_key
        entries = D.signed_entries(doc)
        t0 = time.perf_counter()
        for entry_id, envelope in entries.items():
            open_entry(entry_id, envelope, note_id, key_for)
        crypto.append((time.perf_counter() - t0) / max(1, len(entries)))
    return cold, warm, crypto


def bench_open_and_list(path, runs: int = 3) -> list[tuple[float, float]]:
    """(open + list a client with verified labels, of which the key derivation) per run; the
    first run verifies the client's notes, later ones read the kept states."""
    from store import keys

    out = []
    real = keys.passphrase_kek
    for _ in range(runs):
        kdf = []

        def timed(*a, **kw):
            t0 = time.perf_counter()
            try:
                return real(*a, **kw)
            finally:
                kdf.append(time.perf_counter() - t0)

        keys.passphrase_kek = timed
        try:
            t0 = time.perf_counter()
            vault = Vault.open(path, PASSPHRASE)
            clients = vault.record.list_clients()
            rows = vault.record.verify_rows(vault.record.notes_for_client(clients[len(clients) // 2].client_id))
            total = time.perf_counter() - t0
            assert rows
            vault.close()
        finally:
            keys.passphrase_kek = real
        out.append((total, sum(kdf)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--notes", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args()
    path = synthetic_vault("signing", args.notes, args.clients, rebuild=args.rebuild)

    vault = Vault.open(path, PASSPHRASE)
    try:
        vault.record._conn.execute("DELETE FROM signature_checks")  # a cold start for the figures
        signed = sum(1 for r in vault.record.list_notes() if r.signed_at is not None)
    finally:
        vault.close()
    opens = bench_open_and_list(path)
    vault = Vault.open(path, PASSPHRASE)
    try:
        t0 = time.perf_counter()
        findings = vault.record.signature_findings()
        scan_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        vault.record.signature_findings()
        scan_warm = time.perf_counter() - t0
        signs = bench_sign(vault)
        cold, warm, crypto = bench_verify(vault)
    finally:
        vault.close()

    print(f"vault: {args.notes} progress notes across {args.clients} clients, {signed} signed")
    print(f"sign a note:                     p50 {ms(pct(signs, 50))}   p99 {ms(pct(signs, 99))}")
    print(f"verify one note (cold / warm):   p50 {ms(pct(cold, 50))} / {ms(pct(warm, 50))}   "
          f"p99 {ms(pct(cold, 99))} / {ms(pct(warm, 99))}")
    print(f"Ed25519 check of one entry:      median {ms(statistics.median(crypto))}")
    for i, (total, kdf) in enumerate(opens):
        what = "first (verifies the client's notes)" if i == 0 else "again (verified states kept)"
        print(f"open + list, verified, no KDF:   {ms(total - kdf)}   {what}; KDF alone {ms(kdf)}; target <= 500 ms")
    print(f"To do signature scan, {signed} signed notes: cold {scan_cold:.2f} s, warm {ms(scan_warm)} "
          f"({len(findings)} findings)")


if __name__ == "__main__":
    main()
