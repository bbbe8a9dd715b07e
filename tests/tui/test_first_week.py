"""A first week with the app (issue 16): each finding a clinician ran into, driven through the
real app on a real encrypted vault with Pilot."""

from __future__ import annotations

from datetime import date

import pytest

from store.vault import Vault
from textual.widgets import Checkbox, Input, Select, SelectionList, Static, TextArea

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


async def _new_client_typed(pilot, name: str) -> ClientEditScreen:
    """Unlocked, the new-client form open, and `name` typed into it."""
    app = pilot.app
    await unlock(pilot, PASSPHRASE)
    await pilot.press("a")
    await wait_for(pilot, lambda: isinstance(app.screen, ClientEditScreen), what="client form")
    await _type(pilot, name)
    return app.screen


# 1. "+ Goal" focuses the goal, so a goal typed at once is saved as the goal.
async def test_add_goal_focuses_the_goal_not_its_objective(seeded_vault, make_app):
    app = make_app(seeded_vault)
    async with app.run_test(size=(100, 40)) as pilot:
        form = await _new_client_typed(pilot, "Morgan Invented")
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
        form = await _new_client_typed(pilot, "Morgan Invented")
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


# 7. After pairing, the address box offers the other device's sync port, not the pairing port;
# the listening port has its own field and is remembered; a failure to listen does not stay on
# screen once listening works.
from test_devices_screen import app_vault, open_devices, other_vault, processes, status  # noqa: E402,F401
from sync.addresses import DEFAULT_SYNC_PORT  # noqa: E402
from tui.screens.devices import DevicesScreen  # noqa: E402


async def test_after_pairing_the_address_is_the_sync_port(app_vault, other_vault, make_app, processes):
    app = make_app(app_vault, test_mode=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_devices(pilot)
        listener = processes(other_vault, "sync", "pair", "--listen", "--port", "0")
        address = listener.wait_for("listening on").split()[-1]
        code = listener.wait_for("pairing code:").split(":", 1)[1].strip()
        screen.query_one("#address", Input).value = address
        screen.query_one("#code", Input).value = code
        await pilot.click("#pair")
        await wait_for(pilot, lambda: screen.peers and screen.jobs.busy is None, 20, "pairing")
        assert "Paired with home desktop" in status(screen)
        host = address.rsplit(":", 1)[0]
        assert screen.query_one("#address", Input).value == f"{host}:{DEFAULT_SYNC_PORT}"
        assert screen.query_one("#code", Input).value == ""
        assert listener.proc.wait(timeout=20) == 0
        # Nothing listens there yet: the hint is in the app's words, not a command line's.
        screen.query_one("#address", Input).value = address  # the pairing port, closed now
        await pilot.click("#sync-now")
        await wait_for(pilot, lambda: screen.jobs.busy is None and screen.last_error is not None, 20, "sync refused")
        assert "notewell" not in status(screen) and "Listen" in status(screen), status(screen)


def _pair_directly(path, other_path) -> None:
    """Pair two vaults the way pairing leaves them (each trusts the other's certificate)."""
    from sync.peers import PeerBook
    from tui_data import FAST_KDF  # noqa: F401
    from test_devices_screen import OTHER_PASSPHRASE

    for here, there in ((path, other_path), (other_path, path)):
        mine = Vault.open(here, PASSPHRASE if here == path else OTHER_PASSPHRASE)
        theirs = Vault.open(there, PASSPHRASE if there == path else OTHER_PASSPHRASE)
        try:
            identity = theirs.identity
            PeerBook(mine.record.replica).add(identity.device_id, identity.name, identity.cert_pem)
        finally:
            mine.close()
            theirs.close()


async def test_the_listening_port_has_a_field_is_remembered_and_errors_clear(app_vault, other_vault, make_app):
    import socket

    _pair_directly(app_vault, other_vault)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        app = make_app(app_vault)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_devices(pilot)
            assert screen.query_one("#listen-port", Input).value == str(DEFAULT_SYNC_PORT)
            screen.query_one("#listen-port", Input).value = str(taken.getsockname()[1])
            await pilot.click("#listen")
            await wait_for(pilot, lambda: screen.jobs.busy is None and screen.last_error is not None, 20, "bind failure")
            assert screen.query_one("#sync-status").has_class("error")
            failed = status(screen)
            assert failed
            screen.query_one("#listen-port", Input).value = "0"  # any free port
            await pilot.click("#listen")
            await wait_for(pilot, lambda: "listening on" in static_text(screen.query_one("#listen-status")), 20, "listening: " + status(screen) + repr((screen.query_one("#listen", Checkbox).value, screen.jobs.listener_active)))
            await wait_for(pilot, lambda: failed not in status(screen), 20, "the old failure cleared")
            await wait_for(pilot, lambda: screen.jobs.listening is not None)
            await pilot.click("#listen")
            await wait_for(pilot, lambda: not screen.jobs.listener_active, 20, "stopped")
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            again = DevicesScreen()
            app.push_screen(again)
            await wait_for(pilot, lambda: app.screen is again and again.loaded, 20, "devices again")
            assert again.query_one("#listen-port", Input).value == "0"
            assert again.query_one("#listen-on", Input).value == "127.0.0.1"
    finally:
        taken.close()


# 8. Every dialog is drawn centred over the screen it belongs to, not at the top left.
def _centred(screen) -> bool:
    box = screen.query_one(".dialog-box").region
    size = screen.size
    left, right = box.x, size.width - box.right
    top, bottom = box.y, size.height - box.bottom
    return abs(left - right) <= 1 and abs(top - bottom) <= 1 and left > 0


async def test_the_new_note_addendum_and_settings_dialogs_are_centred(seeded_vault, make_app):
    from tui.screens.settings import SettingsDialog

    app = make_app(seeded_vault)
    async with app.run_test(size=(100, 40)) as pilot:
        editor = await _open(pilot, app, SIGNED_NOTE)
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, AddendumDialog), what="addendum dialog")
        assert _centred(app.screen)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is editor)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NewNoteDialog), what="new note dialog")
        assert _centred(app.screen)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsDialog), what="settings")
        assert _centred(app.screen)


