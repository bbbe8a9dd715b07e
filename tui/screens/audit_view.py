"""A read-only view of the audit trail, with the result of verifying its hash chain.

Open it with `AuditViewScreen(app.store.call)` (the whole trail) or
`AuditViewScreen(app.store.call, client_id=...)` (one client's entries; the chain is still
verified whole). Nothing on this screen changes the log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from tui.printable import printable
from tui.screens.base import NotewellScreen

StoreCall = Callable[..., Awaitable[Any]]


def load_audit(vault, client_id: str | None):
    """(entries, VerifyResult); call on the vault's thread."""
    from store.errors import NotewellError

    log = getattr(vault, "audit", None)
    if log is None:
        raise NotewellError("This vault has no audit trail yet.", title="Audit trail unavailable")
    return log.entries(client_id=client_id), log.verify()


def verify_label(result) -> str:
    if result.ok:
        n = result.entries_checked
        return f"Chain verified: {n} {'entry' if n == 1 else 'entries'}, none altered or removed."
    return f"TAMPERED: entry {result.first_broken_seq}: {result.reason}. Entries from there on cannot be trusted."


class AuditViewScreen(NotewellScreen[None]):
    BINDINGS = [
        Binding("escape", "back", "Back", id="audit.back"),
        Binding("r", "refresh", "Verify again", id="audit.refresh"),
    ]
    DEFAULT_CSS = """
    AuditViewScreen #audit-title { text-style: bold; padding: 0 1; }
    AuditViewScreen #audit-status { padding: 0 1 1 1; }
    AuditViewScreen #audit-status.tampered { color: $error; text-style: bold; }
    AuditViewScreen #audit-status.verified { color: $success; }
    AuditViewScreen #audit-table { height: 1fr; }
    """

    def __init__(self, call: StoreCall, *, client_id: str | None = None, client_name: str | None = None) -> None:
        super().__init__()
        self._call = call
        self._client_id = client_id
        self._client_name = client_name
        self.entries: list = []
        self.result = None

    def compose(self) -> ComposeResult:
        title = "Audit trail"
        if self._client_id:
            title += f" for {self._client_name or self._client_id}"
        yield Static(printable(title), id="audit-title", markup=False)
        yield Static("Verifying...", id="audit-status", markup=False)
        yield DataTable(id="audit-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("#", "When (UTC)", "Event", "Client", "Details")
        self.action_refresh()

    def action_refresh(self) -> None:
        self.run_store(self._load(), group="audit", exclusive=True)

    async def _load(self) -> None:
        entries, result = await self._call(load_audit, self._client_id)
        self.show(entries, result)

    def show(self, entries: list, result) -> None:
        self.entries, self.result = list(entries), result
        status = self.query_one("#audit-status", Static)
        status.update(verify_label(result))
        status.set_class(not result.ok, "tampered")
        status.set_class(result.ok, "verified")
        table = self.query_one(DataTable)
        table.clear()
        broken = result.first_broken_seq
        for entry in self.entries:
            mark = " !" if broken is not None and entry.seq >= broken else ""
            # Text, not str: a cell string would be read as markup.
            table.add_row(
                Text(f"{entry.seq}{mark}"),
                Text(entry.at.replace("T", " ").removesuffix("Z")),
                Text(entry.label),
                Text(entry.client_id or ""),
                Text(printable(entry.summary())),  # names a device or client of another device
                key=str(entry.seq),
            )
        if self.entries:
            table.move_cursor(row=len(self.entries) - 1)
            table.focus()

    def action_back(self) -> None:
        self.dismiss(None)
