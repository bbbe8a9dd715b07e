"""Signature figures on a vault of 10,000 synthetic progress notes across 200 clients, most of
them signed (store/synthetic.py signs about three in four, by this device's key).

Prints, each with the load average beside it (the machine is shared):
- the time to sign a note (sign_note: checklist, canonical encoding, Ed25519, the stored
  state, the write);
- the time to verify one note (signature_state: the document read and every signed entry
  checked against its device's key), cold (document loaded) and warm, and the Ed25519 check;
- open the vault and list a client with verified labels (the states stored when each note
  was written or merged, store/signature_index.py), without the key derivation, with the
  number of Ed25519 checks the reads made (store.signing.verifications);
- the To do list's signature findings and count at 10,000 notes;
- the first open after a device-list change (a newly paired device vouched for): before, the
  first screen verified every signed note again (the per-read cache was keyed by the device
  list); after, the first screen reads the stored states and only the notes the device
  signed are verified again, off the first screen. The two alternate in this process;
- a vault made before states were stored (by the current main): its first open, and the
  computation of every state in bounded batches after it (what the app does off the first
  screen).

    python -m bench.signing_bench [--notes 10000] [--clients 200] [--rebuild] [--skip-upgrade]
                                  [--first-screen-only]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import time
from datetime import date
from pathlib import Path

from bench.common import PASSPHRASE, timed_kdf, load, pct, synthetic_vault
from store import documents as D
from store import signing
from store.device_identity import generate_identity
from store.signing import open_entry
from store.synthetic import make_note
from store.vault import Vault

SETTLE_BATCH = 25  # what the app computes per call on its store thread (tui/screens/main.py)


def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


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
        doc = record.replica.load_doc(note_id)
        key_for = record.replica.device_trust().public_key
        entries = D.signed_entries(doc)
        t0 = time.perf_counter()
        for entry_id, envelope in entries.items():
            open_entry(entry_id, envelope, note_id, key_for)
        crypto.append((time.perf_counter() - t0) / max(1, len(entries)))
    return cold, warm, crypto


def first_screen(path: Path) -> tuple[float, float, float, int, int, int, int]:
    """Open, list the clients, list a client with verified labels, and the To do list's
    signature findings: (total, KDF within it, the reads after the open alone, rows, findings,
    pending states, Ed25519 checks). The open verifies every page of both databases first
    (docs/security.md), which is most of the rest on a busy machine."""
    with timed_kdf() as kdf:
        checks = signing.verifications()
        t0 = time.perf_counter()
        vault = Vault.open(path, PASSPHRASE)
        t1 = time.perf_counter()
        clients = vault.record.list_clients()
        rows = vault.record.verify_rows(vault.record.notes_for_client(clients[len(clients) // 2].client_id))
        findings = vault.record.signature_attention_rows()
        pending = vault.record.pending_signature_states()
        t2 = time.perf_counter()
        checks = signing.verifications() - checks
        vault.close()
    assert rows
    return t2 - t0, sum(kdf), t2 - t1, len(rows), len(findings), pending, checks


def to_do(path: Path, runs: int = 5) -> tuple[list[float], int]:
    """The To do list's signature part on an open vault: its findings and count."""
    times = []
    with Vault.open(path, PASSPHRASE) as vault:
        for _ in range(runs):
            t0 = time.perf_counter()
            found = vault.record.signature_attention_rows()
            times.append(time.perf_counter() - t0)
    return times, len(found)


def full_rescan(path: Path) -> tuple[float, int]:
    """Before: what the first screen after a device-list change paid, every signed note
    verified again from its document (`signature_state`, documents cold)."""
    with Vault.open(path, PASSPHRASE) as vault:
        record = vault.record
        ids = [r.note_id for r in record.list_notes() if r.status.value != "draft" or r.signed_at or r.signature_conflict]
        record._docs.forget_all()
        t0 = time.perf_counter()
        for note_id in ids:
            record.signature_state(note_id)
        return time.perf_counter() - t0, len(ids)


def change_device_list(path: Path, n: int) -> None:
    """A newly paired device, vouched for by this one: the device list changes."""
    with Vault.open(path, PASSPHRASE) as vault:
        other = generate_identity(f"bench laptop {n}")
        vault.record.replica.vouch_for(other.device_id, other.name, other.cert_pem)


