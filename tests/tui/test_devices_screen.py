"""The Devices and sync screen against real `notewell` processes on 127.0.0.1.

The app's vault pairs with a second vault run as `notewell sync pair --listen`, then syncs with
it run as `notewell sync serve`; both vaults are real encrypted files with a fast KDF. Every
wait is a condition with a timeout.
"""

from __future__ import annotations

import asyncio
import time
from datetime import date
from pathlib import Path

import pytest

from store.models import Client, NoteFormat, ProgressNote, SessionFacts
from store.vault import Vault
from tui_data import CLINICIAN, FAST_KDF, PASSPHRASE
from tui_helpers import kill_all, started_processes, static_text, unlock, wait_for

from sync.peers import PeerBook
from tui.screens.devices import DevicesScreen
from tui.screens.main import MainScreen
from textual.widgets import Checkbox

OTHER_PASSPHRASE = "other device passphrase 7f3a"
OTHER_CLIENT = "Quinn Farwell"  # invented
WAIT = 20.0


@pytest.fixture
def processes():
    start, started = started_processes()
    yield lambda vault, *args: start(vault, OTHER_PASSPHRASE, *args)
    kill_all(started)


@pytest.fixture
def app_vault(tmp_path: Path) -> Path:
    path = tmp_path / "app-vault"
    vault, _ = Vault.create(path, PASSPHRASE, device_name="office laptop", settings=CLINICIAN, kdf=FAST_KDF)
    vault.close()
    return path


@pytest.fixture
def other_vault(tmp_path: Path) -> Path:
    """The second device: one client with two draft notes."""
    path = tmp_path / "other-vault"
    vault, _ = Vault.create(path, OTHER_PASSPHRASE, device_name="home desktop", settings=CLINICIAN, kdf=FAST_KDF)
    try:
        client = vault.record.create_client(Client(display_name=OTHER_CLIENT))
        for day in (3, 10):
            vault.record.create_note(ProgressNote(
                client_id=client.id, format=NoteFormat.DAP,
                facts=SessionFacts(date_of_service=date(2026, 11, day)),
            ))
        vault.identity  # noqa: B018 (made on first use)
    finally:
        vault.close()
    return path


def _address(line: str) -> str:
    return line.split()[-1]


async def open_devices(pilot) -> DevicesScreen:
    app = pilot.app
    await unlock(pilot, PASSPHRASE)
    screen = DevicesScreen()
    app.push_screen(screen)
    await wait_for(pilot, lambda: app.screen is screen and screen.identity is not None, WAIT, "devices screen")
    return screen


def status(screen) -> str:
    return static_text(screen.query_one("#sync-status"))


async def test_shows_this_device(app_vault, make_app):
    vault = Vault.open(app_vault, PASSPHRASE)
    try:
        expected = vault.identity.short_id
    finally:
        vault.close()
    from tui.screens.help import screen_actions

    app = make_app(app_vault, test_mode=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        assert "Devices and sync" in [a.title for a in screen_actions(app.screen)]  # so in the palette
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, DevicesScreen) and app.screen.loaded, WAIT, "devices")
        screen = app.screen
        text = static_text(screen.query_one("#this-device"))
        assert "office laptop" in text and expected in text
        assert screen.query_one("#no-peers").display and screen.query_one("#peer-table").row_count == 0


