"""Automatic backups: when one is due, and one run (a backup, verified, then the folder thinned).

The app runs this when a backup is due (tui/auto_backups.py, in a worker thread) and so does
`notewell backup --auto` (for cron or launchd); the folder and the interval come from the
settings file (tui/config.py, `[backup]`).

    is_due(last, every, now) -> bool
    run_automatic_backup(source, folder, device_id=, now=) -> AutomaticBackup   # any thread
    record_backup(vault, result.written)                                         # the vault's thread

A run writes one backup (store/backup.py: an online snapshot, so the clinician's saves go on
meanwhile), verifies it in full, and only then thins the folder (store/backup_thinning.py).
A backup that does not verify is removed again and the run fails with BadBackupFile: it never
counts as the last backup and never supersedes an older one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from store.backup import BackupSource, BackupWritten, Progress, verify_backup
from store.backup_thinning import Thinned, thin_backups
from store.errors import BadBackupFile
from store.last_backup import LastBackup


@dataclass(frozen=True)
class AutomaticBackup:
    written: BackupWritten
    thinned: Thinned


def is_due(last: LastBackup | None, every: timedelta, now: datetime) -> bool:
    """A backup is due when this device never made one, or the last is `every` old. A last
    backup dated in the future (a clock set back) is treated as due: the safe side."""
    return last is None or last.at > now or now - last.at >= every


def run_automatic_backup(
    source: BackupSource, folder: Path, *, device_id: str, now: datetime, progress: Progress | None = None
) -> AutomaticBackup:
    """Write a backup into `folder`, verify it, thin the folder. BackupError (nothing written,
    earlier backups untouched) for a missing, full or read-only folder; BadBackupFile when
    the new backup does not verify (it is removed; nothing else is)."""
    written = source.write(folder, progress=progress, now=now)
    try:
        manifest = verify_backup(written.path, source=source)
    except BadBackupFile:
        written.path.unlink(missing_ok=True)
        raise
    thinned = thin_backups(folder, source, device_id, now, verified={written.path: manifest})
    return AutomaticBackup(written=written, thinned=thinned)
