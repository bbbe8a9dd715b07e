"""Typing in the note editor does not wait for Python's full garbage collection.

A full collection walks every tracked object the app made since the first screen was settled
(`NotewellApp.settle_heap`); at the default thresholds one came every hundred keys or so,
10-65 ms each, and those were the slowest keystrokes (bench/tui_bench.py). A real app on a
real vault, keys posted as the terminal's driver posts them; the collector's own callbacks
count its full passes. No timing is asserted. How often a full pass comes at the default
thresholds depends on what else the app allocates (the bench's 10,000-note vault: every 115
keys); this small vault may type 400 keys without one, so the test also holds the threshold
itself while the editor is open.
"""

from __future__ import annotations

import asyncio
import gc
import time

from textual import events
from textual.widgets import TextArea

from tui_data import CLIENT_A, DRAFT_NOTE, PASSPHRASE
from tui_helpers import unlock, wait_for
from tui.app import RARE_FULL_COLLECTIONS
from tui.screens.note_editor import NoteEditorScreen

KEYS = 400
TEXT = "Client described the week calmly and practised the breathing exercise twice. "


async def _type(app, area: TextArea, ch: str) -> None:
    before = area.text
    app.post_message(events.Key("space" if ch == " " else ch, ch))
    deadline = time.monotonic() + 30
    while area.text == before:
        assert time.monotonic() < deadline, "the key never reached the note"
        await asyncio.sleep(0)


async def test_typing_four_hundred_keys_meets_no_full_collection(seeded_vault, make_app):
    before = gc.get_threshold()
    full_passes: list[int] = []

    def count(phase: str, info: dict) -> None:
        if phase == "start" and info["generation"] == 2:
            full_passes.append(1)

    app = make_app(seeded_vault)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: app.screen.client_id == CLIENT_A)
        app.screen.open_note("progress", DRAFT_NOTE)
        await wait_for(pilot, lambda: isinstance(app.screen, NoteEditorScreen) and app.screen.loaded
                       and app.screen.mode == "draft", what="editor")
        assert gc.get_threshold() == (*before[:2], RARE_FULL_COLLECTIONS)
        area = app.screen.query_one("#section-subjective", TextArea)
        area.focus()
        await pilot.pause()
        gc.callbacks.append(count)
        try:
            for i in range(KEYS):
                await _type(app, area, TEXT[i % len(TEXT)])
                if i % 40 == 39:
                    await pilot.pause()  # a breath between bursts: autosaves run as they do
        finally:
            gc.callbacks.remove(count)
        assert await app.screen.flush()
    assert full_passes == []
    assert gc.get_threshold() == before  # put back when the app ended
