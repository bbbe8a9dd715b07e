"""The app's automatic backups: one made when due, off the UI loop and off the store thread.

`NotewellApp` creates one `AutoBackups` with the `[backup]` settings (tui/config.py), the
store thread, `post` (which hands a message to each open screen that handles it) and the
app's clock. On each unlock and then once a minute the app calls `check()`: it reads this
device's last backup on the store thread (store/last_backup.py) and, when one is due, starts a thread worker that
runs `store.automatic_backup.run_automatic_backup` (the same run as `notewell backup
--auto`) in a child process at a lower scheduling priority (store/backup_process.py), so
that typing keeps the cores: an online snapshot, which takes no write lock, so the
clinician's saves go on meanwhile (bench/auto_backup_bench.py measures the keystrokes);
then the new backup is verified and the folder thinned. The audit entry and the "last
backup" row are written back on the store thread (`record_backup`).

Screens read what the service holds (`warning(now)` for the main screen, `status_line()`
for the settings screen) when told `AutoBackups.Changed`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from store.errors import NotewellError
from store.last_backup import shown_time
from tui.config import BackupConfig
from tui.sync_jobs import JobMessage, call_on_ui_loop

if TYPE_CHECKING:
    from textual.app import App
    from textual.worker import Worker

    from store.automatic_backup import AutomaticBackup
    from store.backup import Progress
    from store.last_backup import LastBackup
    from tui.storeworker import StoreWorker

CHECK_EVERY = 60.0  # seconds between looks at whether a backup is due
STOP_WAIT = 120.0  # lock and quit wait this long for a running backup to finish


class AutoBackups:
    """This device's automatic backups, as the app runs them."""

    @dataclass(eq=False)
    class Changed(JobMessage):
        """A backup started, finished or failed, or the last one was read: read the service again."""

    def __init__(
        self, app: App, store: StoreWorker, post: Callable[[JobMessage], None], config: BackupConfig,
        clock: Callable[[], datetime],
    ) -> None:
        self._app = app
        self._store = store
        self._post = post
        self._clock = clock
        self.config = config
        self.loaded = False  # the last backup has been read since the unlock
        self.last: LastBackup | None = None
        self.running = False
        self.error: str | None = None  # the last run's failure, one sentence; None after a success
        self.made = 0  # backups this app has made (tests wait on it)
        # Called from the backup's thread with content bytes written (tests hold a backup here:
        # the child process waits for each call to return).
        self.progress: Progress | None = None
        # The backup runs in a child process at a lower priority (store/backup_process.py);
        # False runs it in the worker thread itself (bench/auto_backup_bench.py compares them).
        self.in_child = True
        self._worker: Worker | None = None

    # --- what the screens show ----------------------------------------------------------

    def overdue(self, now: datetime) -> bool:
        from store.automatic_backup import is_due

        return self.config.enabled and self.loaded and is_due(self.last, self.config.interval, now)

    def warning(self, now: datetime) -> str:
        """The main screen's line: "" unless no backup has been made for longer than the
        setting (and none is being made now), or the last try failed."""
        if not self.config.enabled or not self.loaded or self.running:
            return ""
        if not self.error and not self.overdue(now):
            return ""
        since = f"No backup since {shown_time(self.last.at)}" if self.last else "No backup of this device yet"
        if self.error:
            return f"{since}: {self.error[:1].lower()}{self.error[1:]}"
        return f"{since} (automatic backups {self.config.describe()}); one is made within a minute."

    def status_line(self) -> str:
        """The settings screen's line."""
        if not self.config.enabled:
            return (
                "Automatic backups are off. To turn them on, name a folder under [backup] in the "
                "settings file (docs/backup.md)."
            )
        line = f"Automatic backups {self.config.describe()} to {self.config.folder}. "
        if self.running:
            return line + "A backup is being made now."
        if not self.loaded:
            return line
        if self.last is None:
            line += "None made on this device yet."
        else:
            line += f"Last backup: {shown_time(self.last.at)}."
        if self.error:
            line += f" The last try failed: {self.error}"
        return line

    # --- running ------------------------------------------------------------------------

    async def check(self) -> None:
        """Read the last backup; start one if it is due. Never raises for a locked vault."""
        from store.automatic_backup import is_due
        from store.backup import BackupSource
        from store.last_backup import last_backup

        if not self.config.enabled or self.running or not self._store.is_open:
            return
        try:
            self.last = await self._store.call(last_backup)
            self.loaded = True
            now = self._clock()
            if not is_due(self.last, self.config.interval, now):
                return
            source, device_id = await self._store.call(lambda v: (BackupSource.of(v), v.device_id))
        except NotewellError:
            return  # locked meanwhile, or record.db busy: the next check tries again
        finally:
            self._post(AutoBackups.Changed())
        self.running = True
        self._post(AutoBackups.Changed())
        folder = self.config.folder

        def run() -> None:
            from store.automatic_backup import run_automatic_backup
            from store.backup_process import run_in_child

            how = run_in_child if self.in_child else run_automatic_backup
            try:
                result = how(source, folder, device_id=device_id, now=now, progress=self.progress)
            except NotewellError as e:
                self._from_thread(self._failed, e.message)
            except Exception as e:  # a bug: one sentence, never its text (it could hold anything)
                self._from_thread(self._failed, f"The backup stopped on an internal error ({type(e).__name__}).")
            else:
                self._from_thread(self._succeeded, result)

        self._worker = self._app.run_worker(
            run, thread=True, exclusive=True, exit_on_error=False, group="auto-backup", name="automatic backup"
        )

    def _from_thread(self, fn: Callable[..., Any], *args: Any) -> None:
        call_on_ui_loop(self._app, fn, *args)

    def _failed(self, message: str) -> None:
        self.running, self.error = False, message
        self._post(AutoBackups.Changed())

    async def _succeeded(self, result: AutomaticBackup) -> None:
        from store.backup import record_backup
        from store.last_backup import LastBackup, parse_time

        m = result.written.manifest
        try:
            await self._store.call(record_backup, result.written)
        except NotewellError:
            pass  # locked meanwhile: the backup stands; the next unlock finds it due again
        self.last = LastBackup(at=parse_time(m.created_at), file=result.written.path.name, backup_id=m.backup_id)
        self.running, self.error = False, None
        self.made += 1
        if result.thinned.held_back:
            self._app.notify(result.thinned.held_back, severity="warning", markup=False)
        self._post(AutoBackups.Changed())

    async def stop(self, timeout: float = STOP_WAIT) -> None:
        """Lock and quit: let a running backup finish (its file is then complete), bounded."""
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self.loaded = False
