"""Sync work for the Devices screen: pairing, direct sync, listening, the mailbox.

Each job runs in a Textual thread worker owned by the app (so leaving the Devices screen does
not cut a sync short) and works on its own record-store connection, opened and closed in that
thread (`Vault.open_record_store`): the store thread stays free and the clinician keeps typing.
Only a `RecordStore` and the `DeviceIdentity` reach sync/. Syncs (now, listening and the
mailbox) also get worker processes that read documents new to this device
(store/prepare_pool.py): started by the first such job, stopped on lock and quit.

Jobs touch the UI only through `app.call_from_thread`, and only via the screen currently
attached as `view` (anything with the `job_*` methods below). Locking or quitting calls
`stop_sync_jobs(app)` before the vault closes: listeners stop, a running sync is interrupted
at its next progress step, and every worker connection is closed in its own thread first.

    jobs = SyncJobs.of(app)
    await jobs.prepare()                      # the vault and identity, read on the store thread
    jobs.sync_now(host, port, live=False) / jobs.pair_with(host, port, code) / jobs.pair_listen(host, port)
    jobs.listen(host, port) / jobs.stop_listening() / jobs.mailbox(folder) / jobs.cancel()
    await jobs.stop()                         # lock and quit
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from store.errors import NotewellError

PROGRESS_EVERY = 0.05  # seconds between progress updates sent to the UI
STOP_WAIT = 35.0  # a joiner's connect/read timeout is 30 s; never wait forever on lock


class SyncCancelled(NotewellError):
    title = "Sync stopped"

    def __init__(self, message: str = "Stopped before it finished; nothing acknowledged was lost.") -> None:
        super().__init__(message)


class SyncJobs:
    """The app's running sync jobs (one at a time, plus an optional listener)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.view: Any = None  # the Devices screen while it is mounted
        self.busy: str | None = None  # what the one-at-a-time job is doing, for the screen
        self.listening: tuple[str, int] | None = None
        self._cancel = threading.Event()
        self._listen_stop: threading.Event | None = None
        self._running: set[threading.Event] = set()
        self._vault: Any = None
        self.identity: Any = None
        self._pool: Any = None
        self._pool_lock = threading.Lock()
        self.live_with: str | None = None  # the device a live sync is connected to
        self._live_received = 0

    @classmethod
    def of(cls, app: Any) -> "SyncJobs":
        jobs = getattr(app, "sync_jobs", None)
        if jobs is None:
            jobs = cls(app)
            app.sync_jobs = jobs
        return jobs

    async def prepare(self) -> Any:
        """Read the vault handle and this device's identity on the store thread."""
        self._vault, self.identity = await self.app.store.call(lambda v: (v, v.identity))
        return self.identity

    # --- running a job in a thread --------------------------------------------------

    def _prepare_pool(self) -> Any:
        """The worker processes, started on first use (in a job's thread: starting a
        process is not for the UI loop)."""
        from store.prepare_pool import PreparePool

        with self._pool_lock:
            if self._pool is None:
                # The sync thread leaves the reading to the workers: it would hold the lock
                # the interface needs to keep up with typing.
                self._pool = PreparePool(caller_helps=False)
            return self._pool

    def _start(self, kind: str, body: Callable[[Any], Any], *, group: str = "sync",
               uses_workers: bool = False) -> bool:
        if group == "sync":
            if self.busy is not None:
                self._to_view("job_refused", self.busy)
                return False
            self.busy = kind
            self._cancel.clear()
        done = threading.Event()
        self._running.add(done)
        vault = self._vault

        def run() -> None:
            try:
                store = vault.open_record_store()
                try:
                    if uses_workers:
                        store.prepare_pool = self._prepare_pool()
                    result = body(store)
                finally:
                    vault.close_record_store(store)
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

        self.app.run_worker(run, thread=True, exclusive=True, exit_on_error=False, group=group, name=kind)
        return True

    def _from_thread(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            self.app.call_from_thread(fn, *args)
        except RuntimeError:
            pass  # the app is shutting down: nobody left to tell

    def _to_view(self, method: str, *args: Any) -> None:
        view = self.view
        if view is not None and view.is_attached:
            getattr(view, method)(*args)

    def _finished(self, kind: str, result: Any, error: NotewellError | None, group: str) -> None:
        if group == "sync":
            self.busy = None
            self.live_with = None
        else:
            self.listening = None
            self._listen_stop = None
        if self.view is not None and self.view.is_attached:
            self.view.job_finished(kind, result, error)
        elif error is not None and not isinstance(error, SyncCancelled):
            self.app.notify(f"{error.title}: {error.message}", severity="error", timeout=10)
        elif result is not None and hasattr(result, "summary") and kind != "listen":
            self.app.notify(f"Sync finished: {result.summary()}")
        received = getattr(result, "received", 0) or getattr(result, "documents_merged", 0)
        if received:
            self.record_changed()

    def record_changed(self) -> None:
        """The record changed under the screens: the main screen lists it again, and an open
        draft shows what the sync brought to it."""
        from tui.screens.main import MainScreen
        from tui.screens.note_editor import NoteEditorScreen

        for screen in self.app.screen_stack:
            if isinstance(screen, MainScreen):
                screen.reload_clients()
            elif isinstance(screen, NoteEditorScreen):
                screen.note_changed_elsewhere()

    def _progress(self, label: str) -> Callable[[int, int], None]:
        last = [0.0]

        def on_progress(done: int, total: int) -> None:
            if self._cancel.is_set():
                raise SyncCancelled()
            now = time.monotonic()
            # A thousand documents must not mean a thousand round trips to the UI loop.
            if done == total or now - last[0] >= PROGRESS_EVERY:
                last[0] = now
                self._from_thread(self._to_view, "job_progress", label, done, total)

        return on_progress

    # --- the jobs -------------------------------------------------------------------

    def sync_now(self, host: str, port: int, *, live: bool = False) -> bool:
        from sync.direct import sync_now

        if live:
            return self._live(host, port)
        identity, progress = self.identity, self._progress("Syncing documents")
        return self._start("sync", lambda store: sync_now(store, identity, host, port, on_progress=progress),
                           uses_workers=True)

    def _live(self, host: str, port: int) -> bool:
        """Sync, then stay connected: each edit saved here is pushed at once (the store
        thread wakes the session after every call), and the other device's arrive as it
        saves them. Cancel, lock and quit end it with a goodbye to the other side."""
        from sync.direct import Waker, live_sync

        identity, progress, store_thread = self.identity, self._progress("Syncing documents"), self.app.store
        opened = threading.Event()

        def first_exchange(done: int, total: int) -> None:
            if not opened.is_set():  # counts of the first exchange; then the live figures
                progress(done, total)

        def on_live(report) -> None:
            opened.set()
            self._from_thread(self._live_opened, report.peer_name or report.peer_id[:16], report.peer_id)

        def on_exchange(report) -> None:
            self._from_thread(self._live_exchanged, report.received, report.sent)

        def body(store) -> Any:
            waker = Waker()
            store_thread.add_after_call(waker.wake)
            try:
                return live_sync(store, identity, host, port, stop_event=self._cancel, on_progress=first_exchange,
                                 on_live=on_live, on_exchange=on_exchange, waker=waker)
            finally:
                store_thread.remove_after_call(waker.wake)
                waker.close()

        self._live_received = 0
        return self._start("live sync", body, uses_workers=True)

    def _live_opened(self, name: str, peer_id: str) -> None:
        self.live_with = name
        self._to_view("job_live", name, peer_id)

    def _live_exchanged(self, received: int, sent: int) -> None:
        if received > self._live_received:
            self._live_received = received
            self.record_changed()
        self._to_view("job_live_exchange", received, sent)

    def pair_with(self, host: str, port: int, code: str) -> bool:
        from sync.pairing import pair_with

        identity = self.identity
        return self._start("pairing", lambda store: pair_with(store, identity, host, port, code))

    def pair_listen(self, host: str, port: int) -> bool:
        from sync.pairing import CODE_TTL, listen_for_pairing

        identity = self.identity
        cancel = self._cancel

        def clock() -> float:
            # listen_for_pairing looks at its clock at least twice a second while it waits:
            # the one place a cancel (button, lock, quit) can get in.
            if cancel.is_set():
                raise SyncCancelled("Pairing cancelled; the code is void.")
            return time.monotonic()

        def ready(bound_host: str, bound_port: int, code: str) -> None:
            self._from_thread(self._to_view, "job_code_ready", bound_host, bound_port, code, CODE_TTL)

        return self._start(
            "pairing",
            lambda store: listen_for_pairing(store, identity, host, port, on_ready=ready, clock=clock),
        )

    def mailbox(self, folder: Path) -> bool:
        from sync.mailbox import sync_mailbox

        identity, progress = self.identity, self._progress("Reading bundles")
        return self._start("mailbox", lambda store: sync_mailbox(store, identity, folder, on_progress=progress),
                           uses_workers=True)

    def listen(self, host: str, port: int) -> bool:
        from sync.direct import serve

        if self._listen_stop is not None:
            return False
        stop = self._listen_stop = threading.Event()
        identity = self.identity

        def listening(bound_host: str, bound_port: int) -> None:
            self.listening = (bound_host, bound_port)
            self._from_thread(self._to_view, "job_listening", bound_host, bound_port)

        def result(report, error) -> None:
            self._from_thread(self._served, report, error)

        return self._start(
            "listen",
            lambda store: serve(store, identity, host, port, stop_event=stop, on_listening=listening, on_result=result),
            group="sync-listen",
            uses_workers=True,
        )

    def _served(self, report, error) -> None:
        self._to_view("job_served", report, error)
        if report is not None and report.received:
            self.record_changed()

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


async def stop_sync_jobs(app: Any) -> None:
    """For the app's lock and quit: stop every sync job before the vault closes."""
    jobs = getattr(app, "sync_jobs", None)
    if jobs is not None:
        await jobs.stop()