def test_snapshot_new_note_dialog(snap_compare, seeded_vault, make_app):
    app = make_app(seeded_vault)

    async def ready(pilot):
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: app.screen.client_id == CLIENT_A and app.screen.query_one("#timeline").option_count > 0
                       and app.screen.previews_shown_for == CLIENT_A)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NewNoteDialog), what="new note dialog")
        app.screen.query_one("#date", Input).value = "2026-11-20"  # not today's date: a stable picture

    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)


# 9. At 80x24 nothing the clinician needs is cut off.
def _shown(widget) -> str:
    from textual.geometry import Region

    return "\n".join(strip.text for strip in widget.render_lines(Region(0, 0, *widget.size)))


async def test_at_80x24_the_main_footer_keeps_to_do_quit_lock_and_help(seeded_vault, make_app):
    from textual.widgets._footer import FooterKey

    app = make_app(seeded_vault)
    async with app.run_test(size=(80, 24)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: app.screen.client_id == CLIENT_A)
        await pilot.pause()
        keys = list(app.screen.query(FooterKey))
        palette = [k for k in keys if k.action == "app.command_palette"]
        room = palette[0].region.x if palette else 80
        shown = {k.key_display for k in keys if k.region.right <= room and k not in palette}
        assert {"t", "^q", "^l", "f1"} <= shown, shown


