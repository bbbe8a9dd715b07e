"""Backups: one encrypted file holding the whole vault, verified and restored to a new folder.

    write_backup(vault, folder) -> BackupWritten       # from an open vault; audited
    BackupSource.of(vault).write(folder)               # the same without the audit entry, in any thread
    record_backup(vault, written) -> BackupWritten     # the audit entry (the vault's own thread)
    read_backup_header(path) -> BackupHeader           # what a file says about itself, no key needed
    verify_backup(path, passphrase= | recovery_key= | vault=) -> BackupManifest
    restore_backup(path, vault_dir, passphrase= | recovery_key= + new_passphrase=, device_name=)

A backup is a copy of this device, not a sync: process notes are in it. It is taken at the
level of the store, below the record's sync intake and the export, which never see it.

The databases are copied with SQLite's online backup, into a SQLCipher file under the same
key: one step, one read transaction, so the copy is the database as some commit left it,
whatever another program writes meanwhile (WAL readers never wait for writers). private.db
is copied before record.db: a process note names a client, and a client is never deleted,
so every client a copied process note names is in the copied record. The copies are made in a
staging folder inside the vault folder (same disk, owner-only; the pages stay encrypted) and
then sealed into the backup file (store/backup_format.py) with a manifest: counts, and each
file's size and SHA-256.

The file is written as a hidden `.partial` beside its final name, fsynced, then linked into
place (never over another file) and the folder fsynced: a file with the final name is
complete. A process killed half-way leaves a `.partial` (and a staging folder); the next
backup removes those no program holds a lock on.

A restore decrypts into a hidden folder beside the target, checks every page, the structure,
the counts and the audit chain, unlocks the result as any vault is unlocked, gives it a new
device identity, and renames the folder into place. It never writes into an existing vault
or a folder that holds anything.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import sqlcipher3

from store import keys, vaultfile
from store.audit import AuditLog, Event, derive_audit_key
from store.backup_format import BackupHeader, ChunkWriter, read_chunks, read_header
from store.database import SIDE_FILES, open_database, open_read_only, verify_database
from store.errors import (
    BackupError,
    BadBackupFile,
    DamagedVault,
    NotewellError,
    VaultError,
    VaultExists,
    WeakPassphrase,
    WrongPassphrase,
    WrongRecoveryKey,
)
from store.last_backup import remember_backup
from store.vault import PRIVATE_DB, RECORD_DB, Vault, _database_keys, unwrap_master
from store.write_access import write_transaction

SUFFIX = ".nwbackup"
PARTIAL_SUFFIX = ".partial"
STAGING_PREFIX = ".backup-staging-"
RESTORING_MARK = ".restoring-"
MANIFEST_FORMAT = 1
# private.db first: see the module docstring.
DATABASES = (PRIVATE_DB, RECORD_DB)
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_FILES = 10_000
_LEN = struct.Struct(">I")
_COPY_BYTES = 1 << 20

Progress = Callable[[int, int], None]


# --- what a backup holds -----------------------------------------------------------------


@dataclass(frozen=True)
class BackupCounts:
    """What the copied databases hold, counted in the copies themselves."""

    documents: int = 0
    clients: int = 0
    progress_notes: int = 0
    process_notes: int = 0
    audit_entries: int = 0


@dataclass(frozen=True)
class BackupFileEntry:
    path: str  # relative to the vault folder, with "/"
    kind: str  # "database" (copied with SQLite's backup) or "file" (copied as it is)
    size: int
    sha256: str


@dataclass(frozen=True)
class BackupManifest:
    backup_id: str
    created_at: str
    vault_id: str
    device_id: str
    device_name: str
    counts: BackupCounts
    files: tuple[BackupFileEntry, ...] = field(default_factory=tuple)

    def to_bytes(self) -> bytes:
        data = asdict(self)
        data["format"] = MANIFEST_FORMAT
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @classmethod
    def parse(cls, raw: bytes) -> BackupManifest:
        """ValueError/KeyError/TypeError for anything we did not write."""
        data = json.loads(raw.decode("utf-8"))
        if data["format"] != MANIFEST_FORMAT:
            raise ValueError("unknown manifest format")
        counts = BackupCounts(**{k: _count(v) for k, v in data["counts"].items()})
        files = tuple(
            BackupFileEntry(path=_safe_path(f["path"]), kind=_kind(f["kind"]), size=_count(f["size"]),
                            sha256=_hex(f["sha256"]))
            for f in data["files"]
        )
        if len(files) > MAX_FILES or len({f.path for f in files}) != len(files):
            raise ValueError("too many or repeated files")
        if sorted(f.path for f in files if f.kind == "database") != sorted(DATABASES):
            raise ValueError("the databases are not the vault's")
        return cls(
            backup_id=str(data["backup_id"]), created_at=str(data["created_at"]),
            vault_id=str(data["vault_id"]), device_id=str(data["device_id"]),
            device_name=str(data["device_name"]), counts=counts, files=files,
        )

    @property
    def content_bytes(self) -> int:
        return sum(f.size for f in self.files)


def _count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError("not a count")
    return value


def _kind(value: object) -> str:
    if value not in ("database", "file"):
        raise ValueError("unknown kind")
    return str(value)


def _hex(value: object) -> str:
    if not isinstance(value, str) or len(value) != 64:
        raise ValueError("not a SHA-256")
    bytes.fromhex(value)
    return value


def _reserved(name: str) -> bool:
    """Names a vault folder holds that are not copied as files: the databases' side files,
    vault.json (in the header) and its temporary, and this module's own folders."""
    if name in (vaultfile.FILE_NAME, vaultfile.TMP_NAME):
        return True
    if any(name == db + suffix for db in (RECORD_DB, PRIVATE_DB) for suffix in SIDE_FILES):
        return True
    return name.startswith(STAGING_PREFIX)


