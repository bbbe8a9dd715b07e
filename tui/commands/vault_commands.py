"""Vault commands: init, passwd, recover, import, check.

Each prints what a clinician needs and nothing of the record's content.
"""

from __future__ import annotations

import sys
from pathlib import Path

from store.errors import NotewellError
from tui.commands.passphrase import current_passphrase, new_passphrase


def register(sub) -> None:
    p = sub.add_parser("init", help="create a new vault and show its recovery key once")
    p.add_argument("--device-name", default=None, help="a name for this device (default: host name)")
    p.add_argument("--clinician", default="", help="your name as it appears on signatures")
    p.add_argument("--credentials", default="", help="your credentials, e.g. PhD, LCSW")
    p.add_argument("--practice", default="", help="practice name for exports")
    p.add_argument("--new-passphrase-file", type=Path, help="read the new passphrase from this file")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("passwd", help="change the vault's passphrase")
    p.add_argument("--new-passphrase-file", type=Path, help="read the new passphrase from this file")
    p.set_defaults(func=cmd_passwd)

    p = sub.add_parser("recover", help="set a new passphrase using the recovery key")
    p.add_argument("--recovery-key-file", type=Path, help="read the recovery key from this file")
    p.add_argument("--new-passphrase-file", type=Path, help="read the new passphrase from this file")
    p.set_defaults(func=cmd_recover)

    p = sub.add_parser("import", help="load clients and notes from a JSON file (all or nothing)")
    p.add_argument("file", type=Path)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("check", help="check both databases and the record's consistency")
    p.set_defaults(func=cmd_check)


def _device_name(args) -> str:
    if args.device_name:
        return args.device_name
    import socket

    return socket.gethostname() or "this device"


def cmd_init(args) -> int:
    from store.models import ClinicianSettings
    from store.vault import Vault

    passphrase = new_passphrase(args, allow_current_sources=True)
    settings = ClinicianSettings(
        clinician_name=args.clinician, credentials=args.credentials, practice_name=args.practice
    )
    vault, recovery_key = Vault.create(
        args.vault, passphrase, device_name=_device_name(args), settings=settings
    )
    try:
        print(f"Created a vault at {args.vault}")
        print(f"Device: {vault.device_name} ({vault.device_id[:12]})")
        print()
        print("Recovery key (shown once; write it down and keep it somewhere safe):")
        print(f"  {recovery_key}")
        print()
        print("Without the passphrase or this key the notes cannot be read by anyone.")
    finally:
        vault.close()
    return 0


def cmd_passwd(args) -> int:
    from store.vault import Vault

    old = current_passphrase(args)
    new = new_passphrase(args)
    Vault.change_passphrase(args.vault, old, new)
    print("Passphrase changed.")
    return 0


class RecoveryKeyUnavailable(NotewellError):
    title = "Recovery key needed"


def _recovery_key(args) -> str:
    if args.recovery_key_file:
        try:
            return args.recovery_key_file.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise RecoveryKeyUnavailable(
                f"Cannot read the recovery key file {args.recovery_key_file}: {e.strerror}."
            ) from None
    import os

    env = os.environ.get("NOTEWELL_RECOVERY_KEY")
    if env:
        return env.strip()
    if not sys.stdin.isatty():
        raise RecoveryKeyUnavailable(
            "No recovery key given: use --recovery-key-file FILE when not at a terminal."
        )
    return input("Recovery key: ").strip()


def cmd_recover(args) -> int:
    from store.vault import Vault

    key = _recovery_key(args)
    new = new_passphrase(args)
    Vault.recover(args.vault, key, new).close()
    print("A new passphrase is set. The recovery key still works; keep it safe.")
    return 0


def cmd_import(args) -> int:
    from store.importer import apply_import, parse_import
    from store.vault import Vault

    try:
        data = args.file.read_bytes()
    except OSError as e:
        from store.errors import ImportFailed

        raise ImportFailed(f"Cannot read {args.file}: {e.strerror}.") from None
    # Validate everything before asking for the passphrase's unlock cost.
    plan = parse_import(data)
    vault = Vault.open(args.vault, current_passphrase(args))
    try:
        summary = apply_import(vault, plan)
    finally:
        vault.close()
    print(
        f"Imported {summary.clients} clients, {summary.notes} progress notes "
        f"and {summary.process_notes} process notes."
    )
    return 0


def cmd_check(args) -> int:
    from store.vault import Vault

    vault = Vault.open(args.vault, current_passphrase(args))
    try:
        problems = vault.check()
    finally:
        vault.close()
    if problems:
        print(f"notewell check: {len(problems)} problem(s) found:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print("Vault is healthy: both databases pass their integrity checks and settings.")
    return 0
