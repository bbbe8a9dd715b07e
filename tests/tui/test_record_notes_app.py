"""Intake, discharge, plan reviews and the PCL-5, driven through the real app on a real vault.

Each workflow as the clinician goes through it: keys and widgets in the app, the result
read back from the vault afterwards. Synthetic people and text only.
"""

from __future__ import annotations

from datetime import date, timedelta

from textual.app import App, ComposeResult
from textual.widgets import DataTable, Input, OptionList, Select, SelectionList, Static, TextArea

from store.compliance import RECORD_NOTE_ELEMENTS
from store.models import (
    GoalProgress,
    NoteFormat,
    NoteStatus,
    ProgressNote,
    ProgressRating,
    SessionFacts,
)
from store.outcomes import outcomes_from
from store.vault import Vault
from tui_data import CLIENT_A, CLIENT_B, GOAL_A, PASSPHRASE
from tui_helpers import screen_text, static_text, unlock, wait_for
from tui.screens.client_edit import ClientEditScreen
from tui.screens.dialogs import ConfirmDialog
from tui.screens.main import MainScreen
from tui.screens.note_editor import NoteEditorScreen
from tui.screens.outcomes import OutcomesDialog
from tui.screens.todo import TodoScreen
from tui.widgets.checklist import Checklist
from tui.widgets.outcome_plot import PTSD_PANEL, OutcomePlot

INTAKE_TEXT = {
    "presenting_problem": "Worry most of the day for a year; poor sleep before work.",
    "history": "Raised locally; no earlier treatment; works as a librarian.",
    "mental_status": "Alert and oriented; anxious mood; speech normal; insight good.",
    "risk": "Denies suicidal and violent thoughts; supportive sibling nearby.",
    "diagnosis": "Generalized anxiety: excessive worry over six months with restlessness and poor sleep.",
    "initial_plan": "Weekly CBT for worry; worry log; PHQ-9 and GAD-7 monthly.",
}


def _client_ids(app) -> list[str]:
    listing = app.screen.query_one("#client-list", OptionList)
    return [listing.get_option_at_index(i).id for i in range(listing.option_count)]


async def _choose_format(pilot, fmt: NoteFormat) -> NoteEditorScreen:
    app = pilot.app
    await pilot.press("n")
    await wait_for(pilot, lambda: app.screen.query_one("#format", OptionList).has_focus, what="format list")
    formats = app.screen.query_one("#format", OptionList)
    formats.highlighted = [formats.get_option_at_index(i).id for i in range(formats.option_count)].index(fmt.value)
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, NoteEditorScreen) and app.screen.loaded and app.screen.mode == "draft", what="editor")
    return app.screen


async def _sign(pilot, editor: NoteEditorScreen) -> None:
    app = pilot.app
    await pilot.press("ctrl+s")
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="sign confirmation")
    await pilot.click("#yes")
    await wait_for(pilot, lambda: app.screen is editor and editor.mode == "signed", what="signed view")


