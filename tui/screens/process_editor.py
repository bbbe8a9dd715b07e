"""The process-note editor: private reflections, visibly apart from the record."""

from __future__ import annotations

import asyncio

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.timer import Timer
from textual.widgets import Footer, Static, TextArea

from store.errors import NotewellError
from tui.printable import printable
from tui.screens.base import EditorScreen
from tui.screens.note_editor import AUTOSAVE_SECONDS, RETRY_SECONDS, SaveState
from tui.widgets.record_hints import hint_message, record_content_hints

BANNER = "Private - this device only. Never synced or exported."


class ProcessEditorScreen(EditorScreen):
    UNSAVED_MESSAGE = "The process note could not be saved yet, so it stays open."
    BINDINGS = [Binding("escape", "close", "Back", id="process.close")]

    def __init__(self, note_id: str) -> None:
        super().__init__(classes="private")
        self.note_id = note_id
        self._pending: str | None = None
        self._saved = ""
        self._timer: Timer | None = None
        self._save_lock = asyncio.Lock()
        self._ready = False

    def compose(self) -> ComposeResult:
        yield Static(BANNER, id="private-banner")
        with Horizontal(id="note-bar"):
            yield Static("Process note", id="note-title", markup=False)
            yield SaveState("", id="save-state")
        yield TextArea(id="process-body", soft_wrap=True, disabled=True)
        yield Static("", id="record-hint")
        yield Footer()

    def on_mount(self) -> None:
        area = self.query_one(TextArea)
        if self.app.test_mode:
            area.cursor_blink = False
        self.run_store(self._load, group="process-load", exclusive=True)

    async def _load(self) -> None:
        note_id = self.note_id

        def load(v):
            note = v.private.get(note_id)
            return note, v.record.get_client(note.client_id)

        note, client = await self.app.store.call(load)
        self.query_one("#note-title", Static).update(
            printable(f"{client.display_name} - process note - session of {note.session_date.isoformat()}")
        )
        area = self.query_one(TextArea)
        area.load_text(note.body)
        self._saved = note.body
        area.disabled = False
        area.focus()
        area.move_cursor(area.document.end)
        self._show_hint(note.body)
        self.query_one(SaveState).set("Saved", "saved")
        self._ready = True

    def _show_hint(self, text: str) -> None:
        hint = self.query_one("#record-hint", Static)
        message = hint_message(record_content_hints(text))
        hint.update(message)
        hint.display = bool(message)

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        if not self._ready:
            return
        text = event.text_area.text
        self._show_hint(text)
        if text == self._saved and self._pending is None:
            return
        self._pending = text
        self.query_one(SaveState).set("Unsaved", "unsaved")
        if self._timer is not None:
            self._timer.reset()
        else:
            self._timer = self.set_timer(AUTOSAVE_SECONDS, self._autosave)

    def _autosave(self) -> None:
        self._timer = None
        self.run_store(self.flush, group="autosave")

    async def flush(self) -> bool:
        async with self._save_lock:
            # The box on screen is the truth, even before its Changed message arrives.
            if self._ready and self._pending is None and self.query_one(TextArea).text != self._saved:
                self._pending = self.query_one(TextArea).text
            if self._pending is None:
                return True
            body, self._pending = self._pending, None
            self.query_one(SaveState).set("Saving...", "saving")
            note_id = self.note_id
            try:
                await self.app.store.call(lambda v: v.private.update_body(note_id, body))
            except NotewellError as e:
                if self._pending is None:
                    self._pending = body
                self.query_one(SaveState).set("Not saved - will retry", "failed")
                self.notify(f"{e.title}: {e.message} Your text is kept and will be saved on retry.", severity="error", timeout=8)
                self.set_timer(RETRY_SECONDS, self._autosave)
                return False
            self._saved = body
            self.query_one(SaveState).set("Unsaved" if self._pending is not None else "Saved",
                                          "unsaved" if self._pending is not None else "saved")
            return True

