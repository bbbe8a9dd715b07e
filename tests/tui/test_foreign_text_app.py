"""Text from another device shows in the app as typed: never markup, never a terminal escape.

A second vault (a real `notewell` process) pairs with the app's vault and leaves a bundle in a
shared folder; the folder also holds a file under a hostile name. The other device's name and
its clients' names carry Textual markup (a click action among them) and escape sequences.
The app runs the mailbox from the Devices screen, then again with no Devices screen open (a
notification), and lists the clients that arrived. Before, the markup was obeyed and the
escape bytes went to the terminal.
"""

from __future__ import annotations

import html
from pathlib import Path

import pytest

from store.models import Client
from store.vault import Vault
from tui_data import CLINICIAN, FAST_KDF, PASSPHRASE
from tui_helpers import kill_all, started_processes, static_text, unlock, wait_for

from tui.screens.devices import DevicesScreen
from tui.screens.main import MainScreen

OTHER_PASSPHRASE = "other device passphrase 51c0"
OTHER_DEVICE = "home[bold]desk"
MARKUP_CLIENT = "[red]Mallory[/]\x1b[2J"  # invented
CLICK_CLIENT = "[@click=app.quit]Quit"  # invented
HOSTILE_FILE = "evil\x1b]0;owned\x07[b]x-00000001.nwb"
RAW = ("\x1b", "\x07")
WAIT = 30.0


@pytest.fixture
def processes():
    start, started = started_processes()
    yield start
    kill_all(started)


@pytest.fixture
def vaults(tmp_path: Path) -> tuple[Path, Path]:
    office, home = tmp_path / "office", tmp_path / "home"
    Vault.create(office, PASSPHRASE, device_name="office laptop", settings=CLINICIAN, kdf=FAST_KDF)[0].close()
    vault, _ = Vault.create(home, OTHER_PASSPHRASE, device_name=OTHER_DEVICE, settings=CLINICIAN, kdf=FAST_KDF)
    try:
        for name in (MARKUP_CLIENT, CLICK_CLIENT):
            vault.record.create_client(Client(display_name=name))
    finally:
        vault.close()
    return office, home


def shown(app) -> str:
    """Everything on the terminal now, as text."""
    return html.unescape(app.export_screenshot()).replace("\xa0", " ")


def toasts(app) -> list[str]:
    return [toast.render().plain for toast in app.screen.query("Toast")]


async def test_names_and_file_names_from_another_device_show_as_typed(vaults, make_app, processes, tmp_path):
    office, home = vaults
    listener = processes(office, PASSPHRASE, "sync", "pair", "--listen", "--port", "0")
    port = listener.wait_for("listening on").rsplit(":", 1)[1]
    code = listener.wait_for("pairing code:").split()[-1]
    processes(home, OTHER_PASSPHRASE, "sync", "pair", f"127.0.0.1:{port}", "--code", code).succeeds()
    listener.succeeds()
    folder = tmp_path / "shared"
    folder.mkdir()
    processes(home, OTHER_PASSPHRASE, "sync", "mailbox", str(folder)).succeeds()
    (folder / HOSTILE_FILE).write_bytes(b"not a bundle")

    app = make_app(office)
    async with app.run_test(size=(160, 50), notifications=True) as pilot:
        await unlock(pilot, PASSPHRASE)
        screen = DevicesScreen()
        app.push_screen(screen)
        await wait_for(pilot, lambda: app.screen is screen and screen.loaded, WAIT, "devices screen")
        screen.query_one("#mailbox-folder").value = str(folder)
        await pilot.click("#mailbox-run")
        await wait_for(pilot, lambda: screen.last_result is not None or screen.last_error is not None, WAIT, "mailbox")
        assert screen.last_error is None, screen.last_error
        assert screen.last_result.received == 2 and len(screen.last_result.bundles.rejected) == 1

        status = static_text(screen.query_one("#sync-status"))
        assert not [ch for ch in RAW if ch in status]
        assert "evil\\x1b]0;owned\\x07[b]x-00000001.nwb" in status
        await pilot.pause()
        on_screen = shown(app)
        assert OTHER_DEVICE in on_screen  # the peer table: markup shown, not obeyed

        # With no Devices screen open, the result is a notification.
        app.pop_screen()
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), WAIT, "main screen")
        assert app.sync_jobs.mailbox(folder)
        await wait_for(pilot, lambda: any("Synced through the mailbox" in t for t in toasts(app)), WAIT, "notification")
        note = next(t for t in toasts(app) if "Synced through the mailbox" in t)
        assert not [ch for ch in RAW if ch in note]
        assert "evil\\x1b]0;owned\\x07[b]x-00000001.nwb" in note

        # The clients that came in, listed as typed.
        await wait_for(pilot, lambda: "Mallory" in shown(app), WAIT, "the clients listed")
        on_screen = shown(app)
        assert "[red]Mallory[/]\\x1b[2J" in on_screen
        assert CLICK_CLIENT in on_screen
        assert not [ch for ch in RAW if ch in on_screen]
