"""The app's sync service talks to the screens in messages (tui/sync_jobs.py).

A real sync between two real vaults (the other device run as `notewell sync serve`) brings an
edit to the note open in the editor and a new client: the service's `RecordChanged` reaches the
editor on top and the main screen beneath it. A change another program stores, posted through
the service with its document ids, reaches the screen it concerns and no other.
Every wait is a condition with a timeout.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import OptionList, TextArea

from store.device_list import DEVICE_LIST_ID
from store.models import Client
from store.vault import Vault
from tui_data import CLINICIAN, DRAFT_NOTE, FAST_KDF, PASSPHRASE
from tui_helpers import kill_all, started_processes, unlock, wait_for

from tui.screens.main import MainScreen
from tui.screens.note_editor import NoteEditorScreen
from tui.sync_jobs import JobMessage, SyncJobs

OTHER_PASSPHRASE = "home desktop passphrase 3c9e"
WAIT = 30.0
HOME_TEXT = "Written at home: walk before breakfast."  # invented
HOME_CLIENT = "Morgan Quillfeather"  # invented


@pytest.fixture
def notewell():
    start, started = started_processes()
    yield start
    kill_all(started)


def _port(line: str) -> int:
    return int(line.split()[-1].rsplit(":", 1)[1])


@pytest.fixture
def home_serving(seeded_vault: Path, tmp_path: Path, notewell) -> int:
    """A second device, paired with the app's vault and holding its record, then edited there
    (the draft note and a new client), serving syncs. Returns its port."""
    home = tmp_path / "home"
    vault, _ = Vault.create(home, OTHER_PASSPHRASE, device_name="home desktop", settings=CLINICIAN, kdf=FAST_KDF)
    vault.close()
    listener = notewell(home, OTHER_PASSPHRASE, "sync", "pair", "--listen", "--port", "0")
    port = _port(listener.wait_for("listening on"))
    code = listener.wait_for("pairing code:").split(":", 1)[1].strip()
    notewell(seeded_vault, PASSPHRASE, "sync", "pair", f"127.0.0.1:{port}", "--code", code).succeeds()
    listener.succeeds()
    office = notewell(seeded_vault, PASSPHRASE, "sync", "serve", "--port", "0")
    port = _port(office.wait_for("listening on"))
    notewell(home, OTHER_PASSPHRASE, "sync", "now", f"127.0.0.1:{port}").succeeds()
    office.stop()

    vault = Vault.open(home, OTHER_PASSPHRASE)
    try:
        vault.record.set_section(DRAFT_NOTE, "plan", HOME_TEXT)
        vault.record.create_client(Client(display_name=HOME_CLIENT))
    finally:
        vault.close()
    server = notewell(home, OTHER_PASSPHRASE, "sync", "serve", "--port", "0")
    return _port(server.wait_for("listening on"))


def _listed(main: MainScreen, name: str) -> bool:
    listing = main.query_one("#client-list", OptionList)
    return any(str(listing.get_option_at_index(i).prompt) == name for i in range(listing.option_count))


async def _open_draft(pilot) -> tuple[MainScreen, NoteEditorScreen]:
    app = pilot.app
    await unlock(pilot, PASSPHRASE)
    main = next(s for s in app.screen_stack if isinstance(s, MainScreen))
    await wait_for(pilot, lambda: main.client_id is not None, WAIT, "main screen")
    main.open_note("progress", DRAFT_NOTE)
    await wait_for(pilot, lambda: isinstance(app.screen, NoteEditorScreen) and app.screen.loaded, WAIT, "editor")
    return main, app.screen


async def test_a_sync_reaches_the_open_note_and_the_client_list(seeded_vault, home_serving, make_app):
    app = make_app(seeded_vault)
    async with app.run_test(size=(120, 40)) as pilot:
        main, editor = await _open_draft(pilot)
        area = editor.query_one("#section-plan", TextArea)
        assert area.text == "" and not _listed(main, HOME_CLIENT)

        # The service is the app's: started here without the Devices screen, which is not open.
        jobs = app.sync_jobs
        await jobs.prepare()
        posted: list = []
        deliver = jobs._post  # the real delivery, watched: every message still reaches the screens
        jobs._post = lambda message: (posted.append(message), deliver(message))[1]
        assert jobs.sync_now("127.0.0.1", home_serving)
        await wait_for(pilot, lambda: area.text == HOME_TEXT, WAIT, "the other device's edit in the open note")
        # The main screen, beneath the editor, listed the record again.
        await wait_for(pilot, lambda: _listed(main, HOME_CLIENT), WAIT, "the new client in the main list")
        await wait_for(pilot, lambda: jobs.busy is None, WAIT, "the sync to end")
        assert app.screen is editor and editor.mode == "draft"
        # The change names exactly the documents the sync changed here: the note and the client.
        new_client = await app.store.call(
            lambda v: next(r.client_id for r in v.record.list_clients() if r.display_name == HOME_CLIENT))
        changes = [m.doc_ids for m in posted if isinstance(m, SyncJobs.RecordChanged)]
        # The device list changes too where the serving side first adds its vouches to it
        # (store/device_list.py): it is a record document like the others.
        assert len(changes) == 1 and changes[0] - {DEVICE_LIST_ID} == {DRAFT_NOTE, new_client}


async def test_a_change_reaches_only_the_screens_it_concerns(seeded_vault, make_app):
    app = make_app(seeded_vault)
    async with app.run_test(size=(120, 40)) as pilot:
        main, editor = await _open_draft(pilot)
        area = editor.query_one("#section-plan", TextArea)

        # Another program (a second connection to the same vault) stores a client and an edit.
        def elsewhere(v):
            store = v.open_record_store()
            try:
                client = store.create_client(Client(display_name=HOME_CLIENT))
                store.set_section(DRAFT_NOTE, "plan", HOME_TEXT)
                return client.id
            finally:
                v.close_record_store(store)

        client_id = await app.store.call(elsewhere)

        # Told about the client only: the main screen lists it, the open note stays as it was.
        app.sync_jobs.record_changed(frozenset({client_id}))
        await wait_for(pilot, lambda: _listed(main, HOME_CLIENT), WAIT, "the new client in the main list")
        await app.store.call(lambda v: None)  # any reading of the note the editor began is done
        await pilot.pause()
        assert area.text == ""

        # Told about the note: the editor shows it.
        app.sync_jobs.record_changed(frozenset({DRAFT_NOTE}))
        await wait_for(pilot, lambda: area.text == HOME_TEXT, WAIT, "the edit in the open note")

        # "Unknown" (no ids) means any document may have changed.
        assert SyncJobs.RecordChanged().concerns(DRAFT_NOTE)
        assert not SyncJobs.RecordChanged(frozenset({client_id})).concerns(DRAFT_NOTE)


async def test_progress_goes_to_the_devices_screen_only(seeded_vault, make_app):
    """A sync's progress (a message every 50 ms) is for the Devices screen. The main screen
    beneath it has no use for it, and taking it would cost the whole interface: a screen
    below the one on top goes idle after any message and, being visible through the top
    screen's background, has the top screen repainted whole each time."""
    from tui.screens.devices import DevicesScreen

    app = make_app(seeded_vault)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        main = next(s for s in app.screen_stack if isinstance(s, MainScreen))
        await wait_for(pilot, lambda: main.client_id is not None, WAIT, "main screen")
        devices = DevicesScreen()
        app.push_screen(devices)
        await wait_for(pilot, lambda: app.screen is devices and devices.loaded, WAIT, "devices screen")

        received: dict[str, list] = {"main": [], "devices": []}
        for name, screen in (("main", main), ("devices", devices)):
            post = screen.post_message
            screen.post_message = lambda message, post=post, name=name: (received[name].append(message), post(message))[1]

        app.tell_screens(SyncJobs.Progress("Receiving", 3, 10))
        await wait_for(pilot, lambda: devices.last_progress == (3, 10), WAIT, "the progress on the Devices screen")
        assert [type(m) for m in received["devices"] if isinstance(m, JobMessage)] == [SyncJobs.Progress]
        assert [m for m in received["main"] if isinstance(m, JobMessage)] == []

        # What the main screen handles still reaches it under the Devices screen.
        app.tell_screens(SyncJobs.RecordChanged(frozenset({DRAFT_NOTE})))
        assert [type(m) for m in received["main"] if isinstance(m, JobMessage)] == [SyncJobs.RecordChanged]
