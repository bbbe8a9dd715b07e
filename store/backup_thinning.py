"""Thinning a backup folder: which of this device's backups to keep, and removing the rest
only once a newer backup has been verified.

The rule (docs/backup.md), over this device's backups of this vault in the folder, by the
time each backup's header says it was made, newest first:

- the newest backup is always kept (so the only copy is never removed);
- every backup made in the last 24 hours is kept;
- older than that and up to 7 days: the newest of each calendar day (UTC);
- older than 7 days and up to 31 days: the newest of each ISO week;
- older than 31 days and up to 365 days: the newest of each calendar month;
- older than a year: the newest of each calendar year.

What may be removed, and when:

- only files whose header (read without a key) names this vault and this device; anything
  else in the folder (another vault's or another device's backups, a restored vault's old
  device, any other file) is never touched, nor is a file whose header cannot be read;
- only once the newest of them has been verified in full (`verify_backup`: every chunk, page,
  count and the audit chain), and only backups older than it;
- only a backup whose manifest (authenticated) holds no more audit entries than the verified
  one. The audit trail is append-only (store/audit.py: triggers refuse UPDATE and DELETE, the
  hash chain and its MAC'd head catch a removal, and no code prunes it), and one device's
  trail is one line (a restore makes a new device), so the newest verified backup holds
  every audit entry an older backup of the same device holds: removing the older file
  removes no audit entry, of any age. The count is checked anyway; a backup that holds more
  entries than the newest (a trail that differs) is kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from store.backup import SUFFIX, BackupManifest, BackupSource, read_backup_header, read_backup_manifest, verify_backup
from store.errors import NotewellError
from store.last_backup import parse_time

DAY = timedelta(days=1)
WEEK_TIER, MONTH_TIER, YEAR_TIER = timedelta(days=7), timedelta(days=31), timedelta(days=365)


@dataclass(frozen=True)
class BackupOnDisk:
    path: Path
    made: datetime  # UTC, from the header
    backup_id: str


@dataclass(frozen=True)
class Thinned:
    kept: tuple[Path, ...]
    removed: tuple[Path, ...]
    # Why nothing (or less than the rule allows) was removed, in one sentence; "" when all went to plan.
    held_back: str = ""


def bucket(made: datetime, now: datetime) -> tuple | None:
    """The rule's bucket of a backup made at `made` (None: kept whatever else there is)."""
    age = now - made
    if age < DAY:
        return None
    if age <= WEEK_TIER:
        return ("day", made.date())
    if age <= MONTH_TIER:
        year, week, _ = made.isocalendar()
        return ("week", year, week)
    if age <= YEAR_TIER:
        return ("month", made.year, made.month)
    return ("year", made.year)


def thinning_plan(backups: Iterable[BackupOnDisk], now: datetime) -> tuple[list[BackupOnDisk], list[BackupOnDisk]]:
    """(keep, remove) by the rule above; both newest first. Pure: the clock is `now`."""
    ordered = sorted(backups, key=lambda b: (b.made, b.path.name), reverse=True)
    keep, remove, seen = [], [], set()
    for i, backup in enumerate(ordered):
        key = bucket(backup.made, now)
        if i == 0 or key is None or key not in seen:
            keep.append(backup)
            if key is not None:
                seen.add(key)
        else:
            remove.append(backup)
    return keep, remove


def device_backups(folder: Path, vault_id: str, device_id: str) -> list[BackupOnDisk]:
    """This device's complete backups of this vault in `folder`, from their headers."""
    found = []
    for path in sorted(Path(folder).glob(f"notewell-{vault_id[:8]}-*{SUFFIX}")):
        if path.is_symlink() or not path.is_file():
            continue
        try:
            header = read_backup_header(path)
            made = parse_time(header.created_at)
        except (NotewellError, ValueError):
            continue  # not a backup we can read: never ours to remove
        if header.vault_id == vault_id and header.device_id == device_id:
            found.append(BackupOnDisk(path=path, made=made, backup_id=header.backup_id))
    return found


def thin_backups(
    folder: Path, source: BackupSource, device_id: str, now: datetime,
    verified: dict[Path, BackupManifest] | None = None,
) -> Thinned:
    """Apply the rule to `folder`. The newest backup is verified first (`verified`: those
    the caller has just verified); if it does not verify, nothing is removed."""
    backups = device_backups(folder, source.vault_id, device_id)
    keep, remove = thinning_plan(backups, now)
    if not remove:
        return Thinned(kept=tuple(b.path for b in keep), removed=())
    newest = keep[0]
    try:
        checked = (verified or {}).get(newest.path) or verify_backup(newest.path, source=source)
    except NotewellError:
        return Thinned(
            kept=tuple(b.path for b in keep + remove), removed=(),
            held_back=f"No older backup was removed, because the newest, {newest.path.name}, does not verify.",
        )
    removed, held = [], []
    for backup in remove:
        try:
            older = read_backup_manifest(backup.path, source)
        except NotewellError:
            held.append(backup)  # unreadable now: left alone
            continue
        if older.counts.audit_entries > checked.counts.audit_entries:
            held.append(backup)  # its audit trail is not contained in the newest: keep it
            continue
        try:
            backup.path.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            held.append(backup)
            continue
        removed.append(backup.path)
    reason = ""
    if held:
        reason = (
            f"{len(held)} older backup{'s' if len(held) != 1 else ''} that the thinning rule would remove "
            f"{'were' if len(held) != 1 else 'was'} kept (unreadable, holding audit entries the newest lacks, "
            "or not removable)."
        )
    kept = tuple(b.path for b in keep) + tuple(b.path for b in held)
    return Thinned(kept=kept, removed=tuple(removed), held_back=reason)
