"""The unlock screen: one passphrase field; a wrong passphrase says so and lets you retry."""

from __future__ import annotations

import importlib
import threading

from textual.app import ComposeResult
from textual.containers import Center, Vertical
from textual.widgets import Button, Footer, Input, Label, Static

from tui.screens.base import NotewellScreen


# The modules an unlock imports on its way to the first timeline (the record, its documents
# and signatures; the main screen and its To do counts).
FIRST_SCREEN_MODULES = (
    "store.record", "store.replica", "store.private", "store.check_record",
    "tui.screens.main", "tui.screens.todo", "tui.key_order",
)


def load_code_for_the_first_screen() -> None:
    """Imports FIRST_SCREEN_MODULES (on a thread of its own; importing only defines code)."""
    for name in FIRST_SCREEN_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the unlock itself imports it again and reports a failure
            return


class UnlockScreen(NotewellScreen):
    AUTO_FOCUS = "#passphrase"

    def __init__(self, *, status: str = "") -> None:
        super().__init__()
        # Shown from the start: why the clinician is back here (a wrong passphrase).
        self._first_status = status

    def compose(self) -> ComposeResult:
        with Center(id="unlock-center"):
            with Vertical(id="unlock-box", classes="entry-box"):
                yield Label("Notewell", classes="brand")
                yield Static("The vault is locked. Enter your passphrase to open it.", classes="hint")
                if not self.app.test_mode:
                    yield Static(f"Vault: {self.app.vault_path}", classes="dim", markup=False)
                yield Input(placeholder="Passphrase", password=True, id="passphrase")
                yield Static(self._first_status, id="unlock-status", markup=False,
                             classes="field-error" if self._first_status else "")
                yield Button("Unlock", id="unlock", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        if self.app.test_mode:
            self.query_one(Input).cursor_blink = False
        # While the passphrase is typed, the code the open and the first screen run is
        # loaded, so Enter does not wait for it (about 0.3 s on a first unlock).
        threading.Thread(target=load_code_for_the_first_screen, name="notewell-warm-up", daemon=True).start()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self._submit()

    def _submit(self) -> None:
        field = self.query_one("#passphrase", Input)
        passphrase = field.value
        # The field never keeps the passphrase, whatever happens next.
        field.value = ""
        if not passphrase:
            self._status("Enter the passphrase.")
            return
        # The app derives the key and shows the main screen meanwhile (NotewellApp.unlock); a
        # wrong passphrase brings back a new unlock screen that says so.
        self.app.unlock(passphrase)
        del passphrase

    def _status(self, text: str, *, error: bool = False) -> None:
        status = self.query_one("#unlock-status", Static)
        status.update(text)
        status.set_class(error, "field-error")
