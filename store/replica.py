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

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import Any, Protocol, runtime_checkable

from automerge.core import Document

from store.automerge_guard import guard_public_methods, panic_or, panics_as
from store import document_budget
from store.database import WriteTransactions
from store.device_identity import DeviceIdentity, fingerprint, load_identity
from store.device_list import (
    DEVICE_LIST_ID,
    KIND_DEVICE_LIST,
    DeviceTrust,
    add_vouch,
    new_device_list_doc,
    put_entries,
    revocation_entries,
    revocation_entry,
    trust_from,
)
from store.doc_ids import SINGLETON_IDS, is_doc_id, record_kind
from store.documents import KIND_NOTE, actor_for, signed_entries
from store.signature_index import ATTENTION, PENDING, SignatureIndex, worker_keys
from store.docstore import DocStore
from store.snippets import KIND_SNIPPETS, SNIPPETS_ID
from store.errors import DocumentOverBudget, ForeignDocument, NotFound, RevokedAuthor
from store.models import implausible_dates
from store.projections import (
    IMPLAUSIBLE_DATES,
    UNREAD,
    bulk_fts_load,
    prepare_whole_many,
    project,
    project_new,
    read_record,
)

ChangeListener = Callable[[frozenset[str]], None]
# The paired devices this device vouches for (store/device_list.py), local, never synced.
_VOUCHED_KEY = "signing.vouched.v1"
# Every revocation this device has made or seen in a device list ({key: envelope}), local:
# a later merge that removes one from the list cannot make it un-happen (store/device_list.py).
_REVOCATIONS_KEY = "device_list.revocations.v1"
# The devices this device holds as revoked (JSON list), local, only ever growing: a revocation
# it has honoured is final here, whatever the revoked device signs later (store/device_list.py).
_SETTLED_KEY = "device_list.revoked.v1"
# (documents done, documents to do): sync's progress, as the app's progress bar takes it.
ProgressCallback = Callable[[int, int], None]


# What may be stored under each one-of-a-kind id (store/doc_id_rule.py).
_SINGLETON_KINDS = {DEVICE_LIST_ID: KIND_DEVICE_LIST, SNIPPETS_ID: KIND_SNIPPETS}

