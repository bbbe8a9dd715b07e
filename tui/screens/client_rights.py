"""The client's rights screen: one client's access and amendment requests with their due
days, and the accounting of disclosures (docs/client-rights.md).

Open it from the main screen (g) with `ClientRightsScreen(app.store.call, client_id,
client_name)`. Keys record a request (a: access, m: amendment), log a disclosure made
outside Notewell (l), and act on the selected request: extend it once (e), fulfil an access
request by exporting the record (f), accept (y) or deny (n) an amendment, add the client's
statement of disagreement (s) or a rebuttal (b). Every step is one dialog of plain fields
(`RightsForm`); the store checks what is typed, and a refusal is shown and changes nothing.
Text that may have come from another device is made printable and never read as markup.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, DataTable, Footer, Input, Label, Static

from store.client_rights import due_on, is_closed
from store.errors import NotewellError
from store.rights_documents import RightsKind
from tui.printable import printable
from tui.screens.base import NotewellModal, NotewellScreen

StoreCall = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Field:
    key: str
    label: str
    value: str = ""
    placeholder: str = ""


class RightsForm(NotewellModal["dict[str, str] | None"]):
    """A few labelled text fields; dismisses with {key: text} or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="rights.form.cancel")]
    DEFAULT_CSS = """
    RightsForm .rights-form-box { width: 76; height: auto; max-height: 100%; }
    RightsForm Input { width: 100%; }
    """

    def __init__(self, title: str, hint: str, fields: list[Field], *, yes: str = "Save") -> None:
        super().__init__()
        self._title, self._hint, self._fields, self._yes = title, hint, fields, yes

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog-box rights-form-box"):
            yield Label(self._title, classes="dialog-title")
            yield Static(self._hint, classes="hint", markup=False)
            for f in self._fields:
                yield Label(f.label)
                yield Input(value=f.value, placeholder=f.placeholder, id=f"field-{f.key}")
            yield Static("", id="form-error", classes="field-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button(self._yes, id="yes", variant="primary")
                yield Button("Cancel", id="no")

    def on_mount(self) -> None:
        inputs = list(self.query(Input))
        if getattr(self.app, "test_mode", False):
            for i in inputs:
                i.cursor_blink = False
        if inputs:
            inputs[0].focus()

    def values(self) -> dict[str, str]:
        return {f.key: self.query_one(f"#field-{f.key}", Input).value for f in self._fields}

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(self.values())

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(self.values() if event.button.id == "yes" else None)

    def action_cancel(self) -> None:
        self.dismiss(None)


def _date(text: str, field: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise NotewellError(f"{field}: expected a date as YYYY-MM-DD; nothing was changed.", title="Invalid date") from None


@dataclass(frozen=True)
class RightsView:
    """What the screen shows of one client, read on the vault's thread."""

    requests: list[Any]
    accounting: Any
    today: date
    unverified: frozenset[str] = frozenset()  # records whose signatures fail verification here


def load_rights(vault, client_id: str, today: date | None = None) -> RightsView:
    """The client's requests and accounting as of `today` (the app's clock; default the
    vault's); call on the vault's thread."""
    rights = vault.record.rights
    today = today or rights.today()
    requests = [r for r in rights.for_client(client_id) if r.kind != RightsKind.DISCLOSURE]
    accounting = rights.accounting(client_id, today)
    return RightsView(requests, accounting, today, frozenset(rights.unverified([*requests, *accounting.listed])))


def request_state(record, today: date) -> str:
    conflicts = record.conflicts()
    if conflicts:
        return f"CONFLICT: recorded differently on two devices ({', '.join(conflicts)})"
    if is_closed(record):
        done = [e for e in ("fulfilled", "accepted", "denied") if e in record.events][0]
        extra = [e for e in ("statement", "rebuttal") if e in record.events]
        return done + (f" ({', '.join(extra)})" if extra else "")
    due = due_on(record)
    days = (due - today).days
    when = f"OVERDUE by {-days} d" if days < 0 else "due today" if days == 0 else f"due in {days} d"
    return f"{when} ({due.isoformat()}{', extended' if 'extended' in record.events else ''})"


class ClientRightsScreen(NotewellScreen[None]):
    BINDINGS = [
        Binding("escape", "back", "Back", id="rights.back"),
        Binding("a", "access", "Access req.", id="rights.access", tooltip="Record a request for a copy"),
        Binding("m", "amendment", "Amendment", id="rights.amendment", tooltip="Record a request to amend notes"),
        Binding("l", "disclose", "Log disclosure", id="rights.disclose"),
        Binding("e", "extend", "Extend", id="rights.extend", show=False),
        Binding("f", "fulfil", "Fulfil", id="rights.fulfil", show=False),
        Binding("y", "accept", "Accept", id="rights.accept", show=False),
        Binding("n", "deny", "Deny", id="rights.deny", show=False),
        Binding("s", "statement", "Statement", id="rights.statement", show=False),
        Binding("b", "rebuttal", "Rebuttal", id="rights.rebuttal", show=False),
    ]
    DEFAULT_CSS = """
    ClientRightsScreen .rights-title { text-style: bold; padding: 0 1; }
    ClientRightsScreen .rights-hint { padding: 0 1; color: $text-muted; }
    ClientRightsScreen #rights-requests { height: 1fr; }
    ClientRightsScreen #rights-disclosures { height: 1fr; }
    """

    def __init__(self, call: StoreCall, client_id: str, client_name: str, *, export_folder: Path | None = None) -> None:
        super().__init__()
        self._call = call
        self.client_id = client_id
        self.client_name = client_name
        self._folder = export_folder or Path.home()
        self.view: RightsView | None = None

    def compose(self) -> ComposeResult:
        yield Static(f"Client's rights: {printable(self.client_name)}", classes="rights-title", markup=False)
        yield Static("Requests (e extend, f fulfil access, y accept / n deny amendment, s statement, b rebuttal)",
                     classes="rights-hint", markup=False)
        yield DataTable(id="rights-requests", cursor_type="row", zebra_stripes=True)
        yield Static("", id="rights-accounting", classes="rights-title", markup=False)
        yield DataTable(id="rights-disclosures", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#rights-requests", DataTable).add_columns("Received", "Request", "State", "From")
        self.query_one("#rights-disclosures", DataTable).add_columns("Date", "Recipient", "Purpose", "What", "Basis")
        self.refresh_view()

    def refresh_view(self) -> None:
        self.run_store(self._load, group="rights", exclusive=True)

    async def _load(self) -> None:
        today = self.app.clock().astimezone().date()  # the app's clock (tests pass a fixed one)
        self.show(await self._call(load_rights, self.client_id, today))

    def show(self, view: RightsView) -> None:
        self.view = view
        table = self.query_one("#rights-requests", DataTable)
        table.clear()
        for r in view.requests:
            opened = r.data("opened")
            if r.kind == RightsKind.ACCESS:
                what = "access"
            else:
                n = len(opened.note_ids)
                what = f"amend {n} note{'s' if n != 1 else ''}"
            state = request_state(r, view.today) + (" - SIGNATURE NOT VERIFIED" if r.id in view.unverified else "")
            # The state before the requester: at 80 columns it is what must show.
            table.add_row(Text(opened.received_on.isoformat()), Text(what), Text(state),
                          Text(printable(opened.requester)), key=r.id)
        acc = view.accounting
        self.query_one("#rights-accounting", Static).update(
            f"Accounting of disclosures, {acc.since.isoformat()} to {acc.as_of.isoformat()}: "
            f"{len(acc.listed)} listed, {acc.exempt} exempt left out")
        disclosures = self.query_one("#rights-disclosures", DataTable)
        disclosures.clear()
        for r in acc.listed:
            d = r.data("opened")
            basis = d.basis.value + (" (NOT VERIFIED)" if r.id in view.unverified else "")
            disclosures.add_row(*(Text(printable(x)) for x in (d.disclosed_on.isoformat(), d.recipient, d.purpose,
                                                                   d.what, basis)), key=r.id)
        if view.requests:
            table.focus()

    def selected(self):
        table = self.query_one("#rights-requests", DataTable)
        if self.view is None or not self.view.requests or table.cursor_row is None:
            return None
        if 0 <= table.cursor_row < len(self.view.requests):
            return self.view.requests[table.cursor_row]
        return None

    # --- steps ----------------------------------------------------------------------

    def _ask(self, title: str, hint: str, fields: list[Field], then: Callable[[Any, dict[str, str]], Any],
             done: str) -> None:
        def answered(values: dict[str, str] | None) -> None:
            if values is not None:
                self.run_store(self._apply, then, values, done, group="rights-write", exclusive=True)

        self.app.push_screen(RightsForm(title, hint, fields), answered)

    async def _apply(self, then: Callable[[Any, dict[str, str]], Any], values: dict[str, str], done: str) -> None:
        await self._call(then, values)
        self.notify(done, markup=False)
        self.refresh_view()

    def _need(self, kind: RightsKind | None = None):
        record = self.selected()
        if record is None or (kind is not None and record.kind != kind):
            what = {RightsKind.ACCESS: "an access request", RightsKind.AMENDMENT: "an amendment request"}.get(kind, "a request")
            self.notify(f"Select {what} first.", markup=False)
            return None
        return record

    def action_access(self) -> None:
        cid = self.client_id
        today = self.view.today.isoformat() if self.view else ""
        self._ask(
            "Request for a copy of the record", "Due 30 days after it was received (45 CFR 164.524).",
            [Field("received", "Received on (YYYY-MM-DD)", today), Field("requester", "Requested by", self.client_name),
             Field("form", "Form and format asked for", "", "e.g. PDF by encrypted e-mail"),
             Field("recipient", "Send to a third party (blank: the client)")],
            lambda v, f: v.record.rights.open_access_request(
                cid, received_on=_date(f["received"], "received"), requester=f["requester"], form_format=f["form"],
                recipient=f["recipient"]),
            "Access request recorded.",
        )

    def action_amendment(self) -> None:
        cid = self.client_id
        today = self.view.today.isoformat() if self.view else ""
        self._ask(
            "Request to amend the record", "Due 60 days after it was received (45 CFR 164.526).",
            [Field("received", "Received on (YYYY-MM-DD)", today), Field("requester", "Requested by", self.client_name),
             Field("notes", "Progress notes it concerns (ids, comma-separated)"),
             Field("change", "The change asked for")],
            lambda v, f: v.record.rights.open_amendment_request(
                cid, received_on=_date(f["received"], "received"), requester=f["requester"],
                note_ids=[n.strip() for n in f["notes"].split(",") if n.strip()], requested_change=f["change"]),
            "Amendment request recorded.",
        )

    def action_disclose(self) -> None:
        cid = self.client_id
        today = self.view.today.isoformat() if self.view else ""
        self._ask(
            "Log a disclosure", "A release made outside Notewell. Bases: treatment, payment, operations, authorized, "
            "client, limited-data-set (exempt); required-by-law, public-health, abuse-report, health-oversight, "
            "court-order, law-enforcement, serious-threat, other (listed in the accounting).",
            [Field("on", "Released on (YYYY-MM-DD)", today), Field("recipient", "Recipient"),
             Field("purpose", "Purpose"), Field("what", "What was released"), Field("basis", "Basis", "", "court-order")],
            lambda v, f: v.record.rights.record_disclosure(
                cid, disclosed_on=_date(f["on"], "released on"), recipient=f["recipient"], purpose=f["purpose"],
                what=f["what"], basis=f["basis"].strip()),
            "Disclosure logged.",
        )

    def action_extend(self) -> None:
        record = self._need()
        if record is not None:
            self._ask("Extend the request (once, 30 days)", "Give the reason and the new date to the client in writing.",
                      [Field("reason", "Reason for the delay")],
                      lambda v, f: v.record.rights.extend(record.id, f["reason"]), "Request extended.")

    def action_fulfil(self) -> None:
        from tui.commands.rights_commands import fulfil_access

        record = self._need(RightsKind.ACCESS)
        if record is None:
            return
        default = str(self._folder / f"record-{self.client_id}-{self.view.today.isoformat()}.pdf")
        self._ask("Fulfil the request", "The record is exported (never process notes) and what was sent is recorded.",
                  [Field("out", "Write the copy to", default), Field("how", "Delivered how", "", "e.g. encrypted e-mail")],
                  lambda v, f: fulfil_access(v, record.id, Path(f["out"]).expanduser(), how=f["how"],
                                             fmt="json" if f["out"].strip().endswith(".json") else "pdf"),
                  "Access request fulfilled; the copy is written.")

    def action_accept(self) -> None:
        record = self._need(RightsKind.AMENDMENT)
        if record is not None:
            self._ask("Accept the amendment", "It is appended to each note as a signed addendum; the notes stay as signed.",
                      [Field("text", "The amendment")],
                      lambda v, f: v.record.rights.accept_amendment(record.id, f["text"]), "Amendment accepted and signed.")

    def action_deny(self) -> None:
        record = self._need(RightsKind.AMENDMENT)
        if record is not None:
            self._ask("Deny the amendment", "The written denial goes with every later release of these notes.",
                      [Field("reason", "Reason for the denial")],
                      lambda v, f: v.record.rights.deny_amendment(record.id, f["reason"]), "Amendment denied.")

    def action_statement(self) -> None:
        record = self._need(RightsKind.AMENDMENT)
        if record is not None:
            self._ask("Client's statement of disagreement", "As the client wrote it.", [Field("text", "Statement")],
                      lambda v, f: v.record.rights.add_statement(record.id, f["text"]), "Statement recorded.")

    def action_rebuttal(self) -> None:
        record = self._need(RightsKind.AMENDMENT)
        if record is not None:
            self._ask("Rebuttal", "Your answer to the client's statement; the client gets a copy.",
                      [Field("text", "Rebuttal")],
                      lambda v, f: v.record.rights.add_rebuttal(record.id, f["text"]), "Rebuttal recorded.")

    def action_back(self) -> None:
        self.dismiss(None)
