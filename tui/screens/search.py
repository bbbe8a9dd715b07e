"""One search box over the record and this device's process notes, results grouped."""

from __future__ import annotations

import re

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Input, Label, OptionList
from textual.widgets.option_list import Option

from tui.printable import printable
from tui.screens.base import NotewellScreen
from tui.widgets.timeline import PRIVATE_LABEL

_MARK = re.compile(r"\[([^\]]*)\]")


def snippet_text(snippet: str) -> Text:
    """FTS snippets mark matches as [word]; show them highlighted, never as markup."""
    text = Text()
    last = 0
    flat = " ".join(snippet.split())
    for m in _MARK.finditer(flat):
        text.append(flat[last : m.start()])
        text.append(m.group(1), style="bold reverse")
        last = m.end()
    text.append(flat[last:])
    return text


class SearchScreen(NotewellScreen["tuple[str, str, str] | None"]):
    """Dismisses with (kind, id, client_id) for a client; opens notes on top of itself."""

    BINDINGS = [Binding("escape", "close", "Back", id="search.close")]
    AUTO_FOCUS = "#search-input"

    def compose(self) -> ComposeResult:
        yield Label("Search the record and your process notes", classes="dialog-title")
        yield Input(placeholder="words to find", id="search-input")
        yield OptionList(id="search-results")
        yield Footer()

    def on_mount(self) -> None:
        if self.app.test_mode:
            self.query_one(Input).cursor_blink = False

    def on_input_changed(self, event: Input.Changed) -> None:
        self.run_store(self._search, event.value, group="search", exclusive=True)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        results = self.query_one("#search-results", OptionList)
        if results.option_count:
            results.focus()

    async def _search(self, query: str) -> None:
        if not query.strip():
            self._show([], [], {})
            return

        def search(v):
            found = v.search(query, limit=50)
            names = {c.client_id: c.display_name for c in v.record.list_clients()}
            return found.record, found.private, names

        record, private, names = await self.app.store.call(search)
        self._show(record, private, names)

    def _show(self, record: list, private: list, names: dict[str, str]) -> None:
        results = self.query_one("#search-results", OptionList)
        results.clear_options()
        options: list[Option] = []
        options.append(Option(Text(f"Record ({len(record)})", style="bold underline"), disabled=True))
        for hit in record:
            kind = "client" if hit.kind == "client" else "progress"
            line = Text()
            line.append(printable(names.get(hit.client_id, hit.title)), style="bold")
            line.append("  client record\n    " if kind == "client" else f"  {printable(hit.title)}\n    ")
            line.append_text(snippet_text(hit.snippet))
            options.append(Option(line, id=f"{kind}:{hit.doc_id}:{hit.client_id}"))
        options.append(Option(Text(f"Process notes - {PRIVATE_LABEL} ({len(private)})", style="bold underline magenta"), disabled=True))
        for hit in private:
            line = Text()
            line.append(printable(names.get(hit.client_id, "")), style="bold")
            line.append(f"  process note {hit.session_date.isoformat()}  ")
            line.append(f"({getattr(hit, 'label', PRIVATE_LABEL)})", style="bold magenta")
            line.append("\n    ")
            line.append_text(snippet_text(hit.snippet))
            options.append(Option(line, id=f"process:{hit.note_id}:{hit.client_id}"))
        results.add_options(options)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if not event.option.id:
            return
        kind, note_id, client_id = event.option.id.split(":", 2)
        if kind == "client":
            self.dismiss((kind, note_id, client_id))
            return
        from tui.screens.note_editor import NoteEditorScreen
        from tui.screens.process_editor import ProcessEditorScreen

        # Open in place: the editor goes on top, and Back returns to these results.
        place = self.app.place
        place.client_id, place.note_kind, place.note_id = client_id, kind, note_id
        screen = NoteEditorScreen(note_id) if kind == "progress" else ProcessEditorScreen(note_id)
        self.app.push_screen(screen, self._after_editor)

    def _after_editor(self, _: object = None) -> None:
        self.app.place.note_kind = self.app.place.note_id = None
        self.query_one("#search-results", OptionList).focus()

    def action_close(self) -> None:
        self.dismiss(None)
