"""The audit trail: an append-only, hash-chained log in record.db.

Each row's `hash` is HMAC-SHA256(key, prev_hash + canonical JSON of the row's other fields).
The key is derived from the vault's master key, so someone who edits record.db without the
passphrase cannot recompute the chain after a change: an edited, inserted, renumbered or
deleted row breaks it at that row. A one-row table `audit_head` (its own MAC) remembers the
last sequence number and hash, so deleting the newest rows is caught too. Triggers refuse
UPDATE and DELETE on the log, which stops accidents; the chain is what catches intent.

The log is a local table: it is never synced and never exported with a client's record.
It never holds note text: details are identifiers, counts, dates and short labels, and
`append` refuses keys that would carry clinical prose.

Unlock failures happen before record.db can be opened, and a wrong passphrase must leave
every file byte-identical, so they are counted in this process (`note_unlock_failure`) and
written as one "unlock_failures" entry at the next successful unlock of the same vault
(`AuditLog.flush_unlock_failures`). Failures in a process that never unlocks are not kept.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from collections.abc import Iterable
from typing import Any

from store.write_access import write_transaction

GENESIS = "0" * 64
AUDIT_KEY_LABEL = b"notewell audit log v1"

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    event TEXT NOT NULL,
    client_id TEXT,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_client ON audit_log(client_id);
CREATE TABLE IF NOT EXISTS audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    mac TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


def _statements(script: str) -> list[str]:
    # Split on the terminator of each statement; trigger bodies end with "END;".
    out, current = [], []
    for line in script.strip().splitlines():
        current.append(line)
        text = "\n".join(current).strip()
        if text.endswith(";") and (not text.upper().startswith("CREATE TRIGGER") or text.upper().endswith("END;")):
            out.append(text)
            current = []
    return out


class Event(str, Enum):
    VAULT_CREATED = "vault_created"
    UNLOCK_FAILURES = "unlock_failures"
    PASSPHRASE_CHANGED = "passphrase_changed"
    VAULT_RECOVERED = "vault_recovered"
    VAULT_FILE_UPGRADED = "vault_file_upgraded"
    NOTE_SIGNED = "note_signed"
    ADDENDUM_ADDED = "addendum_added"
    ENTERED_IN_ERROR = "entered_in_error"
    SIGNATURE_CONFLICT_RESOLVED = "signature_conflict_resolved"
    EXPORT = "export"
    IMPORT = "import"
    DEVICE_PAIRED = "device_paired"
    DEVICE_REVOKED = "device_revoked"
    SYNC_SESSION = "sync_session"
    BACKUP_WRITTEN = "backup_written"
    VAULT_RESTORED = "vault_restored"
    CLIENT_RIGHTS = "client_rights"


EVENT_LABELS = {
    Event.VAULT_CREATED: "vault created",
    Event.UNLOCK_FAILURES: "failed unlock attempts",
    Event.PASSPHRASE_CHANGED: "passphrase changed",
    Event.VAULT_RECOVERED: "vault recovered with the recovery key",
    Event.VAULT_FILE_UPGRADED: "vault.json upgraded to an authenticated format",
    Event.NOTE_SIGNED: "note signed",
    Event.ADDENDUM_ADDED: "addendum added",
    Event.ENTERED_IN_ERROR: "note marked entered in error",
    Event.SIGNATURE_CONFLICT_RESOLVED: "signature conflict resolved",
    Event.EXPORT: "record exported",
    Event.IMPORT: "records imported",
    Event.DEVICE_PAIRED: "device paired",
    Event.DEVICE_REVOKED: "device revoked",
    Event.SYNC_SESSION: "sync session",
    Event.BACKUP_WRITTEN: "backup written",
    Event.VAULT_RESTORED: "vault restored from a backup",
    Event.CLIENT_RIGHTS: "client's rights record",
}

# Keys that would carry clinical prose; the log must never hold it.
_FORBIDDEN_KEYS = frozenset(
    {"text", "body", "sections", "section", "reason", "note", "content", "comment", "addendum"}
)
_MAX_STRING = 200


def derive_audit_key(master_key: bytes) -> bytes:
    """The log's HMAC key from the vault master key (HKDF-SHA256, its own label)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=AUDIT_KEY_LABEL).derive(
        master_key
    )


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _iso(at: datetime) -> str:
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _check_details(details: dict[str, Any]) -> dict[str, Any]:
    def check(key: str, value: Any) -> Any:
        if isinstance(value, Enum):
            value = value.value
        if isinstance(value, datetime):
            return _iso(value)
        if hasattr(value, "isoformat"):  # date, time
            return value.isoformat()
        if isinstance(value, Path):
            value = str(value)
        if isinstance(value, str):
            if len(value) > _MAX_STRING:
                raise ValueError(f"audit detail {key!r} is too long for a log entry")
            return value
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, (list, tuple)):
            return [check(key, v) for v in value]
        raise ValueError(f"audit detail {key!r} must be a plain value")

    clean = {}
    for key, value in details.items():
        if key.lower() in _FORBIDDEN_KEYS:
            raise ValueError(f"audit detail {key!r} could carry note text and is not allowed")
        clean[key] = check(key, value)
    return clean


