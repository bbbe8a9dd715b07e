"""From unlock to a signed, compliant SOAP note with the clinical text pasted: at most 25 key
presses beyond typed values (issue 16), and no clinical fact filled for the clinician. Driven
through the real app with the benchmark's own sequence (bench/tui_bench.py), on a real vault."""

from __future__ import annotations

from textual.widgets import Input, Select

from bench.tui_bench import keys_to_signed_note, press_sequence
from tui.config import AppConfig
from tui_data import CLIENT_A, FAST_KDF, PASSPHRASE
from tui_helpers import unlock, wait_for
from tui.screens.new_note import NewNoteDialog
from tui.screens.note_editor import NoteEditorScreen
from tui.widgets.facts_form import FactsForm

MOST_PRESSES = 25


async def test_a_signed_soap_note_takes_at_most_25_presses(seeded_vault):
    presses, typed, _, pastes = await keys_to_signed_note(seeded_vault, PASSPHRASE, kdf=FAST_KDF, config=AppConfig())
    assert len(presses) <= MOST_PRESSES, press_sequence(presses)
    assert pastes == 5 and typed == 8  # the narrative, the interventions, and two times


async def test_the_copy_key_copies_only_when_asked_and_moves_on_to_the_interventions(seeded_vault, make_app):
    app = make_app(seeded_vault)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: app.screen.client_id == CLIENT_A)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NewNoteDialog))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NoteEditorScreen) and app.screen.loaded)
        form = app.screen.query_one(FactsForm)
        assert form.query_one("#f-modality", Select).value is Select.NULL  # nothing filled unasked
        assert form.query_one("#f-start", Input).has_focus
        await pilot.press("ctrl+y")
        await wait_for(pilot, lambda: form.query_one("#f-modality", Select).value == "in_person")
        assert form.query_one("#f-interventions", Input).has_focus
        assert form.query_one("#f-suicide", Select).value is Select.NULL  # risk is never copied
