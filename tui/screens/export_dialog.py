"""The export dialog: one client's record to a PDF or JSON file, logged in the audit trail.

Open it with `ExportDialog(app.store.call, client_id, client_name=...)` via
`app.push_screen(dialog, callback)`; it dismisses with the `ExportResult` (store/export.py)
or None when cancelled. A failed export (file exists, folder missing, bad date) is shown in
the dialog and changes nothing; process notes are never part of an export.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Checkbox, Input, Label, RadioButton, RadioSet, Static

from store.errors import NotewellError
from tui.printable import printable
from tui.screens.base import NotewellModal

StoreCall = Callable[..., Awaitable[Any]]


def _run_export(vault, client_id: str, out: Path, options: dict):
    from tui.commands.export_commands import export_and_audit

    return export_and_audit(vault, client_id, out, **options)


def parse_optional_date(text: str, field: str) -> date | None:
    text = text.strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise NotewellError(f"{field}: expected a date as YYYY-MM-DD.", title="Invalid date") from None


class ExportDialog(NotewellModal[Any]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="export.cancel")]
    DEFAULT_CSS = """
    ExportDialog { align: center middle; }
    ExportDialog #export-box { width: 76; height: auto; border: thick $primary; background: $surface; padding: 1 2; }
    ExportDialog .export-title { text-style: bold; margin-bottom: 1; }
    ExportDialog .export-row { height: auto; }
    ExportDialog .export-row Input { width: 1fr; }
    ExportDialog #export-format { width: 100%; height: auto; layout: horizontal; }
    ExportDialog #export-error { color: $error; height: auto; }
    ExportDialog #export-buttons { height: auto; align-horizontal: right; margin-top: 1; }
    ExportDialog #export-buttons Button { margin-left: 1; }
    """

    def __init__(
        self,
        call: StoreCall,
        client_id: str,
        *,
        client_name: str = "",
        folder: Path | None = None,
        today: date | None = None,
    ) -> None:
        super().__init__()
        self._call = call
        self.client_id = client_id
        self._client_name = client_name
        self._folder = Path(folder) if folder else Path.home()
        self._today = today or date.today()
        self._busy = False

    def _default_path(self, fmt: str) -> str:
        return str(self._folder / f"record-{self.client_id}-{self._today.isoformat()}.{fmt}")

    def compose(self) -> ComposeResult:
        with Vertical(id="export-box"):
            yield Label(printable(f"Export the record of {self._client_name or self.client_id}"), classes="export-title",
                        markup=False)
            yield Static(
                "Demographics, diagnoses, treatment plan, progress notes with addenda and outcome "
                "scores. Process notes are never exported. The export is logged in the audit trail.",
                markup=False,
            )
            with RadioSet(id="export-format"):
                yield RadioButton("PDF (to print or send)", value=True, id="format-pdf")
                yield RadioButton("JSON (Notewell import format)", id="format-json")
            with Horizontal(classes="export-row"):
                yield Input(placeholder="From YYYY-MM-DD (optional)", id="export-from")
                yield Input(placeholder="To YYYY-MM-DD (optional)", id="export-to")
            yield Checkbox("Include drafts (marked as drafts)", id="export-drafts")
            yield Input(self._default_path("pdf"), id="export-path")
            yield Checkbox("Replace the file if it exists", id="export-force")
            yield Static("", id="export-error", markup=False)
            with Horizontal(id="export-buttons"):
                yield Button("Export", id="export-go", variant="primary")
                yield Button("Cancel", id="export-cancel")

    def on_mount(self) -> None:
        if getattr(self.app, "test_mode", False):
            for field in self.query(Input):
                field.cursor_blink = False
        self.query_one("#export-go", Button).focus()

    @property
    def fmt(self) -> str:
        return "json" if self.query_one("#format-json", RadioButton).value else "pdf"

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        # Keep the file name's extension in step with the format, if it still has one of ours.
        path_input = self.query_one("#export-path", Input)
        path = Path(path_input.value)
        if path.suffix.lower() in (".pdf", ".json"):
            path_input.value = str(path.with_suffix(f".{self.fmt}"))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "export-cancel":
            self.dismiss(None)
        elif event.button.id == "export-go":
            self.start_export()

    def action_cancel(self) -> None:
        if not self._busy:
            self.dismiss(None)

    def _error(self, message: str) -> None:
        self.query_one("#export-error", Static).update(message)

    def start_export(self) -> None:
        if self._busy:
            return
        try:
            date_from = parse_optional_date(self.query_one("#export-from", Input).value, "From")
            date_to = parse_optional_date(self.query_one("#export-to", Input).value, "To")
        except NotewellError as e:
            self._error(e.message)
            return
        raw_path = self.query_one("#export-path", Input).value.strip()
        if not raw_path:
            self._error("Give a file to write the export to.")
            return
        options = {
            "fmt": self.fmt,
            "date_from": date_from,
            "date_to": date_to,
            "include_drafts": self.query_one("#export-drafts", Checkbox).value,
            "force": self.query_one("#export-force", Checkbox).value,
        }
        self._busy = True
        self._error("Exporting...")
        self.run_worker(self._export(Path(raw_path).expanduser(), options), group="export", exclusive=True, exit_on_error=False)

    async def _export(self, out: Path, options: dict) -> None:
        try:
            result = await self._call(_run_export, self.client_id, out, options)
        except NotewellError as e:
            # Shown here, where it can be fixed (another name, --force), not in a modal.
            self._busy = False
            self._error(e.message)
            return
        except BaseException:
            self._busy = False
            self._error("")
            raise
        self._busy = False
        self.dismiss(result)