def prepared_details(details: dict[str, Any]) -> str:
    """An entry's details as its row stores them: checked (no note text, plain values) and
    in canonical JSON. `AuditLog.append_prepared` takes them made elsewhere."""
    return canonical(_check_details(details)).decode()


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: str
    event: str
    client_id: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str

    @property
    def label(self) -> str:
        try:
            return EVENT_LABELS[Event(self.event)]
        except ValueError:
            return self.event

    def summary(self) -> str:
        """One line of details, for the viewer and the command line."""
        parts = []
        for key in sorted(self.details):
            value = self.details[key]
            if isinstance(value, list):
                value = ", ".join(str(v) for v in value)
            parts.append(f"{key}={value}")
        return "; ".join(parts)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    first_broken_seq: int | None = None
    reason: str = ""
    entries_checked: int = 0


def _row_hash(key: bytes, prev_hash: str, seq: int, at: str, event: str, client_id, details: str) -> str:
    return hmac.digest(key, prev_hash.encode() + _row_body(seq, at, event, client_id, details), "sha256").hex()


# How `canonical` writes a string (json's own function for ensure_ascii=False).
_JSON_STR = json.encoder.encode_basestring


def _row_body(seq: int, at: str, event: str, client_id, details: str) -> bytes:
    """`canonical` of the row's fields (what its hash covers). Laid out here, keys in sorted
    order, for the types a row is written with: an import appends one row per note signed
    elsewhere, and a second trip through the JSON encoder was a third of each. Anything else
    (a row altered in the file, read back by `verify`) goes through `canonical` itself."""
    if (
        seq.__class__ is int and at.__class__ is str and event.__class__ is str and details.__class__ is str
        and (client_id is None or client_id.__class__ is str)
    ):
        return (
            '{"at":' + _JSON_STR(at)
            + ',"client_id":' + ("null" if client_id is None else _JSON_STR(client_id))
            + ',"details":' + _JSON_STR(details)
            + ',"event":' + _JSON_STR(event)
            + ',"seq":' + int.__repr__(seq) + "}"
        ).encode()
    return canonical({"seq": seq, "at": at, "event": event, "client_id": client_id, "details": details})


def _head_mac(key: bytes, seq: int, last_hash: str) -> str:
    return hmac.new(key, f"head:{seq}:{last_hash}".encode(), hashlib.sha256).hexdigest()


# Entries `append_many` checks, chains and inserts at a time.
_APPEND_BATCH = 1000


