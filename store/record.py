"""RecordStore: the official record in record.db, kept as Automerge documents.

Clients and progress notes live as documents (store/documents.py), persisted as snapshots
plus appended changes (store/docstore.py), with list and search tables derived from them
(store/projections.py). Each write, its document changes and its projection rows commit in
one transaction. Signed notes are locked; corrections are signed addenda; a note edited on
another device while it was being signed shows as a signature conflict until resolved.

Documents from and for other devices pass through the record's sync intake, `self.replica`
(store/replica.py), which shares this store's connection, documents and transactions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime

from automerge.core import Document

from store import documents as D
from store import signing
from store import snippets
from store import compliance as checklist
from store.audit import AuditLog, Event
from store.automerge_guard import guard_public_methods, panic_or
from store.database import WriteTransactions, migrate
from store.docstore import DocStore
from store.docstore import _v1 as _docstore_v1
from store.docstore import _v2 as _docstore_v2
from store.errors import (
    ComplianceIncomplete,
    NoSignatureConflict,
    NoteChangedMeanwhile,
    NoteNotSigned,
    NotFound,
    SignedNoteLocked,
    SignerUnknown,
    ValidationFailed,
    VaultError,
)
from store.device_identity import ensure_identity
from store.fts import fts_query, snippet_sql
from store.signature_state import LEGACY_ENTRY, SignatureState, SignatureStatus, SignedVersion, signature_state
from store.models import (
    FORMAT_SECTIONS,
    Addendum,
    ClinicianSettings,
    Client,
    EnteredInError,
    NoteFormat,
    NoteStatus,
    ProgressNote,
    SessionFacts,
    Signature,
    SignatureConflictResolution,
    require_plausible,
    section_title,
    utcnow,
    validated,
)
from store import check_reading
from store.check_record import CheckRecord
from store.client_rights import ClientRights
from store.projections import _v1 as _projections_v1
from store.projections import _v5_plans_and_measures
from store.discharge import discharged_on
from store.replica import Replica, forget_cached_documents
from store.signature_index import migrate_v4 as _v4_signature_states
from store.signature_index import worker_keys
from store.write_access import writes_held
from store.doc_ids import ITEM_ID_RULE, is_item_id
from store.projections import (
    project,
    project_section_edit,
    projection_mismatches,
    rebuild_all,
    refresh_late_entries,
    refresh_pending_fts,
)

_LATE_HOURS_KEY = "projection.late_entry_hours"
# Set once this vault's signatures of the earlier form were re-issued (`upgrade_signatures`).
_SIGNATURES_UPGRADED_KEY = "signing.upgraded.v1"

RESOLUTION_CHOICES = ("addendum", "resign")


def _v1_local(conn) -> None:
    # Device-local state (sync states, peers' progress); never synced, never exported.
    conn.execute("CREATE TABLE local_kv(key TEXT PRIMARY KEY, value BLOB NOT NULL)")


def _v1(conn) -> None:
    _docstore_v1(conn)
    _projections_v1(conn)
    _v1_local(conn)


def _v3_signatures(conn) -> None:
    # Signed entries of a note that a merge removed or altered, as this device held them
    # (store/replica.py): local, never synced, so a sync cannot make a signature vanish.
    conn.execute(
        "CREATE TABLE signature_kept(note_id TEXT NOT NULL, entry_id TEXT NOT NULL, "
        "envelope TEXT NOT NULL, PRIMARY KEY(note_id, entry_id))"
    )
    # Each signed note's verified state, for the version of the note and of the device list
    # it was computed at (a cache: a stale or missing row is computed again when read).
    conn.execute(
        "CREATE TABLE signature_checks(note_id TEXT PRIMARY KEY, heads BLOB NOT NULL, "
        "trust BLOB NOT NULL, status TEXT NOT NULL)"
    )
    if conn.execute("SELECT 1 FROM documents LIMIT 1").fetchone() is None:
        # A new record holds no signature of the earlier form: nothing to upgrade, and
        # opening it never needs to write (`upgrade_signatures`).
        conn.execute(
            "INSERT OR REPLACE INTO local_kv(key, value) VALUES (?, ?)", (_SIGNATURES_UPGRADED_KEY, b"0")
        )


MIGRATIONS = [_v1, _docstore_v2, _v3_signatures, _v4_signature_states, _v5_plans_and_measures]


@dataclass(frozen=True)
class ClientRow:
    client_id: str
    display_name: str
    date_of_birth: date | None
    diagnoses: str  # ICD-10 codes, comma-separated, in the client's order
    updated_at: str
    plan_start: date | None = None  # the treatment plan's start (store/plan_reviews.py)
    review_interval_days: int = 90


@dataclass(frozen=True)
class NoteRow:
    note_id: str
    client_id: str
    date_of_service: date
    start_time: str | None
    stop_time: str | None
    minutes: int | None
    format: str
    cpt_code: str | None
    status: NoteStatus
    late_entry: bool
    signature_conflict: bool
    signed_at: str | None
    phq9: int | None
    gad7: int | None
    addenda_count: int
    updated_at: str
    # The verified signature state ("verified", "conflict", "tampered", "legacy", "unsigned"),
    # when the row was read with `verify_rows`; "" when not verified (store/signature_state.py).
    signature_status: str = ""
    pcl5: int | None = None


@dataclass(frozen=True)
class DraftSaved:
    """What an editor's save left (`RecordStore.save_draft`)."""

    base: list[bytes]  # the heads the editor's text now stands on: its next save's base
    heads: list[bytes]  # the note's heads
    merged: ProgressNote | None  # the note as it now is, when it holds edits the editor has not shown
    # The edits could not be merged relative to the version shown (Automerge could not fork
    # the note there): the sections the editor changed were written over the latest version
    # as they read in the editor, and the clinician should review the note.
    unmerged: bool = False


@dataclass(frozen=True)
class RecordHit:
    doc_id: str
    kind: str  # "client" or "progress_note"
    client_id: str
    title: str
    snippet: str


_NOTE_ROW_SQL = (
    "SELECT note_id, client_id, date_of_service, start_time, stop_time, minutes, format, cpt_code, "
    "status, late_entry, signature_conflict, signed_at, phq9, gad7, addenda_count, updated_at, pcl5 "
    "FROM notes_view"
)


