"""The vault's device id is its sync certificate's fingerprint; older vaults are upgraded."""

from __future__ import annotations

import json

from store import vaultfile
from store.device_identity import IDENTITY_KEY, fingerprint
from store.vault import _FILE_FORMAT_KEY, Vault


def test_new_vault_device_id_is_the_certificate_fingerprint(tmp_path, fast_kdf):
    vault, _ = Vault.create(tmp_path / "v", "identity test passphrase", device_name="office", kdf=fast_kdf)
    try:
        identity = vault.identity
        assert identity.device_id == vault.device_id == fingerprint(identity.cert_pem)
        assert identity.name == "office"
    finally:
        vault.close()
    on_disk = json.loads((tmp_path / "v" / "vault.json").read_text())
    assert on_disk["device"]["id"] == identity.device_id


def test_vault_without_identity_gets_one_on_open(tmp_path, fast_kdf):
    path = tmp_path / "v"
    vault, _ = Vault.create(path, "identity test passphrase", device_name="home", kdf=fast_kdf)
    old_id = vault.device_id
    # Make it look like a vault from before device certificates.
    vault.record_conn.execute("DELETE FROM local_kv WHERE key = ?", (IDENTITY_KEY,))
    vault.record_conn.execute("DELETE FROM local_settings WHERE key = ?", (_FILE_FORMAT_KEY,))
    vault.close()
    # vault.json in the first format (no checksum or MAC) with a random device id, as
    # vaults were written then: the file itself says it may predate certificates.
    data = json.loads((path / "vault.json").read_text())
    del data["mac"], data["checksum"]
    data.update(format_version=1, device={"id": "00" * 32, "name": "home"})
    (path / "vault.json").write_text(json.dumps(data, indent=2))

    vault = Vault.open(path, "identity test passphrase")
    try:
        identity = vault.identity
        assert identity.device_id == vault.device_id
        assert identity.device_id not in (old_id, "00" * 32)
    finally:
        vault.close()
    assert vaultfile.read(path).device_id == identity.device_id
    assert vaultfile.read(path).authenticated
    # And it is stable from then on.
    vault = Vault.open(path, "identity test passphrase")
    try:
        assert vault.device_id == identity.device_id
        upgrades = [e for e in vault.audit.entries() if e.event == "vault_file_upgraded"]
        assert [e.details["device_id_changed"] for e in upgrades] == [True]
    finally:
        vault.close()


def test_a_second_record_store_in_another_thread_sees_and_keeps_both_writers(tmp_path, fast_kdf):
    import threading
    from datetime import date

    from store.models import Client, ProgressNote, SessionFacts

    vault, _ = Vault.create(tmp_path / "v", "two writers passphrase", device_name="desk", kdf=fast_kdf)
    try:
        vault.record.create_client(Client(id="c1", display_name="Two Writers"))
        note = vault.record.create_note(
            ProgressNote(client_id="c1", format="DAP", facts=SessionFacts(date_of_service=date(2026, 2, 2)))
        )
        seen = {}

        def other_thread():
            store = vault.open_record_store()
            try:
                seen["before"] = store.get_note(note.id).sections["data"]
                store.set_section(note.id, "plan", "written by the second connection")
            finally:
                vault.close_record_store(store)

        vault.record.set_section(note.id, "data", "written by the owner")
        t = threading.Thread(target=other_thread)
        t.start()
        t.join(30)
        assert seen["before"] == "written by the owner"
        vault.record.set_section(note.id, "assessment", "owner again")
        got = vault.record.get_note(note.id).sections
        assert got["plan"] == "written by the second connection"
        assert got["assessment"] == "owner again" and got["data"] == "written by the owner"
        assert vault.check() == []
    finally:
        vault.close()
