"""Encryption at rest: a canary written into a progress note and a process note appears in
no byte of any file of the vault (databases, their -wal/-shm, vault.json), while the vault is
open and after it is closed."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from store.keys import KdfParams
from store.models import Client, ProcessNote, ProgressNote, SessionFacts
from store.vault import Vault

CANARY_RECORD = "CANARY-record-5d1e"
CANARY_PRIVATE = "CANARY-private-9b7c"
CANARY_NAME = "Canaryname Zebulon"
PASSPHRASE = "a passphrase for the canary test"


def _leaks(folder: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    needles = [CANARY_RECORD, CANARY_PRIVATE, CANARY_NAME, PASSPHRASE]
    for path in sorted(folder.iterdir()):
        data = path.read_bytes()
        hits = [n for n in needles if n.encode() in data or n.encode("utf-16-le") in data]
        if hits:
            found[path.name] = hits
    return found


def test_canaries_never_reach_disk_in_clear(tmp_path: Path):
    folder = tmp_path / "vault"
    vault, _ = Vault.create(folder, PASSPHRASE, device_name="canary", kdf=KdfParams(memory_kib=8192, time_cost=1))
    try:
        vault.record.create_client(Client(id="c1", display_name=CANARY_NAME))
        note = vault.record.create_note(
            ProgressNote(client_id="c1", format="DAP", facts=SessionFacts(date_of_service=date(2026, 5, 4)))
        )
        for i in range(30):  # many small edits so the WAL holds several frames
            vault.record.set_section(note.id, "data", f"{CANARY_RECORD} edit {i}")
        pn = vault.private.create(ProcessNote(client_id="c1", session_date=date(2026, 5, 4), body=CANARY_PRIVATE))
        vault.private.update_body(pn.id, CANARY_PRIVATE + " revised")
        # The search indexes hold the words too; they must be encrypted like the rest.
        assert vault.search("CANARY").record and vault.search("CANARY").private
        names = {p.name for p in folder.iterdir()}
        assert {"vault.json", "record.db", "private.db"} <= names
        assert _leaks(folder) == {}
    finally:
        vault.close()
    assert _leaks(folder) == {}