async def test_an_intake_is_written_checked_and_signed_in_the_app(seeded_vault, make_app):
    app = make_app(seeded_vault)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: app.screen.client_id == CLIENT_A, what="first client selected")
        editor = await _choose_format(pilot, NoteFormat.INTAKE)
        assert "INTAKE" in static_text(editor.query_one("#note-title", Static))
        checklist = editor.query_one(Checklist)
        await wait_for(pilot, lambda: checklist.missing, what="initial checklist")
        assert checklist.elements == RECORD_NOTE_ELEMENTS[NoteFormat.INTAKE]
        assert "specific interventions" not in static_text(checklist)  # a session's element
        assert "diagnosis with justification" in static_text(checklist)

        editor.query_one("#f-start", Input).value = "09:00"
        editor.query_one("#f-stop", Input).value = "10:00"
        await pilot.pause()
        assert editor.query_one("#f-cpt", Input).value == ""  # 60 minutes suggests no session code here
        editor.query_one("#f-cpt", Input).value = "90834"  # a session's code: refused for an intake
        editor.query_one("#f-modality", Select).value = "in_person"
        editor.query_one("#f-dx", SelectionList).select("F41.1")
        editor.query_one("#f-suicide", Select).value = "none"
        editor.query_one("#f-violence", Select).value = "none"
        editor.query_one("#f-pcl5", Input).value = "41"
        for key, text in INTAKE_TEXT.items():
            editor.query_one(f"#section-{key}", TextArea).insert(text)
        await wait_for(pilot, lambda: checklist.missing == ["cpt"], what="only the code left", timeout=15)
        editor.query_one("#f-cpt", Input).value = "90791"
        await wait_for(pilot, lambda: not checklist.missing, what="complete intake", timeout=15)
        await _sign(pilot, editor)
        note_id = editor.note_id
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, OutcomesDialog) and app.screen.query_one("#outcome-plot-pcl5").display,
                       what="the PCL-5 panel")
        assert "PCL-5 (latest 41, probable PTSD)" in app.screen.query_one("#outcome-plot-pcl5", OutcomePlot).render().plain
        await pilot.press("ctrl+q")

    vault = Vault.open(seeded_vault, PASSPHRASE)
    try:
        note = vault.record.get_note(note_id)
        assert note.format == NoteFormat.INTAKE and note.status == NoteStatus.SIGNED
        assert note.sections == INTAKE_TEXT
        assert note.facts.cpt_code == "90791" and note.facts.pcl5 == 41
        assert vault.record.signature_state(note_id).status.value == "verified"
    finally:
        vault.close()


def _seed_discharge(vault_path) -> str:
    vault = Vault.open(vault_path, PASSPHRASE)
    try:
        note = vault.record.create_note(
            ProgressNote(
                client_id=CLIENT_A,
                format=NoteFormat.DISCHARGE,
                sections={
                    "discharge_reason": "Goals met; agreed ending.",
                    "course_of_treatment": "Twelve sessions of CBT for worry.",
                    "goal_progress": "Worry down to under an hour a day.",
                    "final_measures": "GAD-7 from 14 to 4.",
                    "referrals": "None needed; may return.",
                },
                facts=SessionFacts(
                    date_of_service=date(2026, 11, 10),
                    goals_addressed=[GoalProgress(goal_id=GOAL_A, rating=ProgressRating.ACHIEVED)],
                    gad7=4,
                ),
            )
        )
        return note.id
    finally:
        vault.close()


async def test_signing_a_discharge_moves_the_client_to_the_discharged_list_and_a_new_intake_back(seeded_vault, make_app):
    discharge_id = _seed_discharge(seeded_vault)
    app = make_app(seeded_vault)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: app.screen.client_id == CLIENT_A, what="first client selected")
        main = app.screen
        main.open_note("progress", discharge_id)
        await wait_for(pilot, lambda: isinstance(app.screen, NoteEditorScreen) and app.screen.loaded, what="editor")
        editor = app.screen
        await wait_for(pilot, lambda: not editor.query_one(Checklist).missing, what="complete discharge")
        assert editor.query_one(Checklist).elements == RECORD_NOTE_ELEMENTS[NoteFormat.DISCHARGE]
        # Not a billed session: no code, modality, diagnosis, interventions or risk fields.
        for field in ("#f-cpt", "#f-modality", "#f-interventions", "#f-suicide", "#f-participants"):
            assert not editor.query_one(field).parent.display, field
        assert editor.query_one("#f-pcl5").parent.display and editor.query_one("#goal-goal-a").parent.display
        await _sign(pilot, editor)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is main and _client_ids(app) == [CLIENT_B], what="discharged client left the list")

        await pilot.press("i")
        await wait_for(pilot, lambda: _client_ids(app) == [CLIENT_A] and main.client_id == CLIENT_A, what="the discharged list")
        await wait_for(pilot, lambda: "Discharged on 2026-11-10" in static_text(main.query_one("#client-header", Static)))
        timeline = main.query_one("#timeline", OptionList)
        await wait_for(pilot, lambda: any("Discharge summary" in str(timeline.get_option_at_index(i).prompt)
                                          for i in range(timeline.option_count)), what="the summary in the timeline")

        # Back for a new episode: the intake started (something typed) brings the client back.
        editor = await _choose_format(pilot, NoteFormat.INTAKE)
        editor.query_one("#section-presenting_problem", TextArea).focus()
        await pilot.press(*"Returning after a move.")
        await wait_for(pilot, lambda: editor.query_one("#save-state", Static).has_class("state-saved") and editor.note is not None,
                       what="the intake saved")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is main and _client_ids(app) == [], what="no discharged client left")
        await pilot.press("i")
        await wait_for(pilot, lambda: _client_ids(app) == [CLIENT_A, CLIENT_B], what="active again")
        await pilot.press("ctrl+q")


