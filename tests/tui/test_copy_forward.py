"""The copy-forward guard (issue 16, faster documentation): a section that reads nearly the
same as the same section of the client's previous note is flagged in the checklist, without
stopping the signature. Real app, real encrypted vault, Pilot."""

from __future__ import annotations

from textual.widgets import TextArea

from store.compliance import COPY_COMPARED_WORDS, WARNING, check_copy_forward, text_similarity
from tui_data import CLIENT_A, DRAFT_NOTE, PASSPHRASE, complete_sections
from tui_helpers import unlock, wait_for
from tui.screens.main import MainScreen
from tui.screens.note_editor import NoteEditorScreen
from tui.widgets.checklist import Checklist


def _copied(checklist: Checklist) -> list:
    return [p for p in checklist.problems if p.element == "copy_forward"]


async def test_a_section_cloned_from_the_last_note_is_flagged(seeded_vault, make_app):
    previous = complete_sections()  # the signed note of 2026-10-26 (tui_data.seed)
    app = make_app(seeded_vault)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen) and app.screen.client_id == CLIENT_A)
        app.screen.open_note("progress", DRAFT_NOTE)
        await wait_for(pilot, lambda: isinstance(app.screen, NoteEditorScreen) and app.screen.loaded)
        editor = app.screen
        checklist = editor.query_one(Checklist)
        assert not _copied(checklist)
        # Copied forward with one word changed: flagged, by section name and date only.
        editor.query_one("#section-subjective", TextArea).text = previous["subjective"].replace("better", "improved")
        editor.query_one("#section-objective", TextArea).text = "Client arrived late, tearful at first, then engaged and specific."
        await wait_for(pilot, lambda: _copied(checklist), what="the copy-forward warning")
        (warning,) = _copied(checklist)
        assert warning.severity == WARNING
        assert warning.message.startswith("Subjective reads almost the same as in the note of 2026-10-26")
        assert "worry" not in warning.message  # never the note's own words
        # Rewritten for this session: the warning goes.
        editor.query_one("#section-subjective", TextArea).text = (
            "Client describes a hard week at work and two nights of poor sleep before a deadline.")
        await wait_for(pilot, lambda: not _copied(checklist), what="the warning gone")
        assert await editor.flush()


def test_the_comparison_reads_a_bounded_start_of_each_section():
    words = " ".join(f"w{i}" for i in range(COPY_COMPARED_WORDS))
    # Beyond the compared words, a different tail of any length changes nothing.
    assert text_similarity(words + " tail" * 100_000, words + " other" * 50_000) == 1.0
    assert text_similarity("Client reports fewer worry episodes.", "Client reports fewer worry episodes.") == 0.0  # too short to judge
    assert check_copy_forward({"plan": "a b c d e f g h i"}, {"plan": "a b c d e f g h i"})[0].element == "copy_forward"
    assert check_copy_forward({"plan": "a b c d e f g h i"}, {"plan": "z y x w v u t s r"}) == []
