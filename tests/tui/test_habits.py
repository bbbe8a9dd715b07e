"""Help, command palette, remappable keys, settings file, record-content hints, store thread."""

from __future__ import annotations

import threading

import pytest
from textual.command import CommandPalette
from textual.widgets import Input

from tui_data import PASSPHRASE
from tui_helpers import screen_text, unlock, wait_for
from store.errors import VaultLocked
from tui.config import AppConfig, ConfigInvalid, load_config
from tui.screens.client_edit import ClientEditScreen
from tui.screens.help import HelpScreen, screen_actions
from tui.screens.main import MainScreen
from tui.screens.search import SearchScreen
from tui.storeworker import StoreWorker
from tui.widgets.record_hints import record_content_hints


async def test_help_lists_every_action_with_its_id(seeded_vault, make_app):
    app = make_app(seeded_vault)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        text = screen_text(app)
        for title, binding_id in [("Search", "search"), ("Add client", "client.new"), ("New note", "note.new"),
                                  ("Process note", "process.new"), ("Lock", "lock"), ("Quit", "quit")]:
            assert title in text and binding_id in text
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))


async def test_palette_runs_a_screen_action(seeded_vault, make_app):
    app = make_app(seeded_vault)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        titles = [a.title for a in screen_actions(app.screen)]
        assert {"Search", "Add client", "Edit client", "New note", "Process note", "Lock", "Help"} <= set(titles)
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), what="palette")
        await pilot.press(*"Add client")
        await wait_for(pilot, lambda: app.screen.query_one("CommandList").option_count > 0, what="palette hits")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ClientEditScreen), what="action run from the palette")


async def test_keymap_from_settings_remaps_a_binding(seeded_vault, make_app):
    app = make_app(seeded_vault, config=AppConfig(keymap={"search": "f3"}))
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await pilot.press("f3")
        await wait_for(pilot, lambda: isinstance(app.screen, SearchScreen), what="search on the remapped key")
        assert app.screen.query_one("#search-input", Input).has_focus


async def test_theme_comes_from_settings(seeded_vault, make_app):
    app = make_app(seeded_vault, config=AppConfig(theme="nord"))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.theme == "nord"


def test_settings_file(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    monkeypatch.setenv("NOTEWELL_CONFIG", str(path))
    assert load_config() == AppConfig()
    path.write_text('theme = "gruvbox"\nidle_lock_minutes = 2\n[keymap]\nlock = "f12"\n')
    config = load_config()
    assert (config.theme, config.idle_lock_minutes, config.keymap) == ("gruvbox", 2, {"lock": "f12"})
    path.write_text("idle_lock_minutes = -1\n")
    with pytest.raises(ConfigInvalid, match="idle_lock_minutes"):
        load_config()
    path.write_text("theme = \n")
    with pytest.raises(ConfigInvalid, match="not valid TOML"):
        load_config()


@pytest.mark.parametrize(
    "text, kind",
    [
        ("Wondering whether F41.1 fits", "an ICD-10 code"),
        ("billed 90837 today", "a CPT code"),
        ("started sertraline 50 mg", "a medication dose"),
        ("PHQ-9 14 and rising", "a test score"),
        ("we met 10:00-10:50", "session times"),
    ],
)
def test_record_content_hints(text, kind):
    assert record_content_hints(text) == [kind]


def test_reflection_without_record_content_gets_no_hint():
    assert record_content_hints("I noticed my own impatience; ask supervisor about pacing.") == []


async def test_store_worker_owns_one_thread(seeded_vault):
    store = StoreWorker()
    try:
        with pytest.raises(VaultLocked):
            await store.call(lambda v: v.settings())
        await store.open(seeded_vault, PASSPHRASE)
        threads = {await store.call(lambda v: threading.get_ident()) for _ in range(5)}
        assert len(threads) == 1 and threading.get_ident() not in threads
        assert (await store.call(lambda v: v.settings())).clinician_name == "Dana Testwell"
        await store.close()
        assert not store.is_open
        with pytest.raises(VaultLocked):
            await store.call(lambda v: v.settings())
    finally:
        store.shutdown()


async def test_settings_change_the_signer(seeded_vault, make_app):
    from store.vault import Vault
    from tui.screens.settings import SettingsDialog

    app = make_app(seeded_vault)
    async with app.run_test(size=(100, 32)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsDialog) and app.screen.query_one("#credentials", Input).value == "LCSW")
        dialog = app.screen
        dialog.query_one("#late-entry-hours", Input).value = "0"
        await pilot.click("#save")
        await wait_for(pilot, lambda: "late_entry_hours" in screen_text(app), what="validation message")
        dialog.query_one("#late-entry-hours", Input).value = "48"
        dialog.query_one("#credentials", Input).value = "LCSW, PhD"
        # A button ignores clicks during its brief pressed effect, as it would for a person.
        await wait_for(pilot, lambda: not dialog.query_one("#save").has_class("-active"))
        await pilot.click("#save")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="saved")
    vault = Vault.open(seeded_vault, PASSPHRASE)
    try:
        assert (vault.settings().credentials, vault.settings().late_entry_hours) == ("LCSW, PhD", 48)
    finally:
        vault.close()


async def test_todo_outcomes_export_and_audit_open_from_main(seeded_vault, make_app, tmp_path):
    from textual.widgets import DataTable

    from tui.screens.audit_view import AuditViewScreen
    from tui.screens.export_dialog import ExportDialog
    from tui.screens.note_editor import NoteEditorScreen
    from tui.screens.outcomes import OutcomesDialog
    from tui.screens.todo import TodoScreen
    from tui_data import DRAFT_NOTE

    app = make_app(seeded_vault)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: app.screen.client_id)
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, TodoScreen) and app.screen.query_one(DataTable).row_count > 0, what="to-do list")
        todo = app.screen
        assert any(getattr(item, "note_id", None) == DRAFT_NOTE for item in todo.items)
        table = todo.query_one(DataTable)
        table.move_cursor(row=[getattr(i, "note_id", None) for i in todo.items].index(DRAFT_NOTE))
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, NoteEditorScreen) and app.screen.note_id == DRAFT_NOTE, what="editor from to-do")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is todo)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))

        for key, screen_type in (("o", OutcomesDialog), ("x", ExportDialog), ("u", AuditViewScreen)):
            await pilot.press(key)
            await wait_for(pilot, lambda: isinstance(app.screen, screen_type), what=screen_type.__name__)
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
