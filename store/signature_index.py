"""Each note's signature state, stored when the note is written or merged.

Verifying a note costs a document load and an Ed25519 check per signed entry (store/signing.py,
store/signature_state.py): about 14-27 ms a note, 142 s for a vault of 10,000 signed notes.
The lists (a client's timeline) and the To do queue must not pay that on the first screen,
so the state is computed where the document is already loaded, when it enters the record,
and stored in a local table:

    signature_states    note_id, heads (the note's heads it was computed at), status
                        (store/signature_state.py's values, or "pending"), findings (JSON,
                        one sentence each, no note text); indexed by status
    signature_signers   (device_id, note_id): every device a note's signed entries name,
                        so a change of one device's trust finds the notes it signed

One choke point: the record's write transactions call `after_writes` with the ids the
transaction wrote, inside it, before COMMIT (store/database.py `before_commit`). Every way a
note document enters record.db goes through a write transaction: the clinician's own writes
(sign, addendum, edit, resolve, import) and every document from another device (the intake,
store/replica.py: direct sync, mailbox, import). A note whose document is at hand is
computed at once; one stored in bulk without being loaded (a first sync's whole documents,
a large import) is marked pending and computed later in bounded batches (`settle`), never
as it is listed.

The tables are local: never synced, never exported, written only by this code in this
device's record.db (SQLCipher). Nothing from another device can set a state: a document's
bytes are the only thing that arrives, and its state is derived here from them. A state is
believed only while its heads are the document's stored heads; otherwise it reads as
pending, so a note whose document changed is never shown as signed on an old state.

The device list: the states hold for the devices trusted when they were computed. The trust
they were computed with is kept (`TRUST_KEY`: device id -> hash of its public key); when it
changes, only the notes whose signed entries name a device whose trust changed are marked
pending (`signature_signers`), and settled in bounded batches.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from store import documents as D
from store.automerge_guard import panic_or
from store.device_list import DEVICE_LIST_ID, DeviceTrust, TrustedDevice
from store.docstore import DocStore, pack_heads
from store.models import NoteStatus
from store.signature_state import SignatureState, SignatureStatus, signature_state

PENDING = "pending"  # not computed yet (or its signers' trust changed): never shown as signed
# The trust the stored states were computed with (local_kv).
TRUST_KEY = "signature_states.trust.v1"
ATTENTION = (SignatureStatus.CONFLICT.value, SignatureStatus.TAMPERED.value)
DEFAULT_BATCH = 200  # notes per transaction when settling: a few seconds at most on a busy machine
_CHUNK = 500  # ids per IN (...) list (SQLite's bound on variables is 999 in older builds)


def migrate_v4(conn) -> None:
    """The tables, and every note that may be signed marked pending: a vault made before
    states were stored computes them once, in bounded batches after it opens (`settle`)."""
    conn.execute(
        "CREATE TABLE signature_states(note_id TEXT PRIMARY KEY, heads BLOB NOT NULL, "
        "status TEXT NOT NULL, findings TEXT NOT NULL DEFAULT '[]')"
    )
    conn.execute("CREATE INDEX signature_states_status ON signature_states(status, note_id)")
    conn.execute(
        "CREATE TABLE signature_signers(device_id TEXT NOT NULL, note_id TEXT NOT NULL, "
        "PRIMARY KEY(device_id, note_id)) WITHOUT ROWID"
    )
    conn.execute("CREATE INDEX signature_signers_note ON signature_signers(note_id)")
    conn.execute(
        "INSERT OR IGNORE INTO signature_states(note_id, heads, status) "
        "SELECT note_id, x'', ? FROM notes_view "
        "WHERE status != 'draft' OR signed_at IS NOT NULL OR signature_conflict "
        "UNION SELECT note_id, x'', ? FROM signature_kept",
        (PENDING, PENDING),
    )
    # The per-read cache these states replace (verified when listed; any change of the
    # device list emptied it).
    conn.execute("DROP TABLE IF EXISTS signature_checks")


def _chunks(ids: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i:i + _CHUNK]


def _trust_fingerprints(trust: DeviceTrust) -> dict[str, str]:
    return {
        device_id: hashlib.sha256(
            d.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        ).hexdigest()
        for device_id, d in trust.devices.items()
    }


def _signers(doc, kept: dict[str, str], entries: dict[str, str] | None = None) -> set[str]:
    """Every device id a note's signed entries (and those kept here) name, as claimed
    (`entries`: the signed entries when the caller has read them already)."""
    out: set[str] = set()
    if entries is None:
        entries = D.signed_entries(doc)
    for envelope in [*entries.values(), *kept.values()]:
        payload = D.envelope_payload(envelope)
        device_id = payload.get("device_id") if isinstance(payload, dict) else None
        if isinstance(device_id, str) and device_id:
            out.add(device_id[:128])
    legacy = D.legacy_signature(doc)
    if legacy is not None and legacy.device_id:
        out.add(legacy.device_id[:128])
    return out


# --- states computed where a document received whole is read ----------------------------
#
# A first sync or a mailbox bundle brings thousands of notes whole; each is loaded and read
# once for its rows (store/projections.py `prepare_whole`, on worker processes). Computing
# its state there, with the same keys, saves loading and reading it again to settle it. The
# keys travel as plain bytes (a worker rebuilds the trust); nothing secret is among them.

WorkerKeys = tuple  # (this device's id, ((device id, name, raw Ed25519 public key), ...))


def worker_keys(trust: DeviceTrust) -> WorkerKeys:
    """The trusted devices' public keys as plain values, for `trust_of_keys` in a worker."""
    return (trust.me, tuple(sorted(
        (device_id, d.name, d.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
        for device_id, d in trust.devices.items()
    )))


_REBUILT: dict[WorkerKeys, DeviceTrust] = {}


def trust_of_keys(keys: WorkerKeys) -> DeviceTrust:
    """The trust `worker_keys` described (its keys only: what verifying a signature needs)."""
    found = _REBUILT.get(keys)
    if found is None:
        me, devices = keys
        found = DeviceTrust(me, {
            device_id: TrustedDevice(device_id, name, ed25519.Ed25519PublicKey.from_public_bytes(raw))
            for device_id, name, raw in devices
        })
        _REBUILT.clear()  # one trust at a time: a worker serves one record
        _REBUILT[keys] = found
    return found


def _key_fingerprints(keys: WorkerKeys) -> dict[str, str]:
    return {device_id: hashlib.sha256(raw).hexdigest() for device_id, _name, raw in keys[1]}


def prepared_state(doc, note, trust: DeviceTrust) -> tuple[SignatureState, tuple | None]:
    """(the note's state with `trust`, what `SignatureIndex.expect_prepared` takes: None for
    an unsigned note, else (status, findings, signers)). Nothing kept here is known to the
    reader: a note with kept entries is settled again in the store (`_take_prepared`)."""
    state = signature_state(doc, trust, None, note=note)
    if state.status == SignatureStatus.UNSIGNED:
        return state, None
    return state, (state.status.value, tuple(state.findings), tuple(sorted(_signers(doc, {}, state.entries))))


def states_of_stored(items: list[tuple[str, bytes]], keys: WorkerKeys) -> list[tuple | None]:
    """A worker's part of `check --full`'s signature pass (store/check_reading.py): for each
    stored note's bytes, (its heads, what `SignatureIndex.expect_prepared` takes) verified with
    the trust `keys` describe; None for bytes that do not load or read as no note, which the
    store then settles itself as before. Pure."""
    from automerge.core import Document

    trust = trust_of_keys(keys)

    def one(data: bytes) -> tuple | None:
        doc = Document.load(data)
        if D.note_doc_kind(doc) != D.KIND_NOTE:
            return None
        with D.envelopes_parsed_once():
            _state, prepared = prepared_state(doc, D.note_from_doc(doc), trust)
        return doc.get_heads(), prepared

    # Any failure, a panic included: that note is settled in the store instead.
    return [panic_or(None, one, data, also=(Exception,)) for _doc_id, data in items]


class SignatureIndex:
    """The stored states of one record.db (see the module docstring). Every method runs on
    the record's connection; the writing ones inside the caller's write transaction."""

    def __init__(
        self,
        conn,
        docs: DocStore,
        *,
        trust: Callable[[], DeviceTrust],
        kept: Callable[[str], dict[str, str]],
        local_get: Callable[[str], bytes | None],
        local_put: Callable[[str, bytes], None],
    ) -> None:
        self._conn = conn
        self._docs = docs
        self._trust = trust
        self._kept = kept
        self._local_get = local_get
        self._local_put = local_put
        # Set when this device's own trust may have changed without a document written
        # (a vouch kept locally before any device list exists).
        self._trust_touched = False
        # States computed where documents received whole were read (`expect_prepared`).
        self._prepared: dict[str, tuple[bytes, tuple | None, WorkerKeys]] = {}

    # --- writing (inside the caller's transaction) ------------------------------------

    def trust_touched(self) -> None:
        self._trust_touched = True

    def after_writes(self, written: frozenset[str]) -> None:
        """The choke point: the states of the notes a transaction wrote, before it commits."""
        # A transaction may write 100,000 notes (an import): every lookup here is one query
        # per few hundred ids, and nothing is linear in the ids per id.
        ids = sorted(written)
        kinds = self._kinds(ids)
        notes = [i for i in ids if kinds.get(i) == D.KIND_NOTE]
        if not notes and DEVICE_LIST_ID not in written and not self._trust_touched:
            return
        plain = self._plain_drafts(notes)
        if plain:  # the typing path: a draft stays a draft, no state to keep
            self._forget([i for i in notes if i in plain])
        rest = [i for i in notes if i not in plain]
        if rest or DEVICE_LIST_ID in written or self._trust_touched:
            self.sync_trust()
        now = _trust_fingerprints(self._trust()) if self._prepared else {}
        bulk: list[str] = []
        for note_id in rest:
            doc = self._docs.cached(note_id)
            if doc is None or pack_heads(doc.get_heads()) != pack_heads(self._docs.heads_of(note_id)):
                # Stored in bulk, not loaded here: the state its reader computed, else `settle`.
                if not self._take_prepared(note_id, now):
                    bulk.append(note_id)
            else:
                self.record(note_id, doc)
        if bulk:
            self._mark_pending(bulk)
        for note_id in plain:
            self._prepared.pop(note_id, None)

    def _kinds(self, ids: list[str]) -> dict[str, str]:
        """doc id -> kind of the stored documents among `ids` (from the table, as
        `DocStore.kind`: a cached document may be one whose insert was rolled back)."""
        out: dict[str, str] = {}
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            out.update(self._conn.execute(
                f"SELECT doc_id, kind FROM documents INDEXED BY documents_heads WHERE doc_id IN ({marks})", chunk
            ).fetchall())
        return out

    def _plain_drafts(self, notes: list[str]) -> set[str]:
        """Those of `notes` that are drafts with no signature of any form and nothing kept:
        unsigned, cheaply. A document stored in bulk (not loaded here) is judged by the list
        row projected from it in the same transaction, as the migration and `check --full`
        judge: a draft with no signature time and no structural finding (the projection reads
        every signed entry without keys, store/projections.py), a few hundred at a time."""
        out: set[str] = set()
        bulk: list[str] = []
        for note_id in notes:
            doc = self._docs.cached(note_id)
            if doc is None:
                bulk.append(note_id)
            elif (
                D.note_status(doc) == NoteStatus.DRAFT
                and not D.signed_entries(doc)
                and D.legacy_signature(doc) is None
                and not self._kept(note_id)
            ):
                out.add(note_id)
        for chunk in _chunks(bulk):
            marks = ",".join("?" * len(chunk))
            drafts = {r[0] for r in self._conn.execute(
                f"SELECT note_id FROM notes_view WHERE note_id IN ({marks}) "
                "AND status = 'draft' AND signed_at IS NULL AND NOT signature_conflict", chunk
            )}
            if drafts:
                kept = {r[0] for r in self._conn.execute(
                    f"SELECT DISTINCT note_id FROM signature_kept WHERE note_id IN ({marks})", chunk
                )}
                out |= drafts - kept
        return out

    def record(self, note_id: str, doc) -> str:
        """Computes and stores the note's state from its document (verified with the trusted
        devices' keys); returns the status."""
        kept = self._kept(note_id)
        state = signature_state(doc, self._trust(), kept)
        if state.status == SignatureStatus.UNSIGNED:
            self._forget([note_id])
            return state.status.value
        self._store(note_id, pack_heads(doc.get_heads()), state.status.value, state.findings, _signers(doc, kept))
        return state.status.value

    def _store(self, note_id: str, heads: bytes, status: str, findings: Iterable[str], signers: Iterable[str]) -> None:
        self._conn.execute(
            "INSERT INTO signature_states(note_id, heads, status, findings) VALUES (?,?,?,?) "
            "ON CONFLICT(note_id) DO UPDATE SET heads = excluded.heads, status = excluded.status, "
            "findings = excluded.findings",
            (note_id, heads, status, json.dumps(list(findings))),
        )
        self._conn.execute("DELETE FROM signature_signers WHERE note_id = ?", (note_id,))
        self._conn.executemany(
            "INSERT INTO signature_signers(device_id, note_id) VALUES (?, ?)",
            [(device_id, note_id) for device_id in sorted(signers)],
        )

    def expect_prepared(self, note_id: str, heads: list[bytes], state: tuple | None, keys: "WorkerKeys") -> None:
        """A state computed where a document received whole was read (`prepared_state`, on a
        worker process, with the trust `keys` describe): stored by `after_writes` in place of
        "pending" when the note is stored with exactly those heads, nothing is kept here for
        it, and every device its entries name is trusted with the same key as when it was
        computed. Otherwise it is ignored and the note is settled as before."""
        self._prepared[note_id] = (pack_heads(heads), state, keys)

    def settle_prepared(self, note_ids: list[str]) -> int:
        """Stores the states `expect_prepared` was given for these notes, where they still
        hold (`_take_prepared`'s rules); the others stay as they were, to be settled from
        their documents. Returns how many were stored."""
        self.sync_trust()
        now = _trust_fingerprints(self._trust())
        return sum(1 for note_id in note_ids if self._take_prepared(note_id, now))

    def pending_ids(self) -> list[str]:
        return [r[0] for r in self._conn.execute(
            "SELECT note_id FROM signature_states INDEXED BY signature_states_status WHERE status = ? "
            "ORDER BY note_id", (PENDING,))]

    def _take_prepared(self, note_id: str, now: dict[str, str]) -> bool:
        got = self._prepared.pop(note_id, None)
        if got is None:
            return False
        heads, state, keys = got
        if heads != pack_heads(self._docs.heads_of(note_id)) or self._kept(note_id):
            return False
        if state is None:  # read as unsigned, with no entry of any form
            self._forget([note_id])
            return True
        status, findings, signers = state
        then = _key_fingerprints(keys)
        if any(then.get(d) != now.get(d) for d in signers):
            return False  # a signer's trust changed since: computed again by `settle`
        self._store(note_id, heads, status, findings, signers)
        return True

    def _forget(self, note_ids: list[str]) -> None:
        for chunk in _chunks(note_ids):
            marks = ",".join("?" * len(chunk))
            self._conn.execute(f"DELETE FROM signature_states WHERE note_id IN ({marks})", chunk)
            self._conn.execute(f"DELETE FROM signature_signers WHERE note_id IN ({marks})", chunk)

    def _mark_pending(self, note_ids: list[str]) -> None:
        self._conn.executemany(
            "INSERT INTO signature_states(note_id, heads, status) VALUES (?, x'', ?) "
            "ON CONFLICT(note_id) DO UPDATE SET heads = x'', status = excluded.status",
            [(i, PENDING) for i in note_ids],
        )

    def sync_trust(self) -> set[str]:
        """Compares the trusted devices with those the states were computed with; marks
        pending the notes that name a device whose trust changed. Returns those devices."""
        self._trust_touched = False
        now = _trust_fingerprints(self._trust())
        raw = self._local_get(TRUST_KEY)
        try:
            before = json.loads(raw) if raw else None
        except ValueError:
            before = {}
        if not isinstance(before, dict):
            before = {} if before is not None else None
        if before == now:
            return set()
        changed = set() if before is None else {i for i in set(before) | set(now) if before.get(i) != now.get(i)}
        for chunk in _chunks(sorted(changed)):
            marks = ",".join("?" * len(chunk))
            self._conn.execute(
                f"UPDATE signature_states SET heads = x'', status = ? WHERE note_id IN "
                f"(SELECT note_id FROM signature_signers WHERE device_id IN ({marks}))",
                [PENDING, *chunk],
            )
        self._local_put(TRUST_KEY, json.dumps(now, sort_keys=True).encode("utf-8"))
        return changed

    def settle(self, limit: int = DEFAULT_BATCH, first: list[str] | None = None, only_first: bool = False) -> int:
        """Computes up to `limit` pending states (those among `first` before the others, or
        only those with `only_first`); returns how many remain pending (among `first` with
        `only_first`)."""
        self.sync_trust()
        ids: list[str] = []
        for chunk in _chunks(list(first or [])):
            marks = ",".join("?" * len(chunk))
            ids += [r[0] for r in self._conn.execute(
                f"SELECT note_id FROM signature_states WHERE status = ? AND note_id IN ({marks})", [PENDING, *chunk]
            )]
        ids = list(dict.fromkeys(ids))[:limit]
        taken = set(ids)
        if len(ids) < limit and not only_first:
            for (note_id,) in self._conn.execute(
                "SELECT note_id FROM signature_states INDEXED BY signature_states_status "
                "WHERE status = ? ORDER BY note_id LIMIT ?", (PENDING, limit + len(taken)),
            ).fetchall():
                if note_id not in taken and len(ids) < limit:
                    ids.append(note_id)
        for note_id in ids:
            doc = self._docs.get(note_id) if self._docs.kind(note_id) == D.KIND_NOTE else None
            if doc is None:
                self._forget([note_id])
            else:
                self.record(note_id, doc)
        if only_first:
            return sum(1 for s in self.statuses(list(first or [])).values() if s == PENDING) if ids else 0
        return self.pending_count()

    def stale(self) -> list[str]:
        """The notes whose stored state is not for their document's heads (written by a
        path that bypassed the choke point, or by an older build). A read, no lock."""
        return [r[0] for r in self._conn.execute(
            "SELECT s.note_id FROM signature_states s LEFT JOIN documents d INDEXED BY documents_heads "
            "ON d.doc_id = s.note_id WHERE s.status != ? AND (d.heads IS NULL OR d.heads != s.heads)", (PENDING,)
        )]

    def mark_pending(self, note_ids: list[str]) -> None:
        self._mark_pending(note_ids)

    def mark_all_pending(self) -> int:
        """Every note that may be signed, to compute again (`notewell check --full`)."""
        self._conn.execute(
            "INSERT OR REPLACE INTO signature_states(note_id, heads, status) "
            "SELECT note_id, x'', ? FROM notes_view "
            "WHERE status != 'draft' OR signed_at IS NOT NULL OR signature_conflict "
            "UNION SELECT note_id, x'', ? FROM signature_kept",
            (PENDING, PENDING),
        )
        return self.pending_count()

    # --- reading: one indexed query, nothing verified, no document loaded ------------

    def pending_count(self) -> int:
        return self._conn.execute(
            "SELECT count(*) FROM signature_states INDEXED BY signature_states_status WHERE status = ?", (PENDING,)
        ).fetchone()[0]

    def statuses(self, note_ids: list[str]) -> dict[str, str]:
        """note id -> its stored status; "pending" for a note that may be signed and has no
        state for its current heads; "unsigned" for a plain draft."""
        out: dict[str, str] = {}
        for chunk in _chunks(list(dict.fromkeys(note_ids))):
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                "SELECT n.note_id, n.status = 'draft' AND n.signed_at IS NULL AND NOT n.signature_conflict, "
                "s.status, s.heads = d.heads FROM notes_view n "
                "JOIN documents d INDEXED BY documents_heads ON d.doc_id = n.note_id "
                f"LEFT JOIN signature_states s ON s.note_id = n.note_id WHERE n.note_id IN ({marks})",
                chunk,
            )
            for note_id, plain, status, fresh in rows:
                if status is None:
                    out[note_id] = SignatureStatus.UNSIGNED.value if plain else PENDING
                else:
                    out[note_id] = status if fresh else PENDING
        return out

    def attention(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """(note id, "conflict" or "tampered", findings) of every note whose stored state
        needs the clinician and still holds for the note's heads."""
        rows = self._conn.execute(_ATTENTION_SQL.format(columns="s.note_id, s.status, s.findings", more=""), ATTENTION)
        out = []
        for note_id, status, findings in rows:
            try:
                found = tuple(str(f) for f in json.loads(findings))
            except (ValueError, TypeError):
                found = ()
            out.append((note_id, status, found))
        return out

    def attention_rows(self) -> list[tuple[str, str, str, str]]:
        """The same notes for the To do list: (note id, client's name, date of service,
        status), with the lists' tables (no document loaded)."""
        return self._conn.execute(
            _ATTENTION_SQL.format(
                columns="s.note_id, coalesce(c.display_name, 'unknown client'), n.date_of_service, s.status",
                more="JOIN notes_view n ON n.note_id = s.note_id LEFT JOIN clients_view c ON c.client_id = n.client_id ",
            ),
            ATTENTION,
        ).fetchall()


# The notes whose stored state needs the clinician and holds for the document's heads.
_ATTENTION_SQL = (
    "SELECT {columns} FROM signature_states s INDEXED BY signature_states_status "
    "JOIN documents d INDEXED BY documents_heads ON d.doc_id = s.note_id {more}"
    "WHERE s.status IN (?, ?) AND s.heads = d.heads ORDER BY s.note_id"
)
