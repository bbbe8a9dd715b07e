"""Small modal dialogs: an error, a yes/no question, the recovery key, an addendum."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Checkbox, Input, Label, Static, TextArea

from tui.screens.base import NotewellModal


class ErrorModal(NotewellModal[None]):
    """A store failure: its title and one sentence. Never a traceback."""

    BINDINGS = [Binding("escape,enter", "dismiss_dialog", "Close", id="dialog.close")]

    def __init__(self, title: str, message: str) -> None:
        super().__init__(classes="dialog error-dialog")
        self._title = title
        self._message = message

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Label(self._title, classes="dialog-title", id="error-title")
            yield Static(self._message, id="error-message", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close", id="close", variant="primary")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_dismiss_dialog(self) -> None:
        self.dismiss(None)


class ConfirmDialog(NotewellModal[bool]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel")]

    def __init__(self, title: str, message: str, *, yes: str = "Yes", no: str = "Cancel") -> None:
        super().__init__(classes="dialog")
        self._title, self._message, self._yes, self._no = title, message, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Label(self._title, classes="dialog-title")
            yield Static(self._message, markup=False, id="confirm-message")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self._yes, id="yes", variant="primary")
                yield Button(self._no, id="no")

    def on_mount(self) -> None:
        self.query_one("#yes", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_cancel(self) -> None:
        self.dismiss(False)


def confirm_discard(screen, changed: bool, discard) -> None:
    """Leaving a form: at once when nothing was typed into it, else only once the clinician
    says so; "Keep editing" (or Esc) returns to the form as it was."""
    if not changed:
        discard()
        return

    def answered(yes: bool | None) -> None:
        if yes:
            discard()

    screen.app.push_screen(
        ConfirmDialog("Discard what you typed?", "What you typed in this form has not been saved.",
                      yes="Discard", no="Keep editing"),
        answered,
    )


def key_lines(key: str, width: int = 56) -> str:
    """The recovery key in lines that break between its groups (each line ends with its
    dash), never inside one: a group split across lines is easily copied wrong."""
    lines: list[str] = []
    for group in key.split("-"):
        if lines and len(lines[-1]) + len(group) + 1 <= width:
            lines[-1] += "-" + group
        else:
            if lines:
                lines[-1] += "-"
            lines.append(group)
    return "\n".join(lines)


class RecoveryKeyDialog(NotewellModal[bool]):
    """Shows the recovery key once; continuing needs the clinician to say it was saved."""

    HOLDS_IDLE_LOCK = True

    def __init__(self, recovery_key: str) -> None:
        super().__init__(classes="dialog")
        self._key = recovery_key

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Label("Your recovery key", classes="dialog-title")
            yield Static(
                "This key opens the vault if the passphrase is forgotten. It is shown only now: "
                "write it down or print it and keep it somewhere safe, away from this computer.",
                classes="hint",
            )
            yield Static(key_lines(self._key), id="recovery-key", markup=False)
            yield Checkbox("I have saved the recovery key", id="saved")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Continue", id="continue", variant="primary", disabled=True)

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        self.query_one("#continue", Button).disabled = not event.value

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "continue" and self.query_one("#saved", Checkbox).value:
            self.dismiss(True)


class AddendumDialog(NotewellModal["tuple[str, str] | None"]):
    """Text and reason of an addendum to a signed note."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="dialog.cancel"),
        Binding("ctrl+s", "save", "Sign addendum", id="addendum.sign"),
    ]

    def __init__(self, *, signer: str) -> None:
        super().__init__()
        self._signer = signer  # "name, credentials", said before signing

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box wide"):
            yield Label("Add an addendum", classes="dialog-title")
            yield Static("The original stays as signed; the addendum is signed and dated.", classes="hint")
            yield Label("Reason")
            yield Input(placeholder="e.g. late information, correction", id="reason")
            yield Label("Addendum")
            yield TextArea(id="addendum-text", soft_wrap=True)
            yield Static("", id="addendum-error", classes="field-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Sign addendum", id="save", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        if getattr(self.app, "test_mode", False):
            self.query_one(TextArea).cursor_blink = False
            self.query_one(Input).cursor_blink = False
        self.query_one("#reason", Input).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.action_cancel()

    def action_save(self) -> None:
        reason = self.query_one("#reason", Input).value.strip()
        text = self.query_one("#addendum-text", TextArea).text
        if not reason or not text.strip():
            self.query_one("#addendum-error", Static).update("Both a reason and the addendum text are needed.")
            return

        # Signed only once confirmed, as a note is; "Cancel" returns to the text as typed.
        def answered(yes: bool | None) -> None:
            if yes:
                self.dismiss((text, reason))

        self.app.push_screen(
            ConfirmDialog(
                "Sign this addendum?",
                f"Signing as {self._signer}. A signed addendum stays with the note for good; "
                "it cannot be edited afterwards.",
                yes="Sign",
            ),
            answered,
        )

    def action_cancel(self) -> None:
        typed = bool(self.query_one("#reason", Input).value.strip() or self.query_one("#addendum-text", TextArea).text.strip())
        confirm_discard(self, typed, lambda: self.dismiss(None))


class ReasonDialog(NotewellModal["str | None"]):
    """Asks for a short reason (e.g. why a note was entered in error)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel")]

    def __init__(self, title: str, message: str, *, yes: str = "OK") -> None:
        super().__init__(classes="dialog")
        self._title, self._message, self._yes = title, message, yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Label(self._title, classes="dialog-title")
            yield Static(self._message, classes="hint", markup=False)
            yield Input(placeholder="reason", id="reason")
            yield Static("", id="reason-error", classes="field-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self._yes, id="yes", variant="warning")
                yield Button("Cancel", id="no")

    def on_mount(self) -> None:
        if getattr(self.app, "test_mode", False):
            self.query_one(Input).cursor_blink = False
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._done()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "yes":
            self._done()
        else:
            self.dismiss(None)

    def _done(self) -> None:
        reason = self.query_one(Input).value.strip()
        if not reason:
            self.query_one("#reason-error", Static).update("A reason is needed.")
            return
        self.dismiss(reason)

    def action_cancel(self) -> None:
        self.dismiss(None)