async def test_a_plan_set_in_the_app_comes_due_in_the_to_do_list_and_opens_a_review(seeded_vault, make_app):
    start = date.today() - timedelta(days=31)
    app = make_app(seeded_vault)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: app.screen.client_id == CLIENT_A, what="first client selected")
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ClientEditScreen), what="client form")
        app.screen.query_one("#plan-start", Input).value = start.isoformat()
        app.screen.query_one("#review-interval", Input).value = "30"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="saved")
        await wait_for(pilot, lambda: "reviewed every 30 days" in static_text(app.screen.query_one("#client-header", Static)), what="header: " + str(app.screen))
        await wait_for(pilot, lambda: "1 plan review due" in static_text(app.screen.query_one("#todo-summary", Static)),
                       what="the main screen's To do line")

        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, TodoScreen) and app.screen.review_items, what="a review due")
        todo = app.screen
        [review] = todo.review_items
        assert (review.client_id, review.due_on, review.band) == (CLIENT_A, start + timedelta(days=30), 24)
        assert "1 plan review due" in screen_text(app)
        table = todo.query_one(DataTable)
        table.move_cursor(row=len(todo.items) + len(todo.signature_items))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NoteEditorScreen) and app.screen.loaded, what="a new review")
        editor = app.screen
        assert editor.query_one(Checklist).elements == RECORD_NOTE_ELEMENTS[NoteFormat.REVIEW]
        editor.query_one("#goal-goal-a", Select).value = "some_progress"
        editor.query_one("#section-goal_progress", TextArea).insert("Worry logs show two calmer weeks.")
        editor.query_one("#section-goal_changes", TextArea).insert("No change to the goals.")
        await wait_for(pilot, lambda: not editor.query_one(Checklist).missing, what="complete review", timeout=15)
        await _sign(pilot, editor)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, TodoScreen) and "Loading" not in screen_text(app), what="to do again")
        await wait_for(pilot, lambda: not app.screen.review_items
                       and "plan review" not in static_text(app.screen.query_one("#todo-counts", Static)))
        await pilot.press("ctrl+q")


class PanelApp(App[None]):
    def __init__(self, outcomes) -> None:
        super().__init__()
        self._outcomes = outcomes

    def compose(self) -> ComposeResult:
        yield OutcomePlot(self._outcomes, panel=PTSD_PANEL)

    def on_mount(self) -> None:
        self.theme = "textual-dark"


PCL5_ROWS = [
    {"note_id": f"n{i}", "date_of_service": on, "status": "signed", "phq9": None, "gad7": None, "pcl5": score}
    for i, (on, score) in enumerate([(date(2026, 1, 5), 58), (date(2026, 2, 2), 44), (date(2026, 3, 2), 31)])
]


async def test_the_pcl5_panel_has_its_own_scale_marker_and_cut_off_line():
    app = PanelApp(outcomes_from(PCL5_ROWS))
    async with app.run_test(size=(80, 20)) as pilot:
        await pilot.pause()
        text = app.query_one(OutcomePlot).render().plain
    assert "PCL-5 (latest 31, below the cut-off)" in text
    assert "33 probable PTSD" in text and "■" in text
    band_rows = [line for line in text.splitlines() if line.count("─") >= 20 and "┤" in line]
    assert len(band_rows) == 1  # the cut-off at 33


def test_pcl5_panel_snapshot(snap_compare):
    assert snap_compare(PanelApp(outcomes_from(PCL5_ROWS)), terminal_size=(80, 20))


