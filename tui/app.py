"""The Notewell Textual app: unlock or set up, then the clinician's screens.

The app owns the store worker (the one thread that holds the open vault), the sync service
(tui/sync_jobs.py, whose messages it hands to each open screen that handles them), the idle
lock, and the single place where failures become messages on screen (`report_error`).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from time import monotonic
from typing import Any

from textual import events, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from store.errors import NotewellError, VaultLocked
from store.write_access import WAIT_NOTICE, set_wait_notice
from tui.auto_backups import CHECK_EVERY as BACKUP_CHECK_EVERY
from tui.auto_backups import AutoBackups
from tui.config import AppConfig
from tui.storeworker import StoreWorker
from tui.sync_jobs import JobMessage, SyncJobs

log = logging.getLogger("notewell.tui")
# Without a configured handler, logging would write to stderr, which is the app's screen.
log.addHandler(logging.NullHandler())

# The collector's full pass once the first screen is settled (`NotewellApp.settle_heap`): after
# this many passes of its middle generation, where Python's default is 10.
RARE_FULL_COLLECTIONS = 1000


@dataclass
class Place:
    """Where the clinician is, so unlocking returns there. Ids only, never text."""

    client_id: str | None = None
    note_id: str | None = None
    note_kind: str | None = None  # "progress" or "process"


class WaitingForWriteLock(Message):
    """A store call waits for another Notewell program to finish writing (posted from the
    waiting thread; store/write_access.py bounds the wait and then reports VaultBusy)."""


class NotewellApp(App[None]):
    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "Notewell"
    BINDINGS = [
        Binding("ctrl+l", "lock", "Lock", id="lock", priority=True),
        Binding("f1", "help", "Help", id="help"),
        Binding("ctrl+q", "quit", "Quit", id="quit", priority=True),
    ]

    def __init__(
        self,
        vault_path: Path,
        *,
        config: AppConfig | None = None,
        test_mode: bool | None = None,
        passphrase: str | None = None,
        kdf: Any = None,
        idle_lock_seconds: float | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.config = config or AppConfig()
        super().__init__()
        self.vault_path = Path(vault_path)
        if test_mode is None:
            test_mode = os.environ.get("NOTEWELL_TEST_MODE") == "1"
        self.test_mode = test_mode
        # Only `notewell demo` passes a passphrase in: it opens the demo vault unlocked.
        self._initial_passphrase = passphrase
        self.kdf = kdf
        self.idle_lock_seconds = (
            idle_lock_seconds if idle_lock_seconds is not None else self.config.idle_lock_minutes * 60
        )
        self.store = StoreWorker()
        self.sync_jobs = SyncJobs(self, self.store, self.tell_screens)
        # The clock automatic backups go by (tests pass a fixed one; nothing shows "now").
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(timezone.utc))
        self.auto_backups = AutoBackups(self, self.store, self.tell_screens, self.config.backup, lambda: self.clock())
        self.place = Place()
        self._key_order = None  # tui/key_order.py, made on the first key
        self._last_activity = monotonic()
        self._locking = False
        self._opening = False  # Enter pressed on the unlock screen, the vault not open yet
        self._quit_warned = False
        self._previous_wait_notice = None
        self._gc_thresholds: tuple[int, int, int] | None = None  # as they were before `settle_heap`

    # --- start --------------------------------------------------------------------

    def on_mount(self) -> None:
        # The store thread and this loop share the GIL; a short switch interval hands it back
        # to the UI within a millisecond while an autosave runs (measured in bench/tui_bench.py).
        sys.setswitchinterval(0.001)
        self._apply_theme()
        if self.config.keymap:
            self.set_keymap(self.config.keymap)
        self.set_interval(min(1.0, max(self.idle_lock_seconds / 4, 0.05)), self._check_idle)
        self.set_interval(BACKUP_CHECK_EVERY, self.check_backups)
        # Posting is thread-safe and never blocks the waiting thread (call_from_thread would
        # wait for this loop, which may itself be waiting for that thread while it closes).
        self._previous_wait_notice = set_wait_notice(lambda: self.post_message(WaitingForWriteLock()))
        if self._initial_passphrase is not None:
            self._open_with(self._initial_passphrase)
        else:
            self.show_entry_screen()

    def _apply_theme(self) -> None:
        if self.config.theme in self.available_themes:
            self.theme = self.config.theme
        else:
            self.theme = "textual-dark"
            self.notify(f"Unknown theme {self.config.theme!r} in the settings; using textual-dark.", severity="warning")

    def show_entry_screen(self) -> None:
        from store.vault import Vault

        from tui.screens.setup import SetupScreen
        from tui.screens.unlock import UnlockScreen

        self.push_screen(UnlockScreen() if Vault.exists(self.vault_path) else SetupScreen())

    @work(group="unlock", exit_on_error=False)
    async def _open_with(self, passphrase: str) -> None:
        try:
            await self.store.open(self.vault_path, passphrase)
        except NotewellError as e:
            self.report_error(e)
            self.show_entry_screen()
            return
        self.vault_ready()

    def unlock(self, passphrase: str) -> Worker:
        """Enter on the unlock screen: open the vault and show the main screen.

        The key derivation (Argon2id, about a quarter of a second) starts on the store thread
        at once and, while it runs, the main screen is composed, mounted and drawn empty here:
        argon2-cffi releases the interpreter lock while it hashes, so the UI loop has the
        interpreter to itself. The main screen asks for its lists when it mounts; the store
        thread takes calls in order, so it reads them right after the open. A wrong passphrase
        (or any other failure) takes the clinician back to a fresh unlock screen that says
        why: nothing of the record was read, and nothing was shown but the empty screen.
        """
        opening = self.store.open(self.vault_path, passphrase)
        self._opening = True
        return self.run_worker(self._enter(opening), group="unlock", exclusive=True, exit_on_error=False)

    async def _enter(self, opening: Awaitable[None]) -> None:
        from store.errors import WrongPassphrase

        from tui.screens.main import MainScreen
        from tui.screens.unlock import UnlockScreen

        main = MainScreen(select_client=self.place.client_id)
        try:
            await self.switch_screen(main)
            await opening
        except NotewellError as e:
            self._opening = False
            # Screens a key opened over the empty main screen meanwhile go with it.
            while len(self.screen_stack) > 2:
                await self.pop_screen()
            wrong = isinstance(e, WrongPassphrase)
            await self.switch_screen(UnlockScreen(status="That passphrase is not correct. Try again." if wrong else ""))
            if not wrong:
                self.report_error(e)
            return
        finally:
            self._opening = False
        # The footer already shows the lock key (check_action), so the bindings are not
        # refreshed here: that would compose the footer again before the first timeline.
        self._main_opened(main, bindings=False)

    def vault_ready(self) -> None:
        """The vault is open: show the main screen, back where the clinician was.

        Runs as the app's own worker: the unlock or setup screen that calls this is about to
        be replaced, and replacing a screen cancels its workers.
        """
        self.run_worker(self._show_main(), group="navigation", exclusive=True, exit_on_error=False)

    async def _show_main(self) -> None:
        from tui.screens.main import MainScreen

        self.refresh_bindings()
        main = MainScreen(select_client=self.place.client_id)
        if len(self.screen_stack) > 1:
            await self.switch_screen(main)
        else:
            await self.push_screen(main)
        self._main_opened(main)

    def _main_opened(self, main, *, bindings: bool = True) -> None:
        """The vault is open and the main screen shown: back where the clinician was."""
        self._last_activity = monotonic()
        if bindings:
            self.refresh_bindings()
        if self.place.note_id and self.place.note_kind:
            main.open_note(self.place.note_kind, self.place.note_id)
        # (The heap is settled once the first timeline is drawn: MainScreen._after_first_screen.)
        self.check_backups()
        self.resume_mailbox_watch()

    def resume_mailbox_watch(self) -> Worker | None:
        """Watch the mailbox folder remembered on the Devices screen again (tui/sync_jobs.py)."""
        if self.store.is_open and not self._locking:
            return self.run_worker(
                self.sync_jobs.resume_mailbox_watch(), group="mailbox-resume", exclusive=True, exit_on_error=False
            )
        return None

    def check_backups(self) -> Worker | None:
        """Make an automatic backup if one is due (tui/auto_backups.py); the worker that looks."""
        if self.store.is_open and not self._locking:
            return self.run_worker(
                self.auto_backups.check(), group="auto-backup-check", exclusive=True, exit_on_error=False
            )
        return None

    def settle_heap(self) -> None:
        """Move the long-lived widgets out of the collector's way.

        A full collection walks every object; with a screen of widgets that is a visible
        pause mid-keystroke (p99 latency, bench/tui_bench.py). Objects made so far live as
        long as the screen, so they are frozen; garbage is still freed by reference counting.

        Typing itself leaves objects that live on (the editor's undo history, rendered lines
        and their caches): at Python's default thresholds a full collection of them came
        every hundred keys or so, 10-65 ms each, the slowest keystrokes of all. From here on
        the collector runs its full pass only after RARE_FULL_COLLECTIONS passes of the middle
        generation instead of ten; opening the main screen and each note collects in full
        here anyway, and the young generations, where most cyclic garbage dies, are
        collected as before.
        """
        gc.collect()
        gc.freeze()
        if self._gc_thresholds is None:
            self._gc_thresholds = gc.get_threshold()
            young, middle, _full = self._gc_thresholds
            gc.set_threshold(young, middle, RARE_FULL_COLLECTIONS)

    # --- the page check --------------------------------------------------------------

    @work(group="page-check", exclusive=True, exit_on_error=False)
    async def watch_page_check(self) -> None:
        """Every page of the vault verified, after the first screen (store/page_check.py).
        Until it passes nothing is written (a save waits for it); if it finds damage, every
        save is refused and the clinician is told once, here."""
        import asyncio

        from store.errors import DamagedVault

        check = await self.store.call(lambda vault: vault.page_check)
        await asyncio.to_thread(check.wait)
        try:
            check.require_sound()
        except DamagedVault as e:
            if self.store.is_open:
                self.report_error(e)

    # --- errors: the one place ----------------------------------------------------

    def report_error(self, error: BaseException) -> None:
        from tui.screens.dialogs import ErrorModal

        if isinstance(error, VaultLocked) and (self._locking or not self.store.is_open):
            # Store work that raced the lock (a screen reloading as the one above it closed):
            # expected, and each screen reads again after the unlock. A dialog pushed while
            # the lock pops the screens could leave the lock half done.
            return
        if isinstance(error, NotewellError):
            title, message = error.title, error.message
        else:
            # A bug: name its type in the log, never its message (it could hold note text).
            log.error("unexpected %s in the app", type(error).__name__)
            title = "Unexpected problem"
            message = (
                f"Something went wrong ({type(error).__name__}). What you typed is kept; "
                "try again, and if it keeps happening, quit and reopen Notewell."
            )
        self.push_screen(ErrorModal(title, message))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # The app's own workers (unlock, lock, navigation, quit); screens forward theirs.
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.report_error(event.worker.error)

    def _handle_exception(self, error: Exception) -> None:
        # A bug outside a worker. Textual's own report is a traceback with local variables,
        # which could print note text to the terminal and its scrollback; outside tests, say
        # one plain sentence instead. (A private hook: Textual offers no public one.)
        if self.is_headless:
            super()._handle_exception(error)
            return
        log.error("unexpected %s; the app stopped", type(error).__name__)
        self._return_code = 1
        self.panic(
            f"Notewell stopped after an unexpected problem ({type(error).__name__}). "
            "Everything already shown as Saved is in the vault."
        )

    # --- idle lock and the lock key -----------------------------------------------

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, (events.Key, events.MouseDown, events.MouseScrollDown, events.MouseScrollUp, events.Paste)):
            self._last_activity = monotonic()
        if isinstance(event, (events.Key, events.Paste)) and not event.is_forwarded and not getattr(event, "_in_order", False):
            # Typed keys act in order, each where the keys before it left the focus (tui/key_order.py).
            if self._key_order is None:
                from tui.key_order import KeyOrder

                self._key_order = KeyOrder(self, self._route_key)
            self._key_order.add(event)
            return
        await super().on_event(event)

    async def _route_key(self, event: events.Event) -> None:
        event._in_order = True  # type: ignore[attr-defined]
        await super().on_event(event)

    def _check_idle(self) -> None:
        # The timer can fire once more while the app shuts down, after its last screen is gone.
        if not self.screen_stack:
            return
        # The recovery key is shown only once: never clear it away while it is on screen.
        if getattr(self.screen, "HOLDS_IDLE_LOCK", False):
            return
        if self.store.is_open and not self._locking and monotonic() - self._last_activity >= self.idle_lock_seconds:
            self.lock()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Locking means something only while the vault is open (or opening: the main screen
        # composed while the key is derived shows the key it will have, NotewellApp.unlock).
        if action == "lock":
            return self.store.is_open or self._opening
        return True

    def action_lock(self) -> None:
        if self.store.is_open:
            self.lock()

    async def flush_all(self) -> bool:
        """Save every pending edit on every screen; False when something could not be saved."""
        ok = True
        for screen in reversed(self.screen_stack):
            flush = getattr(screen, "flush", None)
            if flush is not None:
                ok = await flush() and ok
        return ok

    @work(group="lock", exclusive=True, exit_on_error=False)
    async def lock(self) -> None:
        from tui.screens.unlock import UnlockScreen

        if self._locking:
            return
        self._locking = True
        try:
            if not await self.flush_all():
                # Locking now would lose typed text: keep it on screen and say so.
                self.notify("A note could not be saved, so the vault stays unlocked. Retrying shortly.", severity="error")
                self._last_activity = monotonic()
                return
            await self.sync_jobs.stop()  # sync workers close their own connections first
            await self.auto_backups.stop()
            await self.store.close()
            self.refresh_bindings()
            while len(self.screen_stack) > 1:
                await self.pop_screen()
            await self.push_screen(UnlockScreen())
        finally:
            self._locking = False

    # --- quit -----------------------------------------------------------------------

    async def action_quit(self) -> None:
        self.run_worker(self._quit(), group="quit", exclusive=True, exit_on_error=False)

    async def _quit(self) -> None:
        if self.store.is_open and not await self.flush_all() and not self._quit_warned:
            # Never drop typed text silently: the first quit only warns.
            self._quit_warned = True
            self.notify(
                "A note could not be saved yet. Quit again to leave anyway (its unsaved text is lost), "
                "or wait for the retry.",
                severity="error",
                timeout=10,
            )
            return
        await self.sync_jobs.stop()
        await self.auto_backups.stop()
        await self.store.close()
        self.exit()

    def on_unmount(self) -> None:
        if self._gc_thresholds is not None:  # the process may go on (tests, an embedding)
            gc.set_threshold(*self._gc_thresholds)
            self._gc_thresholds = None
        # However the app ends: the mailbox watch never ends on its own, and would hold the exit.
        self.sync_jobs.stop_watching_mailbox()
        try:
            self.store.shutdown()
        finally:
            set_wait_notice(self._previous_wait_notice)

    def on_waiting_for_write_lock(self, message: WaitingForWriteLock) -> None:
        self.notify(WAIT_NOTICE, severity="warning")

    def tell_screens(self, message: JobMessage) -> None:
        """Hand a message of the sync service to each open screen that handles it
        (`on_sync_jobs_...`), each its own copy. Only those: a screen under the one on top
        that takes any message goes idle after it and, being visible through the top
        screen's background, has the top screen repainted whole, which during a sync (a
        progress message every 50 ms) was most of the interface's work."""
        for screen in self.screen_stack:
            if hasattr(screen, message.handler_name):
                screen.post_message(message.copy())

    # --- messages from the to-do queue ---------------------------------------------

    def _main_screen(self):
        from tui.screens.main import MainScreen

        return next((s for s in self.screen_stack if isinstance(s, MainScreen)), None)

    def on_todo_screen_open_note(self, message) -> None:
        from tui.screens.note_editor import NoteEditorScreen

        # The editor opens over the queue, so Back returns to the list being worked through.
        self.place.note_kind, self.place.note_id = "progress", message.note_id

        def closed(_: object = None) -> None:
            self.place.note_kind = self.place.note_id = None

        self.push_screen(NoteEditorScreen(message.note_id), closed)

    def on_todo_screen_open_client(self, message) -> None:
        self.run_worker(self._open_client(message.client_id, message.on), group="navigation", exit_on_error=False)

    async def _back_to_client(self, client_id: str):
        """Back down to the main screen with `client_id` selected; None if there is none."""
        main = self._main_screen()
        if main is None:
            return None
        while self.screen is not main:
            await self.pop_screen()
        main.select_client(client_id)
        return main

    async def _open_client(self, client_id: str, on) -> None:
        if await self._back_to_client(client_id) is None:
            return
        self.notify(f"No progress note yet for the session of {on.isoformat()}: press n to write it.")

    def on_todo_screen_review_plan(self, message) -> None:
        self.run_worker(self._review_plan(message.client_id), group="navigation", exit_on_error=False)

    async def _review_plan(self, client_id: str) -> None:
        # A review that is due: a new treatment-plan review for the client, dated today.
        from store.models import NoteFormat

        main = await self._back_to_client(client_id)
        if main is None:
            return
        main.start_note(client_id, NoteFormat.REVIEW.value, self.clock().astimezone().date())

    # --- help and palette -----------------------------------------------------------

    def action_help(self) -> None:
        from tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        from tui.screens.help import screen_actions

        seen: set[str] = set()
        for action in screen_actions(screen):
            if action.title in seen:
                continue
            seen.add(action.title)
            yield SystemCommand(action.title, action.help, action.run)
        yield SystemCommand("Theme", "Change the colour theme", self.action_change_theme)
