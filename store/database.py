"""Opening a SQLCipher database of a vault, checking it, and migrating its schema.

`open_database` never creates, truncates or writes a file it was not asked to create. An
existing file is first verified on a separate read-only connection: the key is set, a probe
reads the schema, and `PRAGMA cipher_integrity_check` verifies the HMAC of every page. Only a
file that passes is opened read-write and configured. SQLite would otherwise create -wal/-shm
files as soon as it reads the header of a WAL database, and a later write after a key error
is exactly how data gets lost.

The verification judges the database as SQLite will read it: the main file together with its
write-ahead log. Without a log (the vault was closed normally) the connection is
`immutable=1`, which creates no -wal/-shm. With one (a crash, a full disk at close, or another
process has the vault open), a checkpoint may have stopped half-way, leaving a main file that
is only whole together with its log, so the log is read: first by
`store.write_ahead_log`, which refuses a damaged log (SQLite would silently drop the
committed transactions after the damage), then by a read-only connection that replays it.
That connection uses `readonly_shm=1` when the -shm exists, so it writes nothing at all (a
URI parameter of SQLite's unix layer that its own read-only WAL tests use, though its URI page
does not list it; tests here compare the -shm byte for byte after a refused open);
without a -shm SQLite cannot read a log without creating one (an index of the log, no
content), and that is the one file verification may create. Page checks that fail only on
pages the log replaces (or beyond the database's end, which the next checkpoint cuts off) are
not damage; the read-write connection folds the log in right away.

Every read-write connection is configured in this order: `cipher_log_level = NONE` (SQLCipher
otherwise prints "hmac check failed" on stderr, over the app), the raw key, `journal_mode=WAL`,
`synchronous=FULL`, `temp_store=MEMORY`, `secure_delete=ON`, `foreign_keys=ON`,
`wal_autocheckpoint=200`, `journal_size_limit=1048576`, then a probe.
Each setting is read back: a connection that does not hold them is not used.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import sqlcipher3

from store.errors import DamagedVault, NewerVaultFormat, VaultError, VaultExists, WrongPassphrase
from store.write_ahead_log import LogReading, read_log_confirmed
from store.write_access import begin_write, install_lock_wait, translate, write_transaction

PROBE = "SELECT count(*) FROM sqlite_master"
# SQLCipher 4 default; we never change it.
PAGE_SIZE = 4096

# (pragma, value set, value read back)
SETTINGS: tuple[tuple[str, str, object], ...] = (
    ("journal_mode", "WAL", "wal"),
    ("synchronous", "FULL", 2),
    ("temp_store", "MEMORY", 2),
    ("secure_delete", "ON", 1),
    ("foreign_keys", "ON", 1),
    # A short log: less to lose to a damaged disk, less to check when a vault opens after a
    # crash. Checkpoint every 200 pages (SQLite's default is 1000) and cut the file back to
    # 1 MiB when the log starts over (by default it keeps its largest size). Measured with
    # bench/store_bench.py: see bench/README.md.
    ("wal_autocheckpoint", "200", 200),
    ("journal_size_limit", "1048576", 1048576),
)

SIDE_FILES = ("-wal", "-shm", "-journal")

_HMAC_FAILURE = re.compile(r"HMAC verification failed for page \d+")
# cipher_integrity_check's findings that name one page of the main file.
_PAGE_PROBLEM = re.compile(r"HMAC verification failed for page (\d+)|page (\d+) has an invalid size.*")


def _key_statement(raw_key: bytes | bytearray) -> str:
    if len(raw_key) != 32:
        raise ValueError("a database key is 32 bytes")
    return f"PRAGMA key = \"x'{bytes(raw_key).hex()}'\""


def _uri(path: Path, query: str) -> str:
    # as_uri() percent-encodes, so a folder name with '?' or '#' cannot change the query.
    return f"{path.resolve().as_uri()}?{query}"


def _connect(path: Path, query: str) -> sqlcipher3.Connection:
    # Autocommit: callers write with explicit BEGIN IMMEDIATE ... COMMIT.
    conn = sqlcipher3.connect(_uri(path, query), uri=True, isolation_level=None)
    # Any wait for another program's lock is announced and bounded (store/write_access.py).
    install_lock_wait(conn)
    return conn


def open_database(
    path: Path, raw_key: bytes, *, create: bool = False, verified: bool = False, fold_log: bool = True
) -> sqlcipher3.Connection:
    """A configured connection to the SQLCipher database at `path`.

    create=True makes a new file (VaultExists if the file or a side file of it is there).
    create=False opens an existing file: DamagedVault if it is missing, empty or damaged,
    WrongPassphrase if the key fits none of its pages. On any failure no file is changed.
    verified=True skips the page check when the caller has just run `verify_database`
    (a vault verifies both its databases before opening either). fold_log=False leaves a
    log left by a crash where it is: copying it in is a write, and a vault whose pages are
    verified after it opens (store/page_check.py) writes nothing before that.
    """
    path = Path(path)
    key = _key_statement(raw_key)
    if create:
        _create_empty(path)
    elif not verified:
        _verify_existing(path, key)
    try:
        conn = _connect(path, "mode=rw")
    except sqlcipher3.Error as e:
        raise VaultError(f"The vault's {path.name} cannot be opened ({e}).") from None
    try:
        _configure(conn, key, path.name)
    except BaseException:
        conn.close()
        raise
    if fold_log:
        _fold_log(conn, path)
    return conn


def _fold_log(conn: sqlcipher3.Connection, path: Path) -> None:
    """Copy a log left by a crash into the main file now, so that a main file a checkpoint
    left half-written is whole again (its page checks pass) and the log is short."""
    if _log_size(path) == 0:
        return
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlcipher3.Error:
        pass  # a full disk or a busy reader: the log stays, and is read as before


def _log_size(path: Path) -> int:
    try:
        return os.stat(f"{path}-wal").st_size
    except FileNotFoundError:
        return 0


def _create_empty(path: Path) -> None:
    for suffix in SIDE_FILES:
        # A stale WAL would be replayed into the new database.
        if os.path.lexists(f"{path}{suffix}"):
            raise VaultExists(
                f"A leftover {path.name}{suffix} is in the way; nothing was overwritten."
            )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    except FileExistsError:
        raise VaultExists(f"{path.name} already exists; nothing was overwritten.") from None
    os.close(fd)


def verify_database(path: Path, raw_key: bytes, *, pages: bool = True) -> None:
    """Check an existing database without writing anything, not even a -wal or -shm file:
    DamagedVault if it is missing, empty or has a page that fails its HMAC, WrongPassphrase
    if the key fits none of its pages. pages=False checks all of that but the HMAC of every
    page (the file, its log, the key and the schema page): the caller verifies the pages
    later (store/page_check.py), and until then SQLCipher still checks each page it reads."""
    _verify_existing(Path(path), _key_statement(raw_key), pages=pages)


def _verify_existing(path: Path, key: str, *, pages: bool = True) -> None:
    if not path.is_file():
        raise DamagedVault(f"The vault's {path.name} is missing.")
    if path.stat().st_size == 0:
        # SQLite would treat an empty file as a new database and happily write one.
        raise DamagedVault(f"The vault's {path.name} is empty.")
    log = None
    if _log_size(path):
        log = read_log_confirmed(Path(f"{path}-wal"), PAGE_SIZE)
        if log is not None and log.damaged:
            raise DamagedVault(
                f"The log of recent changes next to the vault's {path.name} ({path.name}-wal) "
                "is damaged; opening it would lose saved changes, so the vault was not opened "
                "and nothing was changed."
            )
    if log is not None and log.kept_frames > 0:
        shm = os.path.exists(f"{path}-shm")
        query = "mode=ro&readonly_shm=1" if shm else "mode=ro"
    else:
        # No log, or one a replay takes nothing from: a header alone (SQLite had started the
        # log over and its writer died before the first frame: an export killed while it held
        # the write lock), or frames of an earlier round. The main file alone is the database.
        # Read through the left-over -shm, such a log fails with "locking protocol", which
        # would read as damage (tests/store/test_header_only_log.py).
        query = "mode=ro&immutable=1"
    try:
        conn = _connect(path, query)
    except sqlcipher3.Error as e:
        raise VaultError(f"The vault's {path.name} cannot be opened ({e}).") from None
    try:
        conn.execute("PRAGMA cipher_log_level = NONE")
        conn.execute(key)
        try:
            conn.execute(PROBE).fetchall()
        except sqlcipher3.DatabaseError:
            raise _key_or_damage(conn, path) from None
        if not pages:
            return
        problems = _page_problems(conn, log)
        if problems:
            raise DamagedVault(damaged_pages_message(path.name, len(problems)))
    finally:
        conn.close()


_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


def read_damage(error: BaseException) -> DamagedVault | None:
    """DamagedVault for a read that met a page failing its HMAC (SQLCipher reports it as a
    corrupt database), None for anything else. Pages are verified after a vault opens in the
    app (store/page_check.py), so a read may meet damage before that check reports it."""
    if not isinstance(error, sqlcipher3.DatabaseError):
        return None
    code = getattr(error, "sqlite_errorcode", None)
    code = code & 0xFF if isinstance(code, int) else None
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or (code is None and "malformed" in str(error)):
        return DamagedVault(
            "Part of the vault cannot be read: a page of its files is damaged. Nothing was "
            "changed; restore the vault from a backup (notewell restore FILE)."
        )
    return None


def damaged_pages_message(name: str, count: int) -> str:
    return f"The vault's {name} is damaged ({count} problem(s) found when verifying its pages)."


def _page_problems(conn: sqlcipher3.Connection, log: LogReading | None) -> list[str]:
    """cipher_integrity_check's findings on `conn`'s main file, less those its log makes
    harmless (`_replaced_by_log`)."""
    try:
        problems = [str(row[0]) for row in conn.execute("PRAGMA cipher_integrity_check")]
    except sqlcipher3.DatabaseError:
        problems = ["the page check did not complete"]
    return [p for p in problems if not _replaced_by_log(p, log)]


def live_page_problems(path: Path, raw_key: bytes | bytearray) -> list[str]:
    """Every page of a database that is open, and may be written meanwhile, checked against
    its HMAC; [] when all pass. Reads only, on a connection of its own (any thread).

    A read transaction is held throughout, so no checkpoint can copy into the main file a
    page the log did not already hold when the log was read (a reader's snapshot bounds
    what may be copied, and the log cannot start over under it); pages the log holds are
    judged as at open (`_replaced_by_log`), so a page half-copied while it was read is not
    called damage. A damaged log is damage here too."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return ["the file is missing or empty"]
    try:
        conn = _connect(path, "mode=ro")
    except sqlcipher3.Error as e:
        return [f"the file cannot be read ({e})"]
    try:
        conn.execute("PRAGMA cipher_log_level = NONE")
        conn.execute(_key_statement(raw_key))
        try:
            conn.execute("BEGIN")
            conn.execute(PROBE).fetchall()
        except sqlcipher3.DatabaseError:
            return ["the schema page cannot be read with the vault's key"]
        log = read_log_confirmed(Path(f"{path}-wal"), PAGE_SIZE) if _log_size(path) else None
        if log is not None and log.damaged:
            return ["the log of recent changes is damaged"]
        return _page_problems(conn, log)
    finally:
        conn.close()


