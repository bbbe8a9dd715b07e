"""Automatic backups through the store API on real vaults and real backup files: the thinning
rule over a dated set (the clock is passed in, never read), what is never removed (the only
copy, another vault's or another device's backups, files that are not backups, anything
before the newest backup verifies, a backup whose audit trail the newest does not hold), and
"last backup" kept per device (a restored vault is a new device and starts with none).
"""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from store.automatic_backup import is_due, run_automatic_backup
from store.backup import BackupSource, record_backup, restore_backup, write_backup
from store.backup_thinning import BackupOnDisk, device_backups, thin_backups, thinning_plan
from store.errors import BadBackupFile
from store.last_backup import last_backup
from store.models import Client
from store.vault import KdfParams, Vault

FAST_KDF = KdfParams(memory_kib=8192, time_cost=1, parallelism=1)
PASSPHRASE = "thinning test passphrase"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)  # a Thursday


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


# Dated backups and what the rule does with each, with NOW as above (docs/backup.md).
DATED = {
    "2026-12-03T11:00": "keep",    # 1 hour old: the last 24 hours are kept whole
    "2026-12-03T07:00": "keep",
    "2026-12-02T13:00": "keep",    # 23 hours old
    "2026-12-02T10:00": "keep",    # a day old: the newest of 2 December
    "2026-12-02T07:00": "remove",  # an older one of the same day
    "2026-12-01T08:00": "keep",
    "2026-12-01T06:00": "remove",
    "2026-11-28T12:00": "keep",    # 5 days
    "2026-11-25T12:00": "keep",    # 8 days: the newest of the ISO week starting 23 November
    "2026-11-24T12:00": "remove",  # same week
    "2026-11-18T12:00": "keep",    # week of 16 November
    "2026-11-10T12:00": "keep",    # 23 days: week of 9 November
    "2026-11-09T12:00": "remove",  # same week
    "2026-10-20T12:00": "keep",    # 44 days: the newest of October
    "2026-10-05T12:00": "remove",
    "2026-09-15T12:00": "keep",
    "2025-12-10T12:00": "keep",    # 358 days: December 2025, monthly still
    "2025-06-01T12:00": "keep",    # over a year: the newest of 2025 before that
    "2025-03-01T12:00": "remove",
    "2024-05-01T12:00": "keep",    # 2024's only one
}


def test_the_rule_keeps_exactly_the_newest_of_each_period():
    backups = [BackupOnDisk(Path(f"b-{t}"), at(t), t) for t in DATED]
    keep, remove = thinning_plan(backups, NOW)
    assert sorted(b.backup_id for b in keep) == sorted(t for t, what in DATED.items() if what == "keep")
    assert sorted(b.backup_id for b in remove) == sorted(t for t, what in DATED.items() if what == "remove")


def test_the_only_copy_is_never_removed_however_old():
    only = [BackupOnDisk(Path("old"), at("2019-06-01T00:00"), "old")]
    assert thinning_plan(only, NOW) == (only, [])
    # Two in one old year: the newer stays.
    two = only + [BackupOnDisk(Path("older"), at("2019-03-01T00:00"), "older")]
    keep, remove = thinning_plan(two, NOW)
    assert [b.backup_id for b in keep] == ["old"] and [b.backup_id for b in remove] == ["older"]


def test_due_after_the_interval_by_the_clock_passed_in():
    from store.last_backup import LastBackup

    day = timedelta(days=1)
    assert is_due(None, day, NOW)
    last = LastBackup(at=NOW - day + timedelta(minutes=1), file="f", backup_id="b")
    assert not is_due(last, day, NOW)
    assert is_due(last, day, NOW + timedelta(minutes=1))
    # A last backup "in the future" (the clock was set back) is due: the safe side.
    assert is_due(LastBackup(at=NOW + day, file="f", backup_id="b"), day, NOW)


