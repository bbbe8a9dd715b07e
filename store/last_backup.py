"""When this device last made a backup: a row of record.db's local table, never synced.

A backup holds process notes, which live on one device only, so "the last backup" belongs to
the device, not to the record: it is kept in `local_settings` (a local table, never synced)
with the id of the device that made it. record.db is itself in every backup, so a vault
restored from one carries the old device's row; the restored vault is a new device (a new
id), so the row is not its own and it counts as never backed up until it makes a backup.

    last_backup(vault) -> LastBackup | None
    remember_backup(vault, at=, file=, backup_id=)    # inside the caller's write transaction
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from store.vault import Vault, _get_local_setting, _put_local_setting

KEY = "last_backup"


@dataclass(frozen=True)
class LastBackup:
    at: datetime  # UTC: the time the backup's snapshot was taken (its manifest's `created_at`)
    file: str  # the backup file's name (no folder)
    backup_id: str


def parse_time(text: str) -> datetime:
    """A backup's `created_at` ("2026-12-03T09:15:00Z") as an aware UTC datetime (ValueError)."""
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError("a backup time without its zone")
    return at.astimezone(timezone.utc)


def shown_time(at: datetime) -> str:
    """A backup's time as the app and the command line show it: UTC, to the minute."""
    return at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def last_backup(vault: Vault) -> LastBackup | None:
    """The last backup this device made and recorded; None if none (or the row is another
    device's, or unreadable: then the next backup is due at once, the safe side)."""
    raw = _get_local_setting(vault.record_conn, KEY)
    try:
        data = json.loads(raw or "")
        if data["device_id"] != vault.device_id:
            return None
        return LastBackup(at=parse_time(data["at"]), file=str(data["file"]), backup_id=str(data["backup_id"]))
    except (ValueError, KeyError, TypeError):
        return None


def remember_backup(vault: Vault, *, at: str, file: str, backup_id: str) -> None:
    """Note a backup just made; the caller holds the write transaction (store/backup.py's
    `record_backup` writes it with the backup's audit entry)."""
    value = {"device_id": vault.device_id, "at": at, "file": file, "backup_id": backup_id}
    _put_local_setting(vault.record_conn, KEY, json.dumps(value, sort_keys=True))
