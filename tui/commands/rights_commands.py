"""The client's rights on the command line (docs/client-rights.md).

    notewell disclosures --client C [--as-of DATE]       the accounting of disclosures (164.528)
    notewell disclose --client C --recipient R --basis B --purpose P --what W [--on DATE]
    notewell requests [--client C]                       open requests and their due days
    notewell access --client C --received DATE --requester R --form-format F [--recipient R]
    notewell amendment --client C --received DATE --requester R --notes ID,ID --change TEXT
    notewell extend REQUEST --reason TEXT                the one 30-day extension
    notewell fulfil REQUEST --out FILE --how TEXT        runs the export, records what was sent
    notewell amendment-accept REQUEST --text TEXT        a signed addendum on each note
    notewell amendment-deny REQUEST --reason TEXT
    notewell amendment-statement REQUEST --text TEXT     the client's statement of disagreement
    notewell amendment-rebuttal REQUEST --text TEXT

`notewell export --recipient R --basis B` logs the export as a disclosure in the same
transaction as its audit entry (tui/commands/disclosure_options.py). A request is named by its id or a
unique start of it. Every line that may hold text from another device is made printable.
"""

from __future__ import annotations

from pathlib import Path

from store.errors import NotewellError
from tui.commands.client_commands import resolve_client
from tui.commands.disclosure_options import BASES
from tui.commands.export_commands import _date, export_and_audit, infer_format
from tui.commands.passphrase import add_password_options, current_passphrase, export_password
from tui.printable import printable

class UnknownRequest(NotewellError):
    title = "No such request"


def resolve_request(rights, named: str) -> str:
    """The id of the one request (or disclosure) `named` names: its id or a unique start."""
    named = named.strip()
    ids = [r.id for r in rights.all()]
    if named in ids:
        return named
    found = [i for i in ids if named and i.startswith(named)]
    if len(found) == 1:
        return found[0]
    if found:
        raise UnknownRequest(f"{printable(named)!r} matches {len(found)} requests; give more of the id.")
    raise UnknownRequest(f"No request matches {printable(named)!r}; `notewell requests` lists them.")


def register(sub) -> None:
    p = sub.add_parser("disclosures", help="the accounting of disclosures of a client's record (six years)")
    p.add_argument("--client", required=True, metavar="CLIENT", help="the client's id or name, or a unique start")
    p.add_argument("--as-of", type=_date, metavar="DATE", help="the day the accounting is asked for (default today)")
    p.set_defaults(func=cmd_disclosures)

    p = sub.add_parser("disclose", help="log a release of a client's record made outside Notewell")
    p.add_argument("--client", required=True, metavar="CLIENT")
    p.add_argument("--recipient", required=True, metavar="NAME")
    p.add_argument("--basis", required=True, choices=BASES)
    p.add_argument("--purpose", required=True, metavar="TEXT")
    p.add_argument("--what", required=True, metavar="TEXT", help="what was released, briefly")
    p.add_argument("--address", default="", metavar="TEXT")
    p.add_argument("--on", type=_date, metavar="DATE", help="the day it was released (default today)")
    p.set_defaults(func=cmd_disclose)

    p = sub.add_parser("requests", help="access and amendment requests: open ones with their due days")
    p.add_argument("--client", metavar="CLIENT", help="every request of this client, open or not")
    p.set_defaults(func=cmd_requests)

    p = sub.add_parser("access", help="record a client's request for a copy of the record (due in 30 days)")
    p.add_argument("--client", required=True, metavar="CLIENT")
    p.add_argument("--received", required=True, type=_date, metavar="DATE")
    p.add_argument("--requester", required=True, metavar="NAME")
    p.add_argument("--form-format", required=True, metavar="TEXT", help='the form and format asked for, e.g. "PDF by e-mail"')
    p.add_argument("--recipient", default="", metavar="TEXT", help="a third party the client directs the copy to")
    p.set_defaults(func=cmd_access)

    p = sub.add_parser("amendment", help="record a client's request to amend notes (due in 60 days)")
    p.add_argument("--client", required=True, metavar="CLIENT")
    p.add_argument("--received", required=True, type=_date, metavar="DATE")
    p.add_argument("--requester", required=True, metavar="NAME")
    p.add_argument("--notes", required=True, metavar="ID,ID", help="the progress notes it concerns")
    p.add_argument("--change", required=True, metavar="TEXT", help="the change the client asks for")
    p.set_defaults(func=cmd_amendment)

    p = sub.add_parser("extend", help="the one 30-day extension of a request, with its reason")
    p.add_argument("request", metavar="REQUEST")
    p.add_argument("--reason", required=True, metavar="TEXT")
    p.set_defaults(func=cmd_extend)

    p = sub.add_parser("fulfil", help="fulfil an access request: export the record and record what was sent")
    p.add_argument("request", metavar="REQUEST")
    p.add_argument("--out", required=True, type=Path, metavar="FILE")
    p.add_argument("--how", required=True, metavar="TEXT", help='how it is delivered, e.g. "encrypted e-mail"')
    p.add_argument("--format", choices=("pdf", "json"), default=None)
    p.add_argument("--force", action="store_true")
    p.add_argument("--encrypt", action="store_true")
    add_password_options(p, help="read the export's password from FILE (implies --encrypt)")
    p.set_defaults(func=cmd_fulfil)

    for name, field, what, func in (
        ("amendment-accept", "--text", "accept: the amendment, appended to each note as a signed addendum", "accept"),
        ("amendment-deny", "--reason", "deny, with the written reason", "deny"),
        ("amendment-statement", "--text", "the client's statement of disagreement with a denial", "statement"),
        ("amendment-rebuttal", "--text", "your rebuttal of the client's statement", "rebuttal"),
    ):
        p = sub.add_parser(name, help=what)
        p.add_argument("request", metavar="REQUEST")
        p.add_argument(field, required=True, metavar="TEXT", dest="text")
        p.set_defaults(func=cmd_amendment_step, step=func)


