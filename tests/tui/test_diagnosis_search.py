"""Diagnosis search (issue 16, faster documentation): ICD-10-CM codes found by words or by a
code's first characters, offline, billable codes only, picked into the client's diagnoses.
Real app, real encrypted vault, the real code set; Pilot."""

from __future__ import annotations

from textual.widgets import Input

from store.diagnosis_codes import DiagnosisIndex, shared_index
from store.vault import Vault
from tui_data import CLIENT_B, PASSPHRASE
from tui_helpers import screen_text, unlock, wait_for
from tui.screens.client_edit import ClientEditScreen, DiagnosisRow
from tui.screens.diagnosis_search import DiagnosisSearchDialog
from tui.screens.main import MainScreen

INDEX_TIMEOUT = 180.0  # indexing the code set takes seconds of CPU, more on a busy machine


async def _type(pilot, text: str) -> None:
    await pilot.press(*[{" ": "space", ".": "full_stop"}.get(ch, ch) for ch in text])


def _codes(dialog: DiagnosisSearchDialog) -> list[str]:
    return [c.code for c in dialog.results]


async def test_words_or_a_code_prefix_find_billable_codes_and_the_pick_is_saved(seeded_vault, make_app):
    app = make_app(seeded_vault)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen) and app.screen.client_id)
        app.screen.select_client(CLIENT_B)
        await wait_for(pilot, lambda: app.screen.client_id == CLIENT_B)
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ClientEditScreen), what="the client form")
        form = app.screen
        await pilot.click("#find-diagnosis")
        await wait_for(pilot, lambda: isinstance(app.screen, DiagnosisSearchDialog), what="the search dialog")
        dialog = app.screen
        await _type(pilot, "generalized anxiety")  # typed at once, before the code set is indexed
        await wait_for(pilot, lambda: dialog.index is not None and dialog.results, timeout=INDEX_TIMEOUT,
                       what="results: " + screen_text(app))
        assert _codes(dialog)[0] == "F41.1"
        assert dialog.results[0].description == "Generalized anxiety disorder"
        # A code prefix: the billable codes under F41, never the category F41 itself.
        dialog.query_one("#dx-query", Input).value = ""
        await _type(pilot, "F41")
        await wait_for(pilot, lambda: _codes(dialog) and all(c.startswith("F41") for c in _codes(dialog)))
        assert "F41.1" in _codes(dialog) and "F41" not in _codes(dialog)
        await _type(pilot, ".1")
        await wait_for(pilot, lambda: _codes(dialog) == ["F41.1"])
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is form and form.query(DiagnosisRow), what="the picked code in the form")
        assert form.query_one(DiagnosisRow).value() == {"code": "F41.1", "description": "Generalized anxiety disorder"}
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="saved: " + screen_text(app))
    vault = Vault.open(seeded_vault, PASSPHRASE)
    try:
        assert [(d.code, d.description) for d in vault.record.get_client(CLIENT_B).diagnoses] == [
            ("F41.1", "Generalized anxiety disorder")]
    finally:
        vault.close()


def test_only_billable_codes_are_in_the_index():
    index: DiagnosisIndex = shared_index()
    codes = {c.code for c in index.codes}
    assert "F41.1" in codes and "F32.A" in codes
    assert not {"F41", "F32", "F43.2", "F43.1"} & codes  # categories and subcategories with children
    assert index.search("f43.1") and all(c.code.startswith("F43.1") and c.code != "F43.1" for c in index.search("f43.1"))
    assert index.search("") == [] and index.search("zzzz qqqq") == []


def test_diagnosis_search_snapshot(snap_compare, seeded_vault, make_app):
    app = make_app(seeded_vault)

    async def ready(pilot):
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen) and app.screen.client_id)
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ClientEditScreen))
        await pilot.click("#find-diagnosis")
        await wait_for(pilot, lambda: isinstance(app.screen, DiagnosisSearchDialog))
        await _type(pilot, "panic")
        await wait_for(pilot, lambda: app.screen.results, timeout=INDEX_TIMEOUT)

    assert snap_compare(app, terminal_size=(100, 30), run_before=ready)
