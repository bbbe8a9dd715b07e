"""The export dialog offers what the command line does: the purpose (kept in the audit
trail), and encryption with a password typed twice. Real app, real vault, real files."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input, RadioButton, Select, Static

from store.sealed_export import MAGIC, unseal
from store.vault import Vault
from tui.screens.export_dialog import ExportDialog
from tui.screens.main import MainScreen
from tui_data import PASSPHRASE
from tui_helpers import static_text, unlock, wait_for

PASSWORD = "copper willow tangent eleven"


async def _open_dialog(app, pilot) -> ExportDialog:
    await unlock(pilot, PASSPHRASE)
    await wait_for(pilot, lambda: isinstance(app.screen, MainScreen) and app.screen.client_id, what="a client")
    await pilot.press("x")
    await wait_for(pilot, lambda: isinstance(app.screen, ExportDialog), what="the export dialog")
    return app.screen


def _exports(vault_path: Path, client_id: str) -> list:
    v = Vault.open(vault_path, PASSPHRASE)
    try:
        return [e for e in v.audit.entries(client_id=client_id) if e.event == "export"]
    finally:
        v.close()


def _error(dialog: ExportDialog) -> str:
    return static_text(dialog.query_one("#export-error", Static))


async def test_dialog_exports_encrypted_json_with_its_purpose(seeded_vault, make_app, tmp_path):
    app = make_app(seeded_vault)
    out = tmp_path / "record.json.enc"
    async with app.run_test(size=(120, 48)) as pilot:
        dialog = await _open_dialog(app, pilot)
        client_id = dialog.client_id
        dialog.query_one("#format-json", RadioButton).value = True
        dialog.query_one("#export-encrypt").value = True
        await pilot.pause()
        assert dialog.query_one("#export-path", Input).value.endswith(".json.enc")
        assert not dialog.query_one("#export-passwords").has_class("-hidden")
        dialog.query_one("#export-path", Input).value = str(out)

        # No purpose chosen: refused, nothing written.
        dialog.start_export()
        await wait_for(pilot, lambda: "Choose who the export is for" in _error(dialog), what="purpose refusal")

        dialog.query_one("#export-purpose", Select).value = "insurer"
        dialog.query_one("#export-password", Input).value = PASSWORD
        dialog.query_one("#export-password-again", Input).value = PASSWORD + "typo"
        dialog.start_export()
        await wait_for(pilot, lambda: "The two passwords differ" in _error(dialog), what="mismatch refusal")
        assert dialog.query_one("#export-password", Input).value == ""

        for field in ("#export-password", "#export-password-again"):
            dialog.query_one(field, Input).value = "too short"
        dialog.start_export()
        await wait_for(pilot, lambda: "too weak" in _error(dialog), what="weak refusal")
        assert not out.exists()

        for field in ("#export-password", "#export-password-again"):
            dialog.query_one(field, Input).value = PASSWORD
        dialog.start_export()
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="the dialog to close")

    data = out.read_bytes()
    assert data.startswith(MAGIC) and (out.stat().st_mode & 0o777) == 0o600
    assert b'"kind": "notewell-import"' in unseal(data, PASSWORD)
    (entry,) = _exports(seeded_vault, client_id)
    assert entry.details["purpose"] == "insurer" and entry.details["encrypted"] is True
    assert entry.details["file"] == out.name


async def test_dialog_other_purpose_and_plain_pdf(seeded_vault, make_app, tmp_path):
    app = make_app(seeded_vault)
    out = tmp_path / "record.pdf"
    async with app.run_test(size=(120, 48)) as pilot:
        dialog = await _open_dialog(app, pilot)
        client_id = dialog.client_id
        dialog.query_one("#export-path", Input).value = str(out)
        dialog.query_one("#export-purpose", Select).value = "other"
        await pilot.pause()
        assert not dialog.query_one("#export-purpose-other").has_class("-hidden")
        dialog.query_one("#export-purpose-other", Input).value = "second opinion, Dr Vale"
        dialog.start_export()
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="the dialog to close")
    assert out.read_bytes().startswith(b"%PDF") and (out.stat().st_mode & 0o777) == 0o600
    (entry,) = _exports(seeded_vault, client_id)
    assert entry.details["purpose"] == "second opinion, Dr Vale" and entry.details["encrypted"] is False