# SQLite's page cache (KiB) while an import loads many documents in one transaction. With
# the connection's default of about 2 MB the transaction's pages spill to the log as it runs,
# and the same pages of the tables and indexes are written there again and again. At 16 MiB,
# with the search index's setting beside it, the write phase of 100,000 notes took about a
# fifth less CPU (bench/README.md, "Import, eleventh pass"), for about 10 MB more at its peak.
BULK_CACHE_KIB = 16 * 1024


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
    def store_new_documents_checked_first(
        self, items: list[tuple[str, bytes]], *, batch: int,
        in_each_transaction: Callable[[int], None] | None = None,
        on_checked: Callable[[int], None] | None = None,
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
    def vouch_for(self, device_id: str, name: str, cert_pem: str) -> None: ...
    def share_vouches(self) -> None: ...
    def take_sync_log(self) -> dict[str, str]: ...
    def signature_findings_among(self, doc_ids: set[str] | frozenset[str]) -> dict[str, str]: ...
    def device_trust(self) -> DeviceTrust: ...
    def revoke(self, device_id: str) -> None: ...
    def without_revoked_authors(
        self, items: list[tuple[str, bytes]]
    ) -> tuple[list[tuple[str, bytes]], dict[str, ForeignDocument]]: ...


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
        self._identity: DeviceIdentity | None = None
        # What arrived from other devices ("arrived" or "merged" per document id): pending
        # until its transaction commits, then kept for the session's audit entry.
        self._pending_arrivals: dict[str, str] = {}
        self._arrivals: dict[str, str] = {}
        self._trust: tuple[tuple, DeviceTrust] | None = None
        # Each note's signature state, stored as the note is written or merged, never
        # verified as it is listed (store/signature_index.py).
        self.signatures = SignatureIndex(
            conn, docs, trust=self.device_trust, kept=self.kept_signed_entries,
            local_get=self.local_get, local_put=self.local_put,
        )

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
        for doc_id, how in self._pending_arrivals.items():
            if doc_id in written and self._arrivals.get(doc_id) != "arrived":
                self._arrivals[doc_id] = how
        self._pending_arrivals.clear()  # those of a rolled-back transaction were never stored
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
            self._refuse_revoked_authors(doc_id, copy, [])
            with panics_as(refused), self._tx:
                if doc_id == DEVICE_LIST_ID:
                    self._keep_revocations(revocation_entries(copy))
                self._pending_arrivals[doc_id] = "arrived"
                self._docs.insert(doc_id, kind, copy)
                project(self._conn, doc_id, copy, late_entry_hours=self._late_hours())
                if doc_id == DEVICE_LIST_ID:
                    self._settle_revocations()
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
        self._refuse_revoked_authors(doc_id, merged, before)
        # A panic while projecting the merged content refuses it too (after the rollback).
        with panics_as(refused), self._tx:
            if kind == KIND_NOTE:
                self._keep_signed_entries(doc_id, ours, merged)
            if doc_id == DEVICE_LIST_ID:
                self._keep_revocations({**revocation_entries(ours), **revocation_entries(merged)})
            self._pending_arrivals.setdefault(doc_id, "merged")
            self._docs.replace(doc_id, merged)
            project(self._conn, doc_id, merged, late_entry_hours=self._late_hours())
            if doc_id == DEVICE_LIST_ID:
                self._settle_revocations()
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
        # One read of these ids, not one lookup per document nor every stored one (a first sync
        # calls this every thousand documents as they arrive).
        existing = self._docs.existing([doc_id for doc_id, _data in items])
        fresh = [(doc_id, bytes(data)) for doc_id, data in items if doc_id not in existing]
        fresh = self._without_revoked_authors(fresh, refused)
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
        batches, keys = self._prepared_batches(fresh, size)
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
                    kind, view, fts, heads, signature = prepared
                    new_docs.append((doc_id, kind, data, heads))
                    rows.append((doc_id, kind, view, fts))
                    self._expect_signature(doc_id, kind, heads, signature, keys)
                for doc_id, *_ in new_docs:
                    self._pending_arrivals[doc_id] = "arrived"
                with self._tx:
                    self.insert_prepared(new_docs, rows)
                    if any(doc_id == DEVICE_LIST_ID for doc_id, *_ in new_docs):
                        self._keep_revocations(revocation_entries(self._docs.get(DEVICE_LIST_ID)))
                        self._settle_revocations()
                for doc_id, _kind, _data, heads in new_docs:
                    applied[doc_id] = heads
                done += len(prepared_batch)
                if on_batch is not None:
                    on_batch(done)
        finally:
            batches.close()  # stops the workers' part when a callback stops early
        return applied, refused

    def store_new_documents_checked_first(
        self,
        items: list[tuple[str, bytes]],
        *,
        batch: int,
        in_each_transaction: Callable[[int], None] | None = None,
        on_checked: Callable[[int], None] | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> tuple[dict[str, list[bytes]], dict[str, ForeignDocument]]:
        """Stores whole documents this store has none of (the mailbox's bulk intake): every
        one is read and held to the rules of `apply_snapshots` (the budget before it is loaded,
        a record document of a known kind under its own id, plausible dates) BEFORE any is
        stored; when one is refused, nothing is stored and the refusals are returned. Then
        they are stored in bulk in transactions of `batch` documents, in the order given.
        `in_each_transaction(documents stored)` runs inside each transaction, before it
        commits (what the caller must commit with them); `on_checked(documents read)` as the
        reading goes, `on_batch(documents stored)` after each commit. The reading runs on
        `prepare_pool` when there is one. Returns (heads stored per document, refusals).

        Self-contained on purpose (the direct sync's `apply_snapshots` reads and stores batch
        by batch inside one caller's transaction; this one reads everything first, so that
        a bundle is refused whole, and commits as it goes, so that a large one can resume).
        """
        items = [(doc_id, bytes(data)) for doc_id, data in items]
        size = max(1, batch)
        batches, keys = self._prepared_batches(items, size)
        prepared: list = []
        try:
            for part in batches:
                prepared += part
                if on_checked is not None:
                    on_checked(len(prepared))
        finally:
            batches.close()  # stops the workers' part when a callback stops early
        refused: dict[str, ForeignDocument] = {}
        for (doc_id, _data), result in zip(items, prepared):
            if isinstance(result, document_budget.Refused):  # over the budget: never loaded
                refused[doc_id] = DocumentOverBudget(result.message)
            elif result == IMPLAUSIBLE_DATES:
                refused[doc_id] = ForeignDocument(
                    f"Document {doc_id} holds a date outside the plausible range; nothing was changed."
                )
            elif result is None:
                refused[doc_id] = _refused(doc_id)
        if refused:
            return {}, refused
        applied: dict[str, list[bytes]] = {}
        for start in range(0, len(items), size):
            chunk = list(zip(items[start:start + size], prepared[start:start + size]))
            new_docs = [(doc_id, kind, data, heads) for (doc_id, data), (kind, _v, _f, heads, _s) in chunk]
            rows = [(doc_id, kind, view, fts) for (doc_id, _d), (kind, view, fts, _h, _s) in chunk]
            for (doc_id, _d), (kind, _v, _f, heads, signature) in chunk:
                self._expect_signature(doc_id, kind, heads, signature, keys)
            with self._tx:
                for doc_id, *_ in new_docs:
                    self._pending_arrivals[doc_id] = "arrived"
                self.insert_prepared(new_docs, rows)
                if in_each_transaction is not None:
                    in_each_transaction(start + len(chunk))
            for doc_id, _kind, _data, heads in new_docs:
                applied[doc_id] = heads
            if on_batch is not None:
                on_batch(start + len(chunk))
        return applied, refused
    def _prepared_batches(self, items: list[tuple[str, bytes]], size: int):
        """(`prepare_whole_many` of each `size` items in turn, on `prepare_pool` when there is
        one, the keys their notes' signature states are verified with). The keys are the
        trusted devices' when the reading starts; a state whose signers' keys changed by
        the time it is stored is settled again (store/signature_index.py)."""
        late = self._late_hours()
        keys = worker_keys(self.device_trust()) if self.identity() is not None else None
        if self.prepare_pool is not None:
            return self.prepare_pool.prepare_batches(items, late, size, context=keys), keys
        return (prepare_whole_many(items[i:i + size], late, keys) for i in range(0, len(items), size)), keys

    def _expect_signature(self, doc_id: str, kind: str, heads: list[bytes], signature, keys) -> None:
        if kind == KIND_NOTE and keys is not None and signature != UNREAD:
            self.signatures.expect_prepared(doc_id, heads, signature, keys)

    def without_revoked_authors(
        self, items: list[tuple[str, bytes]]
    ) -> tuple[list[tuple[str, bytes]], dict[str, ForeignDocument]]:
        """For an intake that stores whole documents in several transactions of its own (the
        mailbox): (`items` less those carrying a revoked device's later changes, the refusals).
        The same rule `apply_snapshots` applies inside its caller's transaction; revocations a
        device list among `items` brings are kept here first (their own transaction)."""
        refused: dict[str, ForeignDocument] = {}
        with self._tx:
            kept = self._without_revoked_authors([(d, bytes(b)) for d, b in items], refused)
        return kept, refused

    def _without_revoked_authors(self, fresh: list[tuple[str, bytes]],
                                 refused: dict[str, ForeignDocument]) -> list[tuple[str, bytes]]:
        """`fresh` less the documents holding changes of a revoked device (into `refused`).
        Costs a load per document, so only once some device is revoked; the budget first."""
        if not self.device_trust().revoked:
            return fresh
        kept: list[tuple[str, bytes]] = []
        for doc_id, data in fresh:
            try:
                self.check_document(doc_id, data)
                with panics_as(_refused(doc_id), also=(Exception,)):
                    doc = Document.load(data)
                self._refuse_revoked_authors(doc_id, doc, [])
            except ForeignDocument as e:
                refused[doc_id] = e
                continue
            if doc_id == DEVICE_LIST_ID:
                self._keep_revocations(revocation_entries(doc))
            kept.append((doc_id, data))
        return kept

    @contextmanager
    def bulk_load(self) -> Iterator[None]:
        """Around many `insert_prepared` calls in one transaction (an import): SQLite keeps
        more of the transaction's pages in memory (BULK_CACHE_KIB), and the search index
        writes fewer, larger segments (store/projections.py, `bulk_fts_load`). The page
        cache is put back however the body ends; the index's setting goes with a rollback."""
        (before,) = self._conn.execute("PRAGMA cache_size").fetchone()
        put_back = f"PRAGMA cache_size = {int(before)}"
        self._conn.execute(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")
        try:
            with bulk_fts_load(self._conn):
                yield
        except BaseException:
            # The failure that rolls the import back is the one to report: a cache left
            # larger costs memory until the vault closes, nothing else.
            with suppress(Exception):
                self._conn.execute(put_back)
            raise
        self._conn.execute(put_back)

    def insert_prepared(
        self, new_docs: list[tuple[str, str, bytes, list[bytes]]], rows: list[tuple[str, str, tuple, tuple]]
    ) -> None:
        """Stores documents this store has none of, with their rows, in bulk (inside the
        caller's transaction): (doc_id, kind, bytes, heads) and (doc_id, kind, view row,
        fts row) as `prepare_whole` or the importer's builder give them. An id that exists
        fails the insert, which rolls the caller's transaction back; an id against the
        document-id rule is refused (store/doc_ids.py), and so is one under the id of the
        device list or the snippets that is not that document."""
        for doc_id, kind, *_ in new_docs:
            if not is_doc_id(doc_id) or (doc_id in SINGLETON_IDS and kind != _SINGLETON_KINDS[doc_id]):
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

    # --- signed entries and the device list (store/signing.py, store/device_list.py) ---

    def _keep_signed_entries(self, doc_id: str, ours: Document, merged: Document) -> None:
        """Keeps, on this device, every signed entry our copy held that the merge removes or
        alters (inside the merge's transaction): a sync can never make a signature vanish,
        and the signature state reports it (store/signature_state.py)."""
        before = signed_entries(ours)
        if not before:
            return
        after = signed_entries(merged)
        for entry_id, envelope in before.items():
            if after.get(entry_id) != envelope and isinstance(envelope, str):
                self._conn.execute(
                    "INSERT OR IGNORE INTO signature_kept(note_id, entry_id, envelope) VALUES (?,?,?)",
                    (doc_id, entry_id, envelope),
                )

    def kept_signed_entries(self, note_id: str) -> dict[str, str]:
        """Signed entries of `note_id` a merge removed or altered, as this device held them."""
        rows = self._conn.execute("SELECT entry_id, envelope FROM signature_kept WHERE note_id = ?", (note_id,))
        return {r[0]: r[1] for r in rows.fetchall()}

    def notes_with_kept_entries(self) -> set[str]:
        return {r[0] for r in self._conn.execute("SELECT DISTINCT note_id FROM signature_kept").fetchall()}

    def identity(self) -> DeviceIdentity | None:
        """This device's signing identity (store/device_identity.py), None for a bare store
        that has none. Read once: it never changes while the store is open."""
        if self._identity is None:
            self._identity = load_identity(self)
        return self._identity

    def take_sync_log(self) -> dict[str, str]:
        """The documents other devices' data changed here since the last call, each
        "arrived" (new here) or "merged": what a sync session's audit entry names."""
        taken, self._arrivals = self._arrivals, {}
        return taken

    def signature_findings_among(self, doc_ids: set[str] | frozenset[str]) -> dict[str, str]:
        """note id -> "conflict" or "tampered" for the notes among `doc_ids` whose signature
        needs the clinician: their stored states (store/signature_index.py), those stored
        in bulk and not yet computed computed now (what this sync brought, not the vault)."""
        ids = sorted(doc_ids)
        statuses = self.signatures.statuses(ids)
        if PENDING in statuses.values():
            with self._tx:
                while self.signatures.settle(first=ids, only_first=True):
                    pass
            statuses = self.signatures.statuses(ids)
        return {i: s for i, s in statuses.items() if s in ATTENTION}

    def forget_identity(self) -> None:
        self._identity = None
        self._trust = None

    def device_trust(self) -> DeviceTrust:
        """The devices whose signatures this device accepts (store/device_list.py), computed
        again only when the device list changed."""
        me = self.identity()
        if me is None:
            return DeviceTrust("", {})
        raw = self.local_get(_VOUCHED_KEY) or b""
        kept = self.local_get(_REVOCATIONS_KEY) or b""
        settled = self.local_get(_SETTLED_KEY) or b""
        heads = (tuple(sorted(self._docs.heads_of(DEVICE_LIST_ID))), raw, kept, settled)
        if self._trust is None or self._trust[0] != heads:
            doc = self._docs.get(DEVICE_LIST_ID) if heads[0] else None
            paired = {k: (v.get("cert"), v.get("name", "")) for k, v in self._vouched().items()}
            self._trust = (heads, trust_from(doc, me, paired, self._kept_revocations(), self._settled()))
        return self._trust[1]

    def _settled(self) -> frozenset[str]:
        raw = self.local_get(_SETTLED_KEY)
        try:
            data = json.loads(raw) if raw else []
        except ValueError:
            return frozenset()
        return frozenset(d for d in data if isinstance(d, str)) if isinstance(data, list) else frozenset()

    def _settle_revocations(self) -> None:
        """After the device list changed here (inside that transaction): the devices now
        revoked are held as revoked from now on."""
        if self.identity() is None:
            return
        settled = self._settled()
        revoked = self.device_trust().revoked
        if not revoked <= settled:
            self.local_put(_SETTLED_KEY, json.dumps(sorted(settled | revoked)).encode("utf-8"))

    # --- revocation (store/device_list.py; docs/security.md) --------------------------

    def revoke(self, device_id: str) -> None:
        """This device revokes `device_id`: a revocation signed with this device's key, kept
        here and written into the device list (made now if there is none), so it travels to
        every device by both transports. Final: nothing undoes it. Nothing happens in a bare
        store without an identity (its peers are refused by the peer list alone)."""
        me = self.identity()
        if me is None:
            return
        with self._tx:
            key, envelope = revocation_entry(me, device_id, self._held_of(device_id))
            self._keep_revocations({key: envelope})
            self.list_this_device()

    def _held_of(self, device_id: str) -> dict[str, int]:
        """{document id: highest sequence number of `device_id`'s changes held here}: the
        revocation's cut. Reads every document once (a revocation is rare)."""
        actor = actor_for(device_id)
        held: dict[str, int] = {}
        for doc_id in sorted(self._docs.all_heads()):
            doc = self._docs.get(doc_id)
            if doc is None:
                continue
            seqs = [c.seq for c in panic_or([], doc.get_changes, [], also=(Exception,)) if c.actor_id == actor]
            if seqs:
                held[doc_id] = max(seqs)
        return held

    def _kept_revocations(self) -> dict[str, str]:
        raw = self.local_get(_REVOCATIONS_KEY)
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            return {}
        return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}

    def _keep_revocations(self, entries: dict[str, str]) -> None:
        """Adds revocation entries to the ones this device keeps (inside the caller's transaction)."""
        kept = self._kept_revocations()
        fresh = {k: v for k, v in entries.items() if kept.get(k) != v and k not in kept}
        if fresh:
            kept.update(fresh)
            self.local_put(_REVOCATIONS_KEY, json.dumps(kept, sort_keys=True).encode("utf-8"))

    def _refuse_revoked_authors(self, doc_id: str, doc: Document, since: list[bytes]) -> None:
        """RevokedAuthor when `doc` brings changes (those after `since`) that carry the actor of
        a device revoked here, beyond what its revokers held of it when they revoked it (their
        cut: its work from before is kept, wherever it arrives from). The device list is the exception: each of its entries is signed
        and checked on its own, and refusing it would stop revocations travelling."""
        if doc_id == DEVICE_LIST_ID:
            return
        trust = self.device_trust()
        if not trust.revoked:
            return
        # What each revoked device's changes to this document may reach: the revokers' cut.
        limit = {actor_for(d): trust.cuts.get(d, {}).get(doc_id, 0) for d in trust.revoked}
        with panics_as(_refused(doc_id), also=(Exception,)):
            late = [c for c in doc.get_changes(list(since)) if c.actor_id in limit and c.seq > limit[c.actor_id]]
        if late:
            raise RevokedAuthor(
                f"Document {doc_id} holds changes made on a revoked device; they were refused and nothing was changed."
            )

    def vouch_for(self, device_id: str, name: str, cert_pem: str) -> None:
        """This device vouches for a paired device, so every device of the group can verify
        what either signs. Pairing calls it (sync/peers.py). The vouch is kept here at once
        (this device trusts its peer from now on) and written into the device list as soon as
        there is one: when this device first signs, or after a sync brought one; until anyone
        signs, pairing adds no document to the record. Nothing happens in a bare store
        without an identity."""
        if fingerprint(cert_pem) != device_id:
            raise ValueError("certificate does not match device id")
        if self.identity() is None:
            return
        with self._tx:
            vouched = self._vouched()
            vouched[device_id] = {"name": name[:100], "cert": cert_pem}
            self.local_put(_VOUCHED_KEY, json.dumps(vouched, sort_keys=True).encode("utf-8"))
            self.signatures.trust_touched()  # the notes that device signed are checked again
            if self._docs.kind(DEVICE_LIST_ID) is not None:
                self.list_this_device()

    def share_vouches(self) -> None:
        """Writes this device's vouches into the device list when one has arrived and lacks
        them. Called when a sync session has ended (sync/peers.py), never during one: a
        write while documents are compared would leave the two sides apart."""
        if self._docs.kind(DEVICE_LIST_ID) is not None:
            self.list_this_device()

    def _vouched(self) -> dict[str, dict[str, str]]:
        """The paired devices this device vouches for: {device id: {name, cert}} (local)."""
        raw = self.local_get(_VOUCHED_KEY)
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            return {}
        return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}

    def list_this_device(self) -> None:
        """This device's own entry and its vouches in the device list (before its first
        signature, and whenever a device list arrives)."""
        me = self.identity()
        if me is None:
            return
        vouched = self._vouched()

        revocations = self._kept_revocations()

        def add(doc: Document) -> bool:
            changed = add_vouch(doc, me, me.cert_pem, me.name)
            # Every revocation seen here stays in the list (a merge may have dropped one).
            changed = put_entries(doc, revocations) or changed
            for entry in vouched.values():
                cert, name = entry.get("cert"), entry.get("name", "")
                if isinstance(cert, str) and isinstance(name, str):
                    changed = add_vouch(doc, me, cert, name) or changed
            return changed

        self._write_device_list(add)

    def _write_device_list(self, change: Callable[[Document], bool]) -> None:
        with self._tx:
            if self._docs.kind(DEVICE_LIST_ID) is None:
                doc = new_device_list_doc(self._docs.actor)
                change(doc)
                self._docs.insert(DEVICE_LIST_ID, KIND_DEVICE_LIST, doc)
            else:
                doc = self._docs.get(DEVICE_LIST_ID)
                assert doc is not None
                if change(doc):
                    self._docs.save_changes(DEVICE_LIST_ID)
            self._settle_revocations()

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
