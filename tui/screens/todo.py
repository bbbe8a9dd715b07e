"""The "To do" screen: progress notes unsigned or missing past 24, 48 and 72 hours; signatures
that need the clinician; treatment-plan reviews that are due (store/plan_reviews.py: listed
from the day they are due, then in the same bands as overdue notes); and clients' access and
amendment requests not yet acted on (`load_rights_items`, store/client_rights.py). Enter on a
review row posts `TodoScreen.ReviewPlan(client_id)`, which the app answers with a new review note.

Open it with `TodoScreen(app.store.call)`. It loads the queue on the vault's thread
(`load_overdue`), shows the counts per band and one row per session, most overdue first.
Enter (or o) on a row posts `TodoScreen.OpenNote(note_id)` for a draft, or
`TodoScreen.OpenClient(client_id, date)` for a session with no progress note; the app
handles them (`on_todo_screen_open_note`, `on_todo_screen_open_client`).
The main screen can show the counts with `load_overdue` and `counts_label`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Static

from store.overdue import DEFAULT_THRESHOLDS, OverdueItem, counts, overdue
from store.plan_reviews import DUE, ReviewDue, plan_reviews_due
from store.signature_state import SignatureStatus
from tui.printable import printable
from tui.screens.base import NotewellScreen

StoreCall = Callable[..., Awaitable[Any]]


def load_overdue(vault, now: datetime, thresholds: Iterable[int] = DEFAULT_THRESHOLDS):
    """(items, counts per band) for the whole vault; call on the vault's thread.

    Days with a process note but no progress note count as missing notes; their dates come
    from this device's private store (never synced), so other devices' sessions without any
    note are not known here.
    """
    thresholds = tuple(thresholds)
    items = overdue(vault.record, now, thresholds, extra_session_dates=vault.private.session_dates())
    return items, counts(items, thresholds)


@dataclass(frozen=True)
class SignatureItem:
    """A note whose signature needs the clinician: a conflict or a tamper finding."""

    note_id: str
    client_name: str
    date_of_service: date | None
    what: str  # "signature conflict" or "FAILS VERIFICATION"


def load_signature_items(vault) -> list[SignatureItem]:
    """Signature conflicts and tamper findings, as stored when each note was written or
    merged (store/signature_index.py): one query, nothing verified; call on the vault's thread."""
    return [
        SignatureItem(note_id, name, date_of_service, "FAILS VERIFICATION" if status == SignatureStatus.TAMPERED.value
                      else "signature conflict")
        for note_id, name, date_of_service, status in vault.record.signature_attention_rows()
    ]


@dataclass(frozen=True)
class RightsItem:
    """A client's access or amendment request not yet acted on (store/client_rights.py)."""

    client_name: str
    request: Any  # store.client_rights.DueRequest


def load_rights_items(vault, today: date | None = None) -> list[RightsItem]:
    """Open requests, the most pressing first; call on the vault's thread."""
    rights = vault.record.rights
    names = {c.client_id: c.display_name for c in vault.record.list_clients()}
    return [RightsItem(names.get(d.client_id, d.client_id), d) for d in rights.open_requests(today or rights.today())]


def rights_label(items: list[RightsItem]) -> str:
    """'2 client requests open (1 overdue)', or ''."""
    if not items:
        return ""
    overdue = sum(1 for i in items if i.request.overdue)
    noun = "client request open" if len(items) == 1 else "client requests open"
    return f"{len(items)} {noun}" + (f" ({overdue} overdue)" if overdue else "")


def signatures_label(items: list[SignatureItem]) -> str:
    """'2 signatures need you (1 conflict, 1 failing verification)', or ''."""
    if not items:
        return ""
    failing = sum(1 for i in items if i.what != "signature conflict")
    noun = "signature needs" if len(items) == 1 else "signatures need"
    return f"{len(items)} {noun} you ({len(items) - failing} conflict, {failing} failing verification)"


def load_plan_reviews(vault, now: datetime, thresholds: Iterable[int] = DEFAULT_THRESHOLDS) -> list[ReviewDue]:
    """Treatment-plan reviews due at `now`; call on the vault's thread."""
    return plan_reviews_due(vault.record, now, tuple(thresholds))


def reviews_label(items: list[ReviewDue]) -> str:
    """'2 plan reviews due', or ''."""
    if not items:
        return ""
    return f"{len(items)} plan review{'s' if len(items) != 1 else ''} due"


def counts_label(band_counts: dict[int, int]) -> str:
    """'3 notes overdue: 1 over 72 h, 2 over 24 h', or 'No notes overdue'."""
    total = sum(band_counts.values())
    if not total:
        return "No notes overdue"
    parts = [f"{n} over {band} h" for band, n in sorted(band_counts.items(), reverse=True) if n]
    noun = "note" if total == 1 else "notes"
    return f"{total} {noun} overdue: " + ", ".join(parts)


def _age(item: OverdueItem) -> str:
    return _age_hours(item.hours_overdue)


def _age_hours(hours_overdue: int) -> str:
    days, hours = divmod(hours_overdue, 24)
    return f"{days} d {hours} h" if days else f"{hours} h"


