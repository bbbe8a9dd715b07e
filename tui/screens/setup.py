"""First run: who signs the notes, this device's name, the passphrase, the recovery key."""

from __future__ import annotations

import socket

from textual.app import ComposeResult
from textual.containers import Center, VerticalScroll
from textual.widgets import Button, Footer, Input, Label, Static

from store.models import ClinicianSettings
from tui.screens.base import NotewellScreen


def strength_hint(passphrase: str) -> tuple[str, bool]:
    """A rough hint (and whether it is good enough to suggest) for a new passphrase."""
    if not passphrase:
        return "Use four or more unrelated words, or 12+ characters.", False
    classes = sum(
        any(test(c) for c in passphrase)
        for test in (str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum())
    )
    words = len([w for w in passphrase.replace("-", " ").split() if w])
    score = len(passphrase) + 4 * classes + 6 * max(0, words - 1)
    if len(passphrase) < 8 or score < 20:
        return "Weak: too short or too simple. Try four unrelated words.", False
    if score < 32:
        return "Fair: longer would be better.", True
    return "Strong.", True


class SetupScreen(NotewellScreen):
    AUTO_FOCUS = "#clinician-name"

    def compose(self) -> ComposeResult:
        device = "" if self.app.test_mode else socket.gethostname()
        with Center(id="setup-center"):
            with VerticalScroll(id="setup-box", classes="entry-box"):
                yield Label("Welcome to Notewell", classes="brand")
                yield Static(
                    "A new encrypted vault on this computer. Your name and credentials go on "
                    "every note you sign.",
                    classes="hint",
                )
                yield Label("Clinician name")
                yield Input(placeholder="e.g. Dana Reyes", id="clinician-name")
                yield Label("Credentials")
                yield Input(placeholder="e.g. LCSW, PhD, LPC", id="credentials")
                yield Label("Name of this device")
                yield Input(value=device, placeholder="e.g. office laptop", id="device-name")
                yield Label("Passphrase")
                yield Input(password=True, id="passphrase")
                yield Static(strength_hint("")[0], id="strength")
                yield Label("Passphrase again")
                yield Input(password=True, id="passphrase2")
                yield Static("", id="setup-status")
                yield Button("Create vault", id="create", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        if self.app.test_mode:
            for field in self.query(Input):
                field.cursor_blink = False

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "passphrase":
            hint, ok = strength_hint(event.value)
            strength = self.query_one("#strength", Static)
            strength.update(hint)
            strength.set_class(not ok and bool(event.value), "field-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        order = ["clinician-name", "credentials", "device-name", "passphrase", "passphrase2"]
        if event.input.id == "passphrase2":
            self._submit()
        elif event.input.id in order:
            self.query_one("#" + order[order.index(event.input.id) + 1], Input).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "create":
            self._submit()

    def _value(self, id_: str) -> str:
        return self.query_one("#" + id_, Input).value

    def _submit(self) -> None:
        name, creds, device = (self._value(i).strip() for i in ("clinician-name", "credentials", "device-name"))
        first, second = self._value("passphrase"), self._value("passphrase2")
        problem = None
        if not name or not creds:
            problem = "Enter your name and credentials: they go on every signed note."
        elif not device:
            problem = "Give this device a name (it identifies it when you sync)."
        elif not first:
            problem = "Choose a passphrase."
        elif first != second:
            problem = "The two passphrases differ."
        if problem:
            self._status(problem)
            return
        for id_ in ("passphrase", "passphrase2"):
            self.query_one("#" + id_, Input).value = ""
        self._status("Creating the vault...")
        self.query_one("#create", Button).disabled = True
        settings = ClinicianSettings(clinician_name=name, credentials=creds)
        self.run_store(self._create, first, device, settings, group="setup", exclusive=True)

    async def _create(self, passphrase: str, device: str, settings: ClinicianSettings) -> None:
        from tui.screens.dialogs import RecoveryKeyDialog

        kwargs: dict = {"device_name": device, "settings": settings}
        if self.app.kdf is not None:
            kwargs["kdf"] = self.app.kdf
        try:
            recovery_key = await self.app.store.create(self.app.vault_path, passphrase, **kwargs)
        except Exception:
            self._status("")
            self.query_one("#create", Button).disabled = False
            raise
        finally:
            del passphrase
        await self.app.push_screen_wait(RecoveryKeyDialog(recovery_key))
        del recovery_key
        self.app.vault_ready()

    def _status(self, text: str) -> None:
        self.query_one("#setup-status", Static).update(text)
