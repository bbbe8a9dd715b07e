"""Naming a client on the command line: `notewell clients`, and the one rule every command
that takes a client uses (`resolve_client`).

A client is named by its id, by a unique prefix of its id, or by its name or a unique start
of it (case and spacing ignored). An ambiguous or unknown one is one sentence that names no
client: the listing is `notewell clients`, which shows ids, names and counts, never note text.
"""

from __future__ import annotations

from store.errors import NotewellError
from tui.commands.passphrase import current_passphrase
from tui.printable import printable


class UnknownClient(NotewellError):
    title = "No such client"


class AmbiguousClient(NotewellError):
    title = "More than one client"


def _folded(text: str) -> str:
    return " ".join(text.split()).casefold()


def resolve_client(record, named: str) -> str:
    """The id of the one client `named` names (see the module's docstring); runs on the
    vault's thread. UnknownClient or AmbiguousClient otherwise."""
    rows = record.list_clients()
    wanted = _folded(named)
    if not wanted:
        raise UnknownClient("Give a client's name or id; `notewell clients` lists them.")
    # The first rule that names anyone decides: an exact id, an exact name, then prefixes.
    for rule in (
        lambda r: r.client_id == named.strip(),
        lambda r: _folded(r.display_name) == wanted,
        lambda r: r.client_id.startswith(named.strip()),
        lambda r: _folded(r.display_name).startswith(wanted),
    ):
        found = {r.client_id for r in rows if rule(r)}
        if len(found) == 1:
            return found.pop()
        if len(found) > 1:
            raise AmbiguousClient(
                f"{printable(named.strip())!r} matches {len(found)} clients; give more of the name, or the id "
                "(`notewell clients` lists them)."
            )
    raise UnknownClient(f"No client matches {printable(named.strip())!r}; `notewell clients` lists them.")


def register(sub) -> None:
    p = sub.add_parser(
        "clients", help="list the clients: id, name, note counts and any discharge date (never note text)"
    )
    p.set_defaults(func=cmd_clients)


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def cmd_clients(args) -> int:
    from store.vault import Vault

    vault = Vault.open(args.vault, current_passphrase(args))
    try:
        listed = []
        discharged = vault.record.discharged_clients()  # store/discharge.py
        for row in vault.record.list_clients():
            notes = vault.record.notes_for_client(row.client_id)
            drafts = sum(1 for n in notes if getattr(n.status, "value", n.status) == "draft")
            listed.append((row.client_id, row.display_name, len(notes), drafts, discharged.get(row.client_id)))
    finally:
        vault.close()
    if not listed:
        print("No clients yet.")
        return 0
    width = max(len(cid) for cid, *_ in listed)
    for cid, name, notes, drafts, discharged_on in listed:
        # Names may have come from another device: shown with anything a terminal acts on escaped.
        tail = f", discharged {discharged_on.isoformat()}" if discharged_on else ""
        print(printable(f"{cid:<{width}}  {name}  ({_count(notes, 'note')}, {_count(drafts, 'draft')}{tail})"))
    return 0
