"""Vault commands: init, passwd, recover, import, check.

Each prints what a clinician needs and nothing of the record's content.
"""

from __future__ import annotations

import sys
from pathlib import Path

from store.errors import NotewellError
from store.signature_state import SignatureStatus
from tui.commands.passphrase import (
    add_password_options,
    current_passphrase,
    import_password,
    new_passphrase,
)
from tui.printable import printable_lines


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

    p = sub.add_parser(
        "import", help="load clients and notes from a JSON file (all or nothing)", allow_abbrev=False
    )
    p.add_argument("file", type=Path)
    add_password_options(p, help="read an encrypted export's password from FILE; otherwise you are asked")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("check", help="check vault.json, both databases and the record's consistency")
    p.add_argument(
        "--show-conflicts",
        action="store_true",
        help="also print the signed text and the concurrent edits of notes in signature conflict",
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="verify everything again, also what an earlier check verified and what has not changed "
        "since, and every signed note from its document (says first how long it will take)",
    )
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
    result = Vault.change_passphrase(args.vault, old, new)
    print("Passphrase changed.")
    if result.audit_pending:
        print(_AUDIT_DUE)
    return 0


# The change is made; only its entry in the audit trail waits (store/vault.py keeps a note).
_AUDIT_DUE = (
    "Note: record.db could not be written just now, so the audit entry for this change "
    "will be written at the next unlock."
)


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
    vault = Vault.recover(args.vault, key, new)
    audit_pending = vault.passphrase_audit_pending
    vault.close()
    print("A new passphrase is set. The recovery key still works; keep it safe.")
    if audit_pending:
        print(_AUDIT_DUE)
    return 0


def cmd_import(args) -> int:
    import threading

    from store.importer import apply_import, check_vault_ids, read_import, read_import_file
    from store.prepare_pool import PreparePool
    from store.vault import Vault

    data = read_import_file(args.file)  # a regular file within the size limit, or one sentence
    data = _unsealed(data, args)
    # The file's layout and ids are read while the vault unlocks: both take seconds for a
    # large file, and the unlock (key derivation, page verification) runs mostly outside the
    # interpreter's lock.
    outcome: dict = {}

    def read() -> None:
        try:
            outcome["plan"] = read_import(data)
        except BaseException as e:  # handed to the main thread, which raises it
            outcome["error"] = e

    reading = threading.Thread(target=read, name="notewell-import-read", daemon=True)
    passphrase = current_passphrase(args)
    reading.start()
    try:
        # Every page's HMAC is verified after the unlock, not before it (store/page_check.py):
        # nothing is written until that has passed, and a repeat, refused by its ids alone,
        # need not wait for a scan of the whole record (4-12 s at 100,000 notes).
        vault = Vault.open(args.vault, passphrase, pages_after_open=True)
    finally:
        reading.join()
    try:
        if "error" in outcome:
            raise outcome["error"]  # the file's own problem: the vault was only read
        del data
        plan = outcome.pop("plan")
        check_vault_ids(vault, plan)  # a repeated import is refused here, at once
        vault.page_check.start()  # beside the building; the first write waits for it
        # Worker processes build the notes' documents beside this one (a large file has many).
        with PreparePool() as pool:
            vault.record.replica.prepare_pool = pool
            summary = apply_import(vault, plan)
    finally:
        vault.close()
    print(
        f"Imported {summary.clients} clients, {summary.notes} progress notes "
        f"and {summary.process_notes} process notes"
        + (f", with {summary.rights_records} client's rights record(s) (docs/client-rights.md)."
           if getattr(summary, "rights_records", 0) else ".")
    )
    return 0


def _unsealed(data: bytes, args) -> bytes:
    """The JSON of an encrypted export (recognised by its magic bytes), decrypted with the
    password asked for; other files as they are. A wrong password, a file cut short or
    altered is refused in one sentence before the vault is unlocked."""
    from store.sealed_export import is_sealed, read_header, unseal

    if not is_sealed(data):
        return data
    read_header(data)  # a damaged or foreign header is refused before the password is asked
    return unseal(data, import_password(args))


def cmd_check(args) -> int:
    from store.database import read_damage
    from store.vault import Vault

    # The page check runs on a thread of its own while the documents are compared.
    vault = Vault.open(args.vault, current_passphrase(args), pages_after_open=True)
    try:
        full = getattr(args, "full", False)
        if full:
            print(vault.full_check_estimate().sentence(), file=sys.stderr, flush=True)
            vault.record.recheck_signatures(full=True, workers=True)
        report = vault.check_report(full=full, workers=True)  # both cores when many are read
        problems = report.problems
        try:
            conflicts = signature_conflicts(vault.record)
        except Exception as e:
            # A damaged page the check has reported already: say that, not a traceback.
            if read_damage(e) is None or not problems:
                raise
            conflicts = []
    finally:
        vault.close()
    print(checked_sentence(report))
    for conflict in conflicts:
        # Names and signed text that may have come from another device: shown, never obeyed.
        print(printable_lines(conflict.describe(show_text=args.show_conflicts)), file=sys.stderr)
    if problems:
        print(f"notewell check: {len(problems)} problem(s) found:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
    if problems or conflicts:
        if conflicts and not args.show_conflicts:
            print(
                f"{len(conflicts)} signed note(s) were edited on another device while being signed. "
                "Open each in the app to keep the edits as an addendum or sign the merged note anew; "
                "`notewell check --show-conflicts` prints both versions.",
                file=sys.stderr,
            )
        return 1
    print("Vault is healthy: vault.json and both databases pass their integrity checks and settings.")
    return 0


def checked_sentence(report) -> str:
    """How much this check read: every page always; documents only where needed."""
    if report.full:
        return f"Checked every page and all {report.documents_read:,} documents (full check)."
    return (
        f"Checked every page; {report.documents_read:,} document(s) read and compared, "
        f"{report.documents_unchanged:,} unchanged since an earlier check (not read again; "
        "`notewell check --full` reads everything)."
    )


class SignatureConflictReport:
    """A note signed on one device while edited on another: what differs, and both texts."""

    def __init__(self, note, signed, client_name: str) -> None:
        self.note, self.signed, self.client_name = note, signed, client_name
        self.sections = [k for k in note.section_keys if signed is None or note.sections.get(k) != signed.sections.get(k)]
        self.facts_differ = signed is not None and note.facts != signed.facts

    def describe(self, *, show_text: bool) -> str:
        what = ", ".join(self.sections + (["session facts"] if self.facts_differ else [])) or "content"
        lines = [
            f"Signature conflict: note {self.note.id} ({self.client_name}, session "
            f"{self.note.facts.date_of_service.isoformat()}) differs from what was signed in: {what}."
        ]
        if show_text:
            for key in self.sections:
                signed_text = self.signed.sections.get(key, "") if self.signed is not None else "(not recoverable)"
                lines += [f"  [{key}] as signed:", _indent(signed_text),
                          f"  [{key}] with the concurrent edits:", _indent(self.note.sections.get(key, ""))]
        return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("      " + line for line in (text.splitlines() or [""]))


def signature_conflicts(record) -> list[SignatureConflictReport]:
    reports = []
    # Verified with keys (store/signature_state.py); a failing signature is a problem that
    # `vault.check()` reports, never a conflict.
    for state in record.signature_findings():
        if state.status != SignatureStatus.CONFLICT:
            continue
        note = record.get_note(state.note_id)
        try:
            name = record.get_client(note.client_id).display_name
        except NotewellError:
            name = "unknown client"
        reports.append(SignatureConflictReport(note, record.signed_version(state.note_id), name))
    return reports
