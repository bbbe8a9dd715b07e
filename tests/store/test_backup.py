"""Backups through the store API (store/backup.py) on real vaults: a round trip of everything
a vault holds, the recovery key, a passphrase changed since, the new device identity, the
audit trail, and every kind of bad backup file refused with one sentence and nothing written.
The processes, the full and read-only folders and the kill test are in
tests/tui/test_backup_cli.py; pairing a restored vault in tests/sync/test_backup_pairing.py.
"""

from __future__ import annotations

import os
import sys
from datetime import date
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store import backup_format  # noqa: E402
from store.backup import (  # noqa: E402
    BackupSource,
    read_backup_header,
    restore_backup,
    verify_backup,
    write_backup,
)
from store.device_list import DEVICE_LIST_ID
from store.device_identity import load_identity  # noqa: E402
from store.errors import (  # noqa: E402
    BackupError,
    BadBackupFile,
    VaultExists,
    WrongPassphrase,
    WrongRecoveryKey,
)
from store.models import ClinicianSettings, Client, ProcessNote, ProgressNote, SessionFacts  # noqa: E402
from store.vault import KdfParams, Vault  # noqa: E402
from tests.leak_scan import leaks  # noqa: E402
from tests.store.test_record import CANARY, a_client, complete_note  # noqa: E402

FAST_KDF = KdfParams(memory_kib=8192, time_cost=1, parallelism=1)
PASSPHRASE = "backup test passphrase"
NEW_PASSPHRASE = "a later passphrase"
SETTINGS = ClinicianSettings(clinician_name="Dr. Rowan Testley", credentials="PsyD")
CANARY_RECORD = "CANARY-backup-record-41c7"
CANARY_PRIVATE = "CANARY-backup-private-8e02"
# More than one chunk (1 MiB), so moving chunks around can be tried.
EXTRA_FILE_BYTES = 2_500_000


def _fill(vault: Vault, *, extra_file: bool = True) -> None:
    """A client, a signed note with an addendum, a draft holding a canary, process notes
    (one with a canary), and a file of the clinician's own in the vault folder."""
    record = vault.record
    record.create_client(a_client("c1", "Avery Testperson"))
    record.create_client(Client(id="c2", display_name="Blake Sample"))
    record.create_note(complete_note("n1", "c1", date(2026, 1, 5)))
    record.sign_note("n1")
    record.add_addendum("n1", "A clarification of the homework.", "clarify")
    draft = record.create_note(
        ProgressNote(id="n2", client_id="c2", format="DAP", facts=SessionFacts(date_of_service=date(2026, 2, 2)))
    )
    record.set_section(draft.id, "data", f"{CANARY_RECORD} in a draft")
    vault.private.create(ProcessNote(client_id="c1", session_date=date(2026, 1, 5), body=CANARY_PRIVATE))
    vault.private.create(ProcessNote(client_id="c2", session_date=date(2026, 2, 2), body="A hunch to bring to supervision."))
    if extra_file:
        (vault.path / "attachments").mkdir()
        (vault.path / "attachments" / "extra.bin").write_bytes(os.urandom(EXTRA_FILE_BYTES))


@pytest.fixture
def made(tmp_path: Path):
    """(vault folder, backup folder, backup file, recovery key) of a filled vault, closed."""
    folder = tmp_path / "vault"
    vault, recovery = Vault.create(folder, PASSPHRASE, device_name="old laptop", settings=SETTINGS, kdf=FAST_KDF)
    try:
        _fill(vault)
        out = tmp_path / "backups"
        out.mkdir()
        written = write_backup(vault, out)
    finally:
        vault.close()
    return folder, out, written.path, recovery


def _state(vault: Vault) -> dict:
    record = vault.record
    return {
        "heads": {k: sorted(v) for k, v in record.replica.doc_heads().items()},
        "notes": {n: record.get_note(n).model_dump(mode="json") for n in ("n1", "n2")},
        "process": sorted((p.client_id, p.body) for c in ("c1", "c2") for p in vault.private.for_client(c)),
        "audit": [(e.seq, e.event, e.hash) for e in vault.audit.entries()],
        "settings": vault.settings(),
    }


