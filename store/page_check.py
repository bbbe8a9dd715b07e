"""Every page of a vault verified after it opens, before its first write.

Opening a vault used to check the HMAC of every page of both databases before anything was
shown: about 0.5 s at 50,000 notes, growing with the record. What that full scan adds to
what SQLCipher does anyway is detection of damage in pages nobody has read yet: SQLCipher
checks the HMAC of every page it reads, so a damaged page that is read is always an error,
never data. The full scan tells the clinician at once (so a backup is restored while one
still holds the page), rather than the day that note is opened.

So a vault opened with `Vault.open(..., pages_after_open=True)` (the app) checks what must
be right before anything is shown: vault.json, the key, the schema page, and the log of
recent changes judged as before (a damaged log refuses the open: store/write_ahead_log.py).
The full page scan then runs here, on a thread and connections of its own, while the first
screen is drawn. Until it has passed, nothing is written to either database: the first
write of any connection of this process to them waits for it (`store.write_access` holds
writes to a path until `require_sound` returns), and a log left by a crash is not folded in
at open. When it finds damage, every write is refused with `DamagedVault`, and the app says
so; nothing that was saved is changed, and the damaged pages are never written over.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from store import keys
from store.database import damaged_pages_message, live_page_problems
from store.errors import DamagedVault
from store.write_access import hold_writes, release_writes


class PageCheck:
    """The page check of a vault's databases, run once on a thread of its own.

    `start()` begins it (idempotent); `wait()` waits for it and returns its findings, one line
    per problem naming the file; `require_sound()` raises DamagedVault if it found any. The
    thread holds copies of the database keys only until its connections have them.
    """

    def __init__(self, databases: Sequence[tuple[Path, bytes | bytearray]]) -> None:
        self._databases = [(Path(path), bytearray(key)) for path, key in databases]
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._finished = threading.Event()
        self._problems: list[str] = []
        self._counts: dict[str, int] = {}
        self._released = False  # the vault closed before the check started: it never will

    # --- running ----------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is None and not self._released:
                self._thread = threading.Thread(target=self._run, name="notewell-page-check", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        try:
            for path, key in self._databases:
                try:
                    found = live_page_problems(path, key)
                except Exception as e:  # any failure to verify is a finding, never a pass
                    found = [f"the page check did not complete ({type(e).__name__})"]
                finally:
                    keys.wipe(key)
                self._counts[path.name] = len(found)
                self._problems += [f"{path.name}: {p}" for p in found]
        finally:
            for _, key in self._databases:
                keys.wipe(key)
            self._finished.set()

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    @property
    def passed(self) -> bool:
        """Finished, and every page passed."""
        return self._finished.is_set() and not self._problems

    def wait(self, timeout: float | None = None) -> list[str] | None:
        """The findings ([] when every page passed); None if not finished within `timeout`,
        or never started before the vault closed."""
        self.start()
        if not self._finished.is_set() and (self._thread is None or not self._finished.wait(timeout)):
            return None
        return list(self._problems)

    def require_sound(self) -> None:
        """Wait for the check; DamagedVault (one sentence naming the file) if it found damage."""
        self.wait()
        damaged = [(name, n) for name, n in self._counts.items() if n]
        if damaged:
            name, count = damaged[0]
            raise DamagedVault(damaged_pages_message(name, count) + " " + WRITES_REFUSED)

    # --- the hold on writes -----------------------------------------------------------

    def hold_writes(self) -> None:
        """Until the check has passed, a write to any of its databases waits for it."""
        for path, _ in self._databases:
            hold_writes(path, self.require_sound, lambda: self.passed)

    def release(self) -> None:
        """The vault closed: its databases are no longer held (the thread, if still running,
        finishes on its own connections and closes them)."""
        for path, _ in self._databases:
            release_writes(path, self.require_sound)
        with self._lock:
            if self._thread is None:
                self._released = True
                for _, key in self._databases:
                    keys.wipe(key)


WRITES_REFUSED = (
    "Nothing more is saved to it; what was saved before is unchanged. Restore the vault "
    "from a backup (notewell restore FILE)."
)


def passed_check() -> PageCheck:
    """The page check of a vault verified whole before it opened: finished, nothing found."""
    check = PageCheck([])
    check._finished.set()
    return check
