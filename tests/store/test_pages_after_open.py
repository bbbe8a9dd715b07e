"""A vault whose pages are verified after it opens (the app's unlock, `notewell check`):
what must be right is checked before anything is shown, the HMAC of every page right after,
and nothing is written until that has passed (store/page_check.py).

Real SQLCipher files damaged on disk; no mocks.
"""

from __future__ import annotations

import threading
from datetime import date
from pathlib import Path

import pytest

from store.errors import DamagedVault
from store.models import ClinicianSettings, ProgressNote, SessionFacts
from store.synthetic import populate
from store.vault import Vault
from conftest import FAST_KDF, VAULT_PASSPHRASE, folder_snapshot

PAGE = 4096
WAIT = 120.0


def make_populated(folder: Path) -> None:
    settings = ClinicianSettings(clinician_name="Dr. Page Tester", credentials="PhD", practice_name="Test Practice")
    vault, _ = Vault.create(folder, VAULT_PASSPHRASE, device_name="Test laptop", settings=settings, kdf=FAST_KDF)
    try:
        populate(vault, clients=3, notes=60, process_notes=4, seed=11)
    finally:
        vault.close()


def damage_last_page(path: Path) -> None:
    """Flip bytes inside the last page of the file: a page of the record that opening it and
    drawing the first screen (the client list, one client's notes) do not read."""
    raw = bytearray(path.read_bytes())
    assert len(raw) >= 8 * PAGE
    at = len(raw) - PAGE + 1000
    raw[at : at + 32] = bytes(b ^ 0x5A for b in raw[at : at + 32])
    path.write_bytes(bytes(raw))


def first_screen(vault: Vault) -> None:
    clients = vault.record.list_clients()
    assert clients
    vault.record.notes_for_client(clients[0].client_id)


def test_a_page_damaged_where_the_first_screen_does_not_read_is_found_and_every_write_refused(vault_dir):
    make_populated(vault_dir)
    damage_last_page(vault_dir / "record.db")
    databases = {name: (vault_dir / name).read_bytes() for name in ("record.db", "private.db")}

    vault = Vault.open(vault_dir, VAULT_PASSPHRASE, pages_after_open=True)
    try:
        first_screen(vault)  # drawn: the damaged page is not on it
        problems = vault.page_check.wait(timeout=WAIT)
        assert problems, "the page check must find the damaged page"
        assert all(p.startswith("record.db: ") for p in problems)
        client = vault.record.list_clients()[0]
        with pytest.raises(DamagedVault) as refused:
            vault.record.create_note(
                ProgressNote(client_id=client.client_id, format="SOAP", facts=SessionFacts(date_of_service=date(2026, 1, 5)))
            )
        assert "record.db is damaged" in refused.value.message and "backup" in refused.value.message
        with pytest.raises(DamagedVault):
            vault.update_settings(practice_name="Another practice")
    finally:
        vault.close()
    # Nothing was written: both databases are as they were, the damaged page included.
    assert {name: (vault_dir / name).read_bytes() for name in databases} == databases


def test_the_same_damage_refuses_an_open_that_verifies_first(vault_dir):
    make_populated(vault_dir)
    damage_last_page(vault_dir / "record.db")
    before = folder_snapshot(vault_dir)
    with pytest.raises(DamagedVault):
        Vault.open(vault_dir, VAULT_PASSPHRASE)
    assert folder_snapshot(vault_dir) == before


def test_nothing_is_written_before_every_page_has_passed(vault_dir):
    """A write issued at once waits for the page check, then goes ahead on a sound vault."""
    make_populated(vault_dir)
    vault = Vault.open(vault_dir, VAULT_PASSPHRASE, pages_after_open=True)
    try:
        seen: list[bool] = []
        main_file = (vault_dir / "record.db").read_bytes()
        original = vault.page_check.require_sound

        def watched() -> None:
            # Called by the write before it begins: the files are still untouched here.
            seen.append((vault_dir / "record.db").read_bytes() == main_file)
            original()
            seen.append(vault.page_check.finished)

        from store import write_access

        key = str((vault_dir / "record.db").resolve())
        write_access._holds[key] = (watched, lambda: vault.page_check.passed)
        vault.update_settings(practice_name="Practice after the check")
        assert seen == [True, True]
        assert vault.page_check.passed
        assert vault.settings().practice_name == "Practice after the check"
    finally:
        vault.close()
    with Vault.open(vault_dir, VAULT_PASSPHRASE) as again:  # and every page passes there too
        assert again.settings().practice_name == "Practice after the check"


def test_a_sound_vault_passes_and_writes_normally_from_another_thread(vault_dir):
    make_populated(vault_dir)
    vault = Vault.open(vault_dir, VAULT_PASSPHRASE, pages_after_open=True)
    try:
        assert vault.page_check.wait(timeout=WAIT) == []
        errors: list[BaseException] = []

        def sync_like() -> None:  # a sync's own connection, as the app's sync jobs open one
            store = vault.open_record_store()
            try:
                client = store.list_clients()[0]
                store.create_note(
                    ProgressNote(client_id=client.client_id, format="DAP", facts=SessionFacts(date_of_service=date(2026, 2, 2)))
                )
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
            finally:
                Vault.close_record_store(store)

        worker = threading.Thread(target=sync_like)
        worker.start()
        worker.join(WAIT)
        assert errors == []
    finally:
        vault.close()