def _plain_draft(row: NoteRow) -> bool:
    return row.status == NoteStatus.DRAFT and not row.signature_conflict and row.signed_at is None


def _note_row(r) -> NoteRow:
    return NoteRow(
        r[0], r[1], date.fromisoformat(r[2]), r[3], r[4], r[5], r[6], r[7], NoteStatus(r[8]),
        bool(r[9]), bool(r[10]), r[11], r[12], r[13], r[14], r[15], pcl5=r[16],
    )


def _require_doc_id(doc_id: str) -> None:
    # The one document-id rule (store/doc_ids.py): what the store makes, every transport takes.
    if not is_item_id(doc_id):
        raise ValidationFailed([("id", ITEM_ID_RULE)])


@guard_public_methods(on_panic=forget_cached_documents)  # no Automerge panic leaves the store raw
class RecordStore:
    def __init__(
        self,
        conn,
        *,
        device_id: str,
        settings: Callable[[], ClinicianSettings],
        audit: AuditLog | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        # The vault's audit log; None for a bare store (benchmarks, tests of the record alone).
        self.audit = audit
        # This device's clock (aware UTC, whole seconds): every time the record writes comes
        # from here, so tests can run a device whose clock is wrong.
        self._now = now
        self._conn = conn
        self._device_id = device_id
        self._key = None  # (device id, Ed25519 private key), read once when first signing
        self._settings = settings
        migrate(conn, MIGRATIONS)
        self._docs = DocStore(conn, actor=D.actor_for(device_id))
        self._tx = WriteTransactions(
            conn, on_rollback=self._docs.forget_unsaved, on_commit=self._committed, before_commit=self._before_commit
        )
        # The sync intake: same connection, documents and transactions, passed in.
        self.replica = Replica(conn, self._docs, self._tx, late_entry_hours=self._late_hours, audit=audit)
        self._sync_late_entry_hours()
        # The disclosure log and the client's requests (store/client_rights.py).
        self.rights = ClientRights(
            conn, self._docs, self._tx, now=lambda: self._now(), settings=self._settings,
            signing_key=self._signing_key, trust=self.replica.device_trust,
            list_this_device=self.replica.list_this_device, audit=audit, record=self,
        )

    # --- transactions -----------------------------------------------------------

    def transaction(self) -> WriteTransactions:
        """One write transaction (`with store.transaction(): ...`); nested uses join the
        outer one; an error rolls it back, and cached documents forget unsaved changes."""
        return self._tx

    def _committed(self) -> None:
        self.replica.committed()

    def _before_commit(self) -> None:
        # The one choke point for signature states: every note document this transaction
        # wrote, by the clinician or from another device (store/signature_index.py).
        self.replica.signatures.after_writes(self._docs.written())

    def _late_hours(self) -> int:
        return self._settings().late_entry_hours

    def _persist(self, doc_id: str) -> None:
        """Appends the document's new changes and reprojects it (inside a transaction)."""
        self._docs.save_changes(doc_id)
        project(self._conn, doc_id, self._docs.get(doc_id), late_entry_hours=self._late_hours())

    def _sync_late_entry_hours(self) -> None:
        # Late-entry flags depend on a setting; recompute them when it has changed.
        hours = self._late_hours()
        if self.replica.local_get(_LATE_HOURS_KEY) == str(hours).encode():
            return
        with self.transaction():
            refresh_late_entries(self._conn, hours)
            self.replica.local_put(_LATE_HOURS_KEY, str(hours).encode())

    def _doc(self, doc_id: str, kind: str) -> Document:
        if self._docs.kind(doc_id) != kind:
            what = "client" if kind == D.KIND_CLIENT else "progress note"
            raise NotFound(f"There is no {what} {doc_id}.")
        doc = self._docs.get(doc_id)
        assert doc is not None
        return doc

    def _signer(self) -> ClinicianSettings:
        s = self._settings()
        if not s.clinician_name.strip() or not s.credentials.strip():
            raise SignerUnknown()
        return s

    # --- clients ----------------------------------------------------------------

    def create_client(self, client: Client) -> Client:
        require_plausible(client)
        _require_doc_id(client.id)
        with self.transaction():
            if self._docs.exists(client.id):
                raise ValidationFailed([("id", "a record with this id already exists")])
            doc = D.new_client_doc(client, D.actor_for(self._device_id))
            self._docs.insert(client.id, D.KIND_CLIENT, doc)
            project(self._conn, client.id, doc, late_entry_hours=self._late_hours())
        return D.client_from_doc(doc)

    def update_client(self, client: Client) -> Client:
        require_plausible(client)
        with self.transaction():
            doc = self._doc(client.id, D.KIND_CLIENT)
            if D.apply_client(doc, client, self._now()):
                self._persist(client.id)
        return D.client_from_doc(doc)

    def get_client(self, client_id: str) -> Client:
        return D.client_from_doc(self._doc(client_id, D.KIND_CLIENT))

    def list_clients(self, filter: str = "") -> list[ClientRow]:
        pattern = "%" + filter.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._conn.execute(
            "SELECT client_id, display_name, date_of_birth, diagnoses, updated_at, plan_start, "
            "review_interval_days FROM clients_view "
            "WHERE display_name LIKE ? ESCAPE '\\' ORDER BY display_name COLLATE NOCASE, client_id",
            (pattern,),
        ).fetchall()
        return [
            ClientRow(
                r[0], r[1], date.fromisoformat(r[2]) if r[2] else None, r[3], r[4],
                date.fromisoformat(r[5]) if r[5] else None, r[6],
            )
            for r in rows
        ]

    # --- intake, review and discharge (store/discharge.py, store/plan_reviews.py) ---

    def record_note_rows(self) -> list[NoteRow]:
        """The rows of every intake, treatment-plan review and discharge note (not session
        notes), with their verified signature states: what discharge and plan-review due
        dates are read from (a signature that does not verify attests nothing)."""
        formats = (NoteFormat.INTAKE.value, NoteFormat.REVIEW.value, NoteFormat.DISCHARGE.value)
        rows = self._conn.execute(
            _NOTE_ROW_SQL + " INDEXED BY notes_view_by_format WHERE format IN (?, ?, ?)", formats
        ).fetchall()
        verified = self.verify_rows([_note_row(r) for r in rows])
        # A state not stored yet (an import, a first sync) is computed here: these notes are
        # few, and a discharge must not wait for the app to settle every note's state.
        return [
            replace(r, signature_status=self.signature_state(r.note_id).status.value)
            if r.signature_status == "pending" else r
            for r in verified
        ]

    def discharged_clients(self) -> dict[str, date]:
        """client id -> the date of the discharge that stands (store/discharge.py)."""
        return discharged_on(self.record_note_rows())

    # --- progress notes ---------------------------------------------------------

    def create_note(self, note: ProgressNote) -> ProgressNote:
        """A new draft. Signatures, addenda and the rest come only through their methods."""
        if note.status != NoteStatus.DRAFT or note.signature or note.addenda or note.entered_in_error:
            raise ValidationFailed([("status", "a new note starts as an unsigned draft")])
        require_plausible(note)
        _require_doc_id(note.id)
        with self.transaction():
            if self._docs.exists(note.id):
                raise ValidationFailed([("id", "a record with this id already exists")])
            self._doc(note.client_id, D.KIND_CLIENT)  # NotFound for an unknown client
            doc = D.new_note_doc(note, D.actor_for(self._device_id))
            self._docs.insert(note.id, D.KIND_NOTE, doc)
            project(self._conn, note.id, doc, late_entry_hours=self._late_hours())
        return D.note_from_doc(doc)

    def import_note(self, note: ProgressNote) -> ProgressNote:
        """A note signed (or entered in error) elsewhere, kept as the record of the past it is.

        Signer, credentials and times are kept as given; the store fills in what only it can
        know: the heads and content hash the signature covers, addendum hashes, and this
        device where the note names none. The compliance checker does not gate it.
        """
        if note.status == NoteStatus.DRAFT:
            return self.create_note(note)
        require_plausible(note)
        if note.status == NoteStatus.SIGNED and note.signature is None:
            raise ValidationFailed([("signature", "is required for a signed note")])
        if note.addenda and note.signature is None:
            raise ValidationFailed([("addenda", "only a signed note has addenda")])
        _require_doc_id(note.id)
        with self.transaction():
            if self._docs.exists(note.id):
                raise ValidationFailed([("id", "a record with this id already exists")])
            self._doc(note.client_id, D.KIND_CLIENT)
            doc = D.imported_note_doc(note, D.actor_for(self._device_id), self._device_id)
            if self._reissue_legacy(doc, only_mine=False):  # signed here by key, as the file states it
                self.replica.list_this_device()
            self._docs.insert(note.id, D.KIND_NOTE, doc)
            project(self._conn, note.id, doc, late_entry_hours=self._late_hours())
        return D.note_from_doc(doc)

    # --- signatures from before verification, and imported ones --------------------

    def _reissue_legacy(self, doc: Document, *, only_mine: bool) -> bool:
        """Re-issues a signature of the earlier form (a content hash and heads in the note)
        as a signed entry by this device's key, with the signer, credentials and time it
        states; likewise its addenda. `only_mine`: only what this device signed (a vault's
        upgrade); otherwise all (an import, which this device vouches for as it stores it).
        A signature whose signed content cannot be recovered stays as it is (shown as
        signed before verification existed). False when nothing was re-issued."""
        if any((D.envelope_payload(e) or {}).get("kind") == signing.KIND_NOTE_SIGNATURE
               for e in D.signed_entries(doc).values()):
            return False
        legacy = D.legacy_signature(doc)
        if legacy is None:
            return False
        me, key = self._signing_key()
        mine = {me.device_id, self._device_id}
        if only_mine and legacy.device_id not in mine:
            return False
        current = D.note_from_doc(doc)
        signed = self._at_signature(doc, legacy) if legacy.heads else None
        if signed is None or D.content_hash(signed) != legacy.content_hash:
            signed = current if D.content_hash(current) == legacy.content_hash or not legacy.content_hash else None
        if signed is None:
            return False
        addenda = [a for a in current.addenda if not only_mine or a.device_id in mine]
        entries = [
            (entry_id, signing.seal(key, payload))
            for entry_id, payload in signing.reissue_payloads(signed, legacy, addenda, device_id=me.device_id)
        ]
        with doc.transaction() as tx:
            for eid, envelope in entries:
                D.put_signed_entry(tx, eid, envelope)
        return True

    def reissue_imported(self, data: bytes) -> tuple[bytes, list[bytes]]:
        """A signed note's document built from an import file (store/importer.py), with its
        signature and addenda re-issued by this device's key, signer, credentials and times
        as the file states them (docs/import-format.md). Returns its bytes and heads."""
        doc = Document.load(bytes(data))
        doc.set_actor(self._docs.actor)
        self._reissue_legacy(doc, only_mine=False)
        return doc.save(), doc.get_heads()

    def import_signer(self) -> str:
        """The device id an import's signed entries name (this device's signing identity):
        the worker processes that build an import's documents put it in the payloads they
        make (`signing.reissue_payloads`); the key itself never leaves this store."""
        return self._signing_key()[0].device_id

    def sign_imported(self, payloads: list[bytes]) -> list[bytes]:
        """The signatures, as the hex an envelope holds, of an import's signed entries:
        canonical payloads (`signing.unsigned_envelope` of those `reissue_payloads` makes
        naming `import_signer()`), signed by this device's key, as `reissue_imported` does."""
        me, key = self._signing_key()
        # Canonical JSON escapes the quotes inside strings: this names the signer only as a key.
        mine = b'"device_id":' + json.dumps(me.device_id).encode()
        if any(mine not in p for p in payloads):
            raise ValueError("a payload names another device")
        return [key.sign(p).hex().encode() for p in payloads]

    def upgrade_signatures(self) -> int:
        """Once per vault, on open: the signatures of the earlier form that this device made
        are re-issued by its key; the others stay, shown as signed before verification
        existed (never trusted, never lost). Returns how many notes were re-issued."""
        if self.replica.local_get(_SIGNATURES_UPGRADED_KEY) is not None:
            return 0
        done = 0
        with self.transaction():
            ids = [r[0] for r in self._conn.execute("SELECT note_id FROM notes_view WHERE signed_at IS NOT NULL")]
            for note_id in ids:
                doc = self._docs.get(note_id)
                if doc is not None and self._reissue_legacy(doc, only_mine=True):
                    self._persist(note_id)
                    done += 1
            if done:
                self.replica.list_this_device()
            self.replica.local_put(_SIGNATURES_UPGRADED_KEY, str(done).encode())
        return done

    def set_section(self, note_id: str, key: str, text: str) -> None:
        """The typing path: a diff of old and new text applied as one small splice, on the
        note as it is now (an editor that shows a version uses `save_draft`)."""
        self.save_draft(note_id, base=None, sections={key: text})

    def draft_heads(self, note_id: str) -> list[bytes]:
        """The heads of a note as stored: where an editor that just read it stands."""
        self._doc(note_id, D.KIND_NOTE)
        return list(self._docs.heads_of(note_id))

    def save_draft(
        self,
        note_id: str,
        *,
        base: list[bytes] | None,
        sections: dict[str, str] | None = None,
        facts: SessionFacts | None = None,
        facts_before: SessionFacts | None = None,
    ) -> DraftSaved:
        """An editor's save, relative to the version it shows: the note at `base` (heads the
        editor got from `draft_heads` or its last save; None: the note as it is now) with
        `sections` and the facts it changed from `facts_before` to `facts`.

        When nothing else wrote to the note since `base`, this is the typing path of
        `set_section`. When something did (a sync merged another device's edits while the
        editor was open), the edits are made on the note as it was at `base` (of the facts,
        only the fields the editor changed) and merged: the other edits are kept, never
        overwritten. The result says where the editor's text now stands and,
        when the note holds more than the editor has shown, the note as merged (which may be
        signed with a signature conflict: signed elsewhere while these edits were typed).
        Where Automerge cannot fork the note at `base`, `_save_over_latest` keeps the text.
        """
        sections = sections or {}
        if facts is not None:
            require_plausible(facts)
        with self.transaction():
            doc = self._doc(note_id, D.KIND_NOTE)
            line = doc if not base or sorted(base) == sorted(doc.get_heads()) else self._branch(doc, base)
            if line is None:
                return self._save_over_latest(note_id, doc, base, sections, facts, facts_before)
            # The version the editor shows must be a draft. The note may have been signed on
            # another device since: these edits are then concurrent with the signing, as if
            # made offline and synced, and the merge marks a signature conflict to resolve.
            if D.note_status(line) != NoteStatus.DRAFT:
                raise SignedNoteLocked(note_id)
            keys = FORMAT_SECTIONS[D.note_format(line)]
            for key in sections:
                if key not in keys:
                    raise ValidationFailed([("section", f"{key} is not a section of this note's format")])
            now = self._now()
            texts = [D.splice_section(line, key, text, now) for key, text in sections.items()]
            facts_changed = False
            if facts is not None:
                if facts_before is not None:
                    facts = D.merge_facts(D.note_from_doc(line).facts, facts_before, facts)
                facts_changed = D.apply_facts(line, facts, now)
            if line is not doc:
                doc.merge(line)
                self._persist(note_id)
            elif facts_changed:
                self._persist(note_id)
            elif any(texts):
                self._docs.save_changes(note_id)
                # Only updated_at of the list row changes; the search entry is refreshed at
                # the next search, not on every keystroke.
                project_section_edit(self._conn, note_id, now.isoformat())
            new_base = line.get_heads()
            heads = doc.get_heads()
            diverged = sorted(heads) != sorted(new_base)
        return DraftSaved(base=new_base, heads=heads, merged=D.note_from_doc(doc) if diverged else None)

    def _branch(self, doc: Document, base: list[bytes]) -> Document | None:
        """The note as it was at `base`, to make an editor's edits where it made them. For
        heads this note does not have (not ours to see), the note as it is now. When fork_at
        fails at heads it has (its own defect: it panics with MissingOps on histories that
        typing on two devices with syncs between makes, automerge issue 1327, or reports a
        duplicate change), the version is rebuilt from the note's changes; None only if
        that fails too.

        Its changes carry this device's actor unless this device also wrote to the note
        after `base` (another window or command): one actor must never have two changes
        with the same sequence number, so those get an actor of their own."""
        branch = panic_or(None, doc.fork_at, list(base), also=(Exception,))
        if branch is None:
            if not self._has_heads(doc, base):
                return doc
            # fork_at's defect is in how it walks the history, not in the history: the
            # same version rebuilt from the note's own changes is exact (it costs a load
            # of the note, on this rare path only).
            branch = panic_or(None, D.version_from_changes, doc, list(base), also=(Exception,))
        if branch is None:
            return None
        later = doc.get_changes(list(base))
        ours = doc.get_actor()
        branch.set_actor(os.urandom(16) if any(c.actor_id == ours for c in later) else ours)
        return branch

    def _save_over_latest(
        self,
        note_id: str,
        doc: Document,
        base: list[bytes],
        sections: dict[str, str],
        facts: SessionFacts | None,
        facts_before: SessionFacts | None,
    ) -> DraftSaved:
        """An editor's save when the note cannot be forked at `base` (`_branch`): a path that
        cannot lose what was typed. The sections the editor changed from the version it shows
        are written over the note as it is now, each as a splice from the current text to
        the editor's; the facts it changed likewise. Edits made elsewhere since to those
        sections give way to the editor's text (they stay in the note's history), so the
        result says `unmerged`, for the clinician to review. The base stays where it was:
        the editor's text still stands on the version it shows, and its next save compares
        with that version again.
        """
        if D.note_status(doc) != NoteStatus.DRAFT:
            # Signed (here or elsewhere) since: edits join a signed note only as concurrent
            # ones, which takes the fork that failed. Nothing is written; the editor keeps
            # the text on screen.
            raise SignedNoteLocked(note_id)
        shown = D.note_from_doc(doc, base)  # a read at old heads, which does not fork
        keys = FORMAT_SECTIONS[D.note_format(doc)]
        for key in sections:
            if key not in keys:
                raise ValidationFailed([("section", f"{key} is not a section of this note's format")])
        now = utcnow()
        changed = {k: t for k, t in sections.items() if shown.sections.get(k, "") != t}
        wrote = [D.splice_section(doc, key, text, now) for key, text in changed.items()]
        if facts is not None:
            if facts_before is not None:
                facts = D.merge_facts(D.note_from_doc(doc).facts, facts_before, facts)
            wrote.append(D.apply_facts(doc, facts, now))
        if any(wrote):
            self._persist(note_id)
        return DraftSaved(base=list(base), heads=doc.get_heads(), merged=D.note_from_doc(doc), unmerged=True)

    @staticmethod
    def _has_heads(doc: Document, heads: list[bytes]) -> bool:
        # Reads at heads a document lacks return nothing rather than fail: ask its changes.
        changes = panic_or([], doc.get_changes, [], also=(Exception,))
        known = {c.hash for c in changes}
        return all(h in known for h in heads)

    def update_facts(self, note_id: str, facts: SessionFacts) -> ProgressNote:
        """Writes the facts that differ, on the note as it is now."""
        with self.transaction():
            self.save_draft(note_id, base=None, facts=facts)
            return self.get_note(note_id)

    def get_note(self, note_id: str) -> ProgressNote:
        """The note as the record holds it. A note whose signature conflict was settled by an
        addendum reads as its standing signature covers it (the edits are in the addendum)."""
        doc = self._doc(note_id, D.KIND_NOTE)
        note = D.note_from_doc(doc)
        if not D.signed_entries(doc):
            return note
        state = self._state_of(doc, note)
        shown = state.shown
        if shown is None or shown.content_hash == state.current_hash:
            return note
        return note.model_copy(
            update={k: getattr(shown.note, k) for k in ("client_id", "format", "sections", "facts")}
        )

    def signed_version(self, note_id: str) -> ProgressNote | None:
        """The note as signed: the content its standing signature covers (kept in the
        signature itself), or for a note signed before verification existed, as it was at
        its signature's heads. None when unsigned."""
        doc = self._doc(note_id, D.KIND_NOTE)
        note = D.note_from_doc(doc)
        state = self._state_of(doc, note)
        if state.shown is not None and state.shown.entry_id != LEGACY_ENTRY:
            return state.shown.note
        standing = state.standing() or [v for v in state.versions if v.verified]
        if standing:
            return standing[-1].note
        if note.signature is None:
            return None
        return self._at_signature(doc, note.signature)

    @staticmethod
    def _at_signature(doc: Document, signature: Signature) -> ProgressNote | None:
        try:
            heads = [bytes.fromhex(h) for h in signature.heads]
        except ValueError:
            return None
        at = D.note_from_doc(doc, heads)
        return at.model_copy(update={"status": NoteStatus.SIGNED, "signature": signature})

    def notes_for_client(self, client_id: str) -> list[NoteRow]:
        self._sync_late_entry_hours()
        rows = self._conn.execute(
            _NOTE_ROW_SQL + " WHERE client_id = ? "
            "ORDER BY date_of_service DESC, start_time DESC, note_id",
            (client_id,),
        ).fetchall()
        return [_note_row(r) for r in rows]

    def verify_rows(self, rows: list[NoteRow]) -> list[NoteRow]:
        """The rows with each note's signature state (`signature_status`): what a list that
        shows notes as signed reads. The states were verified when each note was written or
        merged and are read here in one indexed query (store/signature_index.py); "pending"
        for one not computed yet, never shown as signed."""
        signed = [r.note_id for r in rows if not _plain_draft(r)]
        statuses = self.verified_statuses(signed)
        return [
            replace(r, signature_status=statuses.get(r.note_id, SignatureStatus.UNSIGNED.value)) for r in rows
        ]

    def verified_statuses(self, note_ids: list[str]) -> dict[str, str]:
        """note id -> its stored signature status (verified when the note was written or
        merged); "pending" while it is still to be computed (`settle_signature_states`)."""
        return self.replica.signatures.statuses(note_ids) if note_ids else {}

    def settle_signature_states(self, limit: int = 200, first: list[str] | None = None) -> int:
        """Computes up to `limit` signature states still pending (a vault from before states
        were stored, documents stored in bulk, notes whose signer's trust changed), those
        among `first` before others, in one transaction. Returns how many remain: callers
        repeat it off the first screen until none do."""
        with self.transaction():
            return self.replica.signatures.settle(limit, first=first)

    def pending_signature_states(self) -> int:
        """How many notes' signature states are still to be computed."""
        return self.replica.signatures.pending_count()

    def recheck_signatures(self, *, full: bool = False, batch: int = 200, workers: bool = False) -> None:
        """Brings every stored signature state up to date, in transactions of `batch` notes:
        those pending and those whose document changed by a path that bypassed the store (an
        older build); with `full`, every note that may be signed is verified again from its
        document (`notewell check --full`). `workers`: many pending notes are verified on
        worker processes too (store/check_reading.py)."""
        index = self.replica.signatures
        stale = index.stale()
        if full or stale:
            with self.transaction():
                if full:
                    index.mark_all_pending()
                index.mark_pending(stale)
        if workers:
            self._settle_on_workers()
        while index.pending_count() and self.settle_signature_states(batch):
            pass

    def _settle_on_workers(self) -> None:
        """The pending states computed on worker processes, one transaction per window; what
        they could not read, or what changed meanwhile, stays pending for the store's own
        settling."""
        index = self.replica.signatures
        pending = index.pending_ids()
        if len(pending) < check_reading.PARALLEL_FROM:
            return
        keys = worker_keys(self.replica.device_trust())
        for window in check_reading.states_on_workers(self._docs, pending, keys):
            read = [(note_id, got) for note_id, got in window if got is not None]
            with self.transaction():
                for note_id, (heads, state) in read:
                    index.expect_prepared(note_id, heads, state, keys)
                index.settle_prepared([note_id for note_id, _ in read])

    def list_notes(self, status: NoteStatus | None = None) -> list[NoteRow]:
        """Every note (or those with `status`), newest first: for queues across clients."""
        self._sync_late_entry_hours()
        sql, args = _NOTE_ROW_SQL, ()
        if status is not None:
            sql, args = sql + " WHERE status = ?", (NoteStatus(status).value,)
        rows = self._conn.execute(sql + " ORDER BY date_of_service DESC, start_time DESC, note_id", args)
        return [_note_row(r) for r in rows.fetchall()]

    def documented_session_days(self, days: Iterable[tuple[str, date]]) -> set[tuple[str, date]]:
        """Those of (client id, date) `days` on which the client has a progress note that is
        not entered in error: one indexed lookup per day asked about (the To do list's
        missing-note check), never a read of every note."""
        found: set[tuple[str, date]] = set()
        for client_id, on in days:
            row = self._conn.execute(
                "SELECT 1 FROM notes_view INDEXED BY notes_view_by_client WHERE client_id = ? "
                "AND date_of_service = ? AND status != ? LIMIT 1",
                (client_id, on.isoformat(), NoteStatus.ENTERED_IN_ERROR.value),
            ).fetchone()
            if row is not None:
                found.add((client_id, on))
        return found

    # --- compliance and signing -------------------------------------------------

    # --- snippets: the clinician's phrases, one record document (store/snippets.py) -------

    def snippets(self) -> dict[str, str]:
        """trigger -> phrase, sorted by trigger; {} before the first snippet."""
        if self._docs.kind(snippets.SNIPPETS_ID) != snippets.KIND_SNIPPETS:
            return {}
        return snippets.read_snippets(self._doc(snippets.SNIPPETS_ID, snippets.KIND_SNIPPETS))

    def save_snippet(self, trigger: str, text: str, *, replaces: str | None = None) -> None:
        """Adds or changes a snippet (renaming `replaces`); ValidationFailed for a bad one."""
        with self.transaction():
            if self._docs.kind(snippets.SNIPPETS_ID) is None:
                doc = snippets.new_snippets_doc(D.actor_for(self._device_id))
                snippets.write_snippet(doc, trigger, text)
                self._docs.insert(snippets.SNIPPETS_ID, snippets.KIND_SNIPPETS, doc)
                return
            doc = self._doc(snippets.SNIPPETS_ID, snippets.KIND_SNIPPETS)
            if snippets.write_snippet(doc, trigger, text, replaces=replaces):
                self._docs.save_changes(snippets.SNIPPETS_ID)

    def delete_snippet(self, trigger: str) -> None:
        with self.transaction():
            if self._docs.kind(snippets.SNIPPETS_ID) != snippets.KIND_SNIPPETS:
                return
            if snippets.delete_snippet(self._doc(snippets.SNIPPETS_ID, snippets.KIND_SNIPPETS), trigger):
                self._docs.save_changes(snippets.SNIPPETS_ID)

    def compliance(self, note_id: str) -> list[checklist.ComplianceProblem]:
        """The checklist problems of the note (store.compliance.check_note)."""
        return self._check(self.get_note(note_id))

    def _check(self, note: ProgressNote) -> list[checklist.ComplianceProblem]:
        client = None
        if self._docs.kind(note.client_id) == D.KIND_CLIENT:
            client = self.get_client(note.client_id)
        return checklist.check_note(note, client, credentials=self._settings().credentials)

    def _require_complete(self, note: ProgressNote) -> None:
        # Warnings are advice; only blocking problems stop a signature.
        problems = checklist.blocking(self._check(note))
        if problems:
            missing = checklist.missing_labels(problems) or sorted({p.element for p in problems})
            raise ComplianceIncomplete(note.id, missing)

    def sign_note(self, note_id: str, *, expected_heads: list[bytes] | None = None) -> ProgressNote:
        """Signs a complete draft: signer, credentials, time, device, heads and content hash.

        With `expected_heads` (the version the clinician was shown), a note that has changed
        since (a sync) is not signed: `NoteChangedMeanwhile`."""
        with self.transaction():
            doc = self._doc(note_id, D.KIND_NOTE)
            if expected_heads is not None and sorted(expected_heads) != sorted(doc.get_heads()):
                raise NoteChangedMeanwhile(note_id)
            note = D.note_from_doc(doc)
            if note.status != NoteStatus.DRAFT:
                raise SignedNoteLocked(note_id)
            self._require_complete(note)
            signer = self._signer()
            now = self._now()
            entry_id, envelope = self._seal_note_signature(note, signer, now)
            with doc.transaction() as tx:
                D.put_signed_entry(tx, entry_id, envelope)
                D.put_status(tx, NoteStatus.SIGNED)
                D.put_updated_at(tx, now)
            self._persist(note_id)
            self.replica.list_this_device()  # the list carries the key that verifies it
            self._audit(Event.NOTE_SIGNED, note, note_id=note_id, signed_at=now.isoformat())
            return D.note_from_doc(doc)

    def _audit(self, event: Event, note: ProgressNote, **details) -> None:
        # Inside the caller's transaction: the entry and the change commit together.
        if self.audit is not None:
            self.audit.append(event, client_id=note.client_id, **details)

    # --- signatures by key (store/signing.py) ---------------------------------------

    def _signing_key(self):
        """This device's identity and private key; a bare store (tests, benchmarks) gets
        an identity of its own on first use, as a vault has from its creation."""
        me = self.replica.identity()
        if me is None:
            ensure_identity(self.replica, "this device")
            self.replica.forget_identity()
            me = self.replica.identity()
        assert me is not None
        if self._key is None or self._key[0] != me.device_id:
            self._key = (me.device_id, me.private_key())
        return me, self._key[1]

    def _seal_note_signature(
        self, note: ProgressNote, signer: ClinicianSettings, now: datetime, supersedes: list[str] | None = None
    ) -> tuple[str, str]:
        me, key = self._signing_key()
        entry_id = signing.new_entry_id()
        payload = signing.note_payload(
            note, entry_id=entry_id, signer=signer.clinician_name.strip(), credentials=signer.credentials.strip(),
            signed_at=now, device_id=me.device_id, supersedes=supersedes or [],
        )
        return entry_id, signing.seal(key, payload)

    def _seal_addendum(
        self, note_id: str, text: str, reason: str, signer: ClinicianSettings, at: datetime, amends: SignedVersion | None,
        legacy_hash: str | None = None,
    ) -> tuple[str, str]:
        me, key = self._signing_key()
        entry_id = signing.new_entry_id()
        payload = signing.addendum_payload(
            entry_id=entry_id, note_id=note_id, text=text, reason=reason, signer=signer.clinician_name.strip(),
            credentials=signer.credentials.strip(), signed_at=at, device_id=me.device_id,
            amends=amends.content_hash if amends is not None else (legacy_hash or ""),
            amends_signature=amends.entry_id if amends is not None else LEGACY_ENTRY,
        )
        return entry_id, signing.seal(key, payload)

    def _state_of(self, doc: Document, note: ProgressNote | None = None) -> SignatureState:
        note_id = D.doc_id_of(doc)
        return signature_state(doc, self.replica.device_trust(), self.replica.kept_signed_entries(note_id), note)

    def signature_state(self, note_id: str) -> SignatureState:
        """The note's signature state, verified with the keys of the trusted devices
        (store/signature_state.py): what every read that shows a note as signed asks."""
        return self._state_of(self._doc(note_id, D.KIND_NOTE))

    def signature_findings(self) -> list[SignatureState]:
        """Every note whose signature needs the clinician: conflicts and tamper findings (the
        To do list, `check`), read from the states stored when each note was written or
        merged: one indexed query, nothing verified, no document loaded. A state still
        pending is not a finding yet (`pending_signature_states` says how many)."""
        return [
            SignatureState(note_id=note_id, status=SignatureStatus(status), shown=None, findings=findings)
            for note_id, status, findings in self.replica.signatures.attention()
        ]

    def signature_attention_rows(self) -> list[tuple[str, str, date | None, str]]:
        """(note id, client's name, date of service, "conflict" or "tampered") for the To do
        list, from the stored states and the lists' tables (no document loaded)."""
        return [
            (note_id, name, date.fromisoformat(on) if on else None, status)
            for note_id, name, on, status in self.replica.signatures.attention_rows()
        ]

    def _amending_time(self, doc: Document) -> tuple[datetime, dict]:
        """The time for an addendum or mark on a signed note: this device's clock, but never
        earlier than the signature it amends. A clock behind the signing device's (a wrong
        clock here or there) would otherwise date the correction before what it corrects.
        Returns the time and, when the clock was behind, audit details that record it."""
        now = self._now()
        signature = D.note_from_doc(doc).signature
        if signature is None or now >= signature.signed_at:
            return now, {}
        return signature.signed_at, {"clock_disagreed": True, "device_clock": now.isoformat()}

    def add_addendum(self, note_id: str, text: str, reason: str) -> ProgressNote:
        """A dated, signed correction appended to a signed note; the original is untouched."""
        with self.transaction():
            doc = self._doc(note_id, D.KIND_NOTE)
            if D.note_status(doc) != NoteStatus.SIGNED:
                raise NoteNotSigned(f"Note {note_id} is not signed; an addendum is only for signed notes.")
            signer = self._signer()
            if not text.strip():
                raise ValidationFailed([("text", "must not be blank")])
            if not reason.strip():
                raise ValidationFailed([("reason", "must not be blank")])
            at, clock = self._amending_time(doc)
            note = D.note_from_doc(doc)
            state = self._state_of(doc, note)
            amends = state.shown or (state.standing()[-1] if state.standing() else None)
            legacy = note.signature.content_hash if amends is None and note.signature is not None else None
            entry_id, envelope = self._seal_addendum(note_id, text, reason, signer, at, amends, legacy)
            with doc.transaction() as tx:
                D.put_signed_entry(tx, entry_id, envelope)
                D.put_updated_at(tx, at)
            self._persist(note_id)
            self.replica.list_this_device()
            self._audit(Event.ADDENDUM_ADDED, D.note_from_doc(doc), note_id=note_id, addendum_id=entry_id, **clock)
            return D.note_from_doc(doc)

    def mark_entered_in_error(self, note_id: str, reason: str) -> ProgressNote:
        """Keeps the note, readable and exported, with status entered_in_error."""
        with self.transaction():
            doc = self._doc(note_id, D.KIND_NOTE)
            if D.note_status(doc) == NoteStatus.ENTERED_IN_ERROR:
                return D.note_from_doc(doc)
            signer = self._signer()
            now, clock = self._amending_time(doc)
            eie = validated(
                EnteredInError,
                {"reason": reason.strip(), "marked_at": now, "marked_by": signer.clinician_name.strip()},
            )
            with doc.transaction() as tx:
                D.write_entered_in_error(tx, eie)
                D.put_status(tx, NoteStatus.ENTERED_IN_ERROR)
                D.put_updated_at(tx, now)
            self._persist(note_id)
            marked = D.note_from_doc(doc)
            self._audit(Event.ENTERED_IN_ERROR, marked, note_id=note_id, **clock)
            return marked

    def resolve_signature_conflict(self, note_id: str, choice: str) -> ProgressNote:
        """Settles a signature conflict, once, as a signed resolution (store/signing.py).

        "addendum": the earliest standing signature stands (the same one whichever device
        resolves, so two devices resolving before they sync agree); the other signed
        versions and the edits made after signing go into a signed addendum; the content the
        note now holds is accepted as settled. "resign": the note as it now reads is signed
        anew, superseding every standing signature. Nothing is removed: every earlier
        signature stays in the note, readable and verifiable.
        """
        with self.transaction():
            if choice not in RESOLUTION_CHOICES:
                raise ValidationFailed([("choice", "must be addendum or resign")])
            doc = self._doc(note_id, D.KIND_NOTE)
            note = D.note_from_doc(doc)
            state = self._state_of(doc, note)
            if state.status != SignatureStatus.CONFLICT:
                raise NoSignatureConflict(note_id)
            standing = state.standing()
            signer = self._signer()
            if choice == "resign":
                self._require_complete(note)
            now = self._now()
            at = max(now, max(v.signature.signed_at for v in standing))
            me, key = self._signing_key()
            settles = [v.entry_id for v in standing]
            entries: list[tuple[str, str]] = []
            addendum_id = None
            if choice == "addendum":
                keep = min(standing, key=lambda v: (v.signature.signed_at, v.entry_id))
                others = [v.note for v in standing if v.content_hash != keep.content_hash]
                if state.current_hash != keep.content_hash:
                    others.append(note)
                text = "\n\n".join(_concurrent_edits_text(keep.note, other) for other in others)
                addendum_id, envelope = self._seal_addendum(
                    note_id, text or "Edits were made on another device while the note was being signed.",
                    "Edits made on another device while the note was being signed.", signer, at, keep,
                )
                entries.append((addendum_id, envelope))
                keeps = keep.entry_id
            else:
                keeps, envelope = self._seal_note_signature(note, signer, at, supersedes=settles)
                entries.append((keeps, envelope))
            resolution_id = signing.new_entry_id()
            payload = signing.resolution_payload(
                entry_id=resolution_id, note_id=note_id, choice=choice, keeps=keeps, settles=settles,
                settled_content=[state.current_hash, *(v.content_hash for v in standing)], addendum=addendum_id,
                signer=signer.clinician_name.strip(), credentials=signer.credentials.strip(), signed_at=at,
                device_id=me.device_id,
            )
            entries.append((resolution_id, signing.seal(key, payload)))
            resolution = SignatureConflictResolution(
                choice=choice, resolved_at=at, resolved_by=signer.clinician_name.strip(), device_id=me.device_id
            )
            with doc.transaction() as tx:
                for entry_id, envelope in entries:
                    D.put_signed_entry(tx, entry_id, envelope)
                D.write_resolution(tx, resolution)
                D.put_status(tx, NoteStatus.SIGNED)
                D.put_updated_at(tx, at)
            self._persist(note_id)
            self.replica.list_this_device()
            self._audit(Event.SIGNATURE_CONFLICT_RESOLVED, note, note_id=note_id, choice=choice)
            return self.get_note(note_id)

    def previous_signatures(self, note_id: str) -> list[Signature]:
        """Signatures settled by a later signature or resolution, oldest first (and those of
        a vault from before signatures were verified)."""
        doc = self._doc(note_id, D.KIND_NOTE)
        settled = [v.signature for v in self._state_of(doc).versions if v.superseded]
        return D.previous_signatures(doc) + settled

    # --- search -----------------------------------------------------------------

    def search(self, query: str, limit: int = 50) -> list[RecordHit]:
        match = fts_query(query)
        if match is None or limit <= 0:
            return []
        if self._conn.execute("SELECT 1 FROM record_fts_pending LIMIT 1").fetchone():
            with self.transaction():
                refresh_pending_fts(self._conn, self._docs.get)
        # Newest first (an entry is re-indexed, so gets a higher rowid, whenever its document
        # changes). Ranking by bm25 scores every match before LIMIT applies: with 10,000
        # notes sharing common words that cost 10-15 ms a query against under 1 ms this way.
        rows = self._conn.execute(
            f"SELECT doc_id, kind, client_id, title, {snippet_sql('record_fts', 4)} "
            "FROM record_fts WHERE record_fts MATCH ? ORDER BY rowid DESC LIMIT ?",
            (match, limit),
        ).fetchall()
        return [RecordHit(*r) for r in rows]

    # --- checks -----------------------------------------------------------------

    def check(self) -> list[str]:
        """Ways the derived tables differ from the stored documents; [] when in step."""
        self._sync_late_entry_hours()
        problems = projection_mismatches(self._conn, check_reading.ExpectedRowsReader(self._docs, self._late_hours()))
        return problems + self.signature_problems()

    def check_documents(self, *, full: bool = False, workers: bool = False) -> tuple[list[str], int, int]:
        """`check`'s comparison of the derived tables with the documents, skipping documents
        verified before and unchanged since (store/check_record.py) unless `full`; records
        what it verified. `workers`: many documents to read are read on worker processes
        too (store/check_reading.py). (problems, documents read, documents unchanged since
        last time)."""
        self._sync_late_entry_hours()
        record = CheckRecord(self._conn, self._late_hours(), full=full)
        problems = projection_mismatches(
            self._conn, check_reading.ExpectedRowsReader(self._docs, self._late_hours(), workers=workers),
            unchanged=record.unchanged, matched=record.matched,
        )
        record.save()
        return problems, record.read_count, record.unchanged_count

    def signature_problems(self, *, workers: bool = False) -> list[str]:
        """One line per note whose signature fails verification: the note and what failed.
        Read from the stored states, after computing those still pending (and any whose
        document changed by a path that bypassed the store; with `workers`, many of them on
        worker processes too, as `recheck_signatures` says)."""
        try:
            self.recheck_signatures(workers=workers)
        except VaultError:
            pending = self.pending_signature_states()
            return [f"{pending} note(s) could not have their signatures checked now (the record is busy); "
                    "run the check again."] if pending else []
        return [
            f"note {state.note_id} fails signature verification: {finding}"
            for state in self.signature_findings()
            if state.status == SignatureStatus.TAMPERED
            for finding in state.findings
        ]

    def rebuild_projections(self) -> None:
        with self.transaction():
            rebuild_all(self._conn, self._docs.get, late_entry_hours=self._late_hours())


# Up to this many notes, `verified_statuses` looks each up rather than scanning every row.
_FEW_NOTES = 500


def _concurrent_edits_text(signed: ProgressNote, merged: ProgressNote) -> str:
    """The addendum text for a conflict: each section and fact that differs from the signed one."""
    parts = []
    for key in merged.section_keys:
        if merged.sections.get(key, "") != signed.sections.get(key, ""):
            parts.append(f"{section_title(key)}, as edited on another device:\n{merged.sections.get(key, '')}")
    a = D.canonical_facts(signed.facts)
    b = D.canonical_facts(merged.facts)
    changed = [k for k in b if a.get(k) != b.get(k) and k != "minutes"]
    for k in changed:
        parts.append(f"Session fact {k.replace('_', ' ')}, as edited on another device: {D.canonical_json(b[k]).decode()}")
    return "\n\n".join(parts) or "Edits were made on another device while the note was being signed."