async def test_at_80x24_the_recovery_key_breaks_between_groups(vault_path, make_app):
    from store.keys import RECOVERY_GROUP_LEN, format_recovery_key
    from tui.screens.dialogs import RecoveryKeyDialog

    key = format_recovery_key(bytes(range(32)))
    app = make_app(vault_path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(RecoveryKeyDialog(key))
        await wait_for(pilot, lambda: isinstance(app.screen, RecoveryKeyDialog))
        await pilot.pause()
        lines = [line.strip() for line in _shown(app.screen.query_one("#recovery-key")).splitlines() if line.strip()]
        assert "".join(lines) == key
        for line in lines:
            assert all(len(group) == RECOVERY_GROUP_LEN for group in line.strip("-").split("-")), lines


async def test_at_80x24_the_conflict_title_keeps_late_entry(seeded_vault, make_app):
    from test_signature_views import _make_conflict_and_tamper

    _make_conflict_and_tamper(seeded_vault)
    app = make_app(seeded_vault)
    async with app.run_test(size=(80, 24)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: app.screen.client_id == CLIENT_A)
        app.screen.open_note("progress", "note-conflict")
        await wait_for(pilot, lambda: isinstance(app.screen, NoteEditorScreen) and app.screen.mode == "conflict")
        await pilot.pause()
        title = app.screen.query_one("#note-title")
        # What shows is what fits in the bar above the note.
        visible = _shown(title).splitlines()[: app.screen.query_one("#note-bar").content_size.height]
        assert "(late entry)" in " ".join(visible), visible


async def test_at_80x24_the_devices_result_is_shown_whole(app_vault, other_vault, make_app):
    from sync.peers import PeerBook

    _pair_directly(app_vault, other_vault)
    summary = "received 12, sent 3, merged 2, 1 signature conflict to resolve, 0 refused"
    vault = Vault.open(app_vault, PASSPHRASE)
    try:
        book = PeerBook(vault.record.replica)
        (peer,) = book.all()
        book.record_sync(peer.device_id, ok=True, summary=summary, transport="direct")
    finally:
        vault.close()
    app = make_app(app_vault)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_devices(pilot)
        await pilot.pause()
        shown = " ".join(line.strip() for line in _shown(screen.query_one("#peer-result")).splitlines())
        assert summary in shown, shown


# 10. Enter in the export dialog's file box exports.
async def test_enter_in_the_export_path_exports(seeded_vault, make_app, tmp_path):
    from tui.screens.export_dialog import ExportDialog

    out = tmp_path / "record.pdf"
    app = make_app(seeded_vault)
    async with app.run_test(size=(120, 48)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: app.screen.client_id == CLIENT_A)
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportDialog), what="the export dialog")
        dialog = app.screen
        dialog.query_one("#export-purpose", Select).value = "insurer"
        path = dialog.query_one("#export-path", Input)
        path.value = str(out)
        path.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="exported and closed")
    assert out.exists()


# 11. A bad line in the settings file: the app starts with the defaults and says which file,
# which line and what is allowed, never raw validator text.
@pytest.mark.parametrize("text, line, allowed", [
    ('theme = "nord"\nidle_lock_minutes = "soon"\n', 2, "minutes"),
    ('theme = "nord"\n\noverdue_hours = [0]\n', 3, "hours"),
    ('theme = "nord"\nfavourite_colour = "teal"\n', 2, "theme, idle_lock_minutes"),
    ('theme = "nord"\nidle_lock_minutes = \n', 2, "TOML"),
])
async def test_a_bad_settings_line_is_named_and_the_app_starts_with_defaults(seeded_vault, tmp_path, monkeypatch,
                                                                             text, line, allowed):
    from argparse import Namespace

    from tui.commands.app_command import build_app
    from tui.config import AppConfig

    config = tmp_path / "config.toml"
    config.write_text(text)
    monkeypatch.setenv("NOTEWELL_CONFIG", str(config))
    app = build_app(Namespace(vault=seeded_vault))
    app.test_mode = True
    assert app.config == AppConfig()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app._notifications, what="a notification")
        (said,) = [n.message for n in app._notifications]
        assert str(config) in said and f"line {line}" in said and allowed in said, said
        assert "validation error" not in said.lower() and "pydantic" not in said.lower()
        assert said.endswith("the app started with the default settings.")
        await unlock(pilot, PASSPHRASE)