def _safe_path(value: object) -> str:
    """A relative path inside the vault folder, or ValueError: a restore never writes
    outside its folder, nor over a database or vault.json."""
    if not isinstance(value, str) or not 0 < len(value) <= 255 or "\0" in value or "\\" in value:
        raise ValueError("bad path")
    parts = PurePosixPath(value).parts
    if value.startswith("/") or not parts or any(p in ("", ".", "..") for p in parts):
        raise ValueError("bad path")
    if _reserved(parts[0]):
        raise ValueError("reserved path")
    return value


@dataclass(frozen=True)
class BackupWritten:
    path: Path
    size: int
    manifest: BackupManifest
    audited: bool = False  # the vault's audit trail holds its entry


@dataclass(frozen=True)
class BackupRestored:
    path: Path
    device_id: str
    manifest: BackupManifest


# --- writing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupSource:
    """What a backup needs of an open vault: its folder and keys, no connection. `write` may
    run in any thread (the app's backups need not hold up its store thread)."""

    path: Path
    vault_id: str
    backup_key: bytes = field(repr=False)
    file_key: bytes = field(repr=False)
    db_keys: tuple[bytes, bytes] = field(repr=False)  # record.db, private.db
    audit_key: bytes = field(default=b"", repr=False)  # to check a backup's audit chain (verify)

    @classmethod
    def of(cls, vault: Vault) -> BackupSource:
        # The vault's own keys, read here rather than through public names: they never
        # leave store/, and an object with a vault's keys but no connection is what a
        # backup in another thread needs.
        if vault.closed or not vault._backup_key:
            raise VaultError("The vault is locked; unlock it again to make a backup.")
        return cls(
            path=vault.path, vault_id=vault.vault_id, backup_key=bytes(vault._backup_key),
            file_key=bytes(vault._file_key), db_keys=(bytes(vault._db_keys[0]), bytes(vault._db_keys[1])),
            audit_key=bytes(vault._audit_key),
        )

    def key_for(self, database: str) -> bytes:
        return self.db_keys[0] if database == RECORD_DB else self.db_keys[1]

    def write(self, folder: Path, *, progress: Progress | None = None, now: datetime | None = None) -> BackupWritten:
        """Write one backup file into `folder`. BackupError (and nothing left behind, earlier
        backups untouched) when the folder is missing, full or read-only."""
        folder = _backup_folder(Path(folder).expanduser(), self.path)
        remove_stale(folder, self.path, self.vault_id)
        created = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
        vault_file, vf = self._vault_file()
        with _staging(self.path) as staging:
            for name in DATABASES:
                self._copy_database(name, staging)
            others = self._copy_other_files(staging)
            counts = _count_contents(staging, self.key_for(RECORD_DB), self.key_for(PRIVATE_DB))
            entries = [_entry(staging, name, "database") for name in DATABASES]
            entries += [_entry(staging, rel, "file") for rel in others]
            manifest = BackupManifest(
                backup_id=secrets.token_hex(16), created_at=created.isoformat().replace("+00:00", "Z"),
                vault_id=self.vault_id, device_id=vf.device_id, device_name=vf.device_name,
                counts=counts, files=tuple(entries),
            )
            manifest_bytes = manifest.to_bytes()
            header = BackupHeader(
                backup_id=manifest.backup_id, created_at=manifest.created_at, vault_id=self.vault_id,
                device_id=vf.device_id, device_name=vf.device_name, salt=os.urandom(32),
                vault_file=vault_file, content_bytes=_LEN.size + len(manifest_bytes) + manifest.content_bytes,
            )
            final_name = f"notewell-{self.vault_id[:8]}-{created.strftime('%Y%m%dT%H%M%SZ')}"
            path, size = _write_file(folder, final_name, header, self.backup_key, _content(
                staging, manifest, manifest_bytes), progress)
        return BackupWritten(path=path, size=size, manifest=manifest)

    def _vault_file(self) -> tuple[bytes, vaultfile.VaultFile]:
        """vault.json as it is now, vouched for by its MAC (a passphrase changed since the
        vault was opened is the one the backup carries)."""
        try:
            raw = (self.path / vaultfile.FILE_NAME).read_bytes()
        except OSError as e:
            raise VaultError(f"Cannot read the vault's vault.json: {e.strerror}.") from None
        vf = vaultfile.parse(raw)
        if vf.vault_id != self.vault_id or (vf.authenticated and not vf.mac_matches(self.file_key)):
            raise DamagedVault(
                "The vault's vault.json is damaged or was altered, so no backup was made; "
                "`notewell check` says more."
            )
        return raw, vf

    def _copy_database(self, name: str, staging: Path) -> None:
        key = self.key_for(name)
        source = open_database(self.path / name, key, verified=True)
        try:
            target = sqlcipher3.connect(str(staging / name), isolation_level=None)
            try:
                target.execute("PRAGMA cipher_log_level = NONE")
                target.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
                # pages=-1: one step, so one read transaction (a consistent copy); writers
                # in WAL mode go on meanwhile.
                source.backup(target, pages=-1)
            finally:
                target.close()
        except sqlcipher3.Error as e:
            raise _staging_failed(e) from None
        finally:
            source.close()

    def _copy_other_files(self, staging: Path) -> list[str]:
        """Anything else the vault folder holds, copied as it is (nothing writes it while the
        vault is open); symbolic links and special files are not followed."""
        copied = []
        for root, dirs, files in os.walk(self.path):
            rel_root = Path(root).relative_to(self.path)
            dirs[:] = sorted(d for d in dirs if not (rel_root == Path(".") and _reserved(d)))
            for name in sorted(files):
                rel = (rel_root / name).as_posix()
                source = Path(root) / name
                if (rel_root == Path(".") and (_reserved(name) or name in DATABASES)) or not source.is_file() or source.is_symlink():
                    continue
                target = staging / rel
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, target, follow_symlinks=False)
                except OSError as e:
                    raise _staging_failed(e) from None
                copied.append(rel)
        return copied


