"""The clinician's settings kept in the vault (who signs, the practice, the late-entry window),
and a line on this device's automatic backups (set in the settings file, tui/config.py)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Static

from store.errors import ValidationFailed
from store.models import ClinicianSettings
from tui.auto_backups import AutoBackups
from tui.screens.base import NotewellModal


class SettingsDialog(NotewellModal[None]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="dialog.cancel"),
        Binding("ctrl+s", "save", "Save settings", id="settings.save"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Label("Clinician settings", classes="dialog-title")
            yield Static("Signatures and addenda carry your name and credentials.", classes="hint")
            yield Label("Clinician name")
            yield Input(id="clinician-name", compact=True, disabled=True)
            yield Label("Credentials")
            yield Input(id="credentials", compact=True, disabled=True)
            yield Label("Practice name")
            yield Input(id="practice-name", compact=True, disabled=True)
            yield Label("A note signed more than this many hours after the session is a late entry")
            yield Input(id="late-entry-hours", compact=True, disabled=True, type="integer")
            # This device's automatic backups: set in the settings file, shown here with the last one.
            yield Label("Automatic backups (this device)")
            yield Static(self.app.auto_backups.status_line(), id="backup-status", classes="hint", markup=False)
            yield Static("", id="settings-error", classes="field-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save", id="save", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        if self.app.test_mode:
            for field in self.query(Input):
                field.cursor_blink = False
        self.run_store(self._load, group="settings")

    async def _load(self) -> None:
        settings: ClinicianSettings = await self.app.store.call(lambda v: v.settings())
        values = {
            "clinician-name": settings.clinician_name,
            "credentials": settings.credentials,
            "practice-name": settings.practice_name,
            "late-entry-hours": str(settings.late_entry_hours),
        }
        for id_, value in values.items():
            field = self.query_one("#" + id_, Input)
            field.value = value
            field.disabled = False
        self.query_one("#clinician-name", Input).focus()

    def on_auto_backups_changed(self, message: AutoBackups.Changed) -> None:
        self.query_one("#backup-status", Static).update(self.app.auto_backups.status_line())

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_save()

    def action_save(self) -> None:
        def value(id_: str) -> str:
            return self.query_one("#" + id_, Input).value.strip()

        hours = value("late-entry-hours")
        fields = {
            "clinician_name": value("clinician-name"),
            "credentials": value("credentials"),
            "practice_name": value("practice-name"),
            "late_entry_hours": int(hours) if hours.lstrip("-").isdigit() else hours,
        }
        self.run_store(self._save, fields, group="settings-save", exclusive=True)

    async def _save(self, fields: dict) -> None:
        try:
            await self.app.store.call(lambda v: v.update_settings(**fields))
        except ValidationFailed as e:
            self.query_one("#settings-error", Static).update(e.message)
            return
        self.notify("Settings saved.")
        self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