def open_read_only(path: Path, raw_key: bytes) -> sqlcipher3.Connection:
    """A read-only connection to a database file that no program writes (a backup's copy,
    checked before it becomes a vault): immutable, so it creates no -wal or -shm."""
    conn = _connect(Path(path), "mode=ro&immutable=1")
    try:
        conn.execute("PRAGMA cipher_log_level = NONE")
        conn.execute(_key_statement(raw_key))
        conn.execute(PROBE).fetchall()
    except sqlcipher3.DatabaseError:
        conn.close()
        raise DamagedVault(f"The copy of {Path(path).name} cannot be read with its key.") from None
    return conn


def _replaced_by_log(problem: str, log: LogReading | None) -> bool:
    """cipher_integrity_check reads the main file alone. A page the log holds a newer image of
    is never read from the main file (a checkpoint killed mid-page can leave it torn), and a
    page past the database's end is never read at all: the next checkpoint rewrites or cuts
    off both."""
    if log is None or log.kept_frames == 0:
        return False
    match = _PAGE_PROBLEM.fullmatch(problem)
    if match is None:
        return False
    page = int(match.group(1) or match.group(2))
    return page in log.logged_pages or page > log.database_pages


def _key_or_damage(conn: sqlcipher3.Connection, path: Path) -> Exception:
    """A key that fits no page at all is the wrong key; some good pages mean damage."""
    name = path.name
    try:
        rows = [row[0] for row in conn.execute("PRAGMA cipher_integrity_check")]
        page_count = max(1, path.stat().st_size // PAGE_SIZE)
    except (sqlcipher3.Error, OSError):
        return DamagedVault(f"The vault's {name} is damaged.")
    failed = sum(1 for r in rows if _HMAC_FAILURE.fullmatch(str(r)))
    if rows and failed == len(rows) and failed >= page_count:
        return WrongPassphrase(f"The key does not open {name}.")
    return DamagedVault(f"The vault's {name} is damaged.")


def _configure(conn: sqlcipher3.Connection, key: str, name: str) -> None:
    try:
        conn.execute("PRAGMA cipher_log_level = NONE")
        conn.execute(key)
        for pragma, value, _ in SETTINGS:
            conn.execute(f"PRAGMA {pragma} = {value}").fetchall()
        conn.execute(PROBE).fetchall()
    except sqlcipher3.OperationalError as e:
        # The file's pages were verified already: this is the environment (a lock, a
        # read-only folder, a full disk), not damage.
        typed = translate(e, conn)
        if typed is not None:
            raise typed from None
        raise VaultError(f"The vault's {name} cannot be opened for writing ({e}).") from None
    except sqlcipher3.DatabaseError as e:
        raise DamagedVault(f"The vault's {name} cannot be opened ({e}).") from None
    problems = setting_problems(conn)
    if problems:
        raise DamagedVault(f"The vault's {name} refused its settings: " + "; ".join(problems) + ".")


def setting_problems(conn: sqlcipher3.Connection) -> list[str]:
    """Each connection setting that does not read back as set."""
    problems = []
    level = conn.execute("PRAGMA cipher_log_level").fetchone()
    if level is None or str(level[0]).upper() != "NONE":
        problems.append("cipher_log_level is not NONE")
    for pragma, value, expected in SETTINGS:
        row = conn.execute(f"PRAGMA {pragma}").fetchone()
        actual = None if row is None else row[0]
        if isinstance(actual, str):
            actual = actual.lower()
        if actual != expected:
            problems.append(f"{pragma} is {actual!r}, expected {value}")
    return problems


def integrity_problems(conn: sqlcipher3.Connection) -> list[str]:
    """Page HMACs, SQLite's structural check and the connection settings; [] when healthy.

    The messages name pages and tables, never row contents.
    """
    problems: list[str] = []
    try:
        problems += [str(r[0]) for r in conn.execute("PRAGMA cipher_integrity_check")]
    except sqlcipher3.DatabaseError as e:
        problems.append(f"cipher_integrity_check failed: {e}")
    return problems + structure_problems(conn)


def structure_problems(conn: sqlcipher3.Connection, *, quick: bool = False) -> list[str]:
    """SQLite's structural check (quick: `quick_check`, which leaves out whether every index
    agrees with its table) and the connection settings; [] when healthy."""
    pragma = "quick_check" if quick else "integrity_check"
    problems: list[str] = []
    try:
        rows = [str(r[0]) for r in conn.execute(f"PRAGMA {pragma}")]
        problems += [r for r in rows if r != "ok"]
    except sqlcipher3.DatabaseError as e:
        problems.append(f"{pragma} failed: {e}")
    problems += setting_problems(conn)
    return problems


def checkpoint_and_close(conn: sqlcipher3.Connection) -> None:
    """Fold the WAL into the database file, then close (SQLite removes -wal and -shm)."""
    try:
        # Closing never waits for another program's writer (this also drops the connection's
        # busy handler): without the lock the checkpoint copies what it can, and the WAL left
        # behind is consistent.
        conn.execute("PRAGMA busy_timeout = 0")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    except sqlcipher3.Error:
        # Another connection may be reading; closing still leaves a consistent WAL.
        pass
    finally:
        conn.close()


# --- schema migrations ---------------------------------------------------------------

Step = Callable[[sqlcipher3.Connection], None]


def migrate(conn: sqlcipher3.Connection, steps: Sequence[Step]) -> int:
    """Apply the steps above `PRAGMA user_version`, each in its own transaction.

    Step i (0-based) takes the schema from version i to i+1. A step uses conn.execute only:
    `executescript` commits on its own, which would split a step from its version bump.
    Returns the version reached. NewerVaultFormat if the database is ahead of the steps.
    A database that is up to date is only read: opening a vault takes no write lock.
    """
    while True:
        version = _schema_version(conn, len(steps))
        if version == len(steps):
            return version
        with write_transaction(conn):
            # Read again under the write lock, so two connections never run the same step.
            version = _schema_version(conn, len(steps))
            if version == len(steps):
                continue  # another connection migrated meanwhile
            steps[version](conn)
            if not conn.in_transaction:
                raise RuntimeError("a migration step ended its transaction; use conn.execute only")
            conn.execute(f"PRAGMA user_version = {version + 1}")


def _schema_version(conn: sqlcipher3.Connection, known: int) -> int:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > known:
        raise NewerVaultFormat(
            f"The vault's {_db_name(conn)} was written by a newer Notewell "
            f"(schema {version}); update Notewell to open it."
        )
    return version


def _db_name(conn: sqlcipher3.Connection) -> str:
    row = conn.execute("PRAGMA database_list").fetchone()
    return Path(row[2]).name if row and row[2] else "database"


class WriteTransactions:
    """Nestable write transactions on one connection: the outermost use runs
    BEGIN IMMEDIATE ... COMMIT, inner uses join it, and any error rolls the whole one back.

    BEGIN IMMEDIATE takes the write lock up front, so a read-check-write inside (the record's
    "is this document still what I cached?") cannot interleave with another connection.
    `on_rollback` lets the owner drop in-memory state that never reached the disk.
    Another program's lock and a full disk leave as VaultBusy and DiskFull, at every depth
    (store/write_access.py), so no caller mistakes them for bad data.
    """

    def __init__(
        self, conn, on_rollback: Callable[[], None] | None = None, on_commit: Callable[[], None] | None = None,
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        self._conn = conn
        self._on_rollback = on_rollback
        # Called once at the end of each outermost transaction, inside it, before COMMIT: the
        # record derives what must commit with the documents (store/signature_index.py). An
        # error there rolls the whole transaction back.
        self._before_commit = before_commit
        # Called after each outermost COMMIT succeeds (the intake reports the ids it wrote).
        self._on_commit = on_commit
        self._depth = 0

    @property
    def active(self) -> bool:
        return self._depth > 0

    def __enter__(self) -> None:
        if self._depth == 0:
            begin_write(self._conn)
        self._depth += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._depth == 1 and exc_type is None and self._before_commit is not None:
            try:  # still inside the transaction: what it writes joins it
                self._before_commit()
            except BaseException as e:
                self._depth = 0
                self._rollback()
                raise translate(e, self._conn) or e
        self._depth -= 1
        if self._depth == 0:
            if exc_type is None:
                try:
                    self._conn.execute("COMMIT")
                except BaseException as e:
                    self._rollback()
                    exc = e
                else:
                    if self._on_commit is not None:
                        self._on_commit()
                    return
            else:
                self._rollback()
        if exc is not None:
            typed = translate(exc, self._conn)
            if typed is not None:
                raise typed from None
            if exc_type is None:
                raise exc

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
        if self._on_rollback is not None:
            self._on_rollback()
