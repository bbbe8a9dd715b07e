"""The export dialog: one client's record to a PDF or JSON file, logged in the audit trail
with the purpose chosen here, and encrypted with a password when asked.

Open it with `ExportDialog(app.store.call, client_id, client_name=...)` via
`app.push_screen(dialog, callback)`; it dismisses with the `ExportResult` (store/export.py)
or None when cancelled. A failed export (file exists, folder missing, bad date, passwords
that differ or are too weak) is shown in the dialog and changes nothing; process notes are
never part of an export. The password fields are cleared whatever the outcome.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Checkbox, Input, Label, RadioButton, RadioSet, Select, Static

from store.errors import NotewellError
from tui.commands.disclosure_options import BASES, disclosure_logger_for
from tui.printable import printable
from tui.screens.base import NotewellModal

StoreCall = Callable[..., Awaitable[Any]]

# The purposes offered (docs/export.md); "other" takes a label typed in the field beside it.
PURPOSES = ("client request", "continuity of care", "insurer", "payer audit", "legal request")
OTHER_PURPOSE = "other"


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
    ExportDialog #export-box { width: 76; height: auto; max-height: 100%; border: thick $primary; background: $surface; padding: 1 2; }
    ExportDialog .export-title { text-style: bold; margin-bottom: 1; }
    ExportDialog .export-row { height: auto; }
    ExportDialog .export-row Input { width: 1fr; }
    ExportDialog #export-format { width: 100%; height: auto; layout: horizontal; }
    ExportDialog #export-purpose { width: 1fr; }
    ExportDialog #export-basis { width: 30; }
    ExportDialog .-hidden { display: none; }
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

    @staticmethod
    def _suffix(fmt: str, encrypt: bool) -> str:
        # An encrypted JSON export is not JSON any more; its name says so.
        return ".json.enc" if fmt == "json" and encrypt else f".{fmt}"

    def compose(self) -> ComposeResult:
        # Scrolls in a short terminal: with the password fields it is taller than 30 lines.
        with VerticalScroll(id="export-box"):
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
            with Horizontal(classes="export-row"):
                yield Select(
                    [(p.capitalize(), p) for p in (*PURPOSES, OTHER_PURPOSE)],
                    prompt="Who is it for? (kept in the audit trail)",
                    id="export-purpose",
                )
                yield Input(placeholder="Other purpose", id="export-purpose-other", classes="-hidden")
            # A release to anyone but the client goes into the disclosure log (docs/client-rights.md).
            with Horizontal(classes="export-row"):
                yield Input(placeholder="Recipient, if not the client (logged as a disclosure)", id="export-recipient")
                yield Select([(b, b) for b in BASES if b != "client"], prompt="Basis of the release", id="export-basis")
            yield Checkbox("Encrypt with a password (send the password by another channel)", id="export-encrypt")
            with Horizontal(classes="export-row -hidden", id="export-passwords"):
                yield Input(placeholder="Password (12 characters or more)", password=True, id="export-password")
                yield Input(placeholder="Repeat the password", password=True, id="export-password-again")
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

    @property
    def encrypt(self) -> bool:
        return self.query_one("#export-encrypt", Checkbox).value

    def _follow_suffix(self) -> None:
        # Keep the file name's extension in step with the format, if it still has one of ours.
        path_input = self.query_one("#export-path", Input)
        value = path_input.value
        for ours in (".json.enc", ".pdf", ".json"):
            if value.lower().endswith(ours):
                path_input.value = value[: -len(ours)] + self._suffix(self.fmt, self.encrypt)
                return

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        self._follow_suffix()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        if event.checkbox.id == "export-encrypt":
            self.query_one("#export-passwords").set_class(not event.value, "-hidden")
            self._follow_suffix()

    def on_select_changed(self, event: Select.Changed) -> None:
        self.query_one("#export-purpose-other").set_class(event.value != OTHER_PURPOSE, "-hidden")

    def _purpose(self) -> str | None:
        value = self.query_one("#export-purpose", Select).value
        if value == OTHER_PURPOSE:
            return self.query_one("#export-purpose-other", Input).value.strip() or None
        return value if isinstance(value, str) else None

    def _password(self) -> str | None:
        """The password typed twice, or None when not encrypting; NotewellError if they differ."""
        if not self.encrypt:
            return None
        first = self.query_one("#export-password", Input).value
        if first != self.query_one("#export-password-again", Input).value:
            raise NotewellError("The two passwords differ; nothing was written.", title="Password")
        return first

    def _clear_passwords(self) -> None:
        for field in ("#export-password", "#export-password-again"):
            self.query_one(field, Input).value = ""

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "export-cancel":
            self.dismiss(None)
        elif event.button.id == "export-go":
            self.start_export()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        # Enter in the file box is the last step: export, as the Export button does.
        if event.input.id == "export-path":
            event.stop()
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
        purpose = self._purpose()
        if purpose is None:
            self._error("Choose who the export is for; the audit trail keeps it.")
            return
        recipient = self.query_one("#export-recipient", Input).value.strip()
        basis = self.query_one("#export-basis", Select).value
        if recipient and not isinstance(basis, str):
            self._error("Choose the basis of the release to the recipient; the disclosure log keeps it.")
            return
        try:
            password = self._password()
        except NotewellError as e:
            self._clear_passwords()
            self._error(e.message)
            return
        options = {
            "fmt": self.fmt,
            "date_from": date_from,
            "date_to": date_to,
            "include_drafts": self.query_one("#export-drafts", Checkbox).value,
            "force": self.query_one("#export-force", Checkbox).value,
            "purpose": purpose,
            "password": password,
            "within": disclosure_logger_for(recipient, basis) if recipient else None,
        }
        self._busy = True
        self._error("Exporting...")
        self.run_worker(self._export(Path(raw_path).expanduser(), options), group="export", exclusive=True, exit_on_error=False)

    async def _export(self, out: Path, options: dict) -> None:
        try:
            result = await self._call(_run_export, self.client_id, out, options)
        except NotewellError as e:
            if options["password"] is not None:
                self._clear_passwords()
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
