"""The app's sync service: pairing, direct sync, listening and the mailbox, off the UI loop.

`NotewellApp` creates one `SyncJobs` and hands it what it needs: itself (to run thread
workers that outlive any screen, so leaving the Devices screen does not cut a sync short),
the store thread, and `post`, which hands a message to each open screen that handles it. Each
job works on its own record-store connection, opened and closed in its thread
(`Vault.open_record_store`): the store thread stays free and the clinician keeps typing. Only that connection's sync intake
(`record.replica`, a `RecordReplica`) and the `DeviceIdentity` reach sync/; the screens read and
change the paired devices and read the clocks through the service too (`devices`, `forget`,
`remember_address`, `clock_skews`, `time_caveats`). Syncs (now, listening and the mailbox) also
get worker processes that read documents new to this device (store/prepare_pool.py): started
when the Devices screen opens (`start_workers`) or by the first such job, stopped on lock and
quit.

Screens call the service (attributes and calls go down); the service answers with the
messages below (messages go up), and each screen handles those it cares about: the Devices
screen shows progress and results, the main screen lists the record again and an open note
shows what a sync brought to it (`RecordChanged`). The service never calls a screen.

    jobs = app.sync_jobs
    await jobs.prepare()                      # the vault and identity, read on the store thread
    jobs.sync_now(host, port, live=False) / jobs.pair_with(host, port, code) / jobs.pair_listen(host, port)
    jobs.listen(host, port) / jobs.stop_listening() / jobs.mailbox(folder) / jobs.cancel()
    jobs.watch_mailbox(folder) / jobs.stop_watching_mailbox()   # the continuous mailbox
    await jobs.mailbox_setting() / await jobs.remember_mailbox(folder, watch)   # remembered here
    await jobs.resume_mailbox_watch()         # after unlock: watch the remembered folder again
    jobs.start_workers()                      # the worker processes, ahead of a sync
    jobs.record_changed(doc_ids)              # tell every screen that the record changed
    await jobs.stop()                         # lock and quit: listeners stop, a sync is interrupted
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from textual.app import App
from textual.message import Message

from store.errors import NotewellError
from tui.printable import printable

if TYPE_CHECKING:
    from store.device_identity import DeviceIdentity
    from store.prepare_pool import PreparePool
    from store.replica import RecordReplica
    from store.vault import Vault
    from sync.clock import ClockCheck
    from sync.pairing import PairingResult
    from sync.peers import Peer
    from sync.report import SyncReport
    from tui.storeworker import StoreWorker

PROGRESS_EVERY = 0.05  # seconds between progress updates sent to the UI
# The modules a job runs (the transports, pairing, the mailbox) are imported in the job's own
# thread, not on the UI loop that starts it: a first sync's imports (about 0.1 s of the
# interpreter) would otherwise stall every keystroke and frame at its start.
IMPORTED_IN_JOBS = ("sync.direct", "sync.pairing", "sync.mailbox", "sync.mailbox_collect")
STOP_WAIT = 35.0  # a joiner's connect/read timeout is 30 s; never wait forever on lock



def call_on_ui_loop(app: App[Any], fn: Callable[..., Any], *args: Any) -> None:
    """From a worker thread: run `fn` on the UI loop and wait for it (so progress never runs
    ahead of the screen); a no-op once the app is shutting down, with nobody left to tell."""
    try:
        app.call_from_thread(fn, *args)
    except RuntimeError:
        pass

class SyncCancelled(NotewellError):
    title = "Sync stopped"

    def __init__(self, message: str = "Stopped before it finished; nothing acknowledged was lost.") -> None:
        super().__init__(message)


@dataclass(eq=False)
class JobMessage(Message, bubble=False):
    """A message from the sync service to the screens. It does not bubble: each open screen
    with a handler for it is handed its own copy (`copy`), and no other screen gets it."""

    def __init_subclass__(cls, bubble: bool | None = False, **kwargs: Any) -> None:
        super().__init_subclass__(bubble=bubble, **kwargs)

    def copy(self) -> JobMessage:
        """A fresh message with the same fields (a message is handled once, by one pump)."""
        return dataclasses.replace(self)


class SyncJobs:
    """The app's running sync jobs (one at a time, plus an optional listener)."""

    # --- what the service tells the screens -----------------------------------------

    @dataclass(eq=False)
    class RecordChanged(JobMessage):
        """Documents of the record changed under the screens (a sync stored something).
        `doc_ids`: the documents that changed; empty when not known, meaning "any of them"."""

        doc_ids: frozenset[str] = frozenset()

        def concerns(self, doc_id: str) -> bool:
            return not self.doc_ids or doc_id in self.doc_ids

    @dataclass(eq=False)
    class Progress(JobMessage):
        label: str
        done: int
        total: int

    @dataclass(eq=False)
    class Finished(JobMessage):
        """A job ended: `result` is its report (None after an error), or `error` says why."""

        kind: str  # "sync", "live sync", "pairing", "mailbox" or "listen"
        result: SyncReport | PairingResult | None  # the same SyncReport from either transport
        error: NotewellError | None

    @dataclass(eq=False)
    class Refused(JobMessage):
        """A job was asked for while another runs (`busy` says which)."""

        busy: str

    @dataclass(eq=False)
    class CodeReady(JobMessage):
        """A pairing code to show, and where this device waits for it."""

        host: str
        port: int
        code: str
        ttl: float

    @dataclass(eq=False)
    class LiveOpened(JobMessage):
        name: str
        peer_id: str

    @dataclass(eq=False)
    class LiveExchanged(JobMessage):
        """Counts of a live session so far."""

        received: int
        sent: int

    @dataclass(eq=False)
    class Listening(JobMessage):
        host: str
        port: int

    @dataclass(eq=False)
    class Served(JobMessage):
        """Another device synced with this one while it listened."""

        report: SyncReport | None
        error: NotewellError | None

    @dataclass(eq=False)
    class MailboxWatched(JobMessage):
        """A round of the mailbox watch that did something (`report`), or a problem with the
        folder or the vault that the watch goes on past (`error`); with when the folder last
        brought something in and last took this device's bundle (seconds since the epoch)."""

        report: SyncReport | None
        error: NotewellError | None
        last_in: float | None
        last_out: float | None

    SUMMARISED: ClassVar[tuple[str, ...]] = ("sync", "live sync", "mailbox")
    WATCH_KIND: ClassVar[str] = "mailbox watch"

    def __init__(self, app: App, store: StoreWorker, post: Callable[[JobMessage], None]) -> None:
        self._app = app
        self._store = store
        self._post = post
        self.watchers = 0  # screens showing the jobs' results (else a finished job is a notification)
        self.busy: str | None = None  # what the one-at-a-time job is doing, for the screen
        self.listening: tuple[str, int] | None = None
        self._cancel = threading.Event()
        self._listen_stop: threading.Event | None = None
        self._running: set[threading.Event] = set()
        self._vault: Vault | None = None  # read on the store thread; used here only to open connections
        self.identity: DeviceIdentity | None = None
        self._pool: PreparePool | None = None
        self._pool_lock = threading.Lock()
        self.live_with: str | None = None  # the device a live sync is connected to
        self.watching_mailbox: Path | None = None  # the folder the mailbox watch is in
        self._watch_stop: threading.Event | None = None
        self._live_received = 0

    @classmethod
    def of(cls, app: _HasSyncJobs) -> SyncJobs:
        """The app's service."""
        return app.sync_jobs

    async def prepare(self) -> DeviceIdentity:
        """Read the vault handle and this device's identity on the store thread."""
        self._vault, self.identity = await self._store.call(lambda v: (v, v.identity))
        return self.identity

    def record_changed(self, doc_ids: frozenset[str] = frozenset()) -> None:
        """Tell every screen that these documents of the record changed (none: any may have)."""
        self._post(SyncJobs.RecordChanged(frozenset(doc_ids)))

    # --- the paired devices and the clocks (read and changed on the store thread) -------
    # Screens ask the service; it hands sync/'s own modules (sync/peers.py, sync/clock.py)
    # the record's sync intake, so no screen reaches into the intake.

    async def devices(self) -> tuple[list[Peer], dict[str, str], str | None]:
        """The paired devices, the address each was last reached at, and the last one used."""
        from sync.peers import PeerBook

        def read(vault: Vault) -> tuple[list[Peer], dict[str, str], str | None]:
            book = PeerBook(vault.record.replica)
            return book.all(), book.addresses(), book.last_address()

        return await self._store.call(read)

    async def forget(self, device_id: str) -> Peer:
        """Revoke a paired device (it can no longer sync with this one)."""
        from sync.peers import PeerBook

        return await self._store.call(lambda v: PeerBook(v.record.replica).forget(device_id))

    async def remember_address(self, device_id: str, address: str) -> None:
        """The address `device_id` was reached at, offered for the next sync."""
        from sync.peers import PeerBook

        await self._store.call(lambda v: PeerBook(v.record.replica).remember_address(device_id, address))

    async def listen_address(self) -> str | None:
        """Where this device last listened for syncs ("host:port"), or None."""
        from sync.peers import listen_address

        return await self._store.call(lambda v: listen_address(v.record.replica))

    async def remember_listen_address(self, address: str) -> None:
        from sync.peers import remember_listen_address

        await self._store.call(lambda v: remember_listen_address(v.record.replica, address))

    async def clock_skews(self) -> list[ClockCheck]:
        """The paired devices whose clocks disagree with this one's (sync/clock.py)."""
        from sync.clock import current_skews

        return await self._store.call(lambda v: current_skews(v.record.replica))

    @staticmethod
    def time_caveats(vault: Vault) -> dict[str, str]:
        """For a read already on the store thread (the note editor's): device id -> the caveat
        for times written by that device, whose clock disagrees with this one's."""
        from sync.clock import time_caveats

        return time_caveats(vault.record.replica, vault.device_id)

    # --- running a job in a thread --------------------------------------------------

    def _prepare_pool(self) -> PreparePool:
        """The worker processes, started on first use (in a job's thread: starting a
        process is not for the UI loop)."""
        from store.prepare_pool import PreparePool

        with self._pool_lock:
            if self._pool is None:
                # The sync thread leaves the reading to the workers: it would hold the lock
                # the interface needs to keep up with typing.
                self._pool = PreparePool(caller_helps=False)
            return self._pool

    def start_workers(self) -> None:
        """Start the worker processes ahead of a sync, in a thread of their own (the Devices
        screen asks on opening: a sync, a pairing or listening is what follows there). Each
        takes about a quarter of a second to start; a sync that started them itself had its
        first documents waiting for them. They stop on lock and quit, like any started here."""
        if self._vault is None:
            return  # not unlocked yet (or stopping): the first job starts them as before
        with self._pool_lock:
            if self._pool is not None:
                return
        done = threading.Event()
        self._running.add(done)  # stop() waits for this, then closes what it started

        def run() -> None:
            try:
                self._prepare_pool()
            finally:
                done.set()
                self._running.discard(done)

        threading.Thread(target=run, name="notewell-workers-start", daemon=True).start()

    def _start(self, kind: str, body: Callable[[RecordReplica], Any], *, group: str = "sync",
               uses_workers: bool = False) -> bool:
        if group == "sync":
            if self.busy is not None:
                self._post(SyncJobs.Refused(self.busy))
                return False
            self.busy = kind
            self._cancel.clear()
        done = threading.Event()
        self._running.add(done)
        vault = self._vault

        def run() -> None:
            try:
                record = vault.open_record_store()
                try:
                    if uses_workers:
                        record.replica.prepare_pool = self._prepare_pool()
                    result = body(record.replica)
                finally:
                    vault.close_record_store(record)
            except NotewellError as e:
                self._from_thread(self._finished, kind, None, e, group)
            except BaseException as e:  # pyo3 panics are BaseExceptions: still one sentence
                if isinstance(e, (KeyboardInterrupt, SystemExit)):
                    raise
                error = NotewellError(
                    f"The {kind} stopped on an internal error ({type(e).__name__}); nothing acknowledged was lost."
                )
                self._from_thread(self._finished, kind, None, error, group)
            else:
                self._from_thread(self._finished, kind, result, None, group)
            finally:
                done.set()
                self._running.discard(done)

        self._app.run_worker(run, thread=True, exclusive=True, exit_on_error=False, group=group, name=kind)
        return True

    def _from_thread(self, fn: Callable[..., Any], *args: Any) -> None:
        call_on_ui_loop(self._app, fn, *args)

    def _tell(self, message: JobMessage) -> None:
        """From a job's thread: post `message` to the screens, on the UI loop."""
        self._from_thread(self._post, message)

    def _finished(self, kind: str, result: Any, error: NotewellError | None, group: str) -> None:
        if group == "sync":
            self.busy = None
            self.live_with = None
        elif group == "mailbox-watch":
            self.watching_mailbox = None
            self._watch_stop = None
        else:
            self.listening = None
            self._listen_stop = None
        self._post(SyncJobs.Finished(kind, result, error))
        if not self.watchers:
            if error is not None and not isinstance(error, SyncCancelled):
                # Never markup, and never a control character: it may quote another device.
                self._app.notify(printable(f"{error.title}: {error.message}"), severity="error", timeout=10,
                                 markup=False)
            elif result is not None and kind in self.SUMMARISED:
                self._app.notify(printable(" ".join(finished_text(result).splitlines())), markup=False)
        if kind in self.SUMMARISED and result is not None and result.received:
            self.record_changed(frozenset(result.changed_ids))

    def _progress(self, label: str, *, cancels: bool = True) -> Callable[[int, int], None]:
        last = [0.0]

        def on_progress(done: int, total: int) -> None:
            if cancels and self._cancel.is_set():
                raise SyncCancelled()
            now = time.monotonic()
            # A thousand documents must not mean a thousand round trips to the UI loop.
            if done == total or now - last[0] >= PROGRESS_EVERY:
                last[0] = now
                self._tell(SyncJobs.Progress(label, done, total))

        return on_progress

    # --- the jobs -------------------------------------------------------------------

    def sync_now(self, host: str, port: int, *, live: bool = False) -> bool:
        if live:
            return self._live(host, port)
        identity, progress = self.identity, self._progress("Syncing documents")

        def body(store: RecordReplica) -> SyncReport:
            from sync.direct import sync_now  # in the job's thread (IMPORTED_IN_JOBS)

            return sync_now(store, identity, host, port, on_progress=progress)

        return self._start("sync", body, uses_workers=True)

    def _live(self, host: str, port: int) -> bool:
        """Sync, then stay connected: each edit saved here is pushed at once (each commit
        wakes the session with the ids it wrote), and the other device's arrive as it
        saves them. Cancel, lock and quit end it with a goodbye to the other side."""
        identity, progress = self.identity, self._progress("Syncing documents")
        opened = threading.Event()

        def first_exchange(done: int, total: int) -> None:
            if not opened.is_set():  # counts of the first exchange; then the live figures
                progress(done, total)

        def on_live(report: SyncReport) -> None:
            opened.set()
            name = report.peer_name or report.peer_id[:16]
            self._tell(SyncJobs.LiveOpened(name, report.peer_id))
            # Only once the screens have been told: whoever sees `live_with` finds them saying so.
            self._from_thread(self._live_opened, name)

        def on_exchange(report: SyncReport) -> None:
            self._from_thread(self._live_exchanged, report.received, report.sent, report.take_live_changes())

        def body(store: RecordReplica) -> SyncReport:
            from sync.direct import Waker, live_sync  # in the job's thread (IMPORTED_IN_JOBS)

            # The live loop wakes on each commit here and pushes just the ids it wrote.
            waker = Waker()
            try:
                return live_sync(store, identity, host, port, stop_event=self._cancel, on_progress=first_exchange,
                                 on_live=on_live, on_exchange=on_exchange, waker=waker)
            finally:
                waker.close()

        self._live_received = 0
        return self._start("live sync", body, uses_workers=True)

    def _live_opened(self, name: str) -> None:
        self.live_with = name

    def _live_exchanged(self, received: int, sent: int, changed_ids: frozenset[str]) -> None:
        if received > self._live_received:
            self._live_received = received
        if changed_ids:
            self.record_changed(changed_ids)
        self._post(SyncJobs.LiveExchanged(received, sent))

    def pair_with(self, host: str, port: int, code: str) -> bool:
        identity = self.identity

        def body(store: RecordReplica) -> PairingResult:
            from sync.pairing import pair_with  # in the job's thread (IMPORTED_IN_JOBS)

            return pair_with(store, identity, host, port, code)

        return self._start("pairing", body)

    def pair_listen(self, host: str, port: int) -> bool:
        identity = self.identity
        cancel = self._cancel

        def clock() -> float:
            # listen_for_pairing looks at its clock at least twice a second while it waits:
            # the one place a cancel (button, lock, quit) can get in.
            if cancel.is_set():
                raise SyncCancelled("Pairing cancelled; the code is void.")
            return time.monotonic()

        def body(store: RecordReplica) -> PairingResult:
            from sync.pairing import CODE_TTL, listen_for_pairing  # in the job's thread (IMPORTED_IN_JOBS)

            def ready(bound_host: str, bound_port: int, code: str) -> None:
                self._tell(SyncJobs.CodeReady(bound_host, bound_port, code, CODE_TTL))

            return listen_for_pairing(store, identity, host, port, on_ready=ready, clock=clock)

        return self._start("pairing", body)

    def mailbox(self, folder: Path) -> bool:
        identity, progress, grace = self.identity, self._progress("Reading bundles"), self._grace_seconds()

        def body(store: RecordReplica) -> SyncReport:
            from sync.mailbox import sync_mailbox  # in the job's thread (IMPORTED_IN_JOBS)
            from sync.mailbox_collect import collecting

            return sync_mailbox(store, identity, folder, on_progress=progress, after_run=collecting(grace))

        return self._start("mailbox", body, uses_workers=True)

    def _grace_seconds(self) -> float | None:
        """`[mailbox] grace_days` of the app's settings (tui/config.py); None: the default."""
        config = getattr(self._app, "config", None)
        return config.mailbox.grace_seconds if config is not None else None

    # --- the continuous mailbox (sync/mailbox_watch.py) ------------------------------

    def watch_mailbox(self, folder: Path) -> bool:
        """Stay in `folder` until stopped: bring bundles in as they appear, write this device's
        saves seconds after each. Runs beside the one-at-a-time jobs, as a listener does."""
        from sync.mailbox_watch import last_activity, watch_mailbox

        if self._watch_stop is not None:
            return False
        stop = self._watch_stop = threading.Event()
        identity, grace = self.identity, self._grace_seconds()
        self.watching_mailbox = folder

        def body(store: RecordReplica) -> None:
            def on_round(report: SyncReport | None, error: NotewellError | None) -> None:
                last_in, last_out = last_activity(store)  # this thread's connection
                self._from_thread(self._watched, SyncJobs.MailboxWatched(report, error, last_in, last_out))

            watch_mailbox(store, identity, folder, stop=stop, on_round=on_round, grace_seconds=grace)

        return self._start(self.WATCH_KIND, body, group="mailbox-watch", uses_workers=True)

    def _watched(self, message: SyncJobs.MailboxWatched) -> None:
        self._post(message)
        report = message.report
        if report is not None and report.received:
            self.record_changed(frozenset(report.changed_ids))
        if not self.watchers and message.error is not None:
            self._app.notify(printable(f"{message.error.title}: {message.error.message}"), severity="warning",
                             timeout=10, markup=False)

    def stop_watching_mailbox(self) -> None:
        if self._watch_stop is not None:
            self._watch_stop.set()

    async def mailbox_setting(self) -> tuple[str | None, bool, float | None, float | None]:
        """(the remembered mailbox folder, whether it is watched, last brought in, last sent out)."""
        from sync.mailbox_watch import last_activity, remembered_folder

        def read(vault: Vault) -> tuple[str | None, bool, float | None, float | None]:
            return (*remembered_folder(vault.record.replica), *last_activity(vault.record.replica))

        return await self._store.call(read)

    async def remember_mailbox(self, folder: str | None, watch: bool) -> None:
        from sync.mailbox_watch import remember_folder

        await self._store.call(lambda v: remember_folder(v.record.replica, folder, watch))

    async def resume_mailbox_watch(self) -> bool:
        """After unlock: watch the remembered folder again, if it was watched. A folder that is
        not there now (a drive not mounted yet) is said once, in a notification."""
        from sync.mailbox import MailboxError, check_mailbox_folder

        folder, watch, _in, _out = await self.mailbox_setting()
        if not (folder and watch) or self._watch_stop is not None:
            return False
        if self.identity is None:
            await self.prepare()
        try:
            checked = await asyncio.to_thread(check_mailbox_folder, Path(folder))
        except MailboxError as e:
            self._app.notify(printable(f"{e.title}: {e.message} The mailbox is not watched until it is back."),
                             severity="warning", timeout=10, markup=False)
            return False
        return self.watch_mailbox(checked)

    def listen(self, host: str, port: int) -> bool:
        if self._listen_stop is not None:
            return False
        stop = self._listen_stop = threading.Event()
        identity = self.identity

        def listening(bound_host: str, bound_port: int) -> None:
            self.listening = (bound_host, bound_port)
            self._tell(SyncJobs.Listening(bound_host, bound_port))

        def result(report: SyncReport | None, error: NotewellError | None) -> None:
            self._from_thread(self._served, report, error)

        progress = self._progress("Receiving documents", cancels=False)

        def body(store: RecordReplica) -> None:
            from sync.direct import serve  # in the job's thread (IMPORTED_IN_JOBS)

            # A device syncing with this one shows its progress here too (the bar of the Devices
            # screen); stopping the listener ends its sessions with a goodbye, not this callback.
            serve(store, identity, host, port, stop_event=stop, on_listening=listening, on_result=result,
                  on_progress=progress)

        return self._start("listen", body, group="sync-listen", uses_workers=True)

    def _served(self, report: SyncReport | None, error: NotewellError | None) -> None:
        self._post(SyncJobs.Served(report, error))
        if report is not None and report.received:
            self.record_changed(frozenset(report.changed_ids))

    @property
    def listener_active(self) -> bool:
        """A listener was started and has not ended yet (it may still be binding)."""
        return self._listen_stop is not None

    def stop_listening(self) -> None:
        if self._listen_stop is not None:
            self._listen_stop.set()

    def cancel(self) -> None:
        """Stop the running job at its next step (a listener stops separately)."""
        self._cancel.set()

    async def stop(self, timeout: float = STOP_WAIT) -> bool:
        """Stop everything and wait until each worker has closed its own connection."""
        self._cancel.set()
        self.stop_listening()
        self.stop_watching_mailbox()
        deadline = time.monotonic() + timeout
        while self._running and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        # The vault is about to close: forget its handle (the screen reads it again on open).
        self._vault = self.identity = None
        stopped = not self._running
        with self._pool_lock:
            pool, self._pool = (self._pool, None) if stopped else (None, self._pool)
        if pool is not None:
            await asyncio.to_thread(pool.close)
        return stopped


def finished_text(report: SyncReport) -> str:
    """A finished sync, either transport, as the app says it (the Devices screen, or a
    notification when no Devices screen is open): its one summary (sync/report.py)."""
    where = "through the mailbox" if report.bundles is not None else f"with {report.peer}"
    return f"Synced {where}: {report.summary()}"


class _HasSyncJobs(Protocol):
    sync_jobs: SyncJobs
