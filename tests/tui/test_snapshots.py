"""Snapshots of the main screens at 80x24 and 120x40 (fixed data, theme and no blinking).

Regenerate after a deliberate change with `pytest tests/tui/test_snapshots.py --snapshot-update`
and look at the report before committing.
"""

from __future__ import annotations

import pytest

from tui_data import CLIENT_A, DRAFT_NOTE, PASSPHRASE
from tui_helpers import unlock, wait_for
from tui.screens.note_editor import NoteEditorScreen
from tui.screens.unlock import UnlockScreen

SIZES = [(80, 24), (120, 40)]


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "120x40"])
def test_unlock_screen(snap_compare, seeded_vault, make_app, size):
    app = make_app(seeded_vault)

    async def ready(pilot):
        await wait_for(pilot, lambda: isinstance(app.screen, UnlockScreen))

    assert snap_compare(app, terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "120x40"])
def test_main_screen_with_client(snap_compare, seeded_vault, make_app, size):
    app = make_app(seeded_vault)

    async def ready(pilot):
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: app.screen.client_id == CLIENT_A and app.screen.query_one("#timeline").option_count > 0
                       and app.screen.previews_shown_for == CLIENT_A)
        app.screen.query_one("#timeline").focus()

    assert snap_compare(app, terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "120x40"])
def test_note_editor(snap_compare, seeded_vault, make_app, size):
    app = make_app(seeded_vault)

    async def ready(pilot):
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: app.screen.client_id == CLIENT_A)
        app.screen.open_note("progress", DRAFT_NOTE)
        await wait_for(pilot, lambda: isinstance(app.screen, NoteEditorScreen) and app.screen.loaded)
        await wait_for(pilot, lambda: app.screen.query_one("#checklist").missing)

    assert snap_compare(app, terminal_size=size, run_before=ready)