def write_backup(vault: Vault, folder: Path, *, progress: Progress | None = None) -> BackupWritten:
    """One backup of `vault` into `folder`, recorded in the vault's audit trail."""
    written = BackupSource.of(vault).write(folder, progress=progress)
    return record_backup(vault, written)


def record_backup(vault: Vault, written: BackupWritten) -> BackupWritten:
    """The audit entry of a backup already in place, and this device's "last backup"
    (store/last_backup.py), in one transaction. A busy or full record.db does not undo
    the backup: `audited` is False and the caller says so."""
    m = written.manifest
    try:
        with write_transaction(vault.record_conn):
            vault.audit.append(
                Event.BACKUP_WRITTEN, backup=m.backup_id, file=written.path.name[:200],
                folder=str(written.path.parent)[-200:], bytes=written.size, documents=m.counts.documents,
                progress_notes=m.counts.progress_notes, process_notes=m.counts.process_notes,
            )
            remember_backup(vault, at=m.created_at, file=written.path.name, backup_id=m.backup_id)
    except (VaultError, sqlcipher3.OperationalError):
        return written
    return BackupWritten(written.path, written.size, written.manifest, audited=True)


def _backup_folder(folder: Path, vault_path: Path) -> Path:
    if not folder.exists():
        raise BackupError(
            f"The backup folder {folder} does not exist (is the drive connected?); no backup was written."
        )
    if not folder.is_dir():
        raise BackupError(f"{folder} is a file, not a folder; no backup was written.")
    resolved, vault = folder.resolve(), vault_path.resolve()
    if resolved == vault or vault in resolved.parents:
        raise BackupError(
            "The backup folder is inside the vault folder, where a lost disk would take both; "
            "choose another drive or folder. No backup was written."
        )
    return folder


