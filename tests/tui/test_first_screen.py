"""Unlocking draws the first screen (the client list and the first client's timeline) before
any work that grows with the record: the To do counts and the page check come after it.

The To do count is made as slow as a very large record's by holding it until the test lets
go (the real count runs then); the test waits on what is on screen, never on time."""

from __future__ import annotations

import threading

from textual.widgets import OptionList, Static

import tui.screens.todo as todo
from tui_data import PASSPHRASE
from tui_helpers import static_text, unlock, wait_for
from tui.screens.main import MainScreen


def hold(monkeypatch, owner, name: str) -> threading.Event:
    """`owner.name` made to wait on the store thread until the returned event is set (a very
    large record's slowness, without timing); the real function runs then."""
    release = threading.Event()
    real = getattr(owner, name)

    def held(*args, **kwargs):
        release.wait(120)  # the store thread stays here until the test lets go
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, held)
    return release


async def test_first_timeline_is_drawn_before_the_todo_count_finishes(seeded_vault, make_app, monkeypatch):
    release = hold(monkeypatch, todo, "load_overdue")
    app = make_app(seeded_vault)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await unlock(pilot, PASSPHRASE)
            main = next(s for s in app.screen_stack if isinstance(s, MainScreen))
            timeline = main.query_one("#timeline", OptionList)
            summary = main.query_one("#todo-summary", Static)
            await wait_for(pilot, lambda: main.client_id and timeline.option_count > 0, timeout=60,
                           what="the first client's timeline while the To do count is still running")
            assert "To do" not in static_text(summary)
            release.set()
            await wait_for(pilot, lambda: "To do (t):" in static_text(summary), timeout=60, what="the To do count")
            # The page check ran after the first screen too, and passed: writes go ahead.
            check = await app.store.call(lambda vault: vault.page_check)
            await wait_for(pilot, lambda: check.finished, timeout=60, what="the page check")
            assert check.passed
    finally:
        release.set()


async def test_damage_where_the_first_screen_does_not_read_is_shown_after_it(tmp_path, make_app):
    """The page check finds it once the first screen is up; the app says so and saves nothing."""
    from store.models import ClinicianSettings
    from store.synthetic import populate
    from store.vault import Vault
    from tui.screens.dialogs import ErrorModal
    from tui_data import FAST_KDF

    path = tmp_path / "vault"
    settings = ClinicianSettings(clinician_name="Dr. Page Tester", credentials="PhD")
    vault, _ = Vault.create(path, PASSPHRASE, device_name="test device", settings=settings, kdf=FAST_KDF)
    try:
        populate(vault, clients=3, notes=60, process_notes=4, seed=11)
    finally:
        vault.close()
    raw = bytearray((path / "record.db").read_bytes())
    at = len(raw) - 4096 + 1000  # inside the last page, which the first screen does not read
    raw[at : at + 32] = bytes(b ^ 0x5A for b in raw[at : at + 32])
    (path / "record.db").write_bytes(bytes(raw))
    damaged = bytes(raw)

    app = make_app(path)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        main = next(s for s in app.screen_stack if isinstance(s, MainScreen))
        await wait_for(pilot, lambda: main.first_screen_drawn, timeout=60, what="the first screen")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal), timeout=60, what="the damage shown")
        title = static_text(app.screen.query_one("#error-message", Static))
        assert "record.db is damaged" in title and "Nothing more is saved" in title
        settings_write = app.store.call(lambda vault: vault.update_settings(practice_name="Not saved"))
        from store.errors import DamagedVault

        try:
            await settings_write
        except DamagedVault:
            pass
        else:
            raise AssertionError("a write to a damaged vault went ahead")
        await app.store.close()
    assert (path / "record.db").read_bytes() == damaged


async def test_first_timeline_is_drawn_before_its_notes_are_read_for_their_first_words(seeded_vault, make_app, monkeypatch):
    """The first words of each note are a document load a note: the timeline's rows are on
    screen first, and the first words are added to the same rows once read."""
    import tui.screens.main as main_screen

    release = hold(monkeypatch, main_screen, "read_previews")
    app = make_app(seeded_vault)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await unlock(pilot, PASSPHRASE)
            main = next(s for s in app.screen_stack if isinstance(s, MainScreen))
            timeline = main.query_one("#timeline", OptionList)
            await wait_for(pilot, lambda: main.client_id and timeline.option_count > 0 and main.first_screen_painted,
                           timeout=60, what="the first client's timeline while its notes' first words are still read")
            prompts = lambda: [str(timeline.get_option_at_index(i).prompt) for i in range(timeline.option_count)]  # noqa: E731
            shown = prompts()
            assert main.previews_shown_for is None
            assert any("[signed]" in p for p in shown) and not any("Client reports fewer worry" in p for p in shown)
            release.set()
            await wait_for(pilot, lambda: main.previews_shown_for == main.client_id, timeout=60, what="the first words")
            after = prompts()
            assert len(after) == len(shown)  # the same rows, with their first words added
            assert any("[signed]" in p and "Client reports fewer worry" in p for p in after)
    finally:
        release.set()


