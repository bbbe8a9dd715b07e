"""The record's sync intake: where documents leave for and arrive from other devices.

`Replica` owns every way a document from another device enters record.db (merge, store
whole, raw changes), what sync reads to send (heads, stored bytes, changes), the change
marker a live sync polls, and the device-local table (sync states, peers, addresses). It
shares the connection, the DocStore and the write transactions with `RecordStore`
(store/record.py), which are passed in; the record keeps the clinician's operations.

Every entrance holds documents to the same rules: the one document-id rule and the one
record-document check (store/doc_ids.py), the plausible-date rule of the store API, and the
one panic guard (store/automerge_guard.py).

`RecordReplica` declares what sync/ may use (tests/test_boundaries.py holds sync/ to it).

A committed write reports the ids of the documents it wrote: `add_listener(callback)`
registers a callback that each commit calls with that set (never empty; a rollback calls
nothing). It runs in the thread that committed, so it must be quick (a live sync only notes
the ids and wakes).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

from automerge.core import Document

from store.automerge_guard import guard_public_methods, panic_or, panics_as
from store import document_budget
from store.database import WriteTransactions
from store.doc_ids import is_doc_id, record_kind
from store.docstore import DocStore
from store.errors import DocumentOverBudget, ForeignDocument, NotFound
from store.models import implausible_dates
from store.projections import (
    IMPLAUSIBLE_DATES,
    prepare_whole_many,
    project,
    project_new,
    read_record,
)

ChangeListener = Callable[[frozenset[str]], None]
# (documents done, documents to do): sync's progress, as the app's progress bar takes it.
ProgressCallback = Callable[[int, int], None]


@runtime_checkable
class RecordReplica(Protocol):
    """The record as sync/ sees it: record documents in and out, the device-local table."""

    audit: Any  # the vault's audit log (store.audit.AuditLog) or None
    prepare_pool: Any  # store.prepare_pool.PreparePool or None

    def transaction(self) -> AbstractContextManager[None]: ...
    def doc_heads(self) -> dict[str, list[bytes]]: ...
    def doc_heads_of(self, doc_id: str) -> list[bytes]: ...
    def change_marker(self) -> tuple[int, int]: ...
    def load_doc(self, doc_id: str) -> Document: ...
    def stored_doc(self, doc_id: str) -> tuple[bytes, list[bytes]]: ...
    def apply_doc(self, doc_id: str, doc: Document) -> bool: ...
    def apply_snapshots(
        self, items: list[tuple[str, bytes]], *, batch: int | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> tuple[dict[str, list[bytes]], dict[str, ForeignDocument]]: ...
    def changes_since(self, doc_id: str, heads: list[bytes]) -> list[bytes]: ...
    def apply_changes(self, doc_id: str, changes: list[bytes]) -> bool: ...
    def is_record_document(self, doc_id: str, doc: Document) -> bool: ...
    def count_conflicts(self, doc_ids: set[str] | frozenset[str]) -> int: ...
    def local_get(self, key: str) -> bytes | None: ...
    def local_put(self, key: str, value: bytes) -> None: ...
    def add_listener(self, listener: ChangeListener) -> None: ...
    def remove_listener(self, listener: ChangeListener) -> None: ...
    def check_document(self, doc_id: str, data: bytes) -> None: ...
    def check_sync_message(self, doc_id: str, message: bytes, earlier: Any = None) -> Any: ...


def _refused(doc_id: str) -> ForeignDocument:
    return ForeignDocument(f"Document {doc_id} is not a record document; nothing was changed.")


def forget_cached_documents(owner: Any) -> None:
    """After a panic (the guard's `on_panic`, for the intake and the record alike, which share
    one DocStore): a document a panic interrupted may hold half an operation; the stored
    bytes are the truth."""
    owner._docs.forget_all()


@guard_public_methods(on_panic=forget_cached_documents)  # no Automerge panic leaves the intake raw
class Replica:
    """The intake of one record.db (see the module docstring)."""

    def __init__(
        self,
        conn,
        docs: DocStore,
        transactions: WriteTransactions,
        *,
        late_entry_hours: Callable[[], int],
        audit: Any = None,
    ) -> None:
        self._conn = conn
        self._docs = docs
        self._tx = transactions
        self._late_hours = late_entry_hours
        self.audit = audit
        # Worker processes that read documents received whole (store/prepare_pool.py); set by
        # whoever runs a sync and owns their lifetime. None: this thread reads them alone.
        self.prepare_pool = None
        self._listeners: list[ChangeListener] = []
        self._listeners_lock = threading.Lock()

    # --- transactions and what they changed ----------------------------------------

    def transaction(self) -> WriteTransactions:
        return self._tx

    def add_listener(self, listener: ChangeListener) -> None:
        with self._listeners_lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: ChangeListener) -> None:
        with self._listeners_lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def committed(self) -> None:
        """Called by the write transactions after each commit: reports the ids it wrote."""
        written = self._docs.take_written()
        if not written:
            return
        with self._listeners_lock:
            listeners = list(self._listeners)
        ids = frozenset(written)
        for listener in listeners:
            listener(ids)

    # --- what sync reads -----------------------------------------------------------

    def doc_heads(self) -> dict[str, list[bytes]]:
        return self._docs.all_heads()

    def doc_heads_of(self, doc_id: str) -> list[bytes]:
        """One document's stored heads; [] when there is no such document."""
        return self._docs.heads_of(doc_id)

    def change_marker(self) -> tuple[int, int]:
        """Changes whenever record.db may hold new writes: another connection's commit
        (PRAGMA data_version, first) or this connection's own (total_changes). Cheap enough to poll."""
        return self._conn.execute("PRAGMA data_version").fetchone()[0], self._conn.total_changes

    def load_doc(self, doc_id: str) -> Document:
        """A fork with its own actor: the caller may change it without touching ours."""
        if self._docs.kind(doc_id) is None:
            raise NotFound(f"There is no record document {doc_id}.")
        doc = self._docs.get(doc_id)
        assert doc is not None
        return doc.fork()

    def stored_doc(self, doc_id: str) -> tuple[bytes, list[bytes]]:
        """The document's stored bytes (what `Document.load` restores) and their heads,
        without loading it: what a peer that has none of it needs."""
        found = self._docs.stored_bytes(doc_id)
        if found is None:
            raise NotFound(f"There is no record document {doc_id}.")
        return found

    def changes_since(self, doc_id: str, heads: list[bytes]) -> list[bytes]:
        """Raw changes of the document that `heads` lacks (all of them if heads are unknown)."""
        if self._docs.kind(doc_id) is None:
            raise NotFound(f"There is no record document {doc_id}.")
        doc = self._docs.get(doc_id)
        assert doc is not None
        changes = panic_or(None, doc.get_changes, list(heads), also=(Exception,))
        if changes is None:  # heads it cannot place: all of them
            changes = doc.get_changes([])
        return [c.bytes for c in changes]

    def is_record_document(self, doc_id: str, doc: Document) -> bool:
        """The one check (store/doc_ids.py): a record document of a known kind whose id is
        `doc_id`, and `doc_id` follows the document-id rule."""
        return record_kind(doc_id, doc) is not None

    def count_conflicts(self, doc_ids: set[str] | frozenset[str]) -> int:
        """Signature conflicts among `doc_ids` (the store marks them while merging)."""
        if not doc_ids:
            return 0
        rows = self._conn.execute("SELECT note_id FROM notes_view WHERE signature_conflict").fetchall()
        return sum(1 for (note_id,) in rows if note_id in doc_ids)

    # --- what arrives --------------------------------------------------------------

    def check_document(self, doc_id: str, data: bytes) -> None:
        """The budget for a whole document from another device (store/document_budget.py),
        before anything loads it: DocumentOverBudget naming it when it declares more than a
        record document may hold (or, when large, its guarded load needs more memory or time
        than the budget gives); ForeignDocument when its bytes are not a document."""
        document_budget.check(doc_id, bytes(data), document_budget.DEFAULT_BUDGET)

    def check_sync_message(self, doc_id: str, message: bytes, earlier: Any = None) -> Any:
        """The budget for what an Automerge sync message brings to a document, before it is
        received: counted with `earlier` (the value this returned for the document's previous
        message in the same session) or, for its first, with our stored copy. Returns the
        running total to pass back next time; DocumentOverBudget naming the document once it
        is over (the session then refuses that document whole)."""
        if earlier is None:
            earlier = self._own_size(doc_id)
        return document_budget.check_sync_message(doc_id, bytes(message), document_budget.DEFAULT_BUDGET, earlier)

    def _own_size(self, doc_id: str) -> document_budget.DocumentSize:
        """What our stored copy of a document declares (counted, never refused: it is ours)."""
        found = self._docs.stored_bytes(doc_id)
        if found is None:
            return document_budget.DocumentSize()
        return document_budget.declared_size(found[0])

    def apply_doc(self, doc_id: str, doc: Document) -> bool:
        """Merges a document from another device; True if ours changed.

        ForeignDocument (and nothing changed) for anything but a record document of a known
        kind whose id is `doc_id` (and follows the id rule), or one of a different kind than ours.
        """
        refused = _refused(doc_id)
        kind = record_kind(doc_id, doc)
        if kind is None:
            raise refused
        ours_kind = self._docs.kind(doc_id)
        if ours_kind is None:
            # Any failure to read what another device sent means: refuse it.
            with panics_as(refused, also=(Exception,)):
                copy = Document.load(doc.save())
            self._refuse_implausible(doc_id, copy)
            with panics_as(refused), self._tx:
                self._docs.insert(doc_id, kind, copy)
                project(self._conn, doc_id, copy, late_entry_hours=self._late_hours())
            return True
        if ours_kind != kind:
            raise refused
        ours = self._docs.get(doc_id)
        assert ours is not None
        before = sorted(ours.get_heads())
        with panics_as(refused, also=(Exception,)):
            merged = ours.fork()
            merged.merge(doc)
        if sorted(merged.get_heads()) == before:
            return False
        if record_kind(doc_id, merged) != kind:
            raise refused
        self._refuse_implausible(doc_id, merged, ours)
        # A panic while projecting the merged content refuses it too (after the rollback).
        with panics_as(refused), self._tx:
            self._docs.replace(doc_id, merged)
            project(self._conn, doc_id, merged, late_entry_hours=self._late_hours())
        return True

    @staticmethod
    def _refuse_implausible(doc_id: str, doc: Document, ours: Document | None = None) -> None:
        """ForeignDocument when a received document (or our document merged with it) holds a
        date outside the plausible range that ours did not: another device, or whoever holds
        its keys, cannot bring in what the store API and import refuse. A date ours already
        held (an old vault) does not block merging other edits."""
        try:
            problems = implausible_dates(read_record(doc)[1])
            if problems and ours is not None:
                problems = [p for p in problems if p not in implausible_dates(read_record(ours)[1])]
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # pyo3 PanicException is a BaseException
            problems = [("document", "unreadable")]
        if problems:
            raise ForeignDocument(
                f"Document {doc_id} holds a date outside the plausible range ({problems[0][0]}); nothing was changed."
            )

    def apply_snapshots(
        self,
        items: list[tuple[str, bytes]],
        *,
        batch: int | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> tuple[dict[str, list[bytes]], dict[str, ForeignDocument]]:
        """Stores whole documents from another device, the new ones in transactions of `batch`
        (all in one by default), calling `on_batch(documents done)` after each.

        Each is measured against the document budget (store/document_budget.py) before it is
        loaded, then loaded once and held to the rules of `apply_doc` (a record document of a
        known kind whose id is its key) before anything is written; the refused ones are
        returned with their error and change nothing. A document that exists here after
        all is merged through `apply_doc`. The reading runs on `prepare_pool` when there is
        one. Returns (heads now stored per applied document, refusals).
        """
        applied: dict[str, list[bytes]] = {}
        refused: dict[str, ForeignDocument] = {}
        existing = set(self._docs.all_heads())  # one read, not one lookup per document
        fresh = [(doc_id, bytes(data)) for doc_id, data in items if doc_id not in existing]
        for doc_id, data in items:
            if doc_id not in existing:
                continue
            # Rare (it appeared here during the sync): merged like any other, the budget first.
            try:
                self.check_document(doc_id, data)
            except ForeignDocument as e:
                refused[doc_id] = e
                continue
            doc = panic_or(None, Document.load, bytes(data), also=(Exception,))
            if doc is None:
                refused[doc_id] = _refused(doc_id)
                continue
            try:
                self.apply_doc(doc_id, doc)
            except ForeignDocument as e:
                refused[doc_id] = e
                continue
            applied[doc_id] = self._docs.heads_of(doc_id)
        done = len(items) - len(fresh)
        size = batch or max(1, len(fresh))
        if self.prepare_pool is not None:
            batches = self.prepare_pool.prepare_batches(fresh, self._late_hours(), size)
        else:
            batches = (prepare_whole_many(fresh[i:i + size], self._late_hours()) for i in range(0, len(fresh), size))
        try:
            for start, prepared_batch in zip(range(0, len(fresh), size), batches):
                new_docs: list[tuple[str, str, bytes, list[bytes]]] = []
                rows: list[tuple[str, str, tuple, tuple]] = []
                for (doc_id, data), prepared in zip(fresh[start:start + size], prepared_batch):
                    if isinstance(prepared, document_budget.Refused):  # over the budget: never loaded
                        refused[doc_id] = DocumentOverBudget(prepared.message)
                        continue
                    if prepared == IMPLAUSIBLE_DATES:
                        refused[doc_id] = ForeignDocument(
                            f"Document {doc_id} holds a date outside the plausible range; nothing was changed."
                        )
                        continue
                    if prepared is None:
                        refused[doc_id] = _refused(doc_id)
                        continue
                    kind, view, fts, heads = prepared
                    new_docs.append((doc_id, kind, data, heads))
                    rows.append((doc_id, kind, view, fts))
                self.insert_prepared(new_docs, rows)
                for doc_id, _kind, _data, heads in new_docs:
                    applied[doc_id] = heads
                done += len(prepared_batch)
                if on_batch is not None:
                    on_batch(done)
        finally:
            batches.close()  # stops the workers' part when a callback stops early
        return applied, refused

    def insert_prepared(
        self, new_docs: list[tuple[str, str, bytes, list[bytes]]], rows: list[tuple[str, str, tuple, tuple]]
    ) -> None:
        """Stores documents this store has none of, with their rows, in bulk (inside the
        caller's transaction): (doc_id, kind, bytes, heads) and (doc_id, kind, view row,
        fts row) as `prepare_whole` or the importer's builder give them. An id that exists
        fails the insert, which rolls the caller's transaction back; an id against the
        document-id rule is refused (store/doc_ids.py)."""
        for doc_id, *_ in new_docs:
            if not is_doc_id(doc_id):
                raise _refused(doc_id)
        with self._tx:
            self._docs.insert_loaded(new_docs)
            project_new(self._conn, rows)

    def apply_changes(self, doc_id: str, changes: list[bytes]) -> bool:
        """Applies raw changes (from a bundle); True if ours changed.

        Changes whose dependencies are not here yet are ignored, not an error: a later
        bundle brings them and then these again.
        """
        blob = b"".join(bytes(c) for c in changes)
        if not blob:
            return False
        ours = self._docs.get(doc_id) if self._docs.kind(doc_id) else None
        unreadable = ForeignDocument(f"The changes for document {doc_id} are not readable; nothing was changed.")
        base = ours.save() if ours is not None else b""
        # The budget for what the changes bring, with our copy they are loaded with.
        ours_size = document_budget.declared_size(base) if base else document_budget.DocumentSize()
        document_budget.check(doc_id, blob, document_budget.DEFAULT_BUDGET, ours_size)
        with panics_as(unreadable, also=(Exception,)):
            incoming = Document.load(base + blob)
        if not incoming.get_heads():
            return False
        if ours is not None and sorted(incoming.get_heads()) == sorted(ours.get_heads()):
            return False
        return self.apply_doc(doc_id, incoming)

    # --- device-local key/value (never synced, never exported) ----------------------

    def local_get(self, key: str) -> bytes | None:
        row = self._conn.execute("SELECT value FROM local_kv WHERE key = ?", (key,)).fetchone()
        return bytes(row[0]) if row else None

    def local_put(self, key: str, value: bytes) -> None:
        with self._tx:
            self._conn.execute(
                "INSERT INTO local_kv(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, bytes(value)),
            )