def _lock_folder(folder: Path, how: int) -> int | None:
    """A descriptor of `folder` holding a flock of kind `how`, or None when LOCK_NB finds it
    taken. Backups hold the vault folder shared while their staging folder exists, restores
    the target's parent likewise; whoever gets it exclusively knows that no staging folder
    there is in use, even one killed before it held anything."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        fcntl.flock(fd, how)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _remove_stale_folders(parent: Path, prefix: str) -> None:
    """Remove the staging folders named `prefix...` in `parent` unless one is in use."""
    try:
        fd = _lock_folder(parent, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return
    if fd is None:
        return  # a backup or restore is running there: next time
    try:
        for path in parent.glob(f"{prefix}*"):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
    finally:
        os.close(fd)


def _new_staging(parent: Path, prefix: str) -> tuple[Path, int]:
    """A fresh owner-only folder `prefix...` in `parent`, made and kept while `parent` is held
    shared (the descriptor returned; close it when the folder is gone or renamed)."""
    fd = _lock_folder(parent, fcntl.LOCK_SH)
    try:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=parent)), fd
    except BaseException:
        os.close(fd)
        raise


@contextlib.contextmanager
def _staging(vault_path: Path) -> Iterator[Path]:
    """A staging folder in the vault folder, removed after."""
    try:
        folder, fd = _new_staging(vault_path, STAGING_PREFIX)
    except OSError as e:
        raise _staging_failed(e) from None
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)


def _staging_failed(e: BaseException) -> BackupError:
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return BackupError(
            "The vault's disk is too full to take the snapshot a backup starts with; "
            "no backup was written. Free some space and try again."
        )
    if isinstance(e, sqlcipher3.Error) and ("full" in str(e)):
        return _staging_failed(OSError(errno.ENOSPC, "full"))
    why = e.strerror if isinstance(e, OSError) else str(e)
    return BackupError(f"The snapshot of the vault could not be taken ({why}); no backup was written.")


def remove_stale(folder: Path | None, vault_path: Path | None, vault_id: str = "") -> None:
    """Remove what killed backups of this vault left: `.partial` files in the backup folder
    (each locked by the backup writing it) and staging folders in the vault (see
    `_lock_folder`), unless a running backup still holds them."""
    if folder is not None:
        for path in folder.glob(f".notewell-{vault_id[:8]}*{SUFFIX}{PARTIAL_SUFFIX}"):
            if path.is_file() and not path.is_symlink():
                _remove_unlocked_file(path)
    if vault_path is not None:
        _remove_stale_folders(vault_path, STAGING_PREFIX)


def _remove_unlocked_file(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # being written now
    finally:
        os.close(fd)
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _entry(staging: Path, rel: str, kind: str) -> BackupFileEntry:
    digest = hashlib.sha256()
    with open(staging / rel, "rb") as f:
        while block := f.read(_COPY_BYTES):
            digest.update(block)
    return BackupFileEntry(path=rel, kind=kind, size=(staging / rel).stat().st_size, sha256=digest.hexdigest())


def _content(staging: Path, manifest: BackupManifest, manifest_bytes: bytes) -> Iterator[bytes]:
    """The plaintext the chunks seal: the manifest's length and bytes, then every file."""
    yield _LEN.pack(len(manifest_bytes)) + manifest_bytes
    for entry in manifest.files:
        with open(staging / entry.path, "rb") as f:
            while block := f.read(_COPY_BYTES):
                yield block