def test_a_round_trip_restores_everything_as_a_new_device(made, tmp_path: Path):
    folder, _out, backup, _recovery = made
    with Vault.open(folder, PASSPHRASE) as original:
        before = _state(original)
        old_device = original.device_id
        assert before["audit"][-1][1] == "backup_written"
    restored = restore_backup(backup, tmp_path / "new", passphrase=PASSPHRASE, device_name="new laptop")
    assert restored.device_id != old_device
    with Vault.open(tmp_path / "new", PASSPHRASE) as vault:
        after = _state(vault)
        assert vault.check() == []
        assert vault.device_id == restored.device_id == load_identity(vault.record.replica).device_id
        assert vault.device_name == "new laptop"
        signed = vault.record.get_note("n1")
        assert signed.status == "signed" and len(signed.addenda) == 1
        assert vault.record.signed_version("n1") is not None
        assert vault.record.signature_state("n1").signed  # still verifies under the new identity
        assert vault.audit.verify().ok
        restored_entry = vault.audit.entries()[-1]
    # Everything as it was when the backup was made (its own entry came after the snapshot),
    # but for the device list: the new identity vouches there for the one the backup came from.
    after["heads"].pop(DEVICE_LIST_ID)
    before["heads"].pop(DEVICE_LIST_ID)
    for key in ("heads", "notes", "process", "settings"):
        assert after[key] == before[key], key
    assert after["audit"][: len(before["audit"]) - 1] == before["audit"][:-1]
    assert restored_entry.event == "vault_restored"
    assert restored_entry.details["from_device"] == old_device[:16]
    assert (tmp_path / "new" / "attachments" / "extra.bin").read_bytes() == (
        folder / "attachments" / "extra.bin"
    ).read_bytes()
    assert restored.manifest.counts.process_notes == 2 and restored.manifest.counts.progress_notes == 2


def test_verify_checks_everything_and_writes_nothing(made, tmp_path: Path):
    _folder, _out, backup, recovery = made
    listing = sorted(p.name for p in tmp_path.rglob("*"))
    manifest = verify_backup(backup, passphrase=PASSPHRASE)
    # Two clients, two notes, and the device list their signatures brought (store/device_list.py).
    assert manifest.counts.clients == 2 and manifest.counts.documents == 5
    assert {f.path for f in manifest.files} == {"record.db", "private.db", "attachments/extra.bin"}
    assert verify_backup(backup, recovery_key=recovery) == manifest
    assert sorted(p.name for p in tmp_path.rglob("*")) == listing


def test_restore_with_the_recovery_key_sets_a_new_passphrase(made, tmp_path: Path):
    _folder, _out, backup, recovery = made
    restore_backup(backup, tmp_path / "new", recovery_key=recovery, new_passphrase=NEW_PASSPHRASE, device_name="n")
    with pytest.raises(WrongPassphrase):
        Vault.open(tmp_path / "new", PASSPHRASE)
    with Vault.open(tmp_path / "new", NEW_PASSPHRASE) as vault:
        assert vault.check() == []
        events = [e.event for e in vault.audit.entries()]
        # (the wrong passphrase tried above is entered after them, as unlock_failures)
        assert events.index("vault_recovered") == events.index("vault_restored") - 1
    # The recovery key still opens the restored vault.
    Vault.recover(tmp_path / "new", recovery, "yet another passphrase").close()


def test_an_older_backup_still_restores_after_the_passphrase_changed(made, tmp_path: Path):
    folder, out, backup, recovery = made
    Vault.change_passphrase(folder, PASSPHRASE, NEW_PASSPHRASE)
    with Vault.open(folder, NEW_PASSPHRASE) as vault:
        newer = write_backup(vault, out).path
    # The old backup opens with the passphrase of its day (or the recovery key), not today's.
    with pytest.raises(WrongPassphrase, match="when the backup was made"):
        verify_backup(backup, passphrase=NEW_PASSPHRASE)
    restore_backup(backup, tmp_path / "old", passphrase=PASSPHRASE, device_name="n")
    Vault.open(tmp_path / "old", PASSPHRASE).close()
    restore_backup(backup, tmp_path / "old2", recovery_key=recovery, new_passphrase="fresh passphrase", device_name="n")
    # The newer one carries the new passphrase.
    with pytest.raises(WrongPassphrase):
        verify_backup(newer, passphrase=PASSPHRASE)
    verify_backup(newer, passphrase=NEW_PASSPHRASE)


