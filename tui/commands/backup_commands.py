"""Backup commands: `backup --to DIR`, `backup --auto`, `backup --verify FILE`, `restore FILE`.

The work is the store's (store/backup.py); this module reads the secrets, prints what a
clinician needs (counts and sizes, never content) and leaves refusals to the command line's
one handler of typed errors.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from store.errors import NotewellError
from tui.commands.passphrase import current_passphrase, new_passphrase
from tui.commands.vault_commands import _device_name, _recovery_key


def register(sub) -> None:
    p = sub.add_parser(
        "backup", help="write an encrypted backup of the whole vault, or verify one",
        description="Write one encrypted backup file of this vault (process notes included) into a "
        "folder, or prove that a backup file is complete and restorable.",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--to", type=Path, metavar="DIR", help="the folder to write the backup into")
    what.add_argument("--verify", type=Path, metavar="FILE", help="check a backup file; writes nothing")
    what.add_argument(
        "--auto", action="store_true",
        help="what the app does when a backup is due: back up into the settings file's [backup] folder if "
        "due, verify, thin old backups (for cron or launchd)",
    )
    _recovery_key_options(p)
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser(
        "restore", help="restore a backup as a new vault (a new device) in a new or empty folder",
        description="Restore a backup file as a new vault. The restored vault is a new device: pair "
        "it with your other devices again.",
    )
    p.add_argument("file", type=Path, help="the backup file")
    # Also accepted after the command (`restore FILE --vault DIR`); the global --vault works too.
    p.add_argument("--vault", dest="restore_to", type=Path, metavar="DIR", default=None,
                   help="the new vault's folder (default: the usual vault location)")
    p.add_argument("--device-name", default=None, help="a name for this device (default: host name)")
    _recovery_key_options(p)
    p.add_argument("--new-passphrase-file", type=Path,
                   help="with the recovery key: read the restored vault's new passphrase from this file")
    p.set_defaults(func=cmd_restore)


def _recovery_key_options(p) -> None:
    p.add_argument("--recovery-key", action="store_true",
                   help="unlock with the recovery key (asked for) instead of the passphrase")
    p.add_argument("--recovery-key-file", type=Path, help="unlock with the recovery key in this file")


def _uses_recovery_key(args) -> bool:
    return bool(args.recovery_key or args.recovery_key_file or os.environ.get("NOTEWELL_RECOVERY_KEY"))


def _secret(args) -> dict:
    """The passphrase the vault had when the backup was made, or the recovery key."""
    if _uses_recovery_key(args):
        return {"recovery_key": _recovery_key(args)}
    return {"passphrase": current_passphrase(args)}


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def _summary(counts) -> str:
    return (
        f"{counts.clients} clients, {counts.progress_notes} progress notes, "
        f"{counts.process_notes} process notes, {counts.audit_entries} audit entries"
    )


class BackupUsage(NotewellError):
    title = "Backup"


def cmd_backup(args) -> int:
    if args.verify is not None:
        return _verify(args)
    if args.recovery_key or args.recovery_key_file:
        raise BackupUsage(
            "A backup is written from the unlocked vault, with its passphrase; the recovery key "
            "is for --verify and restore."
        )
    if args.auto:
        return _auto(args)
    from store.backup import write_backup
    from store.vault import Vault

    vault = Vault.open(args.vault, current_passphrase(args))
    shown = {"started": False, "tenth": 0}

    def progress(done: int, total: int) -> None:
        # A line when writing starts and at each tenth: enough to see it move.
        if not shown["started"]:
            shown["started"] = True
            print(f"Writing the backup ({_mb(total)})...", flush=True)
        tenth = done * 10 // max(total, 1)
        if tenth > shown["tenth"]:
            shown["tenth"] = tenth
            print(f"  {tenth * 10}%", flush=True)

    try:
        written = write_backup(vault, args.to, progress=progress)
    finally:
        vault.close()
    print(f"Backup written: {written.path} ({_mb(written.size)}).")
    print(f"It holds {_summary(written.manifest.counts)}.")
    if not written.audited:
        print(
            "Note: the vault was busy, so this backup could not be entered in its audit trail.",
            file=sys.stderr,
        )
    return 0


def _auto(args) -> int:
    """The app's automatic backup, once, for a scheduler: nothing when none is due."""
    from datetime import datetime, timezone

    from store.automatic_backup import is_due, run_automatic_backup
    from store.backup import BackupSource, record_backup
    from store.last_backup import last_backup, shown_time
    from store.vault import Vault
    from tui.config import config_path, load_config

    settings = load_config().backup
    if not settings.enabled:
        raise BackupUsage(
            f"No backup folder is set: add a [backup] table with folder = \"...\" to the settings file "
            f"{config_path()} (docs/backup.md)."
        )
    vault = Vault.open(args.vault, current_passphrase(args))
    try:
        now = datetime.now(timezone.utc).replace(microsecond=0)
        last = last_backup(vault)
        if not is_due(last, settings.interval, now):
            print(f"No backup due: the last was made {shown_time(last.at)}; automatic backups {settings.describe()}.")
            return 0
        result = run_automatic_backup(BackupSource.of(vault), settings.folder, device_id=vault.device_id, now=now)
        written = record_backup(vault, result.written)
    finally:
        vault.close()
    print(f"Backup written and verified: {written.path} ({_mb(written.size)}).")
    print(f"It holds {_summary(written.manifest.counts)}.")
    removed = len(result.thinned.removed)
    print(f"Older backups removed by the thinning rule: {removed}; kept: {len(result.thinned.kept)}.")
    if result.thinned.held_back:
        print(result.thinned.held_back, file=sys.stderr)
    if not written.audited:
        print("Note: the vault was busy, so this backup could not be entered in its audit trail.", file=sys.stderr)
    return 0


def _verify(args) -> int:
    from store.backup import read_backup_header, verify_backup

    header = read_backup_header(args.verify)  # a file that is no backup is refused before any prompt
    manifest = verify_backup(args.verify, **_secret(args))
    print(
        f"Backup verified: made {header.created_at} on {header.device_name}; every part decrypts "
        "and authenticates, every database page and the audit trail check, and the counts match."
    )
    print(f"It holds {_summary(manifest.counts)}.")
    return 0


def cmd_restore(args) -> int:
    from store.backup import read_backup_header, restore_backup

    target = (args.restore_to or args.vault).expanduser()
    header = read_backup_header(args.file)
    secret = _secret(args)
    new = new_passphrase(args) if "recovery_key" in secret else None
    restored = restore_backup(args.file, target, new_passphrase=new, device_name=_device_name(args), **secret)
    print(f"Restored the backup made {header.created_at} on {header.device_name} to {restored.path}.")
    print(f"It holds {_summary(restored.manifest.counts)}.")
    print(
        f"This is a new device ({restored.device_id[:12]}): pair it with your other devices "
        "(`notewell sync pair`), and if the old laptop is lost, forget it on each of them "
        "(`notewell sync forget`)."
    )
    return 0
