"""A first week with the app (issue 16): each finding a clinician ran into, driven through the
real app on a real encrypted vault with Pilot."""

from __future__ import annotations

from datetime import date

from store.vault import Vault
from textual.widgets import Input, Select, SelectionList, Static, TextArea

from tui_data import CLIENT_A, DRAFT_NOTE, GOAL_A, PASSPHRASE, SIGNED_NOTE, complete_facts, complete_sections
from tui_helpers import screen_text, static_text, unlock, wait_for
from tui.screens.client_edit import ClientEditScreen, GoalRow
from tui.screens.dialogs import AddendumDialog, ConfirmDialog
from tui.screens.main import MainScreen
from tui.screens.new_note import NewNoteDialog
from tui.screens.note_editor import NoteEditorScreen
from tui.widgets.facts_form import FactsForm


def _clients(path) -> list[str]:
    vault = Vault.open(path, PASSPHRASE)
    try:
        return [r.display_name for r in vault.record.list_clients()]
    finally:
        vault.close()


async def _type(pilot, text: str) -> None:
    await pilot.press(*[{" ": "space"}.get(ch, ch) for ch in text])


# 1. "+ Goal" focuses the goal, so a goal typed at once is saved as the goal.
async def test_add_goal_focuses_the_goal_not_its_objective(seeded_vault, make_app):
    app = make_app(seeded_vault)
    async with app.run_test(size=(100, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ClientEditScreen), what="client form")
        form = app.screen
        await _type(pilot, "Morgan Invented")
        await pilot.click("#add-goal")
        await wait_for(pilot, lambda: len(form.query(GoalRow)) == 1)
        await _type(pilot, "Sleep through")
        goal = form.query_one(GoalRow)
        assert goal.query_one(".goal-description", Input).value == "Sleep through"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="back to main: " + screen_text(app))
    vault = Vault.open(seeded_vault, PASSPHRASE)
    try:
        (row,) = [r for r in vault.record.list_clients() if r.display_name == "Morgan Invented"]
        assert [g.description for g in vault.record.get_client(row.client_id).goals] == ["Sleep through"]
    finally:
        vault.close()


# 2. Esc or Cancel on a filled form asks before discarding it.
async def test_leaving_a_filled_client_form_asks_first(seeded_vault, make_app):
    app = make_app(seeded_vault)
    async with app.run_test(size=(100, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ClientEditScreen), what="client form")
        form = app.screen
        await _type(pilot, "Morgan Invented")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="a question before discarding")
        assert "discard" in screen_text(app).lower()
        await pilot.press("escape")  # keep editing
        await wait_for(pilot, lambda: app.screen is form)
        assert form.query_one("#display-name", Input).value == "Morgan Invented"
        await pilot.click("#cancel")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the question again, from Cancel")
        await pilot.click("#yes")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
        # An untouched form closes at once: nothing to lose.
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ClientEditScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="an empty form closing at once")
    assert "Morgan Invented" not in _clients(seeded_vault)


def _notes(path, client_id: str) -> list:
    vault = Vault.open(path, PASSPHRASE)
    try:
        return [vault.record.get_note(r.note_id) for r in vault.record.notes_for_client(client_id)]
    finally:
        vault.close()


async def _new_note(pilot, app) -> NoteEditorScreen:
    await pilot.press("n")
    await wait_for(pilot, lambda: isinstance(app.screen, NewNoteDialog), what="new note dialog")
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, NoteEditorScreen) and app.screen.loaded, what="editor")
    return app.screen


# 3. A new note abandoned before anything was typed leaves nothing in the record.
async def test_an_abandoned_new_note_leaves_nothing(seeded_vault, make_app):
    before = {n.id for n in _notes(seeded_vault, CLIENT_A)}
    app = make_app(seeded_vault)
    async with app.run_test(size=(100, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: app.screen.client_id == CLIENT_A)
        main = app.screen
        timeline = main.query_one("#timeline")
        await wait_for(pilot, lambda: timeline.option_count > 0)
        shown = timeline.option_count
        await _new_note(pilot, app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is main, what="back to main")
        await pilot.pause()
        assert timeline.option_count == shown
        assert {n.id for n in _notes(seeded_vault, CLIENT_A)} == before

        # Typed into, the note is kept (and abandoned later, it is marked entered in error).
        editor = await _new_note(pilot, app)
        editor.query_one("#section-subjective", TextArea).focus()
        await _type(pilot, "Tangerine canary")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is main, what="back to main")
    (new,) = [n for n in _notes(seeded_vault, CLIENT_A) if n.id not in before]
    assert new.sections["subjective"] == "Tangerine canary"


