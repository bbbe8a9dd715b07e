"""Devices and sync: this device, its paired devices, pairing, sync now, listening, the mailbox.

The work itself is the app's sync service (tui/sync_jobs.py, `app.sync_jobs`): this screen
starts jobs there and shows what the service reports in its messages (`on_sync_jobs_...`).
The address a device was reached at is remembered with the paired devices (sync/peers.py), so
the next sync needs one key.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Checkbox, DataTable, Digits, Footer, Input, Label, ProgressBar, Static

from store.errors import NotewellError
from sync.addresses import DEFAULT_PAIR_PORT, DEFAULT_SYNC_PORT, BadAddress
from sync.addresses import parse_address as parse_typed_address
from tui.printable import printable
from tui.screens.base import NotewellModal, NotewellScreen
from tui.sync_jobs import SyncCancelled, SyncJobs, finished_text

MASK = "········"  # ids and times in test mode, so snapshots do not change from run to run


class BadInput(NotewellError):
    title = "Check what you typed"


def parse_address(text: str, default_port: int) -> tuple[str, int]:
    """The other device's HOST:PORT as typed; a mistake is one sentence (BadInput)."""
    if not text.strip():
        raise BadInput("Type the other device's address first, as HOST:PORT (it is shown on that device).")
    try:
        return parse_typed_address(text, default_port)
    except BadAddress:
        raise BadInput(f"{text.strip()!r} is not an address; type it as HOST:PORT, e.g. 192.168.1.20:7341.") from None


def parse_listen_address(text: str, default_port: int) -> tuple[str, int]:
    """HOST or HOST:PORT to listen on (empty: this computer only); port 0 picks a free one."""
    text = text.strip() or "127.0.0.1"
    try:
        return parse_typed_address(text, default_port, listening=True)
    except BadAddress:
        raise BadInput(f"{text!r} is not an address to listen on; type HOST or HOST:PORT, e.g. 0.0.0.0:7341.") from None


# The sync layer's sentences name the command line's tools; on this screen, the screen's own.
APP_WORDS = {
    "is `notewell sync serve` running there?": "is it listening (Listen, on its Devices and sync screen)?",
    "is `notewell sync pair --listen` running there?": "is it showing a code (Show a code, on its Devices and sync screen)?",
    "pair one first with `notewell sync pair`.": "pair one first: Show a code here, or Pair with code.",
}


def in_app_words(message: str) -> str:
    for said, here in APP_WORDS.items():
        message = message.replace(said, here)
    return message


def network_address() -> str:
    """This computer's address on its network, to type on the other device.

    Connecting a UDP socket sends nothing; it only asks the system which local address
    it would use to reach a (private) address."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))
            return probe.getsockname()[0]
    except OSError:
        return "this computer's network address"


def _when(iso: str | None, test_mode: bool) -> str:
    if iso is None:
        return "never"
    if test_mode:
        return MASK
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


def _iso(seconds: float | None) -> str | None:
    """Seconds since the epoch (the mailbox's activity times) as `_when` reads them."""
    return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc).isoformat()


class PairCodeDialog(NotewellModal[None]):
    """The code, big, and the address to type on the other device; Cancel voids the code."""

    BINDINGS = [Binding("escape", "cancel", "Cancel pairing", id="devices.code.cancel")]

    def __init__(self, address: str, code: str, minutes: int) -> None:
        super().__init__(classes="dialog")
        self._address, self._code, self._minutes = address, code, minutes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box", id="pair-code-box"):
            yield Label("Pair a device: show this code", classes="dialog-title")
            yield Static(
                "On the other device open Devices and sync, type this address and code, and "
                f"choose Pair. The code works once and expires in {self._minutes} minutes.",
                classes="hint",
            )
            yield Static(f"Address: {self._address}", id="pair-address", markup=False)
            yield Digits(self._code, id="pair-code")
            yield Static("Waiting for the other device...", classes="dim")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel-code", variant="warning")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_cancel()

    def action_cancel(self) -> None:
        self.app.sync_jobs.cancel()
        self.dismiss(None)