def test_an_open_vault_verifies_its_own_backups_and_not_another_vaults(made, tmp_path: Path):
    folder, _out, backup, _recovery = made
    with Vault.open(folder, PASSPHRASE) as vault:
        assert verify_backup(backup, vault=vault).counts.process_notes == 2
    other, _ = Vault.create(tmp_path / "other", PASSPHRASE, device_name="x", kdf=FAST_KDF)
    with other, pytest.raises(BadBackupFile, match="another vault"):
        verify_backup(backup, vault=other)


def test_the_backup_file_holds_no_canary_in_the_clear_nor_compressed(tmp_path: Path):
    vault, _ = Vault.create(tmp_path / "vault", PASSPHRASE, device_name="d", settings=SETTINGS, kdf=FAST_KDF)
    with vault:
        _fill(vault, extra_file=False)
        out = tmp_path / "backups"
        out.mkdir()
        backup = write_backup(vault, out).path
    needles = [CANARY_RECORD, CANARY_PRIVATE, CANARY, PASSPHRASE, "Avery Testperson"]
    # Every byte of the file, and whatever zlib, deflate or gzip make of it from every offset.
    assert leaks(backup.read_bytes(), needles) == []
    # The scan does find them where they are in the clear.
    assert leaks(f"x{CANARY_PRIVATE}y".encode(), needles) == [CANARY_PRIVATE]


def test_the_backup_is_owner_only_and_named_as_complete(made):
    _folder, out, backup, _recovery = made
    assert backup.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in out.iterdir()] == [backup.name]
    header = read_backup_header(backup)
    assert backup.name.startswith(f"notewell-{header.vault_id[:8]}-") and backup.suffix == ".nwbackup"


# --- bad backup files ----------------------------------------------------------------------


def _header_end(path: Path) -> int:
    with open(path, "rb") as f:
        return len(backup_format.read_header(f, path.name).raw)


SEALED = backup_format.CHUNK_BYTES + backup_format.TAG_BYTES


