"""Find a diagnosis code: type words or the first characters of a code, pick a billable
ICD-10-CM code (store/diagnosis_codes.py). The code set is indexed in a worker thread the
first time it is needed; until then the dialog says so and keeps what is typed."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from store.diagnosis_codes import DiagnosisCode, DiagnosisIndex, shared_index, shared_index_if_built
from tui.screens.base import NotewellModal


class DiagnosisSearchDialog(NotewellModal["DiagnosisCode | None"]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="dialog.cancel"),
        Binding("down", "to_results", "Results", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.index: DiagnosisIndex | None = shared_index_if_built()
        self.results: list[DiagnosisCode] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box wide"):
            yield Label("Find a diagnosis (ICD-10-CM, billable codes)", classes="dialog-title")
            yield Input(placeholder="words, e.g. generalized anxiety, or a code, e.g. F41", id="dx-query", compact=True)
            yield Static("", id="dx-status", classes="hint", markup=False)
            yield OptionList(id="dx-results")

    def on_mount(self) -> None:
        if self.app.test_mode:
            self.query_one("#dx-query", Input).cursor_blink = False
        self.query_one("#dx-query", Input).focus()
        if self.index is None:
            self.query_one("#dx-status", Static).update("Loading the code set...")
            self._build()
        else:
            self._show()

    @work(thread=True, exclusive=True, group="dx-index", exit_on_error=False)
    def _build(self) -> None:
        index = shared_index()
        self.app.call_from_thread(self._ready, index)

    def _ready(self, index: DiagnosisIndex) -> None:
        self.index = index
        self._show()

    def on_input_changed(self, event: Input.Changed) -> None:
        if self.index is not None:
            self._show()

    def _show(self) -> None:
        assert self.index is not None
        query = self.query_one("#dx-query", Input).value
        self.results = self.index.search(query)
        listing = self.query_one("#dx-results", OptionList)
        listing.clear_options()
        listing.add_options(
            Option(Text.assemble((f"{c.code:<9}", "bold"), c.description), id=c.code) for c in self.results)
        if self.results:
            listing.highlighted = 0
        status = self.query_one("#dx-status", Static)
        if not query.strip():
            status.update("Type words or a code.")
        elif not self.results:
            status.update("No billable code matches.")
        else:
            status.update(f"{len(self.results)}{'+' if len(self.results) >= 50 else ''} billable codes; Enter picks the highlighted one.")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        listing = self.query_one("#dx-results", OptionList)
        if self.results and listing.highlighted is not None:
            self.dismiss(self.results[listing.highlighted])

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.results[event.option_index])

    def action_to_results(self) -> None:
        if self.results:
            self.query_one("#dx-results", OptionList).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)