async def test_pair_then_sync_brings_the_other_devices_notes(app_vault, other_vault, make_app, processes):
    app = make_app(app_vault, test_mode=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_devices(pilot)

        # Pair: the other device shows a code; this one types the address and the code.
        listener = processes(other_vault, "sync", "pair", "--listen", "--port", "0")
        address = _address(listener.wait_for("listening on"))
        code = listener.wait_for("pairing code:").split(":", 1)[1].strip()
        screen.query_one("#address").value = address
        screen.query_one("#code").value = code
        await pilot.click("#pair")
        await wait_for(pilot, lambda: screen.peers and screen.jobs.busy is None, WAIT, "pairing")
        assert screen.last_error is None, screen.last_error
        assert [p.name for p in screen.peers] == ["home desktop"]
        assert "Paired with home desktop" in status(screen)
        assert listener.proc.wait(timeout=WAIT) == 0

        # Sync now with the other device serving.
        server = processes(other_vault, "sync", "serve", "--port", "0")
        address = _address(server.wait_for("listening on"))
        screen.query_one("#address").value = address
        await pilot.click("#sync-now")
        await wait_for(pilot, lambda: screen.last_result is not None or screen.last_error is not None, WAIT, "sync")
        assert screen.last_error is None, screen.last_error
        report = screen.last_result
        assert report.received == 3 and report.errors == []  # one client, two notes
        assert screen.last_progress == (3, 3)  # the bar was fed as documents arrived
        assert "received 3" in status(screen)
        await wait_for(pilot, lambda: "ok: received 3" in str(screen.query_one("#peer-table").get_row_at(0)[4]),
                       WAIT, "last sync shown")

        # The notes are in the app's vault, and the main screen lists the client.
        def arrived(v):
            other = [c for c in v.record.list_clients("") if c.display_name == OTHER_CLIENT]
            return len(other), len(v.record.notes_for_client(other[0].client_id)) if other else 0

        assert await app.store.call(arrived) == (1, 2)
        assert address in (await app.store.call(lambda v: PeerBook(v.record.replica).addresses())).values()
        events = await app.store.call(lambda v: [e.event for e in v.audit.entries()])
        assert "device_paired" in events and "sync_session" in events
        server.stop()

        # Sync again and stay connected: edits then go both ways as they are saved.
        note = next(iter(await app.store.call(
            lambda v: [n.note_id for c in v.record.list_clients("") for n in v.record.notes_for_client(c.client_id)])))
        server = processes(other_vault, "sync", "serve", "--port", "0")
        screen.query_one("#address").value = _address(server.wait_for("listening on"))
        screen.query_one("#live", Checkbox).value = True
        await pilot.click("#sync-now")
        await wait_for(pilot, lambda: screen.jobs.live_with == "home desktop", WAIT, "live session")
        assert "staying connected" in status(screen)
        server.wait_for("live with")

        def other_text() -> str:
            vault = Vault.open(other_vault, OTHER_PASSPHRASE)
            try:
                return vault.record.get_note(note).sections["data"]
            finally:
                vault.close()

        await app.store.call(lambda v: v.record.set_section(note, "data", "Typed at the office."))
        await wait_for(pilot, lambda: other_text() == "Typed at the office.", WAIT, "the edit on the other device")
        vault = Vault.open(other_vault, OTHER_PASSPHRASE)
        try:
            vault.record.set_section(note, "data", "Typed at the office. Added at home.")
        finally:
            vault.close()
        here = lambda: app.store.call(lambda v: v.record.get_note(note).sections["data"])  # noqa: E731
        deadline = time.monotonic() + WAIT
        while await here() != "Typed at the office. Added at home." and time.monotonic() < deadline:
            await pilot.pause(0.05)
        assert await here() == "Typed at the office. Added at home."
        await wait_for(pilot, lambda: "received 1" in status(screen), WAIT, "live counts shown")
        await pilot.click("#cancel")
        await wait_for(pilot, lambda: screen.jobs.busy is None and screen.last_result is not None, WAIT, "disconnected")
        assert screen.last_error is None and "Synced with home desktop" in status(screen)
        assert server.wait_for("synced with")
        server.stop()
        screen.query_one("#live", Checkbox).value = False

        # Listening outlives the screen, and the lock stops it before the vault closes.
        screen.query_one("#listen-on").value = "127.0.0.1:0"
        screen.action_toggle_listen()
        await wait_for(pilot, lambda: screen.jobs.listening is not None, WAIT, "listening")
        jobs = screen.jobs
        await pilot.press("escape")
        main = app.screen
        assert isinstance(main, MainScreen)
        listing = main.query_one("#client-list")
        await wait_for(
            pilot,
            lambda: any(str(listing.get_option_at_index(i).prompt) == OTHER_CLIENT for i in range(listing.option_count)),
            WAIT, "client in the main list",
        )
        assert jobs.listening is not None
        assert jobs._pool is not None  # started when the screen opened
        workers = [w.proc for w in jobs._pool._workers]  # none on a one-core machine
        app.lock()
        await wait_for(pilot, lambda: not app.store.is_open, WAIT, "locked")
        assert jobs.listening is None and not jobs._running
        await wait_for(pilot, lambda: jobs._pool is None and all(p.poll() is not None for p in workers),
                       WAIT, "worker processes ended")


async def test_opening_the_screen_starts_the_sync_workers(app_vault, make_app):
    """A sync from the Devices screen does not wait for its worker processes to start: the
    screen starts them on opening, once, and the lock stops them."""
    app = make_app(app_vault)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_devices(pilot)
        jobs = screen.jobs
        await wait_for(pilot, lambda: jobs._pool is not None and not jobs._running, WAIT, "workers started")
        pool = jobs._pool
        workers = [w.proc for w in pool._workers]  # none on a one-core machine
        assert len(workers) == pool.worker_count
        assert await asyncio.to_thread(pool.wait_ready)
        await pilot.press("escape")
        await open_devices_again(pilot)
        assert jobs._pool is pool and [w.proc for w in pool._workers] == workers  # not started twice
        app.lock()
        await wait_for(pilot, lambda: not app.store.is_open, WAIT, "locked")
        await wait_for(pilot, lambda: jobs._pool is None and all(p.poll() is not None for p in workers),
                       WAIT, "worker processes ended")


async def open_devices_again(pilot) -> DevicesScreen:
    screen = DevicesScreen()
    pilot.app.push_screen(screen)
    await wait_for(pilot, lambda: pilot.app.screen is screen and screen.loaded, WAIT, "devices screen")
    return screen


async def test_wrong_code_is_a_clear_message(app_vault, other_vault, make_app, processes):
    app = make_app(app_vault, test_mode=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_devices(pilot)
        listener = processes(other_vault, "sync", "pair", "--listen", "--port", "0")
        address = _address(listener.wait_for("listening on"))
        code = listener.wait_for("pairing code:").split(":", 1)[1].strip()
        wrong = "".join("1" if ch == "0" else "0" if ch.isdigit() else ch for ch in code)
        screen.query_one("#address").value = address
        screen.query_one("#code").value = wrong
        screen.action_pair()
        await wait_for(pilot, lambda: screen.last_error is not None, WAIT, "pairing refused")
        assert "not accepted" in status(screen)
        assert "Traceback" not in status(screen)
        assert screen.query_one("#sync-status").has_class("error")
        assert screen.peers == []
        listener.proc.wait(timeout=WAIT)  # the code is burnt: the listener gives up


async def test_a_mistyped_address_or_code_starts_nothing(app_vault, make_app):
    app = make_app(app_vault, test_mode=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_devices(pilot)
        screen.query_one("#address").value = "not an address:"
        screen.action_sync_now()
        await pilot.pause()
        assert "is not an address" in status(screen)
        screen.query_one("#address").value = "127.0.0.1:9"
        screen.query_one("#code").value = "12-34"
        screen.action_pair()
        await pilot.pause()
        assert "8 digits" in status(screen)
        assert screen.jobs.busy is None
        # A well-formed address, but this device has nobody to sync with yet.
        screen.action_sync_now()
        await wait_for(pilot, lambda: screen.last_error is not None, WAIT, "sync refused")
        assert "not paired with any other device yet" in status(screen)


async def test_show_a_code_and_the_other_device_enters_it(app_vault, other_vault, make_app, processes, tmp_path):
    from tui.screens.devices import PairCodeDialog
    from tui.screens.dialogs import ConfirmDialog

    app = make_app(app_vault, test_mode=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_devices(pilot)
        screen.query_one("#listen-on").value = "127.0.0.1:0"
        await pilot.click("#show-code")
        await wait_for(pilot, lambda: isinstance(app.screen, PairCodeDialog), WAIT, "code shown")
        dialog = app.screen
        address = static_text(dialog.query_one("#pair-address")).split()[-1]
        code = dialog.query_one("#pair-code").value
        joiner = processes(other_vault, "sync", "pair", address, "--code", code)
        assert joiner.proc.wait(timeout=WAIT) == 0
        await wait_for(pilot, lambda: app.screen is screen and screen.peers, WAIT, "paired")
        assert [p.name for p in screen.peers] == ["home desktop"]
        assert "Paired with home desktop" in status(screen)

        # The mailbox: the other device leaves a bundle in a folder, this one runs it.
        folder = tmp_path / "mailbox"
        folder.mkdir()
        writer = processes(other_vault, "sync", "mailbox", str(folder))
        assert writer.proc.wait(timeout=WAIT) == 0
        screen.query_one("#mailbox-folder").value = str(folder)
        await pilot.click("#mailbox-run")
        await wait_for(pilot, lambda: screen.last_result is not None or screen.last_error is not None, WAIT, "mailbox")
        assert screen.last_error is None, screen.last_error
        assert screen.last_result.received == 3 and not screen.last_result.bundles.rejected
        assert "Synced through the mailbox: received 3" in status(screen)

        # Forget it, after a confirmation.
        screen.query_one("#peer-table").focus()
        await pilot.press("f10")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), WAIT, "confirmation")
        await pilot.click("#yes")
        await wait_for(pilot, lambda: screen.peers and screen.peers[0].revoked, WAIT, "revoked")
        assert "revoked" in status(screen)
        assert str(screen.query_one("#peer-table").get_row_at(0)[2]) == "revoked"


SIZES = [(80, 24), (120, 40)]


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "120x40"])
def test_devices_screen_snapshot(snap_compare, seeded_vault, make_app, size):
    app = make_app(seeded_vault)  # test mode: ids and times are masked

    async def ready(pilot):
        await unlock(pilot, PASSPHRASE)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, DevicesScreen) and app.screen.loaded, WAIT, "devices screen")
        # The table sizes its columns on a later refresh.
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=ready)


async def test_lock_while_showing_a_code_stops_the_listener(app_vault, make_app):
    from tui.screens.devices import PairCodeDialog
    from tui.screens.unlock import UnlockScreen

    app = make_app(app_vault, test_mode=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_devices(pilot)
        jobs = screen.jobs
        screen.query_one("#listen-on").value = "127.0.0.1:0"
        screen.action_show_code()
        await wait_for(pilot, lambda: isinstance(app.screen, PairCodeDialog), WAIT, "code shown")
        assert jobs.busy == "pairing" and jobs._running
        app.lock()
        await wait_for(pilot, lambda: isinstance(app.screen, UnlockScreen), WAIT, "locked")
        # The worker closed its own connection before the vault closed, and nothing is left running.
        assert not jobs._running and jobs.busy is None and not app.store.is_open