@pytest.fixture
def vault(tmp_path: Path):
    v, _ = Vault.create(tmp_path / "vault", PASSPHRASE, device_name="office laptop", kdf=FAST_KDF)
    v.record.create_client(Client(id="c1", display_name="Avery Example"))
    yield v
    v.close()


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_thinning_a_real_folder_removes_only_what_the_rule_says(vault, tmp_path: Path):
    folder = tmp_path / "drive"
    folder.mkdir()
    source = BackupSource.of(vault)
    made = {t: source.write(folder, now=at(t)).path.name for t in DATED}
    # Things in the same folder that are not this device's backups of this vault.
    foreign = {}
    other, _ = Vault.create(tmp_path / "other", PASSPHRASE, device_name="other", kdf=FAST_KDF)
    try:
        foreign["other vault"] = BackupSource.of(other).write(folder, now=at("2026-12-02T06:00")).path
    finally:
        other.close()
    (tmp_path / "scratch").mkdir()
    copy = write_backup(vault, tmp_path / "scratch")
    restored = restore_backup(copy.path, tmp_path / "restored", passphrase=PASSPHRASE, device_name="new laptop")
    with Vault.open(restored.path, PASSPHRASE) as new_device:
        # Same vault, another device: the rule would remove it (same day as 2 December 10:00).
        foreign["other device"] = BackupSource.of(new_device).write(folder, now=at("2026-12-02T05:00")).path
    look_alike = folder / f"notewell-{vault.vault_id[:8]}-20200101T000000Z.nwbackup"
    look_alike.write_bytes(b"not a backup at all")
    foreign["look-alike"] = look_alike
    (folder / "shopping list.txt").write_text("milk\n")
    foreign["text"] = folder / "shopping list.txt"
    before = {name: p.read_bytes() for name, p in foreign.items()}

    result = run_automatic_backup(source, folder, device_id=vault.device_id, now=NOW)

    expected = {made[t] for t, what in DATED.items() if what == "keep"} | {result.written.path.name}
    expected |= {p.name for p in foreign.values()}
    assert _names(folder) == expected
    assert {p.name for p in result.thinned.removed} == {made[t] for t, what in DATED.items() if what == "remove"}
    assert {name: p.read_bytes() for name, p in foreign.items()} == before
    assert result.thinned.held_back == ""
    # Thinning again changes nothing.
    again = thin_backups(folder, source, vault.device_id, NOW)
    assert again.removed == () and _names(folder) == expected


def test_nothing_is_removed_until_the_newest_backup_verifies(vault, tmp_path: Path):
    folder = tmp_path / "drive"
    folder.mkdir()
    source = BackupSource.of(vault)
    older = source.write(folder, now=at("2026-11-30T08:00")).path
    source.write(folder, now=at("2026-11-30T07:00"))  # the rule would remove this one
    newest = source.write(folder, now=at("2026-12-03T10:00")).path
    raw = bytearray(newest.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # damaged on the drive
    newest.write_bytes(bytes(raw))
    before = _names(folder)
    thinned = thin_backups(folder, source, vault.device_id, NOW)
    assert thinned.removed == () and _names(folder) == before
    assert newest.name in thinned.held_back and "does not verify" in thinned.held_back
    assert older.exists()


def test_a_new_backup_that_does_not_verify_is_not_kept_and_removes_nothing(vault, tmp_path: Path, monkeypatch):
    folder = tmp_path / "drive"
    folder.mkdir()
    source = BackupSource.of(vault)
    source.write(folder, now=at("2026-12-01T08:00"))
    source.write(folder, now=at("2026-12-01T07:00"))
    before = _names(folder)
    real_write = BackupSource.write

    def write_then_damage(self, *args, **kwargs):
        written = real_write(self, *args, **kwargs)
        raw = bytearray(written.path.read_bytes())
        raw[-1] ^= 0x01  # the drive corrupts the file after it was written
        written.path.write_bytes(bytes(raw))
        return written

    monkeypatch.setattr(BackupSource, "write", write_then_damage)
    with pytest.raises(BadBackupFile):
        run_automatic_backup(source, folder, device_id=vault.device_id, now=NOW)
    assert _names(folder) == before


def test_an_older_backup_holding_audit_entries_the_newest_lacks_is_kept(vault, tmp_path: Path):
    """A vault folder copied by hand shares its device id but not its audit trail: the rule
    would remove the copy's older backup, but the newest does not hold its entries."""
    folder, scratch = tmp_path / "drive", tmp_path / "scratch"
    folder.mkdir()
    scratch.mkdir()
    vault.close()
    shutil.copytree(tmp_path / "vault", tmp_path / "copy")
    with Vault.open(tmp_path / "copy", PASSPHRASE) as copy:
        for _ in range(3):
            write_backup(copy, scratch)  # each adds an audit entry to the copy's trail
        diverged = BackupSource.of(copy).write(folder, now=at("2026-12-01T07:00")).path
    with Vault.open(tmp_path / "vault", PASSPHRASE) as original:
        source = BackupSource.of(original)
        source.write(folder, now=at("2026-12-01T08:00"))
        result = run_automatic_backup(source, folder, device_id=original.device_id, now=NOW)
    assert diverged.exists() and diverged in result.thinned.kept
    assert "kept" in result.thinned.held_back


def test_last_backup_is_this_devices_and_a_restored_vault_starts_without(vault, tmp_path: Path):
    folder = tmp_path / "drive"
    folder.mkdir()
    assert last_backup(vault) is None
    first = write_backup(vault, folder)
    assert first.audited
    assert last_backup(vault).backup_id == first.manifest.backup_id
    # The second backup carries the first's row in its record.db.
    second = write_backup(vault, folder)
    restored = restore_backup(second.path, tmp_path / "restored", passphrase=PASSPHRASE, device_name="new laptop")
    with Vault.open(restored.path, PASSPHRASE) as new_device:
        assert last_backup(new_device) is None  # a new device: not backed up yet
        assert device_backups(folder, new_device.vault_id, new_device.device_id) == []
    assert last_backup(vault).backup_id == second.manifest.backup_id
    # The audit entry and the row are written together.
    again = record_backup(vault, second)
    assert again.audited and [e.event for e in vault.audit.entries()].count("backup_written") == 3