def _open(args):
    from store.vault import Vault

    return Vault.open(args.vault, current_passphrase(args))


def cmd_disclosures(args) -> int:
    vault = _open(args)
    try:
        client_id = resolve_client(vault.record, args.client)
        rights = vault.record.rights
        as_of = args.as_of or rights.today()
        acc = rights.accounting(client_id, as_of)
        unverified = rights.unverified(list(acc.listed))
        name = vault.record.get_client(client_id).display_name
    finally:
        vault.close()
    print(printable(f"Accounting of disclosures for {name} ({client_id}), "
                    f"{acc.since.isoformat()} to {acc.as_of.isoformat()}:"))
    if not acc.listed:
        print("No disclosures to account for in these six years.")
    for record in acc.listed:
        d = record.data("opened")
        to = d.recipient + (f", {d.address}" if d.address else "")
        print(printable(f"{d.disclosed_on.isoformat()}  to {to}  purpose: {d.purpose}  what: {d.what}  "
                        f"basis: {d.basis.value}" + ("  SIGNATURE NOT VERIFIED" if record.id in unverified else "")))
    if acc.exempt:
        print(f"Left out: {acc.exempt} disclosure{'s' if acc.exempt != 1 else ''} the rule exempts (to the client, "
              "for treatment, payment or operations, with the client's authorization, or a limited data set).")
    return 0


def cmd_disclose(args) -> int:
    vault = _open(args)
    try:
        client_id = resolve_client(vault.record, args.client)
        rights = vault.record.rights
        record = rights.record_disclosure(
            client_id, disclosed_on=args.on or rights.today(), recipient=args.recipient, purpose=args.purpose,
            what=args.what, basis=args.basis, address=args.address)
    finally:
        vault.close()
    print(f"Disclosure {record.id} logged for client {client_id}.")
    return 0


def cmd_requests(args) -> int:
    from store.client_rights import due_on, is_closed

    vault = _open(args)
    try:
        rights = vault.record.rights
        today = rights.today()
        if args.client:
            client_id = resolve_client(vault.record, args.client)
            records = [r for r in rights.for_client(client_id) if r.kind.value != "disclosure"]
            lines = []
            for r in records:
                state = "done: " + ", ".join(e for e in r.events if e not in ("opened", "extended")) if is_closed(r) \
                    else f"open, due {due_on(r).isoformat()}"
                if r.conflicts():
                    state += f"; CONFLICT, recorded differently on two devices: {', '.join(r.conflicts())}"
                lines.append(f"{r.id}  {r.kind.value}  received {r.data('opened').received_on.isoformat()}  {state}")
        else:
            names = {c.client_id: c.display_name for c in vault.record.list_clients()}
            lines = [f"{d.record_id}  {names.get(d.client_id, d.client_id)}  {d.label()}" for d in rights.open_requests(today)]
    finally:
        vault.close()
    for line in lines:
        print(printable(line))
    if not lines:
        print("No requests." if args.client else "No open requests.")
    return 0


