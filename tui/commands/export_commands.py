"""Record release and accountability commands: export and audit.

`notewell export` writes one client's designated record set (PDF or JSON), encrypted with a
password when asked (`--encrypt`), and records the export and its purpose in the audit
trail. `notewell audit` prints the trail and verifies its hash chain, exiting non-zero and
naming the first broken entry when it has been tampered with. Neither prints note text.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from store.errors import ExportFailed, NotewellError
from tui.commands.client_commands import resolve_client
from tui.commands.disclosure_options import add_disclosure_options, check_disclosure, disclosure_logger
from tui.commands.passphrase import add_password_options, current_passphrase, export_password
from tui.printable import printable

EXIT_TAMPERED = 3


class AuditUnavailable(NotewellError):
    title = "Audit trail unavailable"


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a date as YYYY-MM-DD") from None


def infer_format(out: Path) -> str:
    """From the file name: .json (or .json.enc, an encrypted one) gives JSON, anything else PDF."""
    suffixes = [s.lower() for s in out.suffixes]
    return "json" if suffixes[-1:] == [".json"] or suffixes[-2:] == [".json", ".enc"] else "pdf"


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write a client's record (the designated record set) to a PDF or JSON file",
        description="Writes the client's demographics, diagnoses, treatment plan, progress notes "
        "with addenda, and outcome scores. Process notes are never included.",
        allow_abbrev=False,
    )
    p.add_argument("--client", required=True, metavar="CLIENT",
                   help="the client's id or name, or a unique start of either (`notewell clients` lists them)")
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help="the file to write")
    p.add_argument(
        "--format",
        choices=("pdf", "json"),
        default=None,
        help="pdf (printable) or json (the import format); default: from the file name, else pdf",
    )
    p.add_argument("--from", dest="date_from", type=_date, metavar="DATE", help="first date of service (YYYY-MM-DD)")
    p.add_argument("--to", dest="date_to", type=_date, metavar="DATE", help="last date of service (YYYY-MM-DD)")
    p.add_argument("--include-drafts", action="store_true", help="include unsigned drafts, marked as drafts")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    p.add_argument(
        "--purpose",
        metavar="TEXT",
        help='who the export is for, kept in the audit trail: e.g. "client request", "insurer", '
        '"continuity of care"',
    )
    add_disclosure_options(p)
    p.add_argument(
        "--encrypt",
        action="store_true",
        help="encrypt the file with a password (PDF: AES-256, opens in any PDF reader; "
        "JSON: a container that `notewell import` reads)",
    )
    add_password_options(
        p, help="read the export's password from FILE (implies --encrypt); otherwise you are asked twice"
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("audit", help="print the audit trail and verify its hash chain")
    p.add_argument("--client", metavar="CLIENT", help="only entries about this client (its id or name, or a unique start of either)")
    p.add_argument("--verify", action="store_true", help="only verify the chain and print the result")
    p.set_defaults(func=cmd_audit)


def _audit_log(vault):
    log = getattr(vault, "audit", None)
    if log is None:
        raise AuditUnavailable("This vault has no audit trail yet; nothing was changed.")
    return log


def export_and_audit(vault, client_id: str, out: Path, *, within=None, **options):
    """Export one client's record and log it; runs on the vault's thread.

    `options` are those of store.export.prepare_export (fmt, date_from, date_to,
    include_drafts, force, password, purpose). The file is written under a temporary name,
    its audit entry committed, and only then is it given its name: nothing is released
    without its audit entry, even if the program is killed half-way (a killed export leaves
    at most a hidden temporary file, never a file under the name asked for). The write lock
    is taken first, so an export that has to wait for another program waits before it
    writes anything. `within(vault, result)`, when given, runs in the same transaction after
    the audit entry: the disclosure log's entry, a fulfilled request (tui/commands/rights_commands.py).
    """
    from store.audit import Event
    from store.export import prepare_export

    log = _audit_log(vault)
    prepared = None
    try:
        with vault.record.transaction():
            prepared = prepare_export(vault.record, client_id, out, settings=vault.settings(), **options)
            log.append(Event.EXPORT, client_id=client_id, **prepared.result.audit_details())
            if within is not None:
                within(vault, prepared.result)
    except BaseException:
        if prepared is not None:
            prepared.discard()
        raise
    try:
        return prepared.release()
    except ExportFailed as e:
        # Rare (the name appeared in the last instant, or the disk failed): the entry stands,
        # and says more than happened rather than less.
        raise ExportFailed(f"{e.message.rstrip('.')} (the audit trail lists this export all the same).") from None


def cmd_export(args) -> int:
    from store.export import check_purpose
    from store.sealed_export import check_password
    from store.vault import Vault

    fmt = args.format or infer_format(args.out)
    check_purpose(args.purpose)
    check_disclosure(args)  # a release to someone other than the client names its basis
    passphrase = current_passphrase(args)
    password = None
    if args.encrypt or args.password_file:
        password = export_password(args)
        check_password(password)  # before the vault is unlocked: nothing is read for nothing
    vault = Vault.open(args.vault, passphrase)
    try:
        args.client = resolve_client(vault.record, args.client)
        result = export_and_audit(
            vault,
            args.client,
            args.out,
            fmt=fmt,
            date_from=args.date_from,
            date_to=args.date_to,
            include_drafts=args.include_drafts,
            force=args.force,
            password=password,
            purpose=args.purpose,
            within=disclosure_logger(args),
        )
    finally:
        vault.close()
    drafts = f", {result.drafts} draft{'' if result.drafts == 1 else 's'}" if args.include_drafts else ""
    notes = "1 progress note" if result.notes == 1 else f"{result.notes} progress notes"
    addenda = "1 addendum" if result.addenda == 1 else f"{result.addenda} addenda"
    print(
        f"Exported {notes} ({addenda}{drafts}) "
        f"for client {args.client} to {result.path} ({fmt.upper()}{', encrypted' if result.encrypted else ''}, "
        f"{result.size} bytes)."
    )
    if result.encrypted:
        how = "any PDF reader asks for it" if fmt == "pdf" else "`notewell import` asks for it"
        print(f"It opens only with the password ({how}); send the password by another channel than the file.")
    print(f"SHA-256: {result.sha256}")
    return 0


def format_entry(entry) -> str:
    client = entry.client_id or "-"
    summary = entry.summary()
    # Details name devices and clients that may have come from another device.
    return printable(f"{entry.seq:>6}  {entry.at}  {entry.label:<32}  {client:<24}  {summary}".rstrip())


def cmd_audit(args) -> int:
    from store.vault import Vault

    vault = Vault.open(args.vault, current_passphrase(args))
    try:
        log = _audit_log(vault)
        if args.client is not None:
            args.client = resolve_client(vault.record, args.client)
        entries = [] if args.verify else log.entries(client_id=args.client)
        result = log.verify()
    finally:
        vault.close()
    if not args.verify:
        if entries:
            print(f"{'seq':>6}  {'at (UTC)':<20}  {'event':<32}  {'client':<24}  details")
        for entry in entries:
            print(format_entry(entry))
        if not entries:
            print("No audit entries" + (f" for client {args.client}." if args.client else "."))
    if result.ok:
        n = result.entries_checked
        print(f"Audit trail verified: {n} {'entry' if n == 1 else 'entries'}, chain intact.")
        return 0
    print(
        f"notewell: the audit trail has been tampered with: entry {result.first_broken_seq}: {result.reason}.",
        file=sys.stderr,
    )
    return EXIT_TAMPERED
