"""What the app shows of signatures: the To do list names signature conflicts and tamper
findings (finding 5), the client's list and the note never show a failing signature as
signed, and every signed version of a conflict is shown with its device and time."""

from __future__ import annotations

import json
from datetime import date

from automerge.core import ROOT, ScalarType
from textual.widgets import DataTable, OptionList, Static

from store import documents as D
from store.models import ProgressNote
from store.vault import Vault
from tui_data import CLIENT_A, PASSPHRASE, complete_facts, complete_sections
from tui_helpers import screen_text, unlock, wait_for
from tui.screens.main import MainScreen
from tui.screens.note_editor import NoteEditorScreen
from tui.screens.todo import TodoScreen

CANARY = "CANARY-TAMPER-5d1e"


def _make_conflict_and_tamper(path) -> None:
    vault = Vault.open(path, PASSPHRASE)
    try:
        record = vault.record
        for note_id, on in (("note-conflict", 9), ("note-forged", 10)):
            record.create_note(
                ProgressNote(id=note_id, client_id=CLIENT_A, format="SOAP",
                             sections=complete_sections(), facts=complete_facts(date(2026, 11, on)))
            )
        # A conflict: another device's copy edited while this one signs, then merged.
        elsewhere = record.replica.load_doc("note-conflict")
        D.splice_section(elsewhere, "plan", "Plan edited on the other device.")
        record.sign_note("note-conflict")
        record.replica.apply_doc("note-conflict", elsewhere)
        # A forgery: a copy whose signed text is rewritten, merged as a sync would.
        record.sign_note("note-forged")
        forged = record.replica.load_doc("note-forged")
        D.splice_section(forged, "plan", f"{CANARY} never said.")
        (entry_id, envelope), = D.signed_entries(forged).items()
        outer = json.loads(envelope)
        payload = json.loads(outer["payload"])
        payload["sections"]["plan"] = f"{CANARY} never said."
        outer["payload"] = D.canonical_json(payload).decode()
        with forged.transaction() as tx:
            tx.put(ROOT, "signed:" + entry_id, ScalarType.Str, json.dumps(outer))
        record.replica.apply_doc("note-forged", forged)
    finally:
        vault.close()


async def test_finding_5_the_to_do_list_shows_signature_conflicts_and_tamper_findings(seeded_vault, make_app):
    _make_conflict_and_tamper(seeded_vault)
    app = make_app(seeded_vault)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: app.screen.client_id == CLIENT_A)
        summary = app.screen.query_one("#todo-summary", Static)
        await wait_for(pilot, lambda: "signatures need you" in str(summary.render()), what="the summary")
        timeline = app.screen.query_one("#timeline", OptionList)
        await wait_for(
            pilot, lambda: "[FAILS VERIFICATION]" in str(timeline.get_option("progress:note-forged").prompt),
            what="the failing note marked in the list",
        )
        assert "[signed]" not in str(timeline.get_option("progress:note-forged").prompt)
        await pilot.press("t")
        await wait_for(
            pilot, lambda: isinstance(app.screen, TodoScreen) and len(app.screen.signature_items) == 2,
            what="signature rows in the to-do list",
        )
        todo = app.screen
        whats = {i.note_id: i.what for i in todo.signature_items}
        assert whats == {"note-conflict": "signature conflict", "note-forged": "FAILS VERIFICATION"}
        table = todo.query_one(DataTable)
        assert table.row_count == len(todo.items) + 2
        table.move_cursor(row=len(todo.items) + [i.note_id for i in todo.signature_items].index("note-forged"))
        await pilot.press("o")
        await wait_for(
            pilot, lambda: isinstance(app.screen, NoteEditorScreen) and app.screen.mode == "tampered",
            what="the tampered note",
        )
        text = screen_text(app)
        assert "FAILS SIGNATURE VERIFICATION" in text and "(verified)" not in text
        assert complete_sections()["plan"] in text  # the signed original, kept on this device
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is todo)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))


async def test_a_conflict_shows_every_signed_version_with_its_device_and_time(seeded_vault, make_app):
    _make_conflict_and_tamper(seeded_vault)
    app = make_app(seeded_vault)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: app.screen.client_id == CLIENT_A)
        app.screen.open_note("progress", "note-conflict")
        await wait_for(pilot, lambda: isinstance(app.screen, NoteEditorScreen) and app.screen.mode == "conflict")
        labels = "\n".join(str(w.render()) for w in app.screen.query(".section-title"))
        assert "Signed version 1: signed by Dana Testwell, LCSW on this device" in labels
        assert "Plan edited on the other device." in screen_text(app)