def cmd_access(args) -> int:
    from store.client_rights import due_on

    vault = _open(args)
    try:
        client_id = resolve_client(vault.record, args.client)
        record = vault.record.rights.open_access_request(
            client_id, received_on=args.received, requester=args.requester, form_format=args.form_format,
            recipient=args.recipient)
    finally:
        vault.close()
    print(f"Access request {record.id} recorded; due {due_on(record).isoformat()}.")
    return 0


def cmd_amendment(args) -> int:
    from store.client_rights import due_on

    vault = _open(args)
    try:
        client_id = resolve_client(vault.record, args.client)
        notes = [n.strip() for n in args.notes.split(",") if n.strip()]
        record = vault.record.rights.open_amendment_request(
            client_id, received_on=args.received, requester=args.requester, note_ids=notes,
            requested_change=args.change)
    finally:
        vault.close()
    print(f"Amendment request {record.id} recorded; due {due_on(record).isoformat()}.")
    return 0


def cmd_extend(args) -> int:
    from store.client_rights import due_on

    vault = _open(args)
    try:
        rights = vault.record.rights
        record = rights.extend(resolve_request(rights, args.request), args.reason)
    finally:
        vault.close()
    print(f"Request {record.id} extended; now due {due_on(record).isoformat()}.")
    return 0


def fulfil_access(vault, record_id: str, out: Path, *, how: str, fmt: str, password=None, force=False):
    """Runs the export for an access request and records, in the export's transaction, what
    was sent, when and how (and, for a third party the client named, the disclosure log's
    entry, exempt from the accounting). Runs on the vault's thread; the app calls it too."""
    from store.client_rights import describe_export

    rights = vault.record.rights
    record = rights.open_request(record_id)
    if record.kind.value != "access_request":
        raise UnknownRequest(f"Request {record_id} is not an access request; nothing was written.")
    opened = record.data("opened")

    def within(v, result) -> None:
        what = describe_export(result)
        rights.fulfil_access(record_id, how=how, what=what, format=result.format, sent_to=opened.recipient,
                             sha256=result.sha256)
        if opened.recipient:
            rights.record_disclosure(result.client_id, disclosed_on=rights.today(), recipient=opened.recipient,
                                     purpose=f"access request {record_id}, directed by the client", what=what,
                                     basis="client", via="export", sha256=result.sha256)

    rights.require_signer()  # the clinician attests it: known before anything is written
    return export_and_audit(vault, record.client_id, out, fmt=fmt, password=password, force=force,
                            purpose="client request (right of access)", within=within)


def cmd_fulfil(args) -> int:
    from store.sealed_export import check_password

    fmt = args.format or infer_format(args.out)
    passphrase = current_passphrase(args)
    password = None
    if args.encrypt or args.password_file:
        password = export_password(args)
        check_password(password)
    from store.vault import Vault

    vault = Vault.open(args.vault, passphrase)
    try:
        rights = vault.record.rights
        record_id = resolve_request(rights, args.request)
        result = fulfil_access(vault, record_id, args.out, how=args.how, fmt=fmt, password=password, force=args.force)
    finally:
        vault.close()
    print(f"Access request {record_id} fulfilled: {result.path} ({fmt.upper()}, {result.size} bytes).")
    print(f"SHA-256: {result.sha256}")
    return 0


def cmd_amendment_step(args) -> int:
    vault = _open(args)
    try:
        rights = vault.record.rights
        record_id = resolve_request(rights, args.request)
        step = {"accept": rights.accept_amendment, "deny": rights.deny_amendment,
                "statement": rights.add_statement, "rebuttal": rights.add_rebuttal}[args.step]
        step(record_id, args.text)
    finally:
        vault.close()
    said = {"accept": "accepted; the amendment is appended to each note, signed", "deny": "denied",
            "statement": "now holds the client's statement of disagreement",
            "rebuttal": "now holds your rebuttal"}[args.step]
    print(f"Amendment request {record_id} {said}.")
    return 0