def _bad_files(backup: Path, tmp: Path) -> dict[str, Path]:
    data = backup.read_bytes()
    start = _header_end(backup)
    chunk0, chunk1 = data[start : start + SEALED], data[start + SEALED : start + 2 * SEALED]
    assert len(chunk1) == SEALED  # the fixture makes a file of several chunks
    variants = {
        "empty": b"",
        "foreign": b"PK\x03\x04 a zip file, say" + os.urandom(4000),
        "cut in the header": data[: start // 2],
        "cut after the header": data[:start],
        "cut in a chunk": data[: start + SEALED // 2],
        "cut at a chunk boundary": data[: start + 2 * SEALED],
        "last byte gone": data[:-1],
        "a byte added": data + b"\0",
        "header altered": data[:40] + bytes([data[40] ^ 1]) + data[41:],
        "chunk altered": data[: start + 100] + bytes([data[start + 100] ^ 1]) + data[start + 101 :],
        "last chunk altered": data[:-5] + bytes([data[-5] ^ 1]) + data[-4:],
        "chunks swapped": data[:start] + chunk1 + chunk0 + data[start + 2 * SEALED :],
        "a chunk repeated": data[:start] + chunk0 + chunk0 + data[start + 2 * SEALED :],
    }
    out = {}
    for label, content in variants.items():
        path = tmp / f"{label.replace(' ', '-')}.nwbackup"
        path.write_bytes(content)
        out[label] = path
    return out


def test_every_bad_backup_file_is_refused_in_one_sentence_and_nothing_is_written(made, tmp_path: Path):
    _folder, _out, backup, recovery = made
    bad = tmp_path / "bad"
    bad.mkdir()
    for label, path in _bad_files(backup, bad).items():
        with pytest.raises(BadBackupFile) as verified:
            verify_backup(path, passphrase=PASSPHRASE)
        message = verified.value.message
        assert message.count(". ") == 0 and message.endswith("."), (label, message)
        if label.startswith("cut") or label == "last byte gone":
            assert "incomplete" in message, (label, message)
        target = tmp_path / "restores" / label.replace(" ", "-")
        with pytest.raises(BadBackupFile):
            restore_backup(path, target, recovery_key=recovery, new_passphrase=NEW_PASSPHRASE, device_name="n")
        assert not target.exists(), label
        assert not (tmp_path / "restores").exists() or list((tmp_path / "restores").iterdir()) == [], label


def test_a_wrong_secret_is_refused_and_nothing_is_written(made, tmp_path: Path):
    _folder, _out, backup, recovery = made
    with pytest.raises(WrongPassphrase):
        restore_backup(backup, tmp_path / "new", passphrase="not the passphrase", device_name="n")
    other_key = Vault.create(tmp_path / "other", PASSPHRASE, device_name="x", kdf=FAST_KDF)
    other_key[0].close()
    with pytest.raises(WrongRecoveryKey, match="not the one of the vault"):
        restore_backup(backup, tmp_path / "new", recovery_key=other_key[1], new_passphrase=NEW_PASSPHRASE,
                       device_name="n")
    with pytest.raises(WrongRecoveryKey, match="typo"):
        verify_backup(backup, recovery_key=recovery[:-3] + ("AAA" if recovery[-3:] != "AAA" else "BBB"))
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backups", "other", "vault"]


def test_restore_goes_to_a_new_or_empty_folder_only(made, tmp_path: Path):
    folder, _out, backup, _recovery = made
    with pytest.raises(VaultExists, match="already exists"):
        restore_backup(backup, folder, passphrase=PASSPHRASE, device_name="n")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("someone's file")
    with pytest.raises(VaultExists, match="not empty"):
        restore_backup(backup, busy, passphrase=PASSPHRASE, device_name="n")
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(VaultExists, match="not a folder"):
        restore_backup(backup, a_file, passphrase=PASSPHRASE, device_name="n")
    empty = tmp_path / "empty"
    empty.mkdir()
    restore_backup(backup, empty, passphrase=PASSPHRASE, device_name="n")
    Vault.open(empty, PASSPHRASE).close()


def test_a_backup_folder_that_is_missing_a_file_or_inside_the_vault_is_refused(made, tmp_path: Path):
    folder, _out, _backup, _recovery = made
    with Vault.open(folder, PASSPHRASE) as vault:
        for where, words in (
            (tmp_path / "nowhere", "does not exist"),
            (tmp_path / "backups" / next(iter(os.listdir(tmp_path / "backups"))), "not a folder"),
            (folder / "attachments", "inside the vault folder"),
        ):
            with pytest.raises(BackupError, match=words):
                write_backup(vault, where)
        entries = len(vault.audit.entries())
    assert sorted(os.listdir(folder / "attachments")) == ["extra.bin"]
    assert not any(p.name.startswith(".backup-staging-") for p in folder.iterdir())
    with Vault.open(folder, PASSPHRASE) as vault:
        assert len(vault.audit.entries()) == entries


def test_leftovers_of_a_killed_backup_are_removed_unless_a_backup_holds_them(made):
    import fcntl

    folder, out, _backup, _recovery = made
    stale_partial = out / f".{_backup.name.rsplit('-', 1)[0]}-x.nwbackup.partial"
    stale_partial.write_bytes(b"half a backup")
    other_vaults = out / ".notewell-0000ffff-x.nwbackup.partial"
    other_vaults.write_bytes(b"another vault's, maybe being written over a network share")
    being_written = out / f".{_backup.name.rsplit('-', 1)[0]}-y.nwbackup.partial"
    being_written.write_bytes(b"a backup being written now")
    stale_staging = folder / ".backup-staging-dead"
    stale_staging.mkdir()
    writer = os.open(being_written, os.O_RDONLY)
    fcntl.flock(writer, fcntl.LOCK_EX)
    # A backup running in another program holds the vault folder: its staging stays.
    running = os.open(folder, os.O_RDONLY)
    fcntl.flock(running, fcntl.LOCK_SH)
    try:
        with Vault.open(folder, PASSPHRASE) as vault:
            BackupSource.of(vault).write(out)
        assert not stale_partial.exists()
        assert being_written.exists() and other_vaults.exists() and stale_staging.exists()
    finally:
        os.close(writer)
        os.close(running)
    with Vault.open(folder, PASSPHRASE) as vault:
        BackupSource.of(vault).write(out)
    assert not stale_staging.exists() and not being_written.exists() and other_vaults.exists()