async def test_a_family_session_records_who_was_present_and_the_checker_applies_90847(seeded_vault, make_app, tmp_path):
    app = make_app(seeded_vault)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: app.screen.client_id == CLIENT_A, what="first client selected")
        editor = await _choose_format(pilot, NoteFormat.SOAP)
        form = editor.query_one("#facts")
        await wait_for(pilot, lambda: form.known_clients is not None, what="the practice's clients")
        checklist = editor.query_one(Checklist)
        editor.query_one("#f-start", Input).value = "10:00"
        editor.query_one("#f-stop", Input).value = "10:50"
        editor.query_one("#f-cpt", Input).value = "90847"
        editor.query_one("#section-subjective", TextArea).insert("Family session on evening routines.")
        await wait_for(pilot, lambda: "participants" in checklist.missing, what="90847 asks who was present")
        editor.query_one("#f-participants", Input).value = "robin  SAMPLE; Jordan Ellis (J.E.)"
        await wait_for(pilot, lambda: "participants" not in checklist.missing and editor.note is not None
                       and len(editor.note.facts.participants) == 2, what="participants saved", timeout=15)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
        note_id = editor.note_id
        await pilot.press("ctrl+q")

    vault = Vault.open(seeded_vault, PASSPHRASE)
    try:
        people = vault.record.get_note(note_id).facts.participants
        assert [(p.client_id, p.name, p.initials) for p in people] == [
            (CLIENT_B, "robin  SAMPLE", "R.S."), (None, "Jordan Ellis", "J.E."),
        ]
        from store.export import export_record

        out = tmp_path / "a.json"
        export_record(vault.record, CLIENT_A, out, fmt="json", settings=vault.settings(), include_drafts=True)
        text = out.read_text()
        assert "Jordan" not in text and "SAMPLE" not in text and CLIENT_B not in text
        assert '"initials": "R.S."' in text and '"initials": "J.E."' in text
    finally:
        vault.close()


# --- snapshots (fixed data, pinned theme) ------------------------------------------------------


def _seed_intake_draft(vault_path) -> str:
    vault = Vault.open(vault_path, PASSPHRASE)
    try:
        note = vault.record.create_note(
            ProgressNote(
                id="note-intake",
                client_id=CLIENT_A,
                format=NoteFormat.INTAKE,
                sections={"presenting_problem": INTAKE_TEXT["presenting_problem"]},
                facts=SessionFacts(date_of_service=date(2026, 11, 16)),
            )
        )
        return note.id
    finally:
        vault.close()


def test_snapshot_intake_editor(snap_compare, seeded_vault, make_app):
    note_id = _seed_intake_draft(seeded_vault)
    app = make_app(seeded_vault)

    async def ready(pilot):
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: app.screen.client_id == CLIENT_A)
        app.screen.open_note("progress", note_id)
        await wait_for(pilot, lambda: isinstance(app.screen, NoteEditorScreen) and app.screen.loaded)
        await wait_for(pilot, lambda: app.screen.query_one(Checklist).missing)

    assert snap_compare(app, terminal_size=(120, 40), run_before=ready)


def test_snapshot_discharged_client(snap_compare, seeded_vault, make_app):
    discharge_id = _seed_discharge(seeded_vault)
    vault = Vault.open(seeded_vault, PASSPHRASE)
    try:
        vault.record.sign_note(discharge_id)
    finally:
        vault.close()
    app = make_app(seeded_vault)

    async def ready(pilot):
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: app.screen.client_id == CLIENT_B)
        await pilot.press("i")
        main = app.screen
        await wait_for(pilot, lambda: main.client_id == CLIENT_A
                       and "Discharged on" in static_text(main.query_one("#client-header", Static))
                       and main.query_one("#timeline").option_count > 0)
        main.query_one("#timeline").focus()

    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)


async def test_a_discharged_client_found_by_search_is_shown_in_the_discharged_list(seeded_vault, make_app):
    discharge_id = _seed_discharge(seeded_vault)
    vault = Vault.open(seeded_vault, PASSPHRASE)
    try:
        vault.record.sign_note(discharge_id)
    finally:
        vault.close()
    app = make_app(seeded_vault)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: app.screen.client_id == CLIENT_B and _client_ids(app) == [CLIENT_B])
        main = app.screen
        main.select_client(CLIENT_A)  # as a search hit or a To do row does
        await wait_for(pilot, lambda: main.show_discharged and main.client_id == CLIENT_A and _client_ids(app) == [CLIENT_A],
                       what="the discharged list, the client selected")
        await pilot.press("ctrl+q")