def _write_file(
    folder: Path, base: str, header: BackupHeader, backup_key: bytes, content: Iterator[bytes],
    progress: Progress | None,
) -> tuple[Path, int]:
    """The backup file, complete under its final name, or nothing (BackupError)."""
    partial = folder / f".{base}-{secrets.token_hex(4)}{SUFFIX}{PARTIAL_SUFFIX}"
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as e:
        raise _folder_failed(folder, e) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with os.fdopen(os.dup(fd), "wb") as f:
            f.write(header.encode())
            writer = ChunkWriter(f, header, backup_key)
            total = header.content_bytes
            if progress is not None:
                progress(0, total)
            for block in content:
                writer.write(block)
                if progress is not None:
                    progress(writer.content_bytes, total)
            writer.finish()
            f.flush()
            os.fsync(f.fileno())
        path = _link_into_place(partial, folder, base)
        size = path.stat().st_size
    except OSError as e:
        partial.unlink(missing_ok=True)
        raise _folder_failed(folder, e) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    try:
        vaultfile.fsync_dir(folder)
    except OSError:
        pass  # the file is in place; only a power cut before the folder is written could lose it
    return path, size


def _link_into_place(partial: Path, folder: Path, base: str) -> Path:
    """A hard link under the first free final name (never over another file), then the
    partial goes. Filesystems without hard links get a rename after a check."""
    for n in range(1, 1000):
        path = folder / (f"{base}{SUFFIX}" if n == 1 else f"{base}-{n}{SUFFIX}")
        try:
            os.link(partial, path)
        except FileExistsError:
            continue
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            if os.path.lexists(path):
                continue
            os.replace(partial, path)
            return path
        partial.unlink()
        return path
    raise OSError(errno.EEXIST, "no free name for the backup file")


def _folder_failed(folder: Path, e: OSError) -> BackupError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return BackupError(
            f"The backup folder {folder} is full; no backup was written and earlier backups are untouched."
        )
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return BackupError(
            f"The backup folder {folder} cannot be written ({e.strerror}); no backup was written "
            "and earlier backups are untouched."
        )
    return BackupError(
        f"The backup could not be written to {folder} ({e.strerror}); earlier backups are untouched."
    )


# --- counting and checking a copy ----------------------------------------------------------


def _table_count(conn, table: str, where: str = "", params: tuple = ()) -> int:
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    if exists is None:
        return 0  # a store never used on this vault has not made its tables yet
    return conn.execute(f"SELECT count(*) FROM {table} {where}", params).fetchone()[0]


def _contents(record, private) -> BackupCounts:
    return BackupCounts(
        documents=_table_count(record, "documents"),
        clients=_table_count(record, "documents", "WHERE kind = ?", ("client",)),
        progress_notes=_table_count(record, "documents", "WHERE kind = ?", ("progress_note",)),
        process_notes=_table_count(private, "process_notes"),
        audit_entries=_table_count(record, "audit_log"),
    )


def _count_contents(folder: Path, record_key: bytes, private_key: bytes) -> BackupCounts:
    record = open_read_only(folder / RECORD_DB, record_key)
    try:
        private = open_read_only(folder / PRIVATE_DB, private_key)
        try:
            return _contents(record, private)
        finally:
            private.close()
    finally:
        record.close()


def _check_copy(folder: Path, keyring: _Keyring, manifest: BackupManifest) -> list[str]:
    """What is wrong with the databases unpacked into `folder`; [] when they are whole: every
    page's HMAC, SQLite's structural check, the counts the manifest gives, the audit chain."""
    problems: list[str] = []
    for name in DATABASES:
        try:
            verify_database(folder / name, keyring.db_key(name))
        except (WrongPassphrase, DamagedVault):
            problems.append(f"{name} fails its page checks")
    if problems:
        return problems
    record = open_read_only(folder / RECORD_DB, keyring.db_key(RECORD_DB))
    private = open_read_only(folder / PRIVATE_DB, keyring.db_key(PRIVATE_DB))
    try:
        for name, conn in ((RECORD_DB, record), (PRIVATE_DB, private)):
            rows = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
            if rows != ["ok"]:
                problems.append(f"{name} fails SQLite's integrity check")
        counts = _contents(record, private)
        if counts != manifest.counts:
            problems.append("what the databases hold differs from the counts in the manifest")
        if _table_count(record, "audit_log") or _table_count(record, "audit_head"):
            result = AuditLog(record, keyring.audit_key).verify()
            if not result.ok:
                problems.append(f"the audit trail breaks at entry {result.first_broken_seq}")
    finally:
        record.close()
        private.close()
    return problems


