"""The client's rights in the app (Pilot, real vault): a disclosure logged and listed in the
accounting, an access request recorded, shown in the To do list, extended and fulfilled by
an export, an amendment request denied with the client's statement and a rebuttal, and an
amendment accepted as signed addenda. No process-note text on any screen or in the copy."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Input

from store.vault import Vault
from tests.rights_data import CANARY, CLIENT_ID, make_vault
from tui.screens.client_rights import ClientRightsScreen, RightsForm
from tui.screens.dialogs import ErrorModal
from tui.screens.main import MainScreen
from tui.screens.todo import TodoScreen
from tui_data import CLINICIAN, FAST_KDF, PASSPHRASE
from tui_helpers import screen_text, static_text, unlock, wait_for


@pytest.fixture
def rights_vault(tmp_path: Path) -> Path:
    return make_vault(tmp_path / "vault", PASSPHRASE, FAST_KDF, CLINICIAN)


async def _open_rights(app, pilot) -> ClientRightsScreen:
    await unlock(pilot, PASSPHRASE)
    await wait_for(pilot, lambda: isinstance(app.screen, MainScreen) and app.screen.client_id == CLIENT_ID,
                   what="the client")
    await pilot.press("g")
    await wait_for(pilot, lambda: isinstance(app.screen, ClientRightsScreen) and app.screen.view is not None,
                   what="the rights screen")
    return app.screen


async def _fill(app, pilot, key: str, values: dict[str, str], *, closes: bool = True) -> None:
    screen = app.screen
    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(app.screen, RightsForm), what=f"the form of {key}")
    form = app.screen
    for field, value in values.items():
        form.query_one(f"#field-{field}", Input).value = value
    await pilot.click("#yes")
    if closes:
        await wait_for(pilot, lambda: app.screen is screen, what="the form to close")


def _rows(screen, table: str) -> list[str]:
    t = screen.query_one(table, DataTable)
    return [" | ".join(str(c) for c in t.get_row_at(i)) for i in range(t.row_count)]


async def test_each_right_end_to_end_in_the_app(rights_vault, make_app, tmp_path):
    app = make_app(rights_vault)
    copy = tmp_path / "copy.pdf"
    async with app.run_test(size=(120, 48)) as pilot:
        screen = await _open_rights(app, pilot)

        await _fill(app, pilot, "l", {"recipient": "County Court", "purpose": "subpoena", "what": "2026 notes",
                                      "basis": "court-order"})
        await wait_for(pilot, lambda: any("County Court" in r for r in _rows(screen, "#rights-disclosures")),
                       what="the disclosure listed")
        await _fill(app, pilot, "l", {"recipient": "Acme Health Plan", "purpose": "claim", "what": "notes",
                                      "basis": "payment"})
        await wait_for(pilot, lambda: "1 exempt left out" in static_text(screen.query_one("#rights-accounting")),
                       what="the exempt one left out")
        assert not any("Acme" in r for r in _rows(screen, "#rights-disclosures"))

        await _fill(app, pilot, "a", {"form": "PDF by encrypted e-mail"})
        await wait_for(pilot, lambda: any("due in 30 d" in r for r in _rows(screen, "#rights-requests")),
                       what="the access request")
        # A refusal is shown, and changes nothing.
        await _fill(app, pilot, "a", {"received": "someday", "form": "paper"}, closes=False)
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal), what="the refusal")
        assert "expected a date" in screen_text(app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, what="the rights screen again")
        assert len(screen.view.requests) == 1

        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="the main screen")
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, TodoScreen) and app.screen.rights_items, what="to do")
        assert "1 client request open" in screen_text(app)
        await pilot.press("escape")
        screen = await _open_rights_again(app, pilot)

        await _fill(app, pilot, "e", {"reason": "records are in storage"})
        await wait_for(pilot, lambda: any("extended" in r for r in _rows(screen, "#rights-requests")),
                       what="the extension")
        await _fill(app, pilot, "f", {"out": str(copy), "how": "encrypted e-mail"})
        await wait_for(pilot, lambda: any("fulfilled" in r for r in _rows(screen, "#rights-requests")),
                       what="the fulfilment")
        assert copy.exists() and CANARY.encode() not in copy.read_bytes()

        await _fill(app, pilot, "m", {"notes": "n-r1", "change": "remove the worry episodes"})
        await wait_for(pilot, lambda: len(screen.view.requests) == 2, what="the amendment request")
        screen.query_one("#rights-requests", DataTable).move_cursor(row=1)
        await _fill(app, pilot, "n", {"reason": "DENIAL the note is accurate"})
        await wait_for(pilot, lambda: any("denied" in r for r in _rows(screen, "#rights-requests")), what="denial")
        screen.query_one("#rights-requests", DataTable).move_cursor(row=1)
        await _fill(app, pilot, "s", {"text": "STATEMENT I disagree"})
        await wait_for(pilot, lambda: any("statement" in r for r in _rows(screen, "#rights-requests")),
                       what="statement")
        screen.query_one("#rights-requests", DataTable).move_cursor(row=1)
        await _fill(app, pilot, "b", {"text": "REBUTTAL the episodes were observed"})
        await wait_for(pilot, lambda: any("rebuttal" in r for r in _rows(screen, "#rights-requests")),
                       what="rebuttal")

        await _fill(app, pilot, "m", {"notes": "n-r2", "change": "the move was in May"})
        await wait_for(pilot, lambda: len(screen.view.requests) == 3, what="a second amendment request")
        screen.query_one("#rights-requests", DataTable).move_cursor(row=2)
        await _fill(app, pilot, "y", {"text": "AMENDED the move was in May"})
        await wait_for(pilot, lambda: any("accepted" in r for r in _rows(screen, "#rights-requests")),
                       what="acceptance")
        assert CANARY not in screen_text(app)

    v = Vault.open(rights_vault, PASSPHRASE)
    try:
        rights = v.record.rights
        assert rights.open_requests(rights.today()) == []
        assert v.record.get_note("n-r2").addenda[-1].text == "AMENDED the move was in May"
        denied = next(r for r in rights.all() if "denied" in r.events)
        assert set(denied.events) == {"opened", "denied", "statement", "rebuttal"}
        assert all(rights.verified(denied).values())
    finally:
        v.close()


async def _open_rights_again(app, pilot) -> ClientRightsScreen:
    await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="the main screen")
    await pilot.press("g")
    await wait_for(pilot, lambda: isinstance(app.screen, ClientRightsScreen) and app.screen.view is not None,
                   what="the rights screen")
    return app.screen


async def test_an_export_from_the_app_to_someone_else_is_logged_as_a_disclosure(rights_vault, make_app, tmp_path):
    from textual.widgets import Select, Static

    from tui.screens.export_dialog import ExportDialog

    app = make_app(rights_vault)
    out = tmp_path / "court.pdf"
    async with app.run_test(size=(120, 48)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen) and app.screen.client_id == CLIENT_ID,
                       what="the client")
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportDialog), what="the export dialog")
        dialog = app.screen
        dialog.query_one("#export-path", Input).value = str(out)
        dialog.query_one("#export-purpose", Select).value = "legal request"
        dialog.query_one("#export-recipient", Input).value = "County Court"
        dialog.start_export()
        await wait_for(pilot, lambda: "basis" in static_text(dialog.query_one("#export-error", Static)),
                       what="the basis asked for")
        assert not out.exists()
        dialog.query_one("#export-basis", Select).value = "court-order"
        await pilot.pause()
        dialog.start_export()
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="the export done")
        assert out.exists()
    v = Vault.open(rights_vault, PASSPHRASE)
    try:
        rights = v.record.rights
        (listed,) = rights.accounting(CLIENT_ID, rights.today()).listed
        opened = listed.data("opened")
        assert (opened.recipient, opened.basis.value, opened.purpose, opened.via) == (
            "County Court", "court-order", "legal request", "export")
        assert opened.sha256 and "2 progress notes" in opened.what
    finally:
        v.close()