class AuditLog:
    """The log over an open record.db connection. Use it from the connection's thread."""

    def __init__(self, conn, key: bytes) -> None:
        if not isinstance(key, (bytes, bytearray)) or len(key) < 16:
            raise ValueError("the audit key must be at least 16 bytes")
        self._conn = conn
        self._key = bytes(key)
        self._ensure_schema()

    def _ensure_schema(self) -> None:
        # Read first: opening a vault whose log exists takes no write lock.
        if self._has_schema():
            return
        with write_transaction(self._conn):
            # One statement at a time: executescript would commit a caller's open transaction.
            for statement in _statements(SCHEMA):
                self._conn.execute(statement)

    def _has_schema(self) -> bool:
        return bool(self._conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type='trigger' AND name='audit_log_no_delete'"
        ).fetchone()[0])

    # --- writing -------------------------------------------------------------------

    def append(
        self,
        event: Event | str,
        *,
        client_id: str | None = None,
        at: datetime | None = None,
        **details: Any,
    ) -> AuditEntry:
        last = self.append_many([(event, client_id, details)], at=at)
        assert last is not None
        return last

    def append_many(
        self, entries: Iterable[tuple[Event | str, str | None, dict[str, Any]]], *, at: datetime | None = None
    ) -> AuditEntry | None:
        """Appends (event, client id, details) entries in order, all at `at` (default now),
        as one write: the chain is continued in memory and the rows inserted a thousand at a
        time (an import of 100,000 notes appends one entry per note signed elsewhere; they
        are never all held at once). Returns the last entry, None when there was none."""
        return self.append_prepared(((event, client_id, prepared_details(details)) for event, client_id, details in entries), at=at)

    def append_prepared(
        self, entries: Iterable[tuple[Event | str, str | None, str]], *, at: datetime | None = None
    ) -> AuditEntry | None:
        """`append_many` of entries whose details are already `prepared_details`: an import
        makes each note's where the note is built (on a worker process), so its write,
        which holds the lock, only chains and inserts them."""
        at_text = _iso(at or _now())
        conn = self._conn
        last_entry: tuple | None = None  # made into an AuditEntry once, for the last
        # Joins the caller's transaction when one is open (the entries commit with its change).
        with write_transaction(conn):
            last = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (last[0], last[1]) if last else (0, GENESIS)
            first = seq
            items = iter(entries)
            while batch := list(itertools.islice(items, _APPEND_BATCH)):
                rows = []
                for event, client_id, details_json in batch:
                    event = Event(event).value  # unknown events are a programming error
                    seq += 1
                    digest = _row_hash(self._key, prev, seq, at_text, event, client_id, details_json)
                    rows.append((seq, at_text, event, client_id, details_json, prev, digest))
                    prev = digest
                last_entry = rows[-1]
                conn.executemany(
                    "INSERT INTO audit_log(seq, at, event, client_id, details, prev_hash, hash)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
            if seq != first:
                conn.execute(
                    "INSERT INTO audit_head(id, seq, hash, mac) VALUES (1, ?, ?, ?)"
                    " ON CONFLICT(id) DO UPDATE SET seq=excluded.seq, hash=excluded.hash, mac=excluded.mac",
                    (seq, prev, _head_mac(self._key, seq, prev)),
                )
        if last_entry is None:
            return None
        seq, at_text, event, client_id, details_json, prev_hash, digest = last_entry
        return AuditEntry(seq, at_text, event, client_id, json.loads(details_json), prev_hash, digest)

    def flush_unlock_failures(self, vault_path: Path | str) -> AuditEntry | None:
        """Write the failed unlock attempts counted in this process, if any."""
        times = failed_unlocks.drain(vault_path)
        if not times:
            return None
        return self.append(Event.UNLOCK_FAILURES, count=len(times), times=[_iso(t) for t in times])

    # --- reading -------------------------------------------------------------------

    def entries(self, client_id: str | None = None) -> list[AuditEntry]:
        sql = "SELECT seq, at, event, client_id, details, prev_hash, hash FROM audit_log"
        params: tuple = ()
        if client_id is not None:
            sql += " WHERE client_id = ?"
            params = (client_id,)
        rows = self._conn.execute(sql + " ORDER BY seq", params).fetchall()
        return [self._entry(r) for r in rows]

    @staticmethod
    def _entry(row) -> AuditEntry:
        try:
            details = json.loads(row[4])
        except (TypeError, ValueError):
            details = {"unreadable": True}
        if not isinstance(details, dict):
            details = {"unreadable": True}
        return AuditEntry(row[0], row[1], row[2], row[3], details, row[5], row[6])

    def verify(self) -> VerifyResult:
        rows = self._conn.execute(
            "SELECT seq, at, event, client_id, details, prev_hash, hash FROM audit_log ORDER BY seq"
        ).fetchall()
        prev, expected_seq = GENESIS, 1
        for seq, at, event, client_id, details, prev_hash, digest in rows:
            if seq != expected_seq:
                return VerifyResult(False, expected_seq, f"entry {expected_seq} is missing", seq - 1)
            if prev_hash != prev:
                return VerifyResult(
                    False, seq, "it does not follow the entry before it (an entry was removed or replaced)", seq - 1
                )
            if not isinstance(details, str) or not isinstance(at, str) or not isinstance(event, str):
                return VerifyResult(False, seq, "it has been altered", seq - 1)
            if not hmac.compare_digest(
                str(digest), _row_hash(self._key, prev, seq, at, event, client_id, details)
            ):
                return VerifyResult(False, seq, "its contents do not match its hash (it was altered)", seq - 1)
            prev, expected_seq = digest, seq + 1
        count = expected_seq - 1
        head = self._conn.execute("SELECT seq, hash, mac FROM audit_head WHERE id = 1").fetchone()
        if head is None:
            if count:
                return VerifyResult(False, count, "the log's head record is missing", count)
            return VerifyResult(True, None, "", 0)
        h_seq, h_hash, h_mac = head
        if not hmac.compare_digest(str(h_mac), _head_mac(self._key, h_seq, str(h_hash))):
            return VerifyResult(False, min(h_seq, count + 1) or 1, "the log's head record was altered", count)
        if h_seq != count or h_hash != prev:
            if h_seq > count:
                return VerifyResult(False, count + 1, f"entries {count + 1} to {h_seq} were removed", count)
            return VerifyResult(False, h_seq + 1, "entries were added without the log's key", count)
        return VerifyResult(True, None, "", count)


class FailedUnlocks:
    """Failed unlock times per vault, kept in this process only (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._times: dict[str, list[datetime]] = {}

    @staticmethod
    def _key(vault_path: Path | str) -> str:
        return str(Path(vault_path).expanduser().resolve())

    def note(self, vault_path: Path | str, at: datetime | None = None) -> None:
        with self._lock:
            self._times.setdefault(self._key(vault_path), []).append(at or _now())

    def pending(self, vault_path: Path | str) -> int:
        with self._lock:
            return len(self._times.get(self._key(vault_path), []))

    def drain(self, vault_path: Path | str) -> list[datetime]:
        with self._lock:
            return self._times.pop(self._key(vault_path), [])


# One per process: a failed open produces no Vault object to hang the count on.
failed_unlocks = FailedUnlocks()


def note_unlock_failure(vault_path: Path | str, at: datetime | None = None) -> None:
    failed_unlocks.note(vault_path, at)
