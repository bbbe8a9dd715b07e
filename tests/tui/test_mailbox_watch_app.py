"""The app's mailbox folder: set once on the Devices screen, watched, remembered across unlocks.

A real vault in the app, a real second vault driven by real `notewell` processes, a real
folder. The Devices screen's "Watch" box starts the continuous mailbox (sync/mailbox_watch.py);
the screen shows when the folder last brought something in and last took this device's
bundle; after the app is closed and opened again the folder is watched with no screen opened.
"""

from __future__ import annotations

from pathlib import Path

from store.models import Client
from store.vault import Vault
from tui_data import PASSPHRASE
from tui_helpers import NotewellProcess, static_text, unlock, wait_for

from test_devices_screen import OTHER_CLIENT, OTHER_PASSPHRASE, app_vault, open_devices, other_vault, processes  # noqa: F401
from tui.screens.devices import DevicesScreen

WAIT = 60.0
LATER_CLIENT = "Rowan Testcase"  # invented
APP_CLIENT = "Ada Synthetic"  # invented


def _pair(app_vault: Path, other_vault: Path, processes) -> None:
    listener = processes(other_vault, "sync", "pair", "--listen", "--port", "0")
    port = listener.wait_for("listening on").rsplit(":", 1)[1]
    code = listener.wait_for("pairing code:").split()[-1]
    NotewellProcess(app_vault, PASSPHRASE, "sync", "pair", f"127.0.0.1:{port}", "--code", code).succeeds()
    listener.succeeds()


def _clients_of(path: Path, passphrase: str) -> set[str]:
    vault = Vault.open(path, passphrase)
    try:
        return {row.display_name for row in vault.record.list_clients()}
    finally:
        vault.close()


async def _app_clients(app) -> set[str]:
    return set(await app.store.call(lambda v: [row.display_name for row in v.record.list_clients()]))


async def test_watched_folder_brings_in_sends_out_and_is_remembered(app_vault, other_vault, make_app, processes,
                                                                    tmp_path):
    _pair(app_vault, other_vault, processes)
    folder = tmp_path / "Sync" / "notewell"
    folder.mkdir(parents=True)

    app = make_app(app_vault, test_mode=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_devices(pilot)
        assert "not watched" in static_text(screen.query_one("#mailbox-status"))
        screen.query_one("#mailbox-folder").value = str(folder)
        await pilot.click("#mailbox-watch")
        await wait_for(pilot, lambda: app.sync_jobs.watching_mailbox == folder, WAIT, "the watch started")

        # The other device leaves a bundle: it is brought in with nothing pressed here.
        processes(other_vault, "sync", "mailbox", str(folder)).succeeds()
        await wait_for(pilot, lambda: screen.mailbox_times[0] is not None, WAIT, "brought in")
        assert OTHER_CLIENT in await _app_clients(app)
        assert "last brought in never" not in static_text(screen.query_one("#mailbox-status"))

        # A change made in the app goes out on its own.
        sent_before = screen.mailbox_times[1]  # bringing something in sends it on, for devices not paired with it
        await app.store.call(lambda v: v.record.create_client(Client(display_name=APP_CLIENT)))
        await wait_for(pilot, lambda: screen.mailbox_times[1] not in (None, sent_before), WAIT, "sent out")
        assert "last sent out never" not in static_text(screen.query_one("#mailbox-status"))
    processes(other_vault, "sync", "mailbox", str(folder)).succeeds()
    assert APP_CLIENT in _clients_of(other_vault, OTHER_PASSPHRASE)

    # Closed and opened again: the folder is watched again, with no screen opened.
    app = make_app(app_vault, test_mode=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: app.sync_jobs.watching_mailbox == folder, WAIT, "watching after unlock")
        vault = Vault.open(other_vault, OTHER_PASSPHRASE)
        try:
            vault.record.create_client(Client(display_name=LATER_CLIENT))
        finally:
            vault.close()
        processes(other_vault, "sync", "mailbox", str(folder)).succeeds()
        got: list[bool] = [False]

        async def check() -> None:
            got[0] = LATER_CLIENT in await _app_clients(app)

        deadline_checks = 0
        while not got[0]:
            await check()
            deadline_checks += 1
            assert deadline_checks < WAIT / 0.2, "the later client never arrived"
            await pilot.pause(0.2)

        # Unticked on the Devices screen: no longer watched, and not after the next unlock.
        screen = DevicesScreen()
        app.push_screen(screen)
        await wait_for(pilot, lambda: app.screen is screen and screen.loaded, WAIT, "devices screen")
        assert screen.query_one("#mailbox-folder").value == str(folder)
        await pilot.click("#mailbox-watch")
        await wait_for(pilot, lambda: app.sync_jobs.watching_mailbox is None, WAIT, "the watch stopped")
        folder_setting = await app.sync_jobs.mailbox_setting()
        assert folder_setting[:2] == (str(folder), False)
