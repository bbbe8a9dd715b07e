"""Persistence of Automerge documents in record.db: a snapshot plus appended changes.

A local edit appends only the bytes of its new changes; after `compact_after` appended
changes the document is saved whole into its snapshot and the change rows are dropped, in
the same transaction. Loading concatenates the snapshot and the changes. Loaded documents
stay in a bounded LRU cache so the typing path never reloads; a cached copy is used only
while its row still holds the heads it saved, so another connection's writes are seen. The caller owns transactions:
every method here must run inside one (RecordStore.transaction), together with the
projection update, so a crash never leaves the two out of step. Documents are never deleted.
A document received whole by sync is inserted with the bytes it came as (`insert_loaded`): a
save, or a save followed by changes, which load the same way.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from automerge.core import Document

HASH_LEN = 32


def _v1(conn) -> None:
    conn.execute(
        """CREATE TABLE documents(
               doc_id TEXT PRIMARY KEY,
               kind TEXT NOT NULL,
               snapshot BLOB NOT NULL,
               heads BLOB NOT NULL,
               n_changes INTEGER NOT NULL)"""
    )
    conn.execute(
        """CREATE TABLE document_changes(
               doc_id TEXT NOT NULL,
               seq INTEGER NOT NULL,
               data BLOB NOT NULL,
               PRIMARY KEY(doc_id, seq))"""
    )


def _v2(conn) -> None:
    # Heads are read far more often than snapshots (every manifest, every live sync look,
    # every use of a cached document), and in the table they sit after the snapshot, so each
    # read walked the snapshot's overflow pages: 80 ms for all heads of 10,000 notes. This
    # covering index holds what those reads need and nothing of the snapshot.
    conn.execute("CREATE INDEX documents_heads ON documents(doc_id, heads, kind, n_changes)")


def pack_heads(heads: list[bytes]) -> bytes:
    return b"".join(sorted(heads))


def unpack_heads(blob: bytes) -> list[bytes]:
    return [bytes(blob[i : i + HASH_LEN]) for i in range(0, len(blob), HASH_LEN)]


@dataclass
class _Entry:
    doc: Document
    kind: str
    saved_heads: list[bytes]
    n_changes: int


class DocStore:
    def __init__(self, conn, *, actor: bytes, cache_size: int = 256, compact_after: int = 50) -> None:
        self._conn = conn
        self._actor = actor
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._cache_size = cache_size
        self._compact_after = compact_after
        # Ids written in the open transaction: what its commit reports (store/replica.py).
        self._written: set[str] = set()

    @property
    def actor(self) -> bytes:
        """The actor this device's changes carry (documents it creates start with it)."""
        return self._actor

    # --- reading ----------------------------------------------------------------

    def exists(self, doc_id: str) -> bool:
        return self._conn.execute("SELECT 1 FROM documents WHERE doc_id = ?", (doc_id,)).fetchone() is not None

    def kind(self, doc_id: str) -> str | None:
        # Always from the table: a cached document may be one whose insert was rolled back.
        row = self._conn.execute("SELECT kind FROM documents INDEXED BY documents_heads WHERE doc_id = ?",
                                 (doc_id,)).fetchone()
        return row[0] if row else None

    def get(self, doc_id: str) -> Document | None:
        """The live document (cached); mutate it only through `save_changes` afterwards."""
        entry = self._entry(doc_id)
        return entry.doc if entry else None

    def existing(self, doc_ids: list[str]) -> set[str]:
        """Which of `doc_ids` are stored (from the heads index, a few hundred ids a query):
        a batch's lookup that does not grow with the vault."""
        found: set[str] = set()
        for start in range(0, len(doc_ids), 500):
            part = doc_ids[start:start + 500]
            found.update(row[0] for row in self._conn.execute(
                f"SELECT doc_id FROM documents INDEXED BY documents_heads WHERE doc_id IN ({','.join('?' * len(part))})",
                part))
        return found

    def all_heads(self) -> dict[str, list[bytes]]:
        return {doc_id: unpack_heads(blob) for doc_id, blob in self._conn.execute("SELECT doc_id, heads FROM documents")}

    def stored_bytes(self, doc_id: str) -> tuple[bytes, list[bytes]] | None:
        """(bytes `Document.load` restores, heads) straight from the table, nothing loaded."""
        row = self._conn.execute("SELECT snapshot, heads, n_changes FROM documents WHERE doc_id = ?", (doc_id,)).fetchone()
        if row is None:
            return None
        data = bytes(row[0])
        if row[2]:
            data += b"".join(bytes(c[0]) for c in self._conn.execute(
                "SELECT data FROM document_changes WHERE doc_id = ? ORDER BY seq", (doc_id,)))
        return data, unpack_heads(bytes(row[1]))

    def heads_of(self, doc_id: str) -> list[bytes]:
        row = self._conn.execute("SELECT heads FROM documents INDEXED BY documents_heads WHERE doc_id = ?",
                                 (doc_id,)).fetchone()
        return unpack_heads(bytes(row[0])) if row else []

    def load_fresh(self, doc_id: str) -> Document | None:
        """The document as stored on disk, bypassing the cache (for checks)."""
        row = self._conn.execute("SELECT snapshot FROM documents WHERE doc_id = ?", (doc_id,)).fetchone()
        if row is None:
            return None
        changes = self._conn.execute(
            "SELECT data FROM document_changes WHERE doc_id = ? ORDER BY seq", (doc_id,)
        ).fetchall()
        doc = Document.load(bytes(row[0]) + b"".join(bytes(c[0]) for c in changes))
        doc.set_actor(self._actor)
        return doc

    def _entry(self, doc_id: str) -> _Entry | None:
        row = self._conn.execute(
            # The covering index: the snapshot's pages are read only when the document is.
            "SELECT kind, n_changes, heads FROM documents INDEXED BY documents_heads WHERE doc_id = ?", (doc_id,)
        ).fetchone()
        if row is None:
            self._cache.pop(doc_id, None)
            return None
        entry = self._cache.get(doc_id)
        # Another connection (the command line while the app runs) may have written since
        # we cached it; a cached copy is used only while the row still says what it saved.
        if entry is not None and entry.n_changes == row[1] and pack_heads(entry.saved_heads) == bytes(row[2]):
            self._cache.move_to_end(doc_id)
            return entry
        doc = self.load_fresh(doc_id)
        assert doc is not None
        entry = _Entry(doc, row[0], doc.get_heads(), row[1])
        self._remember(doc_id, entry)
        return entry

    def _remember(self, doc_id: str, entry: _Entry) -> None:
        self._cache[doc_id] = entry
        self._cache.move_to_end(doc_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def forget_all(self) -> None:
        self._cache.clear()

    def written(self) -> frozenset[str]:
        """The ids written so far in the open transaction (read before it commits)."""
        return frozenset(self._written)

    def cached(self, doc_id: str) -> Document | None:
        """The live document when it is in the cache and still what its row holds; None
        otherwise (nothing is loaded: documents stored in bulk are read later)."""
        entry = self._cache.get(doc_id)
        if entry is None:
            return None
        row = self._conn.execute(
            "SELECT n_changes, heads FROM documents INDEXED BY documents_heads WHERE doc_id = ?", (doc_id,)
        ).fetchone()
        if row is None or entry.n_changes != row[0] or pack_heads(entry.saved_heads) != bytes(row[1]):
            return None
        return entry.doc

    def take_written(self) -> set[str]:
        """The ids of the documents written since the last call (after a commit: what it changed)."""
        written, self._written = self._written, set()
        return written

    def forget_unsaved(self) -> None:
        """After a rollback: drops documents changed in memory but not saved, and forgets
        which were written (none of it reached the disk).

        One saved and then rolled back is caught on its next use, when its row no longer
        says what the cache saved.
        """
        self._written = set()
        for doc_id, entry in list(self._cache.items()):
            if sorted(entry.doc.get_heads()) != sorted(entry.saved_heads):
                del self._cache[doc_id]

    # --- writing (inside the caller's transaction) -------------------------------

    def insert(self, doc_id: str, kind: str, doc: Document) -> None:
        doc.set_actor(self._actor)
        heads = doc.get_heads()
        self._written.add(doc_id)
        self._conn.execute(
            "INSERT INTO documents(doc_id, kind, snapshot, heads, n_changes) VALUES (?,?,?,?,0)",
            (doc_id, kind, doc.save(), pack_heads(heads)),
        )
        self._remember(doc_id, _Entry(doc, kind, heads, 0))

    def insert_loaded(self, rows: list[tuple[str, str, bytes, list[bytes]]]) -> None:
        """Inserts (doc_id, kind, data, heads) for documents loaded from `data` by the caller.

        `data` is stored as the snapshot as it came (a save, or a save plus changes: both
        load), so a bulk sync need not save each document again. Not cached: the next use
        loads it.
        """
        self._conn.executemany(
            "INSERT INTO documents(doc_id, kind, snapshot, heads, n_changes) VALUES (?,?,?,?,0)",
            [(doc_id, kind, data, pack_heads(heads)) for doc_id, kind, data, heads in rows],
        )
        self._written.update(row[0] for row in rows)

    def replace(self, doc_id: str, doc: Document) -> None:
        """Makes `doc` (a descendant of the stored one) the live document and persists it."""
        entry = self._entry(doc_id)
        if entry is None:
            raise KeyError(doc_id)
        doc.set_actor(self._actor)
        entry.doc = doc
        self.save_changes(doc_id)

    def save_changes(self, doc_id: str) -> bool:
        """Appends the live document's unsaved changes; False when there were none."""
        entry = self._entry(doc_id)
        if entry is None:
            raise KeyError(doc_id)
        heads = entry.doc.get_heads()
        if sorted(heads) == sorted(entry.saved_heads):
            return False
        self._written.add(doc_id)
        if entry.n_changes + 1 > self._compact_after:
            self._conn.execute(
                "UPDATE documents SET snapshot = ?, heads = ?, n_changes = 0 WHERE doc_id = ?",
                (entry.doc.save(), pack_heads(heads), doc_id),
            )
            self._conn.execute("DELETE FROM document_changes WHERE doc_id = ?", (doc_id,))
            n = 0
        else:
            data = b"".join(c.bytes for c in entry.doc.get_changes(entry.saved_heads))
            n = entry.n_changes + 1
            self._conn.execute(
                "INSERT INTO document_changes(doc_id, seq, data) VALUES (?,?,?)", (doc_id, n, data)
            )
            self._conn.execute(
                "UPDATE documents SET heads = ?, n_changes = ? WHERE doc_id = ?",
                (pack_heads(heads), n, doc_id),
            )
        # Should the caller's transaction roll back, the row no longer matches these and
        # the next use of the entry reloads it from disk (see _entry).
        entry.saved_heads = heads
        entry.n_changes = n
        return True