async def test_the_heap_is_settled_after_the_first_timeline_is_drawn(seeded_vault, make_app, monkeypatch):
    """A full collection (NotewellApp.settle_heap) is work that can wait for the first screen."""
    from tui.app import NotewellApp

    seen: list[bool] = []
    real = NotewellApp.settle_heap

    def settle(self):
        main = next((s for s in self.screen_stack if isinstance(s, MainScreen)), None)
        seen.append(bool(main and main.client_id and main.query_one("#timeline", OptionList).option_count))
        return real(self)

    monkeypatch.setattr(NotewellApp, "settle_heap", settle)
    # The client's notes are read slowly, as a large record's are: held until the main screen is up.
    from store.record import RecordStore

    release = hold(monkeypatch, RecordStore, "notes_for_client")
    app = make_app(seeded_vault)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await unlock(pilot, PASSPHRASE)
            await wait_for(pilot, lambda: any(isinstance(s, MainScreen) and s.is_mounted for s in app.screen_stack),
                           timeout=60, what="the main screen")
            await pilot.pause()
            release.set()
            await wait_for(pilot, lambda: seen, timeout=60, what="the heap settled")
            assert seen[0], "the heap was settled before the first timeline was on screen"
            check = await app.store.call(lambda vault: vault.page_check)
            await wait_for(pilot, lambda: check.finished, timeout=60, what="the page check")
    finally:
        release.set()


def hold_key_derivation(monkeypatch) -> tuple[threading.Event, threading.Event]:
    """The passphrase's key derivation made to wait until the test lets go (a slow Argon2id,
    without timing): (started, release). The real derivation runs then."""
    from store import keys

    started, release = threading.Event(), threading.Event()
    real = keys.passphrase_kek

    def held(*args, **kwargs):
        started.set()
        release.wait(120)
        return real(*args, **kwargs)

    monkeypatch.setattr(keys, "passphrase_kek", held)
    return started, release


async def test_the_main_screen_is_composed_while_the_key_is_derived(seeded_vault, make_app, monkeypatch):
    """Enter starts the key derivation on the vault's thread and, meanwhile, the main screen is
    composed and mounted (the derivation leaves the interpreter to the UI: argon2-cffi
    releases the GIL); once the vault is open, only the lists are read and drawn."""
    from textual.widgets import Input

    from tui.screens.unlock import UnlockScreen

    started, release = hold_key_derivation(monkeypatch)
    app = make_app(seeded_vault)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, UnlockScreen), what="unlock screen")
            app.screen.query_one("#passphrase", Input).value = PASSPHRASE
            await pilot.press("enter")
            await wait_for(pilot, started.is_set, timeout=60, what="the key derivation started")
            await wait_for(
                pilot,
                lambda: isinstance(app.screen, MainScreen) and app.screen.is_mounted
                and app.screen.query_one("#timeline", OptionList) and app.screen.query_one("#client-list", OptionList),
                timeout=60, what="the main screen mounted while the key is still being derived",
            )
            main = app.screen
            assert not app.store.is_open
            assert main.query_one("#client-list", OptionList).option_count == 0  # nothing read before the key
            release.set()
            await wait_for(pilot, lambda: main.client_id and main.first_screen_painted
                           and main.query_one("#timeline", OptionList).option_count > 0,
                           timeout=60, what="the first client's timeline")
            assert app.screen is main and app.store.is_open
            check = await app.store.call(lambda vault: vault.page_check)
            await wait_for(pilot, lambda: check.finished, timeout=60, what="the page check")
    finally:
        release.set()


async def test_a_wrong_passphrase_leaves_the_early_main_screen_for_the_unlock_screen(seeded_vault, make_app, monkeypatch):
    """The main screen composed during the derivation shows nothing of the record, and a wrong
    passphrase takes the clinician back to the unlock screen, which says so."""
    from textual.widgets import Input

    from tui.screens.unlock import UnlockScreen

    started, release = hold_key_derivation(monkeypatch)
    app = make_app(seeded_vault)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, UnlockScreen), what="unlock screen")
            app.screen.query_one("#passphrase", Input).value = "not the passphrase"
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen) and app.screen.is_mounted,
                           timeout=60, what="the main screen while the key is derived")
            release.set()
            await wait_for(
                pilot,
                lambda: isinstance(app.screen, UnlockScreen)
                and "not correct" in static_text(app.screen.query_one("#unlock-status", Static)),
                timeout=60, what="the unlock screen saying the passphrase is wrong",
            )
            assert not any(isinstance(s, MainScreen) for s in app.screen_stack)
            assert not app.store.is_open
            assert app.screen.query_one("#passphrase", Input).has_focus
    finally:
        release.set()