def settle_all(path: Path) -> tuple[float, list[float], int]:
    """Every pending state computed, SETTLE_BATCH per transaction as the app does:
    (total, per batch, Ed25519 checks)."""
    with Vault.open(path, PASSPHRASE) as vault:
        checks = signing.verifications()
        batches = []
        t0 = time.perf_counter()
        while vault.record.pending_signature_states():
            b0 = time.perf_counter()
            vault.record.settle_signature_states(SETTLE_BATCH)
            batches.append(time.perf_counter() - b0)
        return time.perf_counter() - t0, batches, signing.verifications() - checks


def as_made_by_main(src: Path, dst: Path) -> None:
    """A copy of the vault without stored states: as the current main leaves a vault."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    with Vault.open(dst, PASSPHRASE) as vault:
        conn = vault.record_conn
        conn.execute("DROP TABLE signature_states")
        conn.execute("DROP TABLE signature_signers")
        conn.execute("DELETE FROM local_kv WHERE key = 'signature_states.trust.v1'")
        conn.execute(
            "CREATE TABLE signature_checks(note_id TEXT PRIMARY KEY, heads BLOB NOT NULL, "
            "trust BLOB NOT NULL, status TEXT NOT NULL)"
        )
        conn.execute("PRAGMA user_version = 3")


def screen_line(what: str, figure: tuple, load_now: str) -> str:
    total, kdf, reads, rows, findings, pending, checks = figure
    return (f"{what:<44} {ms(total - kdf):>10} (KDF alone {ms(kdf)}; the lists and To do after the open "
            f"{ms(reads)}); {rows} rows, {findings} To do findings, {pending} pending, {checks} Ed25519 checks; "
            f"{load_now}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--notes", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--skip-upgrade", action="store_true", help="leave out the vault made by the current main")
    ap.add_argument("--first-screen-only", action="store_true", help="only the open-and-list figures")
    args = ap.parse_args()
    path = synthetic_vault("signing", args.notes, args.clients, rebuild=args.rebuild)
    with Vault.open(path, PASSPHRASE) as vault:
        signed = sum(1 for r in vault.record.list_notes() if r.signed_at is not None)
        pending = vault.record.pending_signature_states()
    if pending:  # a vault built before this code: its states first
        settle_all(path)
    print(f"vault: {args.notes} progress notes across {args.clients} clients, {signed} signed")

    if args.first_screen_only:
        for i in range(5):
            print(screen_line(f"open + list verified + To do, run {i + 1}:", first_screen(path), load()))
        return
    with Vault.open(path, PASSPHRASE) as vault:
        signs = bench_sign(vault)
        print(f"sign a note (state stored):    p50 {ms(pct(signs, 50))}   p99 {ms(pct(signs, 99))}; {load()}")
        cold, warm, crypto = bench_verify(vault)
        print(f"verify one note (cold / warm): p50 {ms(pct(cold, 50))} / {ms(pct(warm, 50))}   "
              f"p99 {ms(pct(cold, 99))} / {ms(pct(warm, 99))}; {load()}")
        print(f"Ed25519 check of one entry:    median {ms(statistics.median(crypto))}; {load()}")

    for i in range(3):
        print(screen_line(f"open + list verified + To do, run {i + 1}:", first_screen(path), load()))
    times, found = to_do(path)
    print(f"To do signature findings at {args.notes} notes: {found} found, p50 {ms(pct(times, 50))}, "
          f"max {ms(max(times))}; {load()}")

    # The first open after a device-list change, after and before, alternating.
    change_device_list(path, 1)
    print(screen_line("after a device-list change (after):", first_screen(path), load()))
    total, batches, checks = settle_all(path)
    print(f"  then off the first screen: {checks} Ed25519 checks (the notes that device signed), {ms(total)}; {load()}")
    took, count = full_rescan(path)
    print(f"after a device-list change (before): every signed note verified again, {count} notes: "
          f"{took:.1f} s; {load()}")
    change_device_list(path, 2)
    print(screen_line("after a device-list change (after, again):", first_screen(path), load()))
    settle_all(path)

    if args.skip_upgrade:
        return
    old = path.parent / f"{path.name}-as-main"
    as_made_by_main(path, old)
    try:
        print(screen_line("made by main: first open (migration):", first_screen(old), load()))
        print(screen_line("made by main: second open:", first_screen(old), load()))
        total, batches, checks = settle_all(old)
        print(f"made by main: every state computed off the first screen: {total:.1f} s in {len(batches)} batches of "
              f"{SETTLE_BATCH} (p50 {ms(pct(batches, 50))}, max {ms(max(batches))}), {checks} Ed25519 checks; {load()}")
        print(screen_line("made by main: open once computed:", first_screen(old), load()))
    finally:
        shutil.rmtree(old, ignore_errors=True)


if __name__ == "__main__":
    main()