# --- reading -------------------------------------------------------------------------------


@dataclass
class _Keyring:
    """The keys a backup's reader needs, from the master key or from an open vault."""

    backup_key: bytearray
    db_keys: list[bytearray]  # record.db, private.db
    audit_key: bytes

    @classmethod
    def from_master(cls, master: bytearray) -> _Keyring:
        try:
            return cls(keys.backup_key(master), _database_keys(master), derive_audit_key(bytes(master)))
        finally:
            keys.wipe(master)

    def db_key(self, name: str) -> bytes:
        return bytes(self.db_keys[0] if name == RECORD_DB else self.db_keys[1])

    def wipe(self) -> None:
        for key in (self.backup_key, *self.db_keys):
            keys.wipe(key)


def read_backup_header(path: Path) -> BackupHeader:
    """What a backup file says about itself (when, which vault and device), without a key.
    BadBackupFile for a file that is not a backup; BackupError when it cannot be read."""
    path = Path(path).expanduser()
    with _open_backup(path) as f:
        return read_header(f, path.name)


def _open_backup(path: Path) -> BinaryIO:
    if path.is_dir():
        raise BackupError(f"{path} is a folder, not a backup file; nothing was written.")
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise BackupError(f"There is no backup file at {path}; nothing was written.") from None
    except OSError as e:
        raise BackupError(f"Cannot read the backup file {path} ({e.strerror}); nothing was written.") from None


def _header_vault_file(header: BackupHeader, name: str) -> vaultfile.VaultFile:
    try:
        vf = vaultfile.parse(header.vault_file)
    except NotewellError:
        raise BadBackupFile(
            f"The backup {name} is damaged or was altered (its copy of vault.json does not check); "
            "nothing was written."
        ) from None
    if vf.vault_id != header.vault_id:
        raise BadBackupFile(f"The backup {name} is damaged or was altered (its vault ids differ); nothing was written.")
    return vf


def _keyring(
    header: BackupHeader, name: str, *, passphrase: str | None, recovery_key: str | None, vault: Vault | None,
    source: BackupSource | None = None,
) -> _Keyring:
    if vault is not None:
        source = BackupSource.of(vault)
    if source is not None:
        if source.vault_id != header.vault_id:
            raise BadBackupFile(f"The backup {name} belongs to another vault; nothing was written.")
        return _Keyring(bytearray(source.backup_key), [bytearray(k) for k in source.db_keys], source.audit_key)
    vf = _header_vault_file(header, name)
    made = header.created_at[:10]
    try:
        master = unwrap_master(vf, passphrase=passphrase, recovery_key=recovery_key)
    except WrongPassphrase:
        raise WrongPassphrase(
            f"The passphrase does not open this backup: use the passphrase the vault had when the "
            f"backup was made ({made}), or the recovery key; nothing was written."
        ) from None
    except WrongRecoveryKey as e:
        if recovery_key is not None and e.message == WrongRecoveryKey().message:
            raise WrongRecoveryKey(
                "The recovery key is not the one of the vault this backup was made from; nothing was written."
            ) from None
        raise
    except DamagedVault:
        raise BadBackupFile(
            f"The backup {name} is damaged or was altered (its copy of vault.json fails its "
            "authentication code); nothing was written."
        ) from None
    return _Keyring.from_master(master)


