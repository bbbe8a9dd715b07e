"""Choosing a new note's format and date of service: a session note (SOAP .. PIRP), or an
intake assessment, treatment-plan review or discharge summary."""

from __future__ import annotations

from datetime import date

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from store.models import FORMAT_SECTIONS, PROGRESS_FORMATS, NoteFormat, note_title, section_title


def format_label(fmt: NoteFormat) -> str:
    if fmt in PROGRESS_FORMATS:
        return f"{fmt.value:<5} {', '.join(section_title(k) for k in FORMAT_SECTIONS[fmt])}"
    return note_title(fmt)
from tui.screens.base import NotewellModal


class NewNoteDialog(NotewellModal["tuple[str, date] | None"]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Label("New note", classes="dialog-title")
            yield Static("Choose the format and press Enter.", classes="hint")
            yield OptionList(
                *[
                    Option(format_label(fmt), id=fmt.value)
                    for fmt in NoteFormat
                ],
                id="format",
            )
            yield Label("Date of service (YYYY-MM-DD)")
            yield Input(value=date.today().isoformat(), id="date")
            yield Static("", id="new-note-error", classes="field-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Create", id="create", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        if self.app.test_mode:
            self.query_one(Input).cursor_blink = False
        formats = self.query_one("#format", OptionList)
        formats.highlighted = 0
        formats.focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "create":
            self._create()
        else:
            self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._create()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self._create()

    def _create(self) -> None:
        option = self.query_one("#format", OptionList).highlighted_option
        fmt = option.id if option is not None and option.id else NoteFormat.SOAP.value
        try:
            on = date.fromisoformat(self.query_one("#date", Input).value.strip())
        except ValueError:
            self.query_one("#new-note-error", Static).update("The date must look like 2026-11-20.")
            return
        self.dismiss((fmt, on))

    def action_cancel(self) -> None:
        self.dismiss(None)
