"""What `notewell export` asks of a release to someone other than the client (45 CFR
164.528): the recipient and the basis of the release, checked before the vault is unlocked,
and the disclosure log's entry written in the export's own transaction (docs/client-rights.md).
"""

from __future__ import annotations

from store.errors import NotewellError
from store.rights_documents import Basis

# Every basis the disclosure log knows (store/rights_documents.py says which are exempt).
BASES = tuple(b.value for b in Basis)


class DisclosureIncomplete(NotewellError):
    title = "Disclosure incomplete"
    exit_code = 2


def add_disclosure_options(p) -> None:
    p.add_argument("--recipient", metavar="NAME",
                   help="who receives the export when it is not the client: it is then logged as a disclosure")
    p.add_argument("--basis", choices=BASES,
                   help="why it is released to the recipient (needed with --recipient; see docs/client-rights.md)")
    p.add_argument("--address", metavar="TEXT", default="", help="the recipient's address, for the disclosure log")


def check_disclosure(args) -> None:
    """Before anything is unlocked: a recipient needs a basis, and a basis a recipient."""
    if args.recipient is not None and not args.recipient.strip():
        raise DisclosureIncomplete("The recipient is empty: name who receives the record; nothing was written.")
    if (args.recipient is None) != (args.basis is None):
        raise DisclosureIncomplete(
            "--recipient and --basis go together: a release to someone other than the client is logged with "
            "its basis; nothing was written."
        )


def disclosure_logger(args):
    """For export_and_audit's `within`: logs the export as a disclosure when it goes to a
    recipient other than the client (None when it does not)."""
    if args.recipient is None:
        return None
    return disclosure_logger_for(args.recipient, args.basis, args.address)


def disclosure_logger_for(recipient: str, basis: str, address: str = ""):
    """The disclosure log's entry for an export to `recipient` (the command line, the app's
    export dialog), written in the export's transaction: nothing is released unlogged."""

    def log(vault, result) -> None:
        from store.client_rights import describe_export

        rights = vault.record.rights
        rights.record_disclosure(
            result.client_id, disclosed_on=rights.today(), recipient=recipient, purpose=result.purpose,
            what=describe_export(result), basis=basis, address=address, via="export", sha256=result.sha256,
        )

    return log
