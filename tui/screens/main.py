"""The main screen: a filterable client list and the selected client's timeline."""

from __future__ import annotations

from datetime import date
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from store.models import ProcessNote, ProgressNote, SessionFacts
from tui.auto_backups import AutoBackups
from tui.printable import printable
from tui.screens.base import NotewellScreen
from tui.sync_jobs import SyncJobs
from tui.widgets.timeline import PREVIEWED_NOTES, Timeline, note_preview, row_id

# Signature states computed per call on the vault's thread: about half a second on a busy
# machine, so a keystroke waits for at most one batch (bench/README.md, signatures).
SETTLE_BATCH = 25
NO_CLIENT_HINT = "Select a client, or press a to add one."
# Clients listed before the first timeline is drawn, at least (the list's height when it has one).
FIRST_CLIENT_ROWS = 60


class MainScreen(NotewellScreen):
    AUTO_FOCUS = "#client-list"
    BINDINGS = [
        Binding("slash,ctrl+f", "search", "Search", id="search"),
        Binding("f", "focus_filter", "Filter", id="client.filter", show=False),
        # Short words in the footer, so every key fits at 80 columns; the palette and the
        # help screen name each action in full (`tooltip`, tui/screens/help.py).
        Binding("a", "new_client", "Add", id="client.new", tooltip="Add client"),
        Binding("e", "edit_client", "Edit client", id="client.edit", show=False),
        Binding("n", "new_note", "New note", id="note.new"),
        Binding("r", "new_process_note", "Process", id="process.new", tooltip="Process note"),
        Binding("t", "todo", "To do", id="todo"),
        Binding("o", "outcomes", "Outcomes", id="client.outcomes", show=False),
        Binding("x", "export", "Export record", id="client.export", show=False),
        Binding("g", "rights", "Client's rights", id="client.rights", show=False),
        Binding("u", "audit", "Audit trail", id="audit", show=False),
        Binding("s", "settings", "Settings", id="settings", show=False),
        Binding("d", "devices", "Devices and sync", id="devices", show=False),
        Binding("p", "snippets", "Snippets", id="snippets", show=False),
        Binding("i", "toggle_discharged", "Discharged clients", id="client.discharged", show=False,
                tooltip="Show discharged clients, or the active ones again"),
    ]

    def __init__(self, *, select_client: str | None = None) -> None:
        super().__init__()
        self._select = select_client
        self.client_id: str | None = None
        self._client: Any = None
        self._shown_note_ids: list[str] = []  # the shown client's notes whose state is pending
        # The list shows active clients, or (i) the discharged ones (store/discharge.py).
        self.show_discharged = False
        self._discharged_on: date | None = None  # the shown client's discharge, if it stands
        # Work that grows with the record (the To do counts, the page check) starts once the
        # first screen is drawn: the client list and the first client's timeline.
        self.first_screen_drawn = False
        self.first_screen_painted = False  # and the screen refreshed with it (bench/open_bench.py waits for it)
        self.previews_shown_for: str | None = None  # the client whose notes' first words are shown
        self._previews_due: tuple[str, list[str]] | None = None  # (client id, note ids) still to read
        self._clients_later: list[Option] = []  # the client list's rows below the first screen's

    def compose(self) -> ComposeResult:
        # Shown only while the last sync with some paired device found its clock disagreeing
        # with this one's (sync/clock.py); hidden, it takes no room.
        warning = Static("", id="clock-warning", markup=False)
        warning.display = False
        yield warning
        # Shown only while automatic backups are overdue or failing (tui/auto_backups.py).
        backup_warning = Static("", id="backup-warning", markup=False)
        backup_warning.display = False
        yield backup_warning
        with Horizontal(id="main"):
            with Vertical(id="clients-pane"):
                yield Input(placeholder="Filter clients", id="client-filter")
                yield OptionList(id="client-list")
                yield Static("", id="todo-summary", markup=False)
            with Vertical(id="client-pane"):
                # Composed while the key is derived (NotewellApp.unlock): it says so until the lists come.
                yield Static(NO_CLIENT_HINT if self.app.store.is_open else "Unlocking...", id="client-header", markup=False)
                yield Timeline(id="timeline")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        if self.app.test_mode:
            self.query_one("#client-filter", Input).cursor_blink = False
        self.reload_clients()

    def _first_screen_done(self) -> None:
        """The client list and the first timeline are on screen: now the rest."""
        if self.first_screen_drawn:
            return
        self.first_screen_drawn = True
        self.call_after_refresh(self._after_first_screen)

    def _after_first_screen(self) -> None:
        # Called after the refresh that drew the first timeline (call_after_refresh).
        self.first_screen_painted = True
        if self._clients_later:
            self.query_one("#client-list", OptionList).add_options(self._clients_later)
            self._clients_later = []
        # The page check first: it runs on a thread of its own, and writes wait for it.
        self.app.watch_page_check()
        self._start_previews()
        self.run_store(self._load_todo_counts, group="todo-counts", exclusive=True)
        self.run_store(self._load_clock_warning, group="clock-warning", exclusive=True)
        self.show_backup_warning()
        self.settle_signature_states()
        # Long-lived objects frozen out of the collector's way: a full collection, so not
        # before the first timeline is drawn (and while the vault's thread reads the above).
        self.call_after_refresh(self.app.settle_heap)

    def on_screen_resume(self) -> None:
        # Back from an editor: statuses may have changed (and from a sync: the clocks).
        if not self.first_screen_drawn:
            return  # still drawing the first screen, which loads all of it
        if self.client_id:
            self.run_store(self._load_client, self.client_id, group="client", exclusive=True)
        self.reload_clients()  # a signed discharge or a new intake moves a client between lists
        self.run_store(self._load_todo_counts, group="todo-counts", exclusive=True)
        self.run_store(self._load_clock_warning, group="clock-warning", exclusive=True)
        self.show_backup_warning()

    def on_auto_backups_changed(self, message: AutoBackups.Changed) -> None:
        self.show_backup_warning()

    def show_backup_warning(self) -> None:
        text = self.app.auto_backups.warning(self.app.clock())
        warning = self.query_one("#backup-warning", Static)
        warning.update(text)
        warning.display = bool(text)

    async def _load_clock_warning(self) -> None:
        skews = await self.app.sync_jobs.clock_skews()
        warning = self.query_one("#clock-warning", Static)
        warning.update(skews[0].warning(short=True) if skews else "")
        warning.display = bool(skews)

    async def _load_todo_counts(self) -> None:
        from datetime import datetime

        from tui.screens.todo import (
            counts_label, load_overdue, load_plan_reviews, load_rights_items, load_signature_items, reviews_label,
            rights_label, signatures_label,
        )

        thresholds = tuple(self.app.config.overdue_hours)
        _items, band_counts = await self.app.store.call(load_overdue, datetime.now(), thresholds)
        signatures = await self.app.store.call(load_signature_items)
        label = counts_label(band_counts) + ("; " + signatures_label(signatures) if signatures else "")
        reviews = await self.app.store.call(load_plan_reviews, datetime.now(), thresholds)
        if reviews:
            label += "; " + reviews_label(reviews)
        rights = await self.app.store.call(load_rights_items)
        if rights:
            label += "; " + rights_label(rights)
        pending = await self.app.store.call(lambda v: v.record.pending_signature_states())
        if pending:
            label += f"; {pending} signature{'s' if pending != 1 else ''} being checked"
        self.query_one("#todo-summary", Static).update(f"To do (t): {label}")

    # --- clients ----------------------------------------------------------------------

    def reload_clients(self) -> None:
        query = self.query_one("#client-filter", Input).value
        self.run_store(self._load_clients, query, group="clients", exclusive=True)

    def on_sync_jobs_record_changed(self, message: SyncJobs.RecordChanged) -> None:
        # A sync stored something: clients may have arrived or been renamed.
        self.reload_clients()
        self.settle_signature_states()  # documents stored in bulk, a device list that changed

    # --- signature states still to compute (store/signature_index.py) -----------------

    def settle_signature_states(self) -> None:
        self.run_store(self._settle_signature_states, group="signature-states", exclusive=True)

    async def _settle_signature_states(self) -> None:
        """Computes pending signature states (a vault from before they were stored, whole
        documents from a first sync, notes whose signer's trust changed) in small batches,
        each its own call on the vault's thread, so typing and lists are never queued behind
        more than one batch; the shown client's notes first. The lists read "signature
        being checked" until then, never "signed"."""
        import asyncio

        from store.errors import VaultError

        # Storing a state is a write, and nothing is written before every page of the vault
        # has been verified (store/page_check.py): wait for that here, off the vault's thread,
        # rather than hold the thread (and every read queued behind it) until it passes.
        check = await self.app.store.call(lambda v: v.page_check)
        await asyncio.to_thread(check.wait)
        settled = False
        while True:
            first = list(self._shown_note_ids)
            try:
                remaining = await self.app.store.call(
                    lambda v: v.record.settle_signature_states(SETTLE_BATCH, first=first)
                    if v.record.pending_signature_states() else -1
                )
            except VaultError:
                return  # another program holds the record: the next open or sync tries again
            if remaining < 0:
                break
            settled = True
            if first or not remaining:
                self._refresh_after_settling()
            if not remaining:
                break
        if settled:
            self._refresh_after_settling()

    def _refresh_after_settling(self) -> None:
        if self.client_id:
            self.run_store(self._load_client, self.client_id, group="client", exclusive=True)
        self.run_store(self._load_todo_counts, group="todo-counts", exclusive=True)

    async def _load_clients(self, query: str) -> None:
        current = self._select or self.client_id
        select, wanted = self._select, self.show_discharged
        first = not self.first_screen_drawn

        def read(v):
            rows = v.record.list_clients(query)
            discharged = v.record.discharged_clients()
            shown = wanted
            if select and (select in discharged) != shown and any(row_id(r, "client_id", "id") == select for r in rows):
                shown = not shown  # asked for a client in the other list (search, To do): show that list
            rows = [row for row in rows if (row_id(row, "client_id", "id") in discharged) == shown]
            ids = [row_id(row, "client_id", "id") for row in rows]
            index = ids.index(current) if current in ids else 0
            # The first screen reads the client it opens on in the same call: one trip to
            # the vault's thread and one drawing of the screen, not two.
            view = client_view(v, ids[index]) if first and rows else None
            return shown, rows, ids, index, view

        shown, rows, ids, index, view = await self.app.store.call(read)
        if shown != self.show_discharged:
            self._show_list(discharged=shown)
        listing = self.query_one("#client-list", OptionList)
        self._select = None
        listing.clear_options()
        # Content, not str: an option string would be read as markup, and a name may come from another device.
        options = [Option(Content(printable(row.display_name)), id=client_id) for row, client_id in zip(rows, ids)]
        self._clients_later = []
        if view is not None:
            # The first screen lists the clients it can show; the rest are added once it is
            # drawn (_after_first_screen): each option is measured as it is added, and a
            # thousand clients are a wait between Enter and the first timeline.
            shown = index + max(listing.size.height, FIRST_CLIENT_ROWS)
            options, self._clients_later = options[:shown], options[shown:]
        listing.add_options(options)
        if not rows:
            self.query_one("#client-header", Static).update(NO_CLIENT_HINT)
            self._first_screen_done()
            return
        if view is not None:
            # Set before the highlight, whose handler then has nothing more to read.
            self.client_id = self.app.place.client_id = ids[index]
            self._show_client(ids[index], view)
        listing.highlighted = index

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "client-filter":
            self.reload_clients()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "client-filter":
            self.query_one("#client-list", OptionList).focus()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option_list.id == "client-list" and event.option.id != self.client_id:
            self.client_id = event.option.id
            self.app.place.client_id = self.client_id
            self.run_store(self._load_client, self.client_id, group="client", exclusive=True)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option_list.id == "client-list":
            self.query_one(Timeline).focus()
        elif event.option_list.id == "timeline" and event.option.id:
            kind, _, note_id = event.option.id.partition(":")
            self.open_note(kind, note_id)

    async def _load_client(self, client_id: str) -> None:
        view = await self.app.store.call(client_view, client_id)
        if client_id != self.client_id:
            return
        self._show_client(client_id, view)

    def _show_client(self, client_id: str, view: tuple) -> None:
        client, notes, private = view
        from store.discharge import discharged_on

        self._discharged_on = discharged_on(notes).get(client_id)
        self._shown_note_ids = [r.note_id for r in notes if getattr(r, "signature_status", "") == "pending"]
        self._client = client
        self.query_one("#client-header", Static).update(client_summary(client, self._discharged_on))
        self.query_one(Timeline).show(notes, private)
        self.previews_shown_for = None
        # The first words are read once the rows are on screen: a document load a note.
        self._previews_due = (client_id, [r.note_id for r in notes[:PREVIEWED_NOTES]])
        if self.first_screen_drawn:
            self.call_after_refresh(self._start_previews)
        else:
            self._first_screen_done()  # _after_first_screen starts them, after the page check

    def _start_previews(self) -> None:
        if self._previews_due is not None:
            client_id, note_ids = self._previews_due
            self._previews_due = None
            self.run_store(self._load_previews, client_id, note_ids, group="previews", exclusive=True)

    async def _load_previews(self, client_id: str, note_ids: list[str]) -> None:
        previews = await self.app.store.call(read_previews, note_ids)
        if client_id != self.client_id:
            return
        self.query_one(Timeline).show_previews(previews)
        self.previews_shown_for = client_id

    # --- actions ----------------------------------------------------------------------

    def action_focus_filter(self) -> None:
        self.query_one("#client-filter", Input).focus()

    def action_search(self) -> None:
        from tui.screens.search import SearchScreen

        self.app.push_screen(SearchScreen(), self._after_search)

    def _after_search(self, target: tuple[str, str, str] | None) -> None:
        # Notes open on top of the search screen; only a client hit comes back here.
        if target and target[2]:
            self.select_client(target[2])

    def select_client(self, client_id: str) -> None:
        if client_id != self.client_id:
            self._select = client_id
            self.client_id = None
            self.query_one("#client-filter", Input).value = ""
            self.reload_clients()

    def action_toggle_discharged(self) -> None:
        self._show_list(discharged=not self.show_discharged)
        self.client_id = None
        self.reload_clients()

    def _show_list(self, *, discharged: bool) -> None:
        self.show_discharged = discharged
        # The filter's placeholder says which list is shown.
        self.query_one("#client-filter", Input).placeholder = (
            "Filter discharged clients (i: active)" if discharged else "Filter clients"
        )

    def action_todo(self) -> None:
        from tui.screens.todo import TodoScreen

        self.app.push_screen(TodoScreen(self.app.store.call, thresholds=tuple(self.app.config.overdue_hours)))

    def _need_client(self) -> bool:
        if self._client is None:
            self.notify("Select a client first.")
            return False
        return True

    def action_outcomes(self) -> None:
        from tui.screens.outcomes import OutcomesDialog

        if self._need_client():
            self.app.push_screen(OutcomesDialog(self._client.id, self._client.display_name))

    def action_export(self) -> None:
        from tui.screens.export_dialog import ExportDialog

        if not self._need_client():
            return

        def done(result: object) -> None:
            path = getattr(result, "path", None)
            if result is not None:
                self.notify(f"Record exported{f' to {path}' if path else ''}. Process notes are never exported.")

        self.app.push_screen(ExportDialog(self.app.store.call, self._client.id, client_name=self._client.display_name), done)

    def action_rights(self) -> None:
        from tui.screens.client_rights import ClientRightsScreen

        if self._need_client():
            self.app.push_screen(ClientRightsScreen(self.app.store.call, self._client.id, self._client.display_name),
                                 lambda _: self.on_screen_resume())

    def action_audit(self) -> None:
        from tui.screens.audit_view import AuditViewScreen

        self.app.push_screen(AuditViewScreen(self.app.store.call))

    def action_settings(self) -> None:
        from tui.screens.settings import SettingsDialog

        # Late-entry flags may change with the window; the timeline is reloaded on return.
        self.app.push_screen(SettingsDialog(), lambda _: self.on_screen_resume())

    def action_devices(self) -> None:
        from tui.screens.devices import DevicesScreen

        self.app.push_screen(DevicesScreen())

    def action_snippets(self) -> None:
        from tui.screens.snippets import SnippetsDialog

        self.app.push_screen(SnippetsDialog())

    def action_new_client(self) -> None:
        from tui.screens.client_edit import ClientEditScreen

        self.app.push_screen(ClientEditScreen(None), self._after_client_edit)

    def action_edit_client(self) -> None:
        from tui.screens.client_edit import ClientEditScreen

        if self._client is None:
            self.notify("Select a client first.")
            return
        self.app.push_screen(ClientEditScreen(self._client), self._after_client_edit)

    def _after_client_edit(self, client_id: str | None) -> None:
        if client_id:
            self._select = client_id
            self.client_id = None
            self.reload_clients()

    def action_new_note(self) -> None:
        from tui.screens.new_note import NewNoteDialog

        if self.client_id is None:
            self.notify("Select a client first.")
            return
        client_id = self.client_id

        def chosen(choice: tuple[str, date] | None) -> None:
            if choice:
                self._create_note(client_id, *choice)

        self.app.push_screen(NewNoteDialog(), chosen)

    def start_note(self, client_id: str, fmt: str, on: date) -> None:
        """A new note of `fmt` for the client, in the editor (the To do list's plan reviews)."""
        self._create_note(client_id, fmt, on)

    def _create_note(self, client_id: str, fmt: str, on: date) -> None:
        from tui.screens.note_editor import NoteEditorScreen

        # Created in the record only once something is typed into it: a note opened and left
        # at once leaves no empty draft behind (the record never deletes a document). No
        # clinical fact is filled for the clinician: the editor offers to copy the stable
        # facts of the last note, as an action of theirs (FactsForm).
        note = ProgressNote(client_id=client_id, format=fmt, facts=SessionFacts(date_of_service=on))
        self.app.push_screen(NoteEditorScreen(note.id, unsaved=note), self._after_editor)

    def action_new_process_note(self) -> None:
        if self.client_id is None:
            self.notify("Select a client first.")
            return
        self.run_store(self._create_process_note, self.client_id, self.query_one(Timeline).highlighted_date() or date.today(), group="create")

    async def _create_process_note(self, client_id: str, on: date) -> None:
        def create(v):
            return v.private.create(ProcessNote(client_id=client_id, session_date=on, device_id=v.device_id))

        created = await self.app.store.call(create)
        self.open_note("process", created.id)

    def open_note(self, kind: str, note_id: str) -> None:
        from tui.screens.note_editor import NoteEditorScreen
        from tui.screens.process_editor import ProcessEditorScreen

        self.app.place.note_kind, self.app.place.note_id = kind, note_id
        screen = NoteEditorScreen(note_id) if kind == "progress" else ProcessEditorScreen(note_id)
        self.app.push_screen(screen, self._after_editor)

    def _after_editor(self, _: object = None) -> None:
        self.app.place.note_kind = self.app.place.note_id = None


