"""Snippets in the app (issue 16, faster documentation): written in their dialog, kept in the
vault's record, and expanded in place when their trigger and a space are typed in a section.
Real app, real encrypted vault, Pilot."""

from __future__ import annotations

import pytest
from textual.widgets import Input, TextArea

from store.vault import Vault
from tui_data import CLIENT_A, DRAFT_NOTE, PASSPHRASE
from tui_helpers import screen_text, unlock, wait_for
from tui.screens.dialogs import ConfirmDialog
from tui.screens.main import MainScreen
from tui.screens.note_editor import NoteEditorScreen
from tui.screens.snippets import SnippetsDialog

MSE = "Client was alert and oriented, affect congruent with mood."


async def _type(pilot, text: str) -> None:
    await pilot.press(*[{" ": "space", ";": "semicolon", ",": "comma", ".": "full_stop"}.get(ch, ch) for ch in text])


def _stored(path) -> tuple[dict[str, str], dict[str, str]]:
    vault = Vault.open(path, PASSPHRASE)
    try:
        return vault.record.snippets(), vault.record.get_note(DRAFT_NOTE).sections
    finally:
        vault.close()


def _seed_snippet(path, trigger: str, text: str) -> None:
    vault = Vault.open(path, PASSPHRASE)
    try:
        vault.record.save_snippet(trigger, text)
    finally:
        vault.close()


async def _editing(pilot, section: str) -> tuple[NoteEditorScreen, TextArea]:
    """Unlocked, the draft open, and the cursor in `section`."""
    app = pilot.app
    await unlock(pilot, PASSPHRASE)
    await wait_for(pilot, lambda: isinstance(app.screen, MainScreen) and app.screen.client_id == CLIENT_A)
    app.screen.open_note("progress", DRAFT_NOTE)
    await wait_for(pilot, lambda: isinstance(app.screen, NoteEditorScreen) and app.screen.loaded, what="the editor")
    area = app.screen.query_one(f"#section-{section}", TextArea)
    area.focus()
    return app.screen, area


async def test_a_snippet_written_in_its_dialog_is_kept_in_the_vault(seeded_vault, make_app):
    app = make_app(seeded_vault)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, SnippetsDialog) and app.screen.query_one("#snippet-trigger").has_focus,
                       what="the snippets dialog")
        dialog = app.screen
        await _type(pilot, "mse")
        await pilot.press("enter")  # to the phrase
        await wait_for(pilot, lambda: dialog.query_one("#snippet-text", TextArea).has_focus)
        await _type(pilot, MSE)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: dialog.snippets == {"mse": MSE}, what="saved: " + screen_text(app))
        assert ";mse" in str(dialog.query_one("#snippet-list").get_option("mse").prompt)
        # A bad trigger is refused with one sentence, and nothing is stored.
        await pilot.click("#snippet-list")
        dialog.query_one("#snippet-list").highlighted = 0
        await pilot.press("enter")
        await wait_for(pilot, lambda: dialog.editing is None and dialog.query_one("#snippet-trigger", Input).value == "")
        await _type(pilot, "no good")
        dialog.query_one("#snippet-text", TextArea).text = "x"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "trigger: must be" in str(dialog.query_one("#snippet-error").render()))
        # Leaving with that typed asks first.
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.click("#yes")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
    assert _stored(seeded_vault)[0] == {"mse": MSE}


async def test_a_trigger_and_a_space_expand_in_place_in_a_section(seeded_vault, make_app):
    _seed_snippet(seeded_vault, "mse", MSE)
    app = make_app(seeded_vault)
    async with app.run_test(size=(120, 40)) as pilot:
        editor, area = await _editing(pilot, "objective")
        await _type(pilot, "Seen today. ;mse Calm.")
        await wait_for(pilot, lambda: area.text.endswith("Calm."))
        assert area.text == f"Seen today. {MSE} Calm."
        # An unknown trigger and a trigger inside a word stay as typed; so does a trigger the
        # cursor is moved back to, until a space is typed there.
        await _type(pilot, " ;nope a;mse ;mse")
        await pilot.press("x", "backspace", "left", "right")
        assert area.text == f"Seen today. {MSE} Calm. ;nope a;mse ;mse"
        await pilot.press("space")
        await wait_for(pilot, lambda: area.text.endswith(" "))
        assert area.text == f"Seen today. {MSE} Calm. ;nope a;mse {MSE} "
        assert await editor.flush()
        shown = area.text
    assert _stored(seeded_vault)[1]["objective"] == shown


async def test_an_expanded_snippet_is_saved_with_the_note(seeded_vault, make_app):
    _seed_snippet(seeded_vault, "plan", "Meet next week; client will keep a worry log.")
    app = make_app(seeded_vault)
    async with app.run_test(size=(120, 40)) as pilot:
        editor, area = await _editing(pilot, "plan")
        await _type(pilot, ";plan")
        await pilot.press("enter")
        await wait_for(pilot, lambda: area.text.startswith("Meet"))
        assert await editor.flush()
    assert _stored(seeded_vault)[1]["plan"] == "Meet next week; client will keep a worry log.\n"


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_snippets_dialog_snapshot(snap_compare, seeded_vault, make_app, size):
    _seed_snippet(seeded_vault, "mse", MSE)
    _seed_snippet(seeded_vault, "safety", "Reviewed the safety plan; client named two coping steps.")
    app = make_app(seeded_vault)

    async def ready(pilot):
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: app.screen.client_id == CLIENT_A)
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, SnippetsDialog) and app.screen.snippets)

    assert snap_compare(app, terminal_size=size, run_before=ready)
