"""What `notewell check` verified, so that the next check does not redo it.

Checking that the lists and the search index say what the documents say means loading every
document and reading it into its rows: about 1 ms a note, 12 s at 10,000 notes. Most of them
have not changed since the last check. So each document found in step is recorded here by
one digest over everything its verdict depended on: its heads as stored (Automerge's hashes
of its whole history, so the same heads are the same document however its bytes are
compacted), its list row, its search entry and the late-entry setting. The next check
computes the same digest from what is stored now (from an index and the rows: no document's
bytes are read) and loads again only the documents whose digest differs or was never
recorded: a note edited, merged or received since, a row changed by anything at all, a
setting changed. Damage to the bytes themselves is the page check's to find (every page's
HMAC is verified at every check).

The record is a local table of record.db (never synced), so it is encrypted and its pages
authenticated like everything else there; nothing outside the vault's key can forge a
"verified" entry. `check --full` ignores it and verifies every document again. Page HMACs,
SQLite's structure check and signatures are not skipped this way (store/vault.py).
"""

from __future__ import annotations

import hashlib

from store.errors import VaultError
from store.write_access import without_waiting, write_transaction

TABLE = "check_verified"
_DDL = f"CREATE TABLE IF NOT EXISTS {TABLE}(doc_id TEXT PRIMARY KEY, digest BLOB NOT NULL) WITHOUT ROWID"


class CheckRecord:
    """One check's use of the record: `unchanged` and `matched` are the hooks of
    `store.projections.projection_mismatches`; `save` writes what this check verified."""

    def __init__(self, conn, late_entry_hours: int, *, full: bool = False) -> None:
        self._conn = conn
        self._setting = repr(("late_entry_hours", late_entry_hours)).encode()
        self._stored = stored_heads(conn)
        self._full = full
        self._table_exists = _recorded(conn, exists_only=True) is not None
        self._known = {} if full else (_recorded(conn) or {})
        self._fresh: dict[str, bytes] = {}
        self.unchanged_count = 0

    def _digest(self, doc_id: str, view: tuple | None, fts: tuple | None) -> bytes | None:
        stored = self._stored.get(doc_id)
        if stored is None:
            return None
        return hashlib.sha256(stored + self._setting + repr((view, fts)).encode()).digest()

    def unchanged(self, doc_id: str, view: tuple | None, fts: tuple | None) -> bool:
        known = self._known.get(doc_id)
        if known is not None and known == self._digest(doc_id, view, fts):
            self._fresh[doc_id] = known
            self.unchanged_count += 1
            return True
        return False

    def matched(self, doc_id: str, view: tuple | None, fts: tuple | None) -> None:
        digest = self._digest(doc_id, view, fts)
        if digest is not None:
            self._fresh[doc_id] = digest

    @property
    def read_count(self) -> int:
        """Documents this check loaded and compared (every one not `unchanged`)."""
        return len(self._stored) - self.unchanged_count

    def save(self) -> bool:
        """Bring the record to this check's findings: documents that were not in step, or are
        gone, are no longer recorded as verified. Writes only what differs (nothing at all
        when nothing changed). False when the vault refused the write (busy, full, or its
        pages found damaged): the next check then verifies those documents again."""
        on_disk = self._known if not self._full else (_recorded(self._conn) or {})
        gone = [(doc_id,) for doc_id in on_disk if doc_id not in self._fresh]
        new = [(doc_id, digest) for doc_id, digest in sorted(self._fresh.items()) if on_disk.get(doc_id) != digest]
        if not gone and not new and self._table_exists:
            return True
        try:
            # Only a record of what was verified: a `check` run while another program writes
            # leaves it out rather than wait (the next check verifies those again).
            with without_waiting(), write_transaction(self._conn):
                self._conn.execute(_DDL)
                self._conn.executemany(f"DELETE FROM {TABLE} WHERE doc_id = ?", gone)
                self._conn.executemany(f"INSERT OR REPLACE INTO {TABLE}(doc_id, digest) VALUES (?, ?)", new)
        except VaultError:
            return False
        return True


def stored_heads(conn) -> dict[str, bytes]:
    """doc_id -> its heads as stored, from the covering index (no document's bytes are read).
    Automerge's heads are hashes of a document's whole history: the same heads, the same
    document, however its bytes are compacted."""
    return {doc_id: bytes(heads) for doc_id, heads in conn.execute(
        "SELECT doc_id, heads FROM documents INDEXED BY documents_heads")}


def _recorded(conn, *, exists_only: bool = False) -> dict[str, bytes] | None:
    """The record as stored; None when no check has written one yet."""
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)).fetchone()
    if exists is None:
        return None
    if exists_only:
        return {}
    return {doc_id: bytes(digest) for doc_id, digest in conn.execute(f"SELECT doc_id, digest FROM {TABLE}")}