def client_view(v: Any, client_id: str) -> tuple:
    """On the vault's thread: a client, its notes' rows and its process notes (no document
    of a note loaded; the previews come after, `read_previews`)."""
    rows = v.record.notes_for_client(client_id)
    return (
        v.record.get_client(client_id),
        # Verified: a note is labelled signed only if its signature verifies.
        v.record.verify_rows(rows),
        v.private.for_client(client_id),
    )


def read_previews(v: Any, note_ids: list[str]) -> dict[str, str]:
    """On the vault's thread: the first words of each note, so notes of one day can be told apart."""
    return {note_id: note_preview(v.record.get_note(note_id)) for note_id in note_ids}


def client_summary(client: Any, discharged: date | None = None) -> str:
    lines = [client.display_name]
    if client.date_of_birth:
        lines[0] += f"  (born {client.date_of_birth.isoformat()})"
    if discharged is not None:
        lines.append(f"Discharged on {discharged.isoformat()}; a new intake assessment makes the client active again.")
    if client.diagnoses:
        lines.append("Diagnoses: " + ", ".join(f"{d.code} {d.description}".strip() for d in client.diagnoses))
    else:
        lines.append("Diagnoses: none yet (press e to add)")
    active = [g for g in client.goals if g.active]
    if active:
        lines.append("Goals: " + "; ".join(g.description for g in active))
    else:
        lines.append("Goals: none yet (press e to add)")
    if getattr(client, "plan_start", None) is not None:
        lines.append(f"Plan started {client.plan_start.isoformat()}; reviewed every {client.review_interval_days} days")
    # One line each, whatever a document from another device put in a name or description.
    return "\n".join(printable(line) for line in lines)