class _Reader:
    """The decrypted content as a stream of exact reads."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, n: int) -> bytes:
        parts, have = [], 0
        while have < n:
            if not self._buffer:
                self._buffer = next(self._chunks, b"")
                if not self._buffer:
                    break
            take = self._buffer[: n - have]
            self._buffer = self._buffer[len(take):]
            parts.append(take)
            have += len(take)
        return b"".join(parts)

    def at_end(self) -> bool:
        return not self._buffer and next(self._chunks, b"") == b""


def _unpack(path: Path, keyring: _Keyring, folder: Path, *, durable: bool) -> tuple[BackupHeader, BackupManifest]:
    """Decrypt the backup at `path` into `folder` (the databases stay SQLCipher-encrypted),
    checking every chunk, the manifest and each file's size and hash. BadBackupFile on any
    difference. `durable`: fsync what is written (a restore; not a verify)."""
    name = path.name
    damaged = BadBackupFile(
        f"The backup {name} is damaged or was altered (its contents do not match its manifest); nothing was written."
    )
    with _open_backup(path) as f:
        header = read_header(f, name)
        reader = _Reader(read_chunks(f, header, keyring.backup_key, name))
        manifest = _read_manifest(reader, header, damaged)
        for entry in manifest.files:
            target = folder / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            digest, left = hashlib.sha256(), entry.size
            with open(target, "xb") as out:
                os.chmod(target, 0o600)
                while left:
                    block = reader.read(min(left, _COPY_BYTES))
                    if not block:
                        raise damaged
                    digest.update(block)
                    out.write(block)
                    left -= len(block)
                if durable:
                    out.flush()
                    os.fsync(out.fileno())
            if digest.hexdigest() != entry.sha256:
                raise damaged
        if not reader.at_end():
            raise damaged
    return header, manifest


def _read_manifest(reader: _Reader, header: BackupHeader, damaged: BadBackupFile) -> BackupManifest:
    """The manifest at the start of the content (only the chunks that hold it are decrypted)."""
    raw_length = reader.read(_LEN.size)
    if len(raw_length) != _LEN.size or _LEN.unpack(raw_length)[0] > MAX_MANIFEST_BYTES:
        raise damaged
    raw = reader.read(_LEN.unpack(raw_length)[0])
    try:
        manifest = BackupManifest.parse(raw)
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        raise damaged from None
    if (manifest.backup_id, manifest.vault_id) != (header.backup_id, header.vault_id):
        raise damaged
    return manifest


def read_backup_manifest(path: Path, source: BackupSource) -> BackupManifest:
    """What a backup of this vault says it holds (its counts), authenticated but not checked
    page by page: only the first chunks are decrypted. BadBackupFile as `verify_backup`."""
    path = Path(path).expanduser()
    damaged = BadBackupFile(f"The backup {path.name} is damaged or was altered; nothing was written.")
    with _open_backup(path) as f:
        header = read_header(f, path.name)
        keyring = _keyring(header, path.name, passphrase=None, recovery_key=None, vault=None, source=source)
        try:
            return _read_manifest(_Reader(read_chunks(f, header, keyring.backup_key, path.name)), header, damaged)
        finally:
            keyring.wipe()


def verify_backup(
    path: Path, *, passphrase: str | None = None, recovery_key: str | None = None, vault: Vault | None = None,
    source: BackupSource | None = None,
) -> BackupManifest:
    """Prove a backup complete and restorable without writing a vault: every chunk decrypts
    and authenticates, every file matches the manifest, every database page checks, SQLite's
    structure check passes, the counts match and the audit chain holds. The copies are made in
    a temporary folder (still SQLCipher-encrypted) that is removed. The key is the passphrase
    the vault had when the backup was made, the recovery key, or the open vault itself (or its
    `BackupSource`, in another thread)."""
    path = Path(path).expanduser()
    header = read_backup_header(path)
    keyring = _keyring(header, path.name, passphrase=passphrase, recovery_key=recovery_key, vault=vault, source=source)
    try:
        with tempfile.TemporaryDirectory(prefix="notewell-verify-") as tmp:
            try:
                _, manifest = _unpack(path, keyring, Path(tmp), durable=False)
            except OSError as e:
                raise BackupError(
                    f"The backup could not be checked: the temporary folder {tmp} cannot hold its "
                    f"copy ({e.strerror})."
                ) from None
            problems = _check_copy(Path(tmp), keyring, manifest)
    finally:
        keyring.wipe()
    if problems:
        raise BadBackupFile(f"The backup {path.name} does not check: {problems[0]}; nothing was written.")
    return manifest


# --- restoring -----------------------------------------------------------------------------


def _restore_target(target: Path) -> None:
    if Vault.exists(target):
        raise VaultExists(
            f"A vault already exists at {target}; a backup is restored to a new folder only. Nothing was written."
        )
    if target.exists() or target.is_symlink():
        if not target.is_dir() or target.is_symlink():
            raise VaultExists(f"{target} exists and is not a folder; nothing was written.")
        if any(target.iterdir()):
            raise VaultExists(
                f"The folder {target} is not empty; a backup is restored to a new or empty folder only. "
                "Nothing was written."
            )


def restore_backup(
    path: Path,
    vault_dir: Path,
    *,
    passphrase: str | None = None,
    recovery_key: str | None = None,
    new_passphrase: str | None = None,
    device_name: str,
) -> BackupRestored:
    """Restore the backup at `path` as a new vault at `vault_dir` (missing or empty), with a
    new device identity, or change nothing. With the passphrase the vault had when the backup
    was made, that passphrase opens the restored vault; with the recovery key,
    `new_passphrase` becomes its passphrase (the recovery key stays valid)."""
    path = Path(path).expanduser()
    target = Path(vault_dir).expanduser().absolute()
    _restore_target(target)
    if recovery_key is not None and (not isinstance(new_passphrase, str) or keys.passphrase_is_weak(new_passphrase)):
        raise WeakPassphrase(
            f"A passphrase needs at least {keys.MIN_PASSPHRASE_CHARS} characters; nothing was written."
        )
    header = read_backup_header(path)
    keyring = _keyring(header, path.name, passphrase=passphrase, recovery_key=recovery_key, vault=None)
    parent = target.parent
    prefix = f".{target.name}{RESTORING_MARK}"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        # What a killed restore to the same folder left (still encrypted, never a vault).
        _remove_stale_folders(parent, prefix)
        staging, lock_fd = _new_staging(parent, prefix)
    except OSError as e:
        keyring.wipe()
        raise _restore_failed(target, e) from None
    try:
        try:
            _, manifest = _unpack(path, keyring, staging, durable=True)
            problems = _check_copy(staging, keyring, manifest)
            if problems:
                raise BadBackupFile(f"The backup {path.name} does not check: {problems[0]}; nothing was written.")
            _write_vault_file(staging, header.vault_file)
        except OSError as e:
            raise _restore_failed(target, e) from None
        finally:
            keyring.wipe()
        device_id = _become_this_device(staging, header, manifest, passphrase, recovery_key, new_passphrase, device_name)
        try:
            vaultfile.fsync_dir(staging)
            _restore_target(target)  # again: the work took a while
            if target.exists():
                target.rmdir()  # empty (checked): the rename needs the name free, and is atomic
            os.rename(staging, target)
        except OSError as e:
            raise _restore_failed(target, e) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        os.close(lock_fd)
    try:
        vaultfile.fsync_dir(parent)
    except OSError:
        pass
    return BackupRestored(path=target, device_id=device_id, manifest=manifest)


def _write_vault_file(folder: Path, raw: bytes) -> None:
    fd = os.open(folder / vaultfile.FILE_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(raw)
        f.flush()
        os.fsync(f.fileno())


def _become_this_device(
    staging: Path, header: BackupHeader, manifest: BackupManifest, passphrase: str | None,
    recovery_key: str | None, new_passphrase: str | None, device_name: str,
) -> str:
    """Unlock the unpacked vault as any vault is unlocked, set the new passphrase when the
    recovery key was used, give it its own device identity, and unlock it once more as the
    clinician will (vault.json, the certificate it names, every page). The record's own
    consistency check (`notewell check`, about a minute at 10,000 notes) is left to the
    clinician's restore drill: the copy was checked page by page and count by count above."""
    if recovery_key is not None:
        vault = Vault.recover(staging, recovery_key, new_passphrase or "")
        passphrase = new_passphrase
    else:
        vault = Vault.open(staging, passphrase or "")
    try:
        identity = vault.become_new_device(device_name, backup=manifest.backup_id, made_at=manifest.created_at)
    finally:
        vault.close()
    Vault.open(staging, passphrase or "").close()
    return identity.device_id


def _restore_failed(target: Path, e: OSError) -> BackupError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return BackupError(f"The disk holding {target.parent} is full; nothing was restored.")
    return BackupError(f"The vault could not be restored at {target} ({e.strerror}); nothing was restored.")
