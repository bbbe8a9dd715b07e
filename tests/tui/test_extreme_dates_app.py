"""An older vault that already holds a note dated 9999-12-31 (accepted before dates had to be
plausible) still unlocks in the app, lists the note and shows the overdue queue."""

from __future__ import annotations

from store import documents as D
from store.models import ProgressNote
from store.projections import project
from store.vault import Vault

from tui_data import CLIENT_A, PASSPHRASE
from textual.widgets import Static
from tui_helpers import screen_text, static_text, unlock, wait_for
from tui.screens.dialogs import ErrorModal
from tui.screens.main import MainScreen
from tui.screens.todo import TodoScreen


def store_extreme_draft(path, note_id: str, on: str) -> None:
    """Writes the draft the way an older version did: straight into the store, no entrance check."""
    vault = Vault.open(path, PASSPHRASE)
    try:
        note = ProgressNote.model_validate(
            {"id": note_id, "client_id": CLIENT_A, "format": "SOAP", "facts": {"date_of_service": on}},
            context={"stored": True},
        )
        doc = D.new_note_doc(note, D.actor_for(vault.device_id))
        record = vault.record
        with record.transaction():
            record._docs.insert(note_id, D.KIND_NOTE, doc)
            project(record._conn, note_id, doc)
    finally:
        vault.close()


async def test_unlock_with_extreme_dates_already_stored(seeded_vault, make_app):
    store_extreme_draft(seeded_vault, "note-far-future", "9999-12-31")
    store_extreme_draft(seeded_vault, "note-far-past", "0001-01-01")
    app = make_app(seeded_vault)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        main = next(s for s in app.screen_stack if isinstance(s, MainScreen))
        summary = main.query_one("#todo-summary", Static)
        await wait_for(pilot, lambda: "To do (t):" in static_text(summary) or isinstance(app.screen, ErrorModal),
                       what="the overdue counts")
        assert not isinstance(app.screen, ErrorModal), screen_text(app)
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, (TodoScreen, ErrorModal)), what="the overdue queue")
        todo = app.screen
        await wait_for(pilot, lambda: any(i.note_id == "note-far-past" for i in getattr(todo, "items", ()))
                       or isinstance(app.screen, ErrorModal),
                       what="the overdue queue's items")
        assert not any(isinstance(s, ErrorModal) for s in app.screen_stack), screen_text(app)
        assert app.store.is_open