class DevicesScreen(NotewellScreen[None]):
    AUTO_FOCUS = "#address"
    BINDINGS = [
        Binding("escape", "back", "Back", id="devices.back"),
        Binding("f5", "sync_now", "Sync now", id="devices.sync"),
        Binding("f6", "pair", "Pair with code", id="devices.pair"),
        Binding("f7", "show_code", "Show a code", id="devices.show_code"),
        Binding("f8", "toggle_listen", "Listen", id="devices.listen"),
        Binding("f9", "mailbox", "Mailbox", id="devices.mailbox"),
        Binding("f10", "forget", "Forget device", id="devices.forget", show=False),
        Binding("f4", "cancel", "Cancel", id="devices.cancel", show=False),
    ]
    DEFAULT_CSS = """
    DevicesScreen { layout: vertical; }
    DevicesScreen #devices-title { text-style: bold; padding: 0 1; }
    DevicesScreen #this-device { padding: 0 1; color: $text-muted; }
    DevicesScreen #peer-table { height: 1fr; min-height: 4; margin: 0 1; }
    DevicesScreen #no-peers { padding: 0 1; color: $text-muted; display: none; }
    DevicesScreen #peer-result { padding: 0 1; height: auto; color: $text-muted; }
    DevicesScreen #devices-controls { height: auto; max-height: 12; padding: 0 1; }
    DevicesScreen .devices-row { height: 1; margin-top: 1; }
    DevicesScreen .devices-row Label { width: auto; padding: 0 1 0 0; }
    DevicesScreen .devices-row Input { width: 1fr; }
    DevicesScreen #code { width: 14; }
    DevicesScreen #listen-on { width: 18; }
    DevicesScreen #listen-port { width: 7; }
    DevicesScreen .devices-row.status-row { margin-top: 0; }
    DevicesScreen .devices-row Button { margin: 0 1 0 0; min-width: 0; width: auto; padding: 0 1; }
    DevicesScreen .devices-row Checkbox { width: auto; margin: 0 1 0 0; }
    DevicesScreen #live { margin: 0 0 0 1; }
    DevicesScreen #listen-status { width: 1fr; color: $text-muted; }
    DevicesScreen #mailbox-status { width: 1fr; color: $text-muted; }
    DevicesScreen #progress-row { height: 1; padding: 0 1; margin-top: 1; display: none; }
    DevicesScreen #progress-row.running { display: block; }
    DevicesScreen #progress-label { width: 1fr; padding: 0 0 0 1; }
    DevicesScreen #sync-status { height: auto; min-height: 1; padding: 0 1; }
    DevicesScreen #sync-status.error { color: $error; }
    DevicesScreen #sync-status.done { color: $success; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.jobs: SyncJobs | None = None
        self.identity: Any = None
        self.peers: list = []
        self.addresses: dict[str, str] = {}  # device id -> the address it was last reached at
        self.last_result: Any = None
        self.last_error: NotewellError | None = None
        self._code_dialog: PairCodeDialog | None = None
        self.loaded = False  # identity and peers shown at least once
        self.last_progress: tuple[int, int] | None = None
        self._pending_address: str | None = None  # of the sync now running, remembered if it works
        self._pairing_host: str | None = None  # of the pairing now running: its sync address after
        self._listen_error = False  # the sync status shows why listening failed (cleared once it works)
        self.mailbox_times: tuple[float | None, float | None] = (None, None)  # last brought in, last sent out
        self._mailbox_problem: str | None = None  # the watch's current trouble, shown until a round works

    def compose(self) -> ComposeResult:
        yield Static("Devices and sync", id="devices-title")
        yield Static("This device: ...", id="this-device", markup=False)
        yield DataTable(id="peer-table", cursor_type="row", zebra_stripes=True)
        yield Static(
            "No paired devices yet. Pair one: choose Show a code here, or type the address and "
            "code shown on the other device and choose Pair with code.",
            id="no-peers", markup=False,
        )
        # The selected device's last result in full: the table's column is cut on a narrow screen.
        yield Static("", id="peer-result", markup=False)
        with VerticalScroll(id="devices-controls"):
            with Horizontal(classes="devices-row"):
                yield Label("Address")
                yield Input(placeholder="HOST:PORT of the other device", id="address", compact=True)
                yield Label(" Code")
                yield Input(placeholder="1234-5678", id="code", compact=True)
                yield Checkbox("Stay connected", id="live", compact=True)
            with Horizontal(classes="devices-row"):
                yield Button("Sync now", id="sync-now", variant="primary", compact=True)
                yield Button("Pair with code", id="pair", compact=True)
                yield Button("Show a code", id="show-code", compact=True)
                yield Button("Forget device", id="forget", variant="error", compact=True)
                yield Button("Cancel", id="cancel", disabled=True, compact=True)
            with Horizontal(classes="devices-row"):
                yield Checkbox("Listen while open, on", id="listen", compact=True)
                yield Input(value="127.0.0.1", id="listen-on", compact=True)
                yield Label(" port")
                # Where syncs are listened for (remembered); Show a code uses its own port.
                yield Input(value=str(DEFAULT_SYNC_PORT), id="listen-port", compact=True)
            with Horizontal(classes="devices-row status-row"):
                yield Static("", id="listen-status", markup=False)
            with Horizontal(classes="devices-row"):
                yield Label("Mailbox folder")
                yield Input(placeholder="a folder on a USB stick or a shared drive", id="mailbox-folder", compact=True)
                # Remembered: watched again after every unlock (tui/sync_jobs.py).
                yield Checkbox("Watch", id="mailbox-watch", compact=True)
                yield Button("Run mailbox sync", id="mailbox-run", compact=True)
            with Horizontal(classes="devices-row status-row"):
                yield Static("", id="mailbox-status", markup=False)
        with Horizontal(id="progress-row"):
            yield ProgressBar(id="sync-progress", show_eta=False)
            yield Static("", id="progress-label", markup=False)
        yield Static("", id="sync-status", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        if self.app.test_mode:
            for box in self.query(Input):
                box.cursor_blink = False
        self.query_one(DataTable).add_columns("Device", "Id", "Status", "Last sync", "Result")
        self.jobs = self.app.sync_jobs
        self.jobs.watchers += 1  # this screen says how each job ends
        self.query_one("#listen", Checkbox).value = self.jobs.listening is not None
        self.query_one("#mailbox-watch", Checkbox).value = self.jobs.watching_mailbox is not None
        if self.jobs.listening is not None:
            self._show_listening(*self.jobs.listening)
        self._show_busy()
        self.run_store(self._load, group="devices-load", exclusive=True)

    def on_unmount(self) -> None:
        if self.jobs is not None:
            self.jobs.watchers -= 1

    # --- loading -----------------------------------------------------------------------

    def reload(self) -> None:
        self.run_store(self._load, group="devices-load", exclusive=True)

    async def _load(self) -> None:
        assert self.jobs is not None
        identity = await self.jobs.prepare()
        self.jobs.start_workers()  # a sync from here need not wait for them to start
        peers, addresses, last = await self.jobs.devices()
        self.identity, self.peers, self.addresses = identity, peers, addresses
        self._show_identity()
        self._show_peers()
        address = self.query_one("#address", Input)
        if not address.value and last:
            address.value = last
        folder, _watch, last_in, last_out = await self.jobs.mailbox_setting()
        box = self.query_one("#mailbox-folder", Input)
        if self.jobs.watching_mailbox is not None:
            box.value = str(self.jobs.watching_mailbox)
        elif folder and not box.value:
            box.value = folder
        self.mailbox_times = (last_in, last_out)
        self._show_mailbox_status()
        listen = await self.jobs.listen_address()
        if listen and self.jobs.listening is None:
            host, _, port = listen.rpartition(":")
            self.query_one("#listen-on", Input).value = host
            self.query_one("#listen-port", Input).value = port
        self.loaded = True

    def _mask(self, text: str) -> str:
        return MASK if self.app.test_mode else text

    def _show_identity(self) -> None:
        identity = self.identity
        self.query_one("#this-device", Static).update(
            printable(f"This device: {identity.name}   id {self._mask(identity.short_id)}")
        )

    def _show_peers(self) -> None:
        table = self.query_one(DataTable)
        cursor = table.cursor_row
        table.clear()
        for peer in self.peers:
            status = "revoked" if peer.revoked else "paired"
            if peer.last_sync_ok is None:
                result = ""
            else:
                result = ("ok: " if peer.last_sync_ok else "failed: ") + (peer.last_sync_summary or "")
            # Text, not str: a cell string would be read as markup (a name is the other device's).
            table.add_row(
                *(Text(printable(cell)) for cell in (
                    peer.name, self._mask(peer.short_id), status, _when(peer.last_sync_at, self.app.test_mode), result,
                )),
                key=peer.device_id,
            )
        self.query_one("#no-peers").display = not self.peers
        if self.peers and 0 <= cursor < len(self.peers):
            table.move_cursor(row=cursor)
        self._show_peer_result()

    def _show_peer_result(self) -> None:
        peer = self.selected_peer()
        text = ""
        if peer is not None and peer.last_sync_ok is not None:
            outcome = "ok" if peer.last_sync_ok else "failed"
            text = f"Last sync with {peer.name}: {outcome}: {peer.last_sync_summary or ''}"
        self.query_one("#peer-result", Static).update(printable(text))

    def selected_peer(self):
        table = self.query_one(DataTable)
        if not self.peers or not 0 <= table.cursor_row < len(self.peers):
            return None
        return self.peers[table.cursor_row]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_peer_result()
        key = event.row_key.value if event.row_key is not None else None
        if key and key in self.addresses:
            self.query_one("#address", Input).value = self.addresses[key]

    # --- starting work -----------------------------------------------------------------

    def _ready(self) -> bool:
        if self.jobs is None or self.jobs.identity is None:
            self.notify("Still reading this device's identity; try again in a moment.")
            return False
        return True

    def _address(self, default_port: int) -> tuple[str, int]:
        return parse_address(self.query_one("#address", Input).value, default_port)

    def _try(self, start) -> None:
        """Run `start()`; a typing mistake is said on screen, and starts nothing."""
        if not self._ready():
            return
        try:
            started = start()
        except NotewellError as e:
            self._say(f"{e.title}: {e.message}", "error")
            return
        if started:
            self.last_result = self.last_error = None
            self._progress(None, 0, 0)
            self._show_busy()

    def action_sync_now(self) -> None:
        def start() -> bool:
            host, port = self._address(DEFAULT_SYNC_PORT)
            self._pending_address = f"{host}:{port}"
            self._say(f"Connecting to {host}:{port}...", "")
            return self.jobs.sync_now(host, port, live=self.query_one("#live", Checkbox).value)

        self._try(start)

    def action_pair(self) -> None:
        from sync.pairing import normalise_code

        def start() -> bool:
            host, port = self._address(DEFAULT_PAIR_PORT)
            code = self.query_one("#code", Input).value
            if not code.strip():
                raise BadInput("Type the code shown on the other device first.")
            normalise_code(code)  # a mistyped code is caught here, before it burns the real one
            self._pairing_host = host
            self._say(f"Pairing with {host}:{port}...", "")
            return self.jobs.pair_with(host, port, code)

        self._try(start)

    def action_show_code(self) -> None:
        def start() -> bool:
            host, port = self._listen_address(DEFAULT_PAIR_PORT)
            self._say("Waiting for the other device to enter the code...", "")
            return self.jobs.pair_listen(host, port)

        self._try(start)

    def _listen_address(self, default_port: int) -> tuple[str, int]:
        return parse_listen_address(self.query_one("#listen-on", Input).value, default_port)

    def _sync_listen_address(self) -> tuple[str, int]:
        """The host typed and the port in its own field (a port typed with the host wins)."""
        from sync.addresses import parse_port

        typed = self.query_one("#listen-port", Input).value.strip()
        try:
            port = parse_port(typed) if typed else DEFAULT_SYNC_PORT
        except BadAddress:
            raise BadInput(f"{typed!r} is not a port to listen on; type a number from 0 to 65535.") from None
        return self._listen_address(port)

    def action_toggle_listen(self) -> None:
        switch = self.query_one("#listen", Checkbox)
        switch.value = not switch.value

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        if self.jobs is not None and event.checkbox.id == "mailbox-watch":
            self._mailbox_watch_changed(event)
            return
        if self.jobs is None or event.checkbox.id != "listen":
            return  # "Stay connected" is read when Sync now is pressed
        listening = self.jobs.listener_active
        if event.value and not listening:
            if not self._ready():
                event.checkbox.value = False
                return
            try:
                host, port = self._sync_listen_address()
            except NotewellError as e:
                self._say(f"{e.title}: {e.message}", "error")
                event.checkbox.value = False
                return
            self.query_one("#listen-status", Static).update("starting...")
            self.jobs.listen(host, port)
        elif not event.value and listening:
            self.query_one("#listen-status", Static).update("stopping...")
            self.jobs.stop_listening()

    def _mailbox_folder(self) -> Path:
        """The folder typed, checked: BadInput with one sentence otherwise."""
        text = self.query_one("#mailbox-folder", Input).value.strip()
        if not text:
            raise BadInput("Type the mailbox folder first (a folder both devices can reach).")
        from sync.mailbox import MailboxError, check_mailbox_folder

        try:
            return check_mailbox_folder(Path(text))
        except MailboxError as e:
            raise BadInput(e.message) from None

    def action_mailbox(self) -> None:
        def start() -> bool:
            folder = self._mailbox_folder()
            self._say(f"Reading and writing bundles in {folder}...", "")
            return self.jobs.mailbox(folder)

        self._try(start)

    def _mailbox_watch_changed(self, event: Checkbox.Changed) -> None:
        """Watch on: the folder is checked, remembered (watched again after each unlock) and
        watched; off: the watch stops and the folder is remembered unwatched."""
        watching = self.jobs.watching_mailbox is not None
        if event.value and not watching:
            if not self._ready():
                event.checkbox.value = False
                return
            try:
                folder = self._mailbox_folder()
            except NotewellError as e:
                self._say(f"{e.title}: {e.message}", "error")
                event.checkbox.value = False
                return
            self.jobs.watch_mailbox(folder)
            self._mailbox_problem = None
            self._show_mailbox_status()
            self.run_store(self.jobs.remember_mailbox, str(folder), True, group="devices-remember-mailbox")
        elif not event.value and watching:
            folder = str(self.jobs.watching_mailbox)
            self.jobs.stop_watching_mailbox()
            self.query_one("#mailbox-status", Static).update("stopping...")
            self.run_store(self.jobs.remember_mailbox, folder, False, group="devices-remember-mailbox")

    def _show_mailbox_status(self) -> None:
        watching = self.jobs is not None and self.jobs.watching_mailbox is not None
        last_in, last_out = self.mailbox_times
        parts = ["watching" if watching else "not watched"]
        if last_in is not None or last_out is not None:
            parts.append(f"last brought in {_when(_iso(last_in), self.app.test_mode)}")
            parts.append(f"last sent out {_when(_iso(last_out), self.app.test_mode)}")
        text = ", ".join(parts)
        if self._mailbox_problem:
            text += f"; {self._mailbox_problem}"
        self.query_one("#mailbox-status", Static).update(printable(text))

    def on_sync_jobs_mailbox_watched(self, message: SyncJobs.MailboxWatched) -> None:
        self.mailbox_times = (message.last_in, message.last_out)
        if message.error is not None:
            self._mailbox_problem = f"{message.error.title}: {message.error.message}"
        else:
            self._mailbox_problem = None
            if message.report is not None and (message.report.received or message.report.bundles.rejected):
                self._say(finished_text(message.report), "done" if message.report.ok else "error")
        self._show_mailbox_status()
        if message.report is not None and message.report.received:
            self.reload()  # each sender's last-sync entry

    def action_cancel(self) -> None:
        if self.jobs is not None and self.jobs.busy:
            self.jobs.cancel()
            self._say("Stopping...", "")

    def action_forget(self) -> None:
        from tui.screens.dialogs import ConfirmDialog

        peer = self.selected_peer()
        if peer is None:
            self.notify("Select a paired device in the list first.")
            return
        if peer.revoked:
            self.notify(printable(f"{peer.name} is already revoked; pair it again to trust it again."), markup=False)
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.run_store(self._forget, peer.device_id, group="devices-forget")

        self.app.push_screen(
            ConfirmDialog(
                "Forget this device?",
                printable(f"{peer.name} will be refused from now on, over the network and through the mailbox. "
                          "Its notes already here stay. Pairing it again with a new code trusts it again."),
                yes="Forget",
            ),
            confirmed,
        )

    async def _forget(self, device_id: str) -> None:
        assert self.jobs is not None
        peer = await self.jobs.forget(device_id)
        self._say(f"{peer.name} is revoked; it can no longer sync with this device.", "done")
        self.reload()

    def action_back(self) -> None:
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        actions = {
            "sync-now": self.action_sync_now,
            "pair": self.action_pair,
            "show-code": self.action_show_code,
            "forget": self.action_forget,
            "cancel": self.action_cancel,
            "mailbox-run": self.action_mailbox,
        }
        action = actions.get(event.button.id or "")
        if action is not None:
            action()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "code":
            self.action_pair()
        elif event.input.id == "address":
            self.action_sync_now()
        elif event.input.id == "mailbox-folder":
            self.action_mailbox()

    # --- what the sync service reports (its messages) --------------------------------

    def _say(self, text: str, kind: str) -> None:
        status = self.query_one("#sync-status", Static)
        status.set_class(kind == "error", "error")
        status.set_class(kind == "done", "done")
        status.update(printable(in_app_words(text)))  # names, file names and sentences from other devices

    def _show_busy(self) -> None:
        busy = self.jobs.busy if self.jobs is not None else None
        for button_id in ("sync-now", "pair", "show-code", "mailbox-run"):
            self.query_one(f"#{button_id}", Button).disabled = busy is not None
        self.query_one("#cancel", Button).disabled = busy is None

    def _progress(self, label: str | None, done: int, total: int) -> None:
        bar = self.query_one(ProgressBar)
        self.query_one("#progress-row").set_class(label is not None, "running")
        bar.update(total=total or None, progress=done)
        self.query_one("#progress-label", Static).update(f"{label} {done}/{total}" if label else "", layout=False)

    def _show_listening(self, host: str, port: int) -> None:
        self.query_one("#listen-status", Static).update(f"listening on {host}:{port}")
        if self._listen_error:  # an earlier failure to listen is no longer true
            self._listen_error = False
            self._say("", "")

    def on_sync_jobs_progress(self, message: SyncJobs.Progress) -> None:
        self.last_progress = (message.done, message.total)
        self._progress(message.label, message.done, message.total)

    def on_sync_jobs_refused(self, message: SyncJobs.Refused) -> None:
        self.notify(f"A {message.busy} is already running; wait for it or press Cancel.", severity="warning")

    def on_sync_jobs_code_ready(self, message: SyncJobs.CodeReady) -> None:
        shown = message.host
        if shown in ("0.0.0.0", "::"):
            shown = MASK if self.app.test_mode else network_address()
        self._code_dialog = PairCodeDialog(f"{shown}:{message.port}", message.code, max(1, round(message.ttl / 60)))
        self.app.push_screen(self._code_dialog)

    def on_sync_jobs_live_opened(self, message: SyncJobs.LiveOpened) -> None:
        self._progress(None, 0, 0)
        self._say(f"Connected to {message.name}, and staying connected: edits go both ways as they are saved. "
                  "Cancel disconnects.", "done")
        address = self._pending_address
        if address:
            self.run_store(self._remember, message.peer_id, address, group="devices-remember")

    def on_sync_jobs_live_exchanged(self, message: SyncJobs.LiveExchanged) -> None:
        name = self.jobs.live_with if self.jobs is not None else None
        self._say(f"Connected to {name or 'the other device'}: received {message.received}, "
                  f"sent {message.sent} so far. Cancel disconnects.", "done")

    def on_sync_jobs_listening(self, message: SyncJobs.Listening) -> None:
        self._show_listening(message.host, message.port)
        # Offered again next time: what was typed (a port of 0 stays "any free port").
        host = self.query_one("#listen-on", Input).value.strip() or "127.0.0.1"
        port = self.query_one("#listen-port", Input).value.strip() or str(DEFAULT_SYNC_PORT)
        self.run_store(self.jobs.remember_listen_address, f"{host}:{port}", group="devices-remember-listen")

    def on_sync_jobs_served(self, message: SyncJobs.Served) -> None:
        report, error = message.report, message.error
        if error is not None:
            self._say(f"A device tried to sync: {error.message}", "error")
        elif report is not None:
            self._say(f"{report.peer} synced with this device: {report.summary()}", "done")
        self.reload()

    def on_sync_jobs_finished(self, message: SyncJobs.Finished) -> None:
        kind, result, error = message.kind, message.result, message.error
        if kind == SyncJobs.WATCH_KIND:
            self.query_one("#mailbox-watch", Checkbox).value = False
            if error is not None:
                self._mailbox_problem = f"{error.title}: {error.message}"
            self._show_mailbox_status()
            return
        self.last_result, self.last_error = result, error
        self._show_busy()
        if kind != "listen":
            self._progress(None, 0, 0)
        if self._code_dialog is not None:
            if self._code_dialog.is_attached:
                self._code_dialog.dismiss(None)
            self._code_dialog = None
        if kind == "listen":
            self.query_one("#listen", Checkbox).value = False
            self.query_one("#listen-status", Static).update("")
            if error is not None:
                self._say(f"{error.title}: {error.message}", "error")
                self._listen_error = True
            return
        if error is not None:
            self._say(
                f"Stopped: {error.message}" if isinstance(error, SyncCancelled) else f"{error.title}: {error.message}",
                "error",
            )
        elif kind in SyncJobs.SUMMARISED:
            self._say(finished_text(result), "done" if result.ok else "error")
            address = self._pending_address
            if kind != "mailbox" and address and result.peer_id:
                self.run_store(self._remember, result.peer_id, address, group="devices-remember")
        elif kind == "pairing":
            text = f"Paired with {result.peer.name} ({self._mask(result.peer.short_id)}). You can sync now."
            # The pairing port is not where the other device syncs: offer its sync port.
            if self._pairing_host:
                host = f"[{self._pairing_host}]" if ":" in self._pairing_host else self._pairing_host
                address = f"{host}:{DEFAULT_SYNC_PORT}"
                self.query_one("#address", Input).value = address
                self.run_store(self._remember, result.peer.device_id, address, group="devices-remember")
            self.query_one("#code", Input).value = ""
            if result.group_key_replaced:
                text += " This device now uses the other device's mailbox key; pair again with devices of its old group."
            self._say(text, "done")
        self.reload()

    async def _remember(self, device_id: str, address: str) -> None:
        assert self.jobs is not None
        await self.jobs.remember_address(device_id, address)
        self.addresses[device_id] = address