# 4. No clinical fact is filled without the clinician's action; one explicit action copies the
# stable facts of the last note (modality, diagnoses addressed, goals), shown as copied.
async def test_a_new_note_fills_no_fact_until_the_clinician_copies_them(seeded_vault, make_app):
    app = make_app(seeded_vault)
    async with app.run_test(size=(100, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: app.screen.client_id == CLIENT_A)
        editor = await _new_note(pilot, app)
        form = editor.query_one(FactsForm)
        assert form.query_one("#f-modality", Select).value is Select.NULL
        assert list(form.query_one("#f-dx", SelectionList).selected) == []
        assert form.query_one(f"#goal-{GOAL_A}", Select).value is Select.NULL
        assert "copied" not in screen_text(app).lower()

        await pilot.click("#copy-last-facts")
        await wait_for(pilot, lambda: form.query_one("#f-modality", Select).value == "in_person", what="modality copied")
        assert list(form.query_one("#f-dx", SelectionList).selected) == ["F41.1"]
        assert form.query_one(f"#goal-{GOAL_A}", Select).value == "some_progress"
        assert "Copied from the note of 2026-10-26" in static_text(form.query_one("#copied-facts", Static))
        # Copied is typed: it is saved (and creates the note) like anything else the clinician enters.
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
    new = [n for n in _notes(seeded_vault, CLIENT_A) if n.id == editor.note_id]
    assert new and new[0].facts.modality.value == "in_person" and new[0].facts.diagnoses_addressed == ["F41.1"]
    assert new[0].sections.get("subjective", "") == ""  # never the narrative


def _complete_the_draft(path, on) -> None:
    vault = Vault.open(path, PASSPHRASE)
    try:
        vault.record.save_draft(DRAFT_NOTE, base=None, sections=complete_sections(), facts=complete_facts(on))
    finally:
        vault.close()


async def _open(pilot, app, note_id: str) -> NoteEditorScreen:
    await unlock(pilot, PASSPHRASE)
    await wait_for(pilot, lambda: app.screen.client_id == CLIENT_A)
    app.screen.open_note("progress", note_id)
    await wait_for(pilot, lambda: isinstance(app.screen, NoteEditorScreen) and app.screen.loaded, what="editor")
    return app.screen


# 6. The sign dialog says when the note will be marked LATE ENTRY ...
async def test_the_sign_dialog_says_late_entry(seeded_vault, make_app):
    _complete_the_draft(seeded_vault, date(2026, 11, 2))  # long past: signing now is late
    app = make_app(seeded_vault)
    async with app.run_test(size=(100, 40)) as pilot:
        editor = await _open(pilot, app, DRAFT_NOTE)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="sign dialog")
        assert "LATE ENTRY" in static_text(app.screen.query_one("#confirm-message", Static))
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is editor)
    assert _notes_by_id(seeded_vault)[DRAFT_NOTE].signature is None


async def test_the_sign_dialog_of_a_timely_note_says_nothing_of_late_entry(seeded_vault, make_app):
    _complete_the_draft(seeded_vault, date.today())
    app = make_app(seeded_vault)
    async with app.run_test(size=(100, 40)) as pilot:
        await _open(pilot, app, DRAFT_NOTE)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="sign dialog")
        assert "LATE ENTRY" not in static_text(app.screen.query_one("#confirm-message", Static))


# ... and an addendum is signed only once confirmed, like a note.
async def test_an_addendum_is_signed_only_once_confirmed(seeded_vault, make_app):
    app = make_app(seeded_vault)
    async with app.run_test(size=(100, 40)) as pilot:
        editor = await _open(pilot, app, SIGNED_NOTE)
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, AddendumDialog), what="addendum dialog")
        dialog = app.screen
        await _type(pilot, "late information")
        dialog.query_one("#addendum-text", TextArea).focus()
        await _type(pilot, "Tangerine addendum canary")
        # Leaving with text typed asks first (finding 2: any unsaved form).
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="discard question")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is dialog)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="sign question")
        assert "Dana Testwell, LCSW" in static_text(app.screen.query_one("#confirm-message", Static))
        assert _notes_by_id(seeded_vault)[SIGNED_NOTE].addenda == []
        assert not _signed_addenda(seeded_vault)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is editor and editor.loaded and "Tangerine addendum canary" in screen_text(app),
                       what="the addendum shown")
    assert _signed_addenda(seeded_vault)


def _notes_by_id(path) -> dict:
    return {n.id: n for n in _notes(path, CLIENT_A)}


def _signed_addenda(path) -> list:
    vault = Vault.open(path, PASSPHRASE)
    try:
        return list(vault.record.signature_state(SIGNED_NOTE).addenda)
    finally:
        vault.close()


def test_snapshot_sign_dialog_late_entry(snap_compare, seeded_vault, make_app):
    _complete_the_draft(seeded_vault, date(2026, 11, 2))
    app = make_app(seeded_vault)

    async def ready(pilot):
        await _open(pilot, app, DRAFT_NOTE)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="sign dialog")

    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)