# 12. The palette names each command once; notes of the same date can be told apart by their
# first words; the outcome plot tells PHQ-9 from GAD-7 by more than colour; counts agree with
# their nouns; the setup screen's fields have borders.
async def test_the_palette_names_each_command_once(seeded_vault, make_app):
    app = make_app(seeded_vault)
    async with app.run_test(size=(100, 30)) as pilot:
        await unlock(pilot, PASSPHRASE)
        commands = list(app.get_system_commands(app.screen))
        assert any(c.title == "Add client" for c in commands)
        for command in commands:
            assert command.title not in command.help, (command.title, command.help)


async def test_notes_of_the_same_date_show_their_first_words(seeded_vault, make_app):
    from datetime import date as day

    from store.models import ProcessNote

    vault = Vault.open(seeded_vault, PASSPHRASE)
    try:
        vault.private.create(ProcessNote(client_id=CLIENT_A, session_date=day(2026, 11, 2), device_id=vault.device_id,
                                         body="Second thought about the tangerine metaphor and supervision."))
    finally:
        vault.close()
    app = make_app(seeded_vault)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: app.screen.client_id == CLIENT_A and app.screen.query_one("#timeline").option_count > 3
                       and app.screen.previews_shown_for == CLIENT_A)
        timeline = app.screen.query_one("#timeline")
        prompts = [str(timeline.get_option_at_index(i).prompt) for i in range(timeline.option_count)]
        process = [p for p in prompts if "process note" in p]
        assert len(process) == 2 and process[0] != process[1]
        assert any("Noticed my own impatience" in p for p in process)
        assert any("Second thought about" in p for p in process)
        signed = next(p for p in prompts if "[signed]" in p)
        assert "Client reports fewer worry" in signed


async def test_the_plot_tells_phq9_from_gad7_by_marker():
    from store.outcomes import outcomes_from
    from test_outcome_plot import ROWS, PlotApp
    from tui.widgets.outcome_plot import OutcomePlot

    app = PlotApp(outcomes_from(ROWS))
    async with app.run_test(size=(80, 20)) as pilot:
        await pilot.pause()
        text = app.query_one(OutcomePlot).render().plain
    phq = next(line for line in text.splitlines() if "PHQ-9 (latest" in line)
    gad = next(line for line in text.splitlines() if "GAD-7 (latest" in line)
    marker = lambda line, name: line[: line.index(name)].strip()[-1:]  # noqa: E731
    assert marker(phq, "PHQ-9") and marker(gad, "GAD-7") and marker(phq, "PHQ-9") != marker(gad, "GAD-7"), (phq, gad)
    assert marker(phq, "PHQ-9") in text.replace(phq, "") and marker(gad, "GAD-7") in text.replace(gad, "")


def test_counts_agree_with_their_nouns():
    from sync.report import BundleCounts, SyncReport

    report = SyncReport(sent=1, bundles=BundleCounts(folder="box", written="device.bundle"))
    assert "(1 document)" in report.summary()


async def test_the_setup_fields_have_borders(vault_path, make_app):
    from tui.screens.setup import SetupScreen

    app = make_app(vault_path)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen), what="setup screen")
        fields = list(app.screen.query(Input))
        assert fields
        for field in fields:
            assert field.styles.border_top[0] not in ("", "none", "hidden"), field.id


# 14. Keys that arrive in one burst act in order, each where the keys before it left the
# focus (the tmux test, tests/tui/test_burst_typing_tmux.py, types through a real terminal).
async def test_a_burst_of_keys_with_tabs_fills_each_field_in_turn(vault_path, make_app):
    from textual import events

    from tui.screens.setup import SetupScreen

    app = make_app(vault_path)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen), what="setup screen")
        burst = "Jordan Burst\tLPC\toffice"
        for ch in burst:  # posted at once, without waiting for any to be handled
            app.post_message(events.Key("tab" if ch == "\t" else ("space" if ch == " " else ch), ch))
        screen = app.screen
        await wait_for(pilot, lambda: screen.query_one("#device-name", Input).value == "office",
                       what="the third field filled: " + repr([i.value for i in screen.query(Input)]))
        assert screen.query_one("#clinician-name", Input).value == "Jordan Burst"
        assert screen.query_one("#credentials", Input).value == "LPC"
