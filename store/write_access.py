"""Getting to write: another program's write lock, and a full disk.

Each of record.db and private.db has one write lock (SQLite in WAL mode): readers never wait
for it, but a write waits while another program holds it (the app, a second `notewell`
command, an import, a sync). Two refusals of a write are nobody's fault in this program, and
both must reach the clinician as one sentence, never as a raw SQLite error:

* the lock stays taken: every connection gets a busy handler (`install_lock_wait`) that waits
  quietly for a quarter of a second (another program's autosave or short command), then calls
  the wait notice (a line on stderr for a command, a notification in the app), waits for the
  rest of `lock_wait_seconds()`, and then gives up; `begin_write` turns that into `VaultBusy`;
* the disk is full: SQLITE_FULL, an OSError ENOSPC or EDQUOT, or a SQLite I/O error on a disk
  with (almost) no space left becomes `DiskFull`. The write is rolled back whole.

`translate` is the one place where these are recognised. The store's writes reach it through
`begin_write` and `store.database.WriteTransactions`, `write_transaction` (the few writes
outside a store's transactions), and direct calls where a file write's OSError is caught
(vault.json, a new vault's folder, mailbox bundles).
Both errors are `VaultError`s: sync tells "this vault could not take it" apart from "the other
device sent something bad" by that.

NOTEWELL_LOCK_WAIT sets the wait in seconds (default 30; 0 gives up at once), for scripts
that would rather retry themselves and for tests.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import sqlcipher3

from store.errors import DiskFull, VaultBusy, VaultError

LOCK_WAIT_ENV = "NOTEWELL_LOCK_WAIT"
DEFAULT_LOCK_WAIT = 30.0
MAX_LOCK_WAIT = 3600.0
WAIT_NOTICE = "Waiting for another Notewell program to finish writing..."
# A wait this short goes unannounced: the app's autosave or a short command of another
# program ends well within it, and a notice for every such wait would only be noise.
QUIET_WAIT = 0.25

# Below this much free space, an I/O error while writing is the full disk: SQLite reports a
# failed extension of its -shm file or a short write as "disk I/O error", not SQLITE_FULL.
_NEARLY_FULL_BYTES = 1 << 20
_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})

_wait_notice: Callable[[], None] | None = None


def lock_wait_seconds() -> float:
    """How long a write waits for another program's lock (NOTEWELL_LOCK_WAIT, seconds)."""
    raw = os.environ.get(LOCK_WAIT_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_LOCK_WAIT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_LOCK_WAIT:  # also refuses nan
        raise VaultError(
            f"{LOCK_WAIT_ENV} must be a number of seconds from 0 to {MAX_LOCK_WAIT:g}; nothing was changed."
        )
    return seconds


def set_wait_notice(notice: Callable[[], None] | None) -> Callable[[], None] | None:
    """Who is told that a write waits for another program (the command line prints
    WAIT_NOTICE on stderr, the app shows a notification). Called from the thread that waits.
    Returns the previous one, so a caller can put it back."""
    global _wait_notice
    previous, _wait_notice = _wait_notice, notice
    return previous


def install_lock_wait(conn: sqlcipher3.Connection) -> None:
    """How `conn` waits when another program holds a lock it needs: quietly at first, then
    announced, never longer than `lock_wait_seconds()`. SQLite calls the handler only while
    it waits, so a write that finds the lock free costs nothing more."""
    bound = lock_wait_seconds()
    wait = {"started": 0.0, "announced": False}

    def handler(retries: int) -> bool:
        if getattr(_not_waiting, "on", False):
            return False  # a write that is only a cache: given up at once (`without_waiting`)
        now = time.monotonic()
        if retries == 0:  # a new wait
            wait["started"], wait["announced"] = now, False
        waited = now - wait["started"]
        if waited >= bound:
            return False  # SQLite gives up with SQLITE_BUSY
        if not wait["announced"] and waited >= QUIET_WAIT:
            wait["announced"] = True
            notice = _wait_notice
            if notice is not None:
                with contextlib.suppress(Exception):  # telling must never fail the write
                    notice()
        # Short sleeps at first (the lock is usually free again within milliseconds).
        time.sleep(min(0.001 * (1 << min(retries, 6)), 0.05, bound - waited))
        return True

    conn.set_busy_handler(handler)


_not_waiting = threading.local()


@contextlib.contextmanager
def without_waiting() -> Iterator[None]:
    """Writes on this thread inside give up at once, with no notice, when another program
    holds the lock (VaultBusy): for a write that is only a cache (a record of what a check
    verified), which is better left out than waited for by a command that only reads."""
    _not_waiting.on = True
    try:
        yield
    finally:
        _not_waiting.on = False


def begin_write(conn: sqlcipher3.Connection) -> None:
    """BEGIN IMMEDIATE on `conn`: the write lock at once when it is free, else after the wait
    of `install_lock_wait`; VaultBusy when it stays taken. A database whose pages are still
    being verified (`hold_writes`) is written only once they have passed."""
    if _holds:
        _wait_for_hold(conn)
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlcipher3.Error as e:  # (not `translated()`: this runs before every write)
        typed = translate(e, conn)
        if typed is None:
            raise
        raise typed from None


# Database path -> (what a write to it waits for first, whether that has passed) (store/
# page_check.py: every page verified). Empty, as it is almost always, this costs a write
# nothing; a hold that has passed is dropped at the next write.
_holds: dict[str, tuple[Callable[[], None], Callable[[], bool]]] = {}


def hold_writes(path: Path, until: Callable[[], None], passed: Callable[[], bool]) -> None:
    """Every write of this process to the database at `path` first calls `until`, which
    returns when the write may go ahead or raises the error that refuses it; `passed` says,
    without waiting, whether it would return at once."""
    _holds[str(Path(path).resolve())] = (until, passed)


def release_writes(path: Path, until: Callable[[], None]) -> None:
    key = str(Path(path).resolve())
    held = _holds.get(key)
    if held is not None and held[0] == until:
        _holds.pop(key, None)


def writes_held(conn: sqlcipher3.Connection) -> bool:
    """True while a write on `conn` would wait (or be refused): for a write that is only a
    cache, which is then better left out than waited for."""
    if not _holds:
        return False
    held = _holds.get(_database_file(conn) or "")
    return held is not None and not held[1]()


def _wait_for_hold(conn: sqlcipher3.Connection) -> None:
    where = _database_file(conn)
    held = _holds.get(where) if where else None
    if held is not None:
        held[0]()  # raises to refuse
        _holds.pop(where, None)  # passed: later writes go straight ahead


@contextlib.contextmanager
def write_transaction(conn: sqlcipher3.Connection) -> Iterator[None]:
    """A write transaction of its own on `conn` (or a part of the one already open there),
    rolled back on any error, with the environment's refusals typed. For the few writes
    made outside a store's `WriteTransactions` (schema set-up, settings, the audit log)."""
    with translated(conn):
        if conn.in_transaction:
            yield
            return
        begin_write(conn)
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


@contextlib.contextmanager
def translated(conn: sqlcipher3.Connection | None = None, folder: Path | None = None) -> Iterator[None]:
    """Re-raises a busy vault or a full disk met inside as VaultBusy or DiskFull."""
    try:
        yield
    except BaseException as e:
        typed = translate(e, conn, folder)
        if typed is None:
            raise
        raise typed from None


def translate(
    error: BaseException, conn: sqlcipher3.Connection | None = None, folder: Path | None = None
) -> VaultError | None:
    """VaultBusy or DiskFull for a write refused by the lock or by a full disk; None for
    anything else. `conn` or `folder` tells where to look for free space after an I/O error."""
    if isinstance(error, (VaultBusy, DiskFull)):
        return None  # typed already
    if isinstance(error, OSError):
        return DiskFull() if error.errno in _FULL_ERRNOS else None
    if not isinstance(error, sqlcipher3.Error):
        return None
    if _is_busy(error):
        return VaultBusy()
    code = _primary_code(error)
    if code == sqlcipher3.SQLITE_FULL or (code is None and "disk is full" in str(error)):
        return DiskFull()
    if code == _SQLITE_IOERR or "disk I/O error" in str(error):
        where = folder if folder is not None else _database_folder(conn)
        if where is not None and _nearly_full(where):
            return DiskFull()
    return None


_SQLITE_IOERR = 10


def _primary_code(error: BaseException) -> int | None:
    code = getattr(error, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def _is_busy(error: BaseException) -> bool:
    # SQLITE_BUSY (and its extended codes) is another connection's lock; SQLITE_LOCKED is a
    # conflict inside one connection, a bug rather than another program.
    code = _primary_code(error)
    if code is not None:
        return code == sqlcipher3.SQLITE_BUSY
    return isinstance(error, sqlcipher3.OperationalError) and str(error).startswith("database is locked")


def _database_file(conn: sqlcipher3.Connection) -> str | None:
    try:
        row = conn.execute("PRAGMA database_list").fetchone()
    except sqlcipher3.Error:
        return None
    return str(Path(row[2]).resolve()) if row and row[2] else None


def _database_folder(conn: sqlcipher3.Connection | None) -> Path | None:
    if conn is None:
        return None
    try:
        row = conn.execute("PRAGMA database_list").fetchone()
    except sqlcipher3.Error:
        return None
    return Path(row[2]).parent if row and row[2] else None


def _nearly_full(folder: Path) -> bool:
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    # f_bfree counts the blocks reserved for root, which a process running as root may use.
    as_root = getattr(os, "geteuid", lambda: -1)() == 0
    free_blocks = st.f_bfree if as_root else st.f_bavail
    return free_blocks * st.f_frsize < _NEARLY_FULL_BYTES