class TodoScreen(NotewellScreen[None]):
    BINDINGS = [
        Binding("escape", "back", "Back", id="todo.back"),
        Binding("o", "open", "Open", id="todo.open"),
        Binding("r", "refresh", "Refresh", id="todo.refresh"),
    ]
    DEFAULT_CSS = """
    TodoScreen #todo-title { text-style: bold; padding: 0 1; }
    TodoScreen #todo-counts { padding: 0 1 1 1; }
    TodoScreen #todo-table { height: 1fr; }
    """

    class OpenNote(Message):
        """Open this progress note (a draft that is overdue)."""

        def __init__(self, note_id: str) -> None:
            super().__init__()
            self.note_id = note_id

    class OpenClient(Message):
        """Open this client at this date: a session with no progress note yet."""

        def __init__(self, client_id: str, on: date) -> None:
            super().__init__()
            self.client_id = client_id
            self.on = on

    class ReviewPlan(Message):
        """Write this client's treatment-plan review (a review that is due)."""

        def __init__(self, client_id: str) -> None:
            super().__init__()
            self.client_id = client_id

    def __init__(
        self,
        call: StoreCall,
        *,
        thresholds: Iterable[int] = DEFAULT_THRESHOLDS,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        super().__init__()
        self._call = call
        self._thresholds = tuple(thresholds)
        self._clock = clock
        self.items: list[OverdueItem] = []
        self.band_counts: dict[int, int] = {}
        self.signature_items: list[SignatureItem] = []  # after the overdue rows in the table
        self.rights_items: list[RightsItem] = []  # the clients' open requests, last
        self.review_items: list[ReviewDue] = []  # after the signature rows

    def compose(self) -> ComposeResult:
        yield Static("To do: overdue progress notes, signatures that need you, plan reviews due", id="todo-title")
        yield Static("Loading...", id="todo-counts", markup=False)
        yield DataTable(id="todo-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Overdue", "Band", "Client", "Session", "Note")
        self.action_refresh()

    def action_refresh(self) -> None:
        self.run_store(self._load(), group="todo", exclusive=True)

    async def _load(self) -> None:
        items, band_counts = await self._call(load_overdue, self._clock(), self._thresholds)
        signatures = await self._call(load_signature_items)
        reviews = await self._call(load_plan_reviews, self._clock(), self._thresholds)
        rights = await self._call(load_rights_items)
        self.show(items, band_counts, signatures, reviews, rights)

    def show(
        self, items: list[OverdueItem], band_counts: dict[int, int], signatures: list[SignatureItem] | None = None,
        reviews: list[ReviewDue] | None = None, rights: list[RightsItem] | None = None,
    ) -> None:
        self.items, self.band_counts = list(items), dict(band_counts)
        self.signature_items = list(signatures or [])
        self.review_items = list(reviews or [])
        self.rights_items = list(rights or [])
        label = counts_label(self.band_counts)
        if self.signature_items:
            label += "; " + signatures_label(self.signature_items)
        if self.review_items:
            label += "; " + reviews_label(self.review_items)
        if self.rights_items:
            label += "; " + rights_label(self.rights_items)
        self.query_one("#todo-counts", Static).update(label)
        table = self.query_one(DataTable)
        table.clear()
        for i, item in enumerate(self.items):
            # Text, not str: a cell string would be read as markup.
            table.add_row(
                Text(_age(item)),
                Text(f"{item.band} h+"),
                Text(printable(item.client_name)),
                Text(item.date_of_service.isoformat()),
                Text("no progress note" if item.missing else "draft, unsigned"),
                key=str(i),
            )
        for j, sig in enumerate(self.signature_items):
            table.add_row(
                Text("-"),
                Text("signature"),
                Text(printable(sig.client_name)),
                Text(sig.date_of_service.isoformat() if sig.date_of_service else ""),
                Text(sig.what),
                key=f"sig-{j}",
            )
        for k, review in enumerate(self.review_items):
            table.add_row(
                Text(_age_hours(review.hours_overdue) if review.band != DUE else "due today"),
                Text("due" if review.band == DUE else f"{review.band} h+"),
                Text(printable(review.client_name)),
                Text(review.due_on.isoformat()),
                Text("treatment-plan review due"),
                key=f"review-{k}",
            )
        for k, right in enumerate(self.rights_items):
            d = right.request
            table.add_row(
                Text(f"{-d.days_left} d" if d.overdue else "-"),
                Text("request"),
                Text(printable(right.client_name)),
                Text(d.received_on.isoformat()),
                Text(d.label()),
                key=f"rights-{k}",
            )
        if self.items or self.signature_items or self.review_items or self.rights_items:
            table.focus()

    def _selected(self) -> OverdueItem | SignatureItem | ReviewDue | RightsItem | None:
        table = self.query_one(DataTable)
        rows = [*self.items, *self.signature_items, *self.review_items, *self.rights_items]
        if not rows or table.cursor_row is None or not 0 <= table.cursor_row < len(rows):
            return None
        return rows[table.cursor_row]

    def action_open(self) -> None:
        item = self._selected()
        if item is None:
            return
        if isinstance(item, ReviewDue):
            self.post_message(self.ReviewPlan(item.client_id))
        elif isinstance(item, RightsItem):
            self.notify("Select the client and press g to act on the request.", markup=False)
        elif isinstance(item, SignatureItem):
            self.post_message(self.OpenNote(item.note_id))
        elif item.note_id is not None:
            self.post_message(self.OpenNote(item.note_id))
        else:
            self.post_message(self.OpenClient(item.client_id, item.date_of_service))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_back(self) -> None:
        self.dismiss(None)
