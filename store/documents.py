"""The record as Automerge documents: one per client, one per progress note.

Layout (root of each document):

client          type="client", schema, id, display_name, date_of_birth, created_at,
                identifiers {name: value}, diagnoses {code: {description, order}},
                goals {goal_id: {description, objective, active, order}}
progress_note   type="progress_note", schema, id, client_id, format, status,
                sections {key: Text}, facts {...}, "signed:<id>": envelope (one root key per
                signature, addendum or resolution signed by key, store/signing.py),
                signature {...} | null and previous_signatures [..] (the earlier form, before
                signatures were verified), addenda [{...}] (of the earlier form),
                entered_in_error {...} | null, resolution {...} | null, created_at, updated_at
device_list     see store/device_list.py

Everything that merges field by field is a map; sets are maps keyed by value (so concurrent
adds never duplicate); sections are Text so concurrent typing merges character by character.
Readers never trust a document: one received from sync may lack fields or hold odd types,
so every read has a default (the binding reports those as plain Exceptions). An Automerge
panic is not a default: it goes on to the caller's guard (store/automerge_guard.py), since a
write based on a read that silently came back empty could undo text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime, time, timezone
from typing import Any, Iterable

from automerge.core import ROOT, Document, ObjType, ScalarType
from pydantic import ValidationError

from store.models import (
    FORMAT_SECTIONS,
    Addendum,
    DEFAULT_REVIEW_INTERVAL_DAYS,
    Client,
    Diagnosis,
    EnteredInError,
    Goal,
    GoalProgress,
    Modality,
    NoteFormat,
    NoteStatus,
    Participant,
    ProgressNote,
    ProgressRating,
    RiskAssessment,
    RiskLevel,
    STORED,
    SessionFacts,
    Signature,
    SignatureConflictResolution,
    normalise_cpt,
    normalise_icd10,
)
from store.text_diff import changed_span

SCHEMA = 1
KIND_CLIENT = "client"
KIND_NOTE = "progress_note"
KINDS = (KIND_CLIENT, KIND_NOTE)

Heads = list[bytes] | None
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def actor_for(device_id: str) -> bytes:
    """A stable 16-byte actor id per device, so every change names the device that made it."""
    return hashlib.sha256(b"notewell-actor:" + device_id.encode()).digest()[:16]


# --- reading, defensively ---------------------------------------------------------------


def _get(doc: Document, obj: bytes, prop: str | int, heads: Heads = None) -> tuple[Any, bytes] | None:
    try:
        return doc.get(obj, prop, heads)
    except Exception:
        return None


def _value(doc: Document, got: tuple[Any, bytes] | None, heads: Heads) -> Any:
    """What a (value, object id) pair read from a document holds: the scalar, the string of
    a Text, or None (nothing there, or another kind of object)."""
    if got is None:
        return None
    value, obj_id = got
    if isinstance(value, ObjType):
        return _text(doc, obj_id, heads) if value == ObjType.Text else None
    return value[1]


def _child_id(got: tuple[Any, bytes] | None, kind: ObjType) -> bytes | None:
    """The object id in a (value, object id) pair when it is an object of type `kind`."""
    if got is None:
        return None
    value, obj_id = got
    return obj_id if value == kind else None


def _as_str(v: Any, default: str = "") -> str:
    return v if isinstance(v, str) else default


def _as_int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _scalar(doc: Document, obj: bytes | None, prop: str | int, heads: Heads = None) -> Any:
    """The scalar at obj[prop], the string of a Text there, or None."""
    return None if obj is None else _value(doc, _get(doc, obj, prop, heads), heads)


def _str(doc: Document, obj: bytes | None, prop: str, heads: Heads = None, default: str = "") -> str:
    return _as_str(_scalar(doc, obj, prop, heads), default)


def _bool(doc: Document, obj: bytes | None, prop: str, heads: Heads = None, default: bool = False) -> bool:
    v = _scalar(doc, obj, prop, heads)
    return v if isinstance(v, bool) else default


def _int(doc: Document, obj: bytes | None, prop: str, heads: Heads = None) -> int | None:
    return _as_int(_scalar(doc, obj, prop, heads))


def _child(doc: Document, obj: bytes | None, prop: str | int, kind: ObjType, heads: Heads = None) -> bytes | None:
    """The id of the object of type `kind` at obj[prop], or None."""
    return None if obj is None else _child_id(_get(doc, obj, prop, heads), kind)


class _MapView:
    """A map read in two calls (keys, values) rather than one call per field. Reading notes
    for their list and search rows is most of what receiving a sync costs."""

    def __init__(self, doc: Document, obj: bytes | None, heads: Heads = None) -> None:
        self._doc, self._obj, self._heads = doc, obj, heads
        self._entries: dict[str, tuple[Any, bytes]] | None = {}
        if obj is None:
            return
        try:
            keys = doc.keys(obj, heads)
            values = doc.values(obj, heads) if keys else []  # empty sets are common
        except Exception:
            return
        # One value per key is what values() returns; should that ever differ, read per key.
        self._entries = dict(zip(keys, values)) if len(keys) == len(values) else None

    def keys(self) -> list[str]:
        if self._entries is None:
            return _keys(self._doc, self._obj, self._heads)
        return list(self._entries)

    def _got(self, prop: str) -> tuple[Any, bytes] | None:
        if self._entries is None:
            return _get(self._doc, self._obj, prop, self._heads) if self._obj is not None else None
        return self._entries.get(prop)

    def scalar(self, prop: str) -> Any:
        return _value(self._doc, self._got(prop), self._heads)

    def str(self, prop: str, default: str = "") -> str:
        return _as_str(self.scalar(prop), default)

    def int(self, prop: str) -> int | None:
        return _as_int(self.scalar(prop))

    def child(self, prop: str, kind: ObjType) -> bytes | None:
        return _child_id(self._got(prop), kind)


def _text(doc: Document, obj: bytes, heads: Heads = None) -> str:
    try:
        return doc.text(obj, heads)
    except Exception:
        return ""


def _keys(doc: Document, obj: bytes | None, heads: Heads = None) -> list[str]:
    if obj is None:
        return []
    try:
        return list(doc.keys(obj, heads))
    except Exception:
        return []


def _length(doc: Document, obj: bytes | None, heads: Heads = None) -> int:
    if obj is None:
        return 0
    try:
        return doc.length(obj, heads)
    except Exception:
        return 0


def _datetime(s: Any) -> datetime | None:
    if not isinstance(s, str) or not s:
        return None
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _date(s: Any) -> date | None:
    if not isinstance(s, str) or not s:
        return None
    try:
        return date.fromisoformat(s)
    except ValueError:
        return None


def _time(s: Any) -> time | None:
    if not isinstance(s, str) or not s:
        return None
    try:
        return time.fromisoformat(s)
    except ValueError:
        return None


def _model(cls: type, data: dict) -> Any:
    # An absent map (most notes have no resolution, no entered-in-error mark) reads as {}:
    # a model with a required field refuses it, without raising a validation error first.
    if not data and any(f.is_required() for f in cls.model_fields.values()):
        return None
    try:
        return cls.model_validate(data, context=STORED)
    except ValidationError:
        return None


def note_doc_kind(doc: Document) -> str | None:
    """"client", "progress_note", or None for anything that is not a record document."""
    kind = _root_scalar(doc, "type")
    return kind if kind in KINDS else None


def doc_id_of(doc: Document) -> str:
    return _as_str(_root_scalar(doc, "id"))


def _root_view(doc: Document, heads: Heads = None) -> _MapView:
    """The root map, read once per reading of a document (`envelopes_parsed_once`): its kind,
    id, signed entries and fields are all asked for while a note received whole is read."""
    reading = _reading.get()
    if reading is None or heads is not None:
        return _MapView(doc, ROOT, heads)
    found = reading.roots.get(id(doc))
    if found is None:
        found = reading.roots[id(doc)] = (doc, _MapView(doc, ROOT))  # the document is held: its id stays its own
    return found[1]


def _root_scalar(doc: Document, prop: str) -> Any:
    """`_scalar(doc, ROOT, prop)`: one read outside a reading, the reading's root view within."""
    if _reading.get() is None:
        return _scalar(doc, ROOT, prop)
    return _root_view(doc).scalar(prop)


# --- writing helpers --------------------------------------------------------------------


def _put_str(tx: Any, obj: bytes, prop: str | int, value: str | None) -> None:
    if value is None:
        tx.put(obj, prop, ScalarType.Null, None)
    else:
        tx.put(obj, prop, ScalarType.Str, value)


def _put_int(tx: Any, obj: bytes, prop: str, value: int | None) -> None:
    if value is None:
        tx.put(obj, prop, ScalarType.Null, None)
    else:
        tx.put(obj, prop, ScalarType.Int, value)


def _put_bool(tx: Any, obj: bytes, prop: str | int, value: bool) -> None:
    # The proxy API would store True as an Int; the core API needs the type named.
    tx.put(obj, prop, ScalarType.Boolean, bool(value))


def _iso(v: date | time | datetime | None) -> str | None:
    return None if v is None else v.isoformat()


def _ensure_map(tx: Any, obj: bytes, prop: str, fresh: bool = False) -> bytes:
    if fresh:
        return tx.put_object(obj, prop, ObjType.Map)
    got = tx.get(obj, prop)
    if got is not None and got[0] == ObjType.Map:
        return got[1]
    return tx.put_object(obj, prop, ObjType.Map)


def _tx_scalar(tx: Any, obj: bytes, prop: str | int) -> Any:
    got = tx.get(obj, prop)
    if got is None or isinstance(got[0], ObjType):
        return _MISSING
    return got[0][1]


_MISSING = object()


def _set_if_changed(tx: Any, obj: bytes, prop: str, value: Any, kind: str = "str", fresh: bool = False) -> None:
    """Writes only a value that differs, so an untouched field never makes a conflicting op.

    `fresh`: the object was made in this transaction and holds nothing yet, so there is
    nothing to compare with (a read costs as much as a write in the binding)."""
    if not fresh:
        current = _tx_scalar(tx, obj, prop)
        if current is not _MISSING and current == value and type(current) is type(value):
            return
    if kind == "bool":
        _put_bool(tx, obj, prop, value)
    elif kind == "int":
        _put_int(tx, obj, prop, value)
    else:
        _put_str(tx, obj, prop, value)


def _keys_before(tx: Any, obj: bytes, fresh: bool) -> set[str]:
    return set() if fresh else set(tx.keys(obj))


def _sync_flag_set(tx: Any, parent: bytes, prop: str, values: Iterable[str], fresh: bool = False) -> None:
    """A set stored as a map value -> true: add missing keys, drop removed ones."""
    obj = _ensure_map(tx, parent, prop, fresh)
    wanted = set(values)
    present = _keys_before(tx, obj, fresh)
    for key in sorted(present - wanted):
        tx.delete(obj, key)
    for key in sorted(wanted - present):
        _put_bool(tx, obj, key, True)


# --- clients ----------------------------------------------------------------------------


def new_client_doc(client: Client, actor: bytes) -> Document:
    doc = Document(actor)
    with doc.transaction() as tx:
        tx.put(ROOT, "type", ScalarType.Str, KIND_CLIENT)
        tx.put(ROOT, "schema", ScalarType.Int, SCHEMA)
        tx.put(ROOT, "id", ScalarType.Str, client.id)
        _put_str(tx, ROOT, "created_at", client.created_at.isoformat())
        _put_str(tx, ROOT, "updated_at", client.created_at.isoformat())
        _write_client(tx, client, fresh=True)
    return doc


def apply_client(doc: Document, client: Client, when: datetime | None = None) -> bool:
    """Writes the fields of `client` that differ from the document; False when none did."""
    current = client_from_doc(doc)
    if current.model_dump(exclude={"created_at"}) == client.model_dump(exclude={"created_at"}):
        return False
    with doc.transaction() as tx:
        _write_client(tx, client)
        put_updated_at(tx, when or datetime.now(timezone.utc).replace(microsecond=0))
    return True


def client_updated_at(doc: Document) -> str:
    """When the client document was last changed here or elsewhere (ISO), for lists."""
    return _as_str(_root_scalar(doc, "updated_at")) or _as_str(_root_scalar(doc, "created_at")) or _EPOCH.isoformat()


def _write_client(tx: Any, client: Client, fresh: bool = False) -> None:
    """`fresh`: the document is new, so every field is written without reading it first
    (the same operations, in the same order, as the reads would have led to)."""
    _set_if_changed(tx, ROOT, "display_name", client.display_name, fresh=fresh)
    _set_if_changed(tx, ROOT, "date_of_birth", _iso(client.date_of_birth), fresh=fresh)

    ids = _ensure_map(tx, ROOT, "identifiers", fresh)
    for key in sorted(_keys_before(tx, ids, fresh) - set(client.identifiers)):
        tx.delete(ids, key)
    for key, value in client.identifiers.items():
        _set_if_changed(tx, ids, key, value, fresh=fresh)

    dx = _ensure_map(tx, ROOT, "diagnoses", fresh)
    wanted = {d.code: (i, d) for i, d in enumerate(client.diagnoses)}
    for code in sorted(_keys_before(tx, dx, fresh) - set(wanted)):
        tx.delete(dx, code)
    for code, (order, d) in wanted.items():
        entry = _ensure_map(tx, dx, code, fresh)
        _set_if_changed(tx, entry, "description", d.description, fresh=fresh)
        _set_if_changed(tx, entry, "order", order, "int", fresh=fresh)

    goals = _ensure_map(tx, ROOT, "goals", fresh)
    wanted_goals = {g.id: (i, g) for i, g in enumerate(client.goals)}
    for gid in sorted(_keys_before(tx, goals, fresh) - set(wanted_goals)):
        tx.delete(goals, gid)
    for gid, (order, g) in wanted_goals.items():
        entry = _ensure_map(tx, goals, gid, fresh)
        _set_if_changed(tx, entry, "description", g.description, fresh=fresh)
        _set_if_changed(tx, entry, "objective", g.objective, fresh=fresh)
        _set_if_changed(tx, entry, "active", g.active, "bool", fresh=fresh)
        _set_if_changed(tx, entry, "order", order, "int", fresh=fresh)

    # The plan's start and review interval: written once set, so a client who has none has
    # the document it always had (store/plan_reviews.py).
    if client.plan_start is not None or (not fresh and _tx_scalar(tx, ROOT, "plan_start") is not _MISSING):
        _set_if_changed(tx, ROOT, "plan_start", _iso(client.plan_start), fresh=fresh)
    if client.review_interval_days != DEFAULT_REVIEW_INTERVAL_DAYS or (
        not fresh and _tx_scalar(tx, ROOT, "review_interval_days") is not _MISSING
    ):
        _set_if_changed(tx, ROOT, "review_interval_days", client.review_interval_days, "int", fresh=fresh)


def client_from_doc(doc: Document, heads: Heads = None) -> Client:
    root = _root_view(doc, heads)  # read once: every field below is the root's
    diagnoses: list[tuple[int, str, Diagnosis]] = []
    dx = root.child("diagnoses", ObjType.Map)
    for code in _keys(doc, dx, heads):
        entry = _child(doc, dx, code, ObjType.Map, heads)
        d = _model(Diagnosis, {"code": code, "description": _str(doc, entry, "description", heads)})
        if d is not None:
            diagnoses.append((_int(doc, entry, "order", heads) or 0, d.code, d))
    goals: list[tuple[int, str, Goal]] = []
    gm = root.child("goals", ObjType.Map)
    for gid in _keys(doc, gm, heads):
        entry = _child(doc, gm, gid, ObjType.Map, heads)
        g = _model(
            Goal,
            {
                "id": gid,
                "description": _str(doc, entry, "description", heads) or "(goal)",
                "objective": _str(doc, entry, "objective", heads),
                "active": _bool(doc, entry, "active", heads, True),
            },
        )
        if g is not None:
            goals.append((_int(doc, entry, "order", heads) or 0, gid, g))
    idm = root.child("identifiers", ObjType.Map)
    identifiers = {k: _str(doc, idm, k, heads) for k in _keys(doc, idm, heads)}

    seen: set[str] = set()
    unique_dx = []
    for _, code, d in sorted(diagnoses, key=lambda t: (t[0], t[1])):
        if code not in seen:  # two spellings of one code normalise alike
            seen.add(code)
            unique_dx.append(d)
    dob = _date(root.scalar("date_of_birth"))
    if dob is not None and dob > date.today():
        dob = None
    data: dict[str, Any] = {
        "id": root.str("id") or "unknown",
        "display_name": root.str("display_name").strip()[:200] or "(unnamed)",
        "date_of_birth": dob,
        "identifiers": identifiers,
        "diagnoses": unique_dx,
        "goals": [g for _, _, g in sorted(goals, key=lambda t: (t[0], t[1]))],
    }
    data["plan_start"] = _date(root.scalar("plan_start"))
    interval = root.int("review_interval_days")
    if interval is not None and 1 <= interval <= 366:
        data["review_interval_days"] = interval
    # A fixed fallback keeps two readings of one document equal.
    data["created_at"] = _datetime(root.scalar("created_at")) or _EPOCH
    return Client.model_validate(data, context=STORED)


# --- progress notes ---------------------------------------------------------------------


def new_note_doc(note: ProgressNote, actor: bytes, make: Any = Document) -> Document:
    """`make`: the document class; store/document_encoding.py's EncodedDocument writes the
    same operations straight into Automerge's format (an import's notes)."""
    doc = make(actor)
    with doc.transaction() as tx:
        tx.put(ROOT, "type", ScalarType.Str, KIND_NOTE)
        tx.put(ROOT, "schema", ScalarType.Int, SCHEMA)
        tx.put(ROOT, "id", ScalarType.Str, note.id)
        tx.put(ROOT, "client_id", ScalarType.Str, note.client_id)
        tx.put(ROOT, "format", ScalarType.Str, note.format.value)
        tx.put(ROOT, "status", ScalarType.Str, note.status.value)
        sections = tx.put_object(ROOT, "sections", ObjType.Map)
        for key in note.section_keys:
            text = tx.put_object(sections, key, ObjType.Text)
            body = note.sections.get(key, "")
            if body:
                tx.splice_text(text, 0, 0, body)
        _write_facts(tx, note.facts, fresh=True)
        _put_str(tx, ROOT, "created_at", note.created_at.isoformat())
        _put_str(tx, ROOT, "updated_at", note.updated_at.isoformat())
        if note.signature is not None:
            write_signature(tx, note.signature)
        else:
            tx.put(ROOT, "signature", ScalarType.Null, None)
        tx.put_object(ROOT, "previous_signatures", ObjType.List)
        addenda = tx.put_object(ROOT, "addenda", ObjType.List)
        for i, a in enumerate(note.addenda):
            _write_addendum(tx, addenda, i, a)
        if note.entered_in_error is not None:
            write_entered_in_error(tx, note.entered_in_error)
        else:
            tx.put(ROOT, "entered_in_error", ScalarType.Null, None)
        if note.resolution is not None:
            write_resolution(tx, note.resolution)
        else:
            tx.put(ROOT, "resolution", ScalarType.Null, None)
    return doc


def reads_back_as_given(note: ProgressNote) -> bool:
    """Whether `note_from_doc(new_note_doc(note))` hashes and projects exactly as `note`: true
    unless a set of the facts names a value twice or a goal is rated twice (the document
    keeps sets as maps, so those read back once). Every other field is written as given and
    read back unchanged; the importer's tests hold this to the document (`check`)."""
    f = note.facts
    goals = [g.goal_id for g in f.goals_addressed]
    return (
        len(set(f.add_on_codes)) == len(f.add_on_codes)
        and len(set(f.diagnoses_addressed)) == len(f.diagnoses_addressed)
        and len(set(goals)) == len(goals)
    )


def imported_note_doc(
    note: ProgressNote, actor: bytes, device_id: str, known_hash: str | None = None, make: Any = Document
) -> Document:
    """The document of a note signed (or entered in error) elsewhere: the note's content as
    a draft, then in a second change its signature over exactly that content (heads and
    content hash computed here), its addenda (hashed here when they carry no hash), its
    entered-in-error mark, and its time. `device_id` fills in where the note names none;
    `known_hash`, when given, is `content_hash(note)`, already computed by the caller; `make`
    as for `new_note_doc` (a note that reads back as given never reads its document here)."""
    draft = note.model_copy(
        update={"status": NoteStatus.DRAFT, "signature": None, "addenda": [], "entered_in_error": None, "resolution": None}
    )
    doc = new_note_doc(draft, actor, make)
    if note.status == NoteStatus.DRAFT:
        return doc
    with doc.transaction() as tx:
        if note.signature is not None:
            # What the signature covers is the content as the document reads it back; a note
            # that reads back as given (reads_back_as_given) need not be read to know it.
            if reads_back_as_given(draft):
                # The draft has the note's content, so the note's hash is the draft's.
                covered = known_hash or content_hash(draft)
            else:
                covered = content_hash(note_from_doc(doc))
            signature = note.signature.model_copy(
                update={
                    "heads": sorted(h.hex() for h in doc.get_heads()),
                    "content_hash": covered,
                    "device_id": note.signature.device_id or device_id,
                }
            )
            write_signature(tx, signature)
            put_status(tx, NoteStatus.SIGNED)
        for a in note.addenda:
            append_addendum(
                tx,
                a.model_copy(
                    update={
                        "device_id": a.device_id or device_id,
                        "content_hash": a.content_hash
                        or addendum_hash(note.id, a.text, a.reason, a.signer, a.credentials, a.signed_at),
                    }
                ),
            )
        if note.entered_in_error is not None:
            write_entered_in_error(tx, note.entered_in_error)
            put_status(tx, NoteStatus.ENTERED_IN_ERROR)
        put_updated_at(tx, note.updated_at)
    return doc


def splice_section(doc: Document, key: str, new_text: str, when: datetime | None = None) -> bool:
    """Turns the section into `new_text` with the smallest splice; False when unchanged.

    Only the differing middle is replaced (common prefix and suffix kept), so a keystroke
    is a one-character change and concurrent edits elsewhere in the text survive a merge.
    With `when`, updated_at is set in the same change.
    """
    sections = _child(doc, ROOT, "sections", ObjType.Map)
    text_obj = _child(doc, sections, key, ObjType.Text)
    old = _text(doc, text_obj) if text_obj is not None else None
    if old == new_text:
        return False
    with doc.transaction() as tx:
        if sections is None:
            sections = tx.put_object(ROOT, "sections", ObjType.Map)
        if text_obj is None:
            text_obj = tx.put_object(sections, key, ObjType.Text)
            old = ""
        assert old is not None
        start, old_end, new_end = changed_span(old, new_text)
        tx.splice_text(text_obj, start, old_end - start, new_text[start:new_end])
        if when is not None:
            put_updated_at(tx, when)
    return True


def section_text(doc: Document, key: str) -> str:
    return _str(doc, _child(doc, ROOT, "sections", ObjType.Map), key)


def note_status(doc: Document) -> NoteStatus:
    """The status alone, without reading the whole note (the typing path checks it)."""
    return _enum(NoteStatus, _scalar(doc, ROOT, "status")) or NoteStatus.DRAFT


def note_format(doc: Document) -> NoteFormat:
    return _enum(NoteFormat, _scalar(doc, ROOT, "format")) or NoteFormat.SOAP


def apply_facts(doc: Document, facts: SessionFacts, when: datetime | None = None) -> bool:
    """Writes the facts that differ from the document; False when none did."""
    current = _facts_from_doc(doc, None, date.today())
    if canonical_facts(current) == canonical_facts(facts):
        return False
    with doc.transaction() as tx:
        _write_facts(tx, facts)
        if when is not None:
            put_updated_at(tx, when)
    return True


# Facts that are sets: the editor's additions and removals apply to what the note holds now.
_SET_FACTS = ("add_on_codes", "diagnoses_addressed")


def merge_facts(current: SessionFacts, before: SessionFacts, after: SessionFacts) -> SessionFacts:
    """`current` with the edits that turned `before` into `after`, field by field: a field the
    editor did not touch keeps what the note holds now (a sync may have changed it)."""
    update: dict[str, Any] = {}
    for name in SessionFacts.model_fields:
        old, new = getattr(before, name), getattr(after, name)
        if old == new:
            continue
        if name in _SET_FACTS:
            now = [v for v in getattr(current, name) if v not in old or v in new]
            update[name] = sorted(set(now) | (set(new) - set(old)))
        else:
            update[name] = new
    return current.model_copy(update=update) if update else current


def _write_facts(tx: Any, facts: SessionFacts, fresh: bool = False) -> None:
    """`fresh`: the note's document is new (see `_write_client`)."""
    f = _ensure_map(tx, ROOT, "facts", fresh)
    _set_if_changed(tx, f, "date_of_service", facts.date_of_service.isoformat(), fresh=fresh)
    _set_if_changed(tx, f, "start_time", _iso(facts.start_time), fresh=fresh)
    _set_if_changed(tx, f, "stop_time", _iso(facts.stop_time), fresh=fresh)
    _set_if_changed(tx, f, "cpt_code", facts.cpt_code, fresh=fresh)
    _set_if_changed(tx, f, "modality", facts.modality.value if facts.modality else None, fresh=fresh)
    _set_if_changed(tx, f, "phq9", facts.phq9, "int", fresh=fresh)
    _set_if_changed(tx, f, "gad7", facts.gad7, "int", fresh=fresh)
    # Facts added with the record beyond session notes are written only once used, so a
    # note without them has the document (and the signed content) it always had.
    if facts.pcl5 is not None or (not fresh and _tx_scalar(tx, f, "pcl5") is not _MISSING):
        _set_if_changed(tx, f, "pcl5", facts.pcl5, "int", fresh=fresh)
    _write_participants(tx, f, facts.participants, fresh)
    _sync_flag_set(tx, f, "diagnoses_addressed", facts.diagnoses_addressed, fresh)
    _sync_flag_set(tx, f, "add_on_codes", facts.add_on_codes, fresh)

    goals = _ensure_map(tx, f, "goals_addressed", fresh)
    wanted = {g.goal_id: g for g in facts.goals_addressed}
    for gid in sorted(_keys_before(tx, goals, fresh) - set(wanted)):
        tx.delete(goals, gid)
    for gid, g in wanted.items():
        entry = _ensure_map(tx, goals, gid, fresh)
        _set_if_changed(tx, entry, "rating", g.rating.value, fresh=fresh)
        _set_if_changed(tx, entry, "comment", g.comment, fresh=fresh)

    # Interventions are a short ordered list; rewritten whole, and only when it changed.
    got = None if fresh else tx.get(f, "interventions")
    current: list[Any] | None = None
    if got is not None and got[0] == ObjType.List:
        current = [v[1] if not isinstance(v, ObjType) else None for v, _ in tx.values(got[1])]
    if current != list(facts.interventions):
        lst = tx.put_object(f, "interventions", ObjType.List)
        for i, item in enumerate(facts.interventions):
            tx.insert(lst, i, ScalarType.Str, item)

    risk = _ensure_map(tx, f, "risk", fresh)
    _set_if_changed(tx, risk, "suicide", facts.risk.suicide.value if facts.risk.suicide else None, fresh=fresh)
    _set_if_changed(tx, risk, "violence", facts.risk.violence.value if facts.risk.violence else None, fresh=fresh)
    _set_if_changed(tx, risk, "actions", facts.risk.actions, fresh=fresh)


def _write_participants(tx: Any, facts_obj: bytes, participants: list[Participant], fresh: bool) -> None:
    """Participants as a map keyed by person (`Participant.key`), so two devices adding the
    same person keep one entry and edits to different people merge."""
    if not participants and (fresh or tx.get(facts_obj, "participants") is None):
        return
    pm = _ensure_map(tx, facts_obj, "participants", fresh)
    wanted = {p.key: (i, p) for i, p in enumerate(participants)}
    for key in sorted(_keys_before(tx, pm, fresh) - set(wanted)):
        tx.delete(pm, key)
    for key, (order, p) in wanted.items():
        entry = _ensure_map(tx, pm, key, fresh)
        _set_if_changed(tx, entry, "client_id", p.client_id, fresh=fresh)
        _set_if_changed(tx, entry, "name", p.name, fresh=fresh)
        _set_if_changed(tx, entry, "initials", p.initials, fresh=fresh)
        _set_if_changed(tx, entry, "order", order, "int", fresh=fresh)


def _participants_from(doc: Document, obj: bytes | None, heads: Heads) -> list[Participant]:
    """The participants as the document says; an entry that does not read as one (another
    device's document may hold anything) is left out, and each person is listed once."""
    found: dict[str, tuple[int, Participant]] = {}
    pm = _MapView(doc, obj, heads)
    for key in pm.keys():
        entry = _MapView(doc, pm.child(key, ObjType.Map), heads)
        client_id = entry.scalar("client_id")
        p = _model(
            Participant,
            {
                "client_id": client_id if isinstance(client_id, str) else None,
                "name": entry.str("name")[:200],
                "initials": entry.str("initials")[:8],
            },
        )
        if p is not None and p.key not in found:
            found[p.key] = (entry.int("order") or 0, p)
    return [p for _, p in sorted(found.values(), key=lambda t: (t[0], t[1].key))]


def _enum(cls: type, v: Any) -> Any:
    try:
        return cls(v)
    except ValueError:
        return None


def _facts_from_doc(doc: Document, heads: Heads, fallback_date: date, root: _MapView | None = None) -> SessionFacts:
    f = root.child("facts", ObjType.Map) if root is not None else _child(doc, ROOT, "facts", ObjType.Map, heads)
    fv = _MapView(doc, f, heads)
    start = _time(fv.scalar("start_time"))
    stop = _time(fv.scalar("stop_time"))
    if start and stop and stop <= start:
        stop = None
    cpt = fv.scalar("cpt_code")
    try:
        cpt = normalise_cpt(cpt) if isinstance(cpt, str) and cpt else None
    except ValueError:
        cpt = None

    def codes(prop: str, norm: Any) -> list[str]:
        m = fv.child(prop, ObjType.Map)
        mv = _MapView(doc, m, heads)
        out = set()
        for k in mv.keys():
            if mv.scalar(k) is False:
                continue
            try:
                out.add(norm(k))
            except ValueError:
                pass
        return sorted(out)

    goals = []
    gm = _MapView(doc, fv.child("goals_addressed", ObjType.Map), heads)
    for gid in gm.keys():
        entry = _MapView(doc, gm.child(gid, ObjType.Map), heads)
        rating = _enum(ProgressRating, entry.scalar("rating"))
        if rating is not None:
            goals.append(GoalProgress(goal_id=gid, rating=rating, comment=entry.str("comment")))
    interventions = []
    lst = fv.child("interventions", ObjType.List)
    for i in range(_length(doc, lst, heads)):
        v = _scalar(doc, lst, i, heads)
        if isinstance(v, str) and v.strip():
            interventions.append(v.strip())
    rv = _MapView(doc, fv.child("risk", ObjType.Map), heads)
    risk = RiskAssessment(
        suicide=_enum(RiskLevel, rv.scalar("suicide")),
        violence=_enum(RiskLevel, rv.scalar("violence")),
        actions=rv.str("actions"),
    )
    phq9 = fv.int("phq9")
    gad7 = fv.int("gad7")
    pcl5 = fv.int("pcl5")
    return SessionFacts.model_validate(
        dict(
            date_of_service=_date(fv.scalar("date_of_service")) or fallback_date,
            start_time=start,
            stop_time=stop,
            cpt_code=cpt,
            add_on_codes=codes("add_on_codes", normalise_cpt),
            modality=_enum(Modality, fv.scalar("modality")),
            diagnoses_addressed=codes("diagnoses_addressed", normalise_icd10),
            goals_addressed=sorted(goals, key=lambda g: g.goal_id),
            interventions=interventions,
            risk=risk,
            phq9=phq9 if phq9 is not None and 0 <= phq9 <= 27 else None,
            gad7=gad7 if gad7 is not None and 0 <= gad7 <= 21 else None,
            pcl5=pcl5 if pcl5 is not None and 0 <= pcl5 <= 80 else None,
            participants=_participants_from(doc, fv.child("participants", ObjType.Map), heads),
        ),
        context=STORED,
    )


def _map_dict(doc: Document, obj: bytes | None, heads: Heads) -> dict[str, Any]:
    out: dict[str, Any] = {}
    view = _MapView(doc, obj, heads)
    for k in view.keys():
        got = view._got(k)
        if got is None:
            continue
        value, child = got
        if value == ObjType.List:
            out[k] = [_scalar(doc, child, i, heads) for i in range(_length(doc, child, heads))]
        elif value == ObjType.Text:
            out[k] = _text(doc, child, heads)
        elif not isinstance(value, ObjType):
            out[k] = value[1]
    return out


def signature_from_map(doc: Document, obj: bytes | None, heads: Heads = None) -> Signature | None:
    if obj is None:
        return None
    return _model(Signature, _map_dict(doc, obj, heads))


def note_from_doc(doc: Document, heads: Heads = None) -> ProgressNote:
    """The note as the document says, now or at `heads`."""
    root = _root_view(doc, heads)
    fmt = _enum(NoteFormat, root.scalar("format")) or NoteFormat.SOAP
    created = _datetime(root.scalar("created_at")) or _EPOCH
    updated = _datetime(root.scalar("updated_at")) or created
    sections_obj = root.child("sections", ObjType.Map)
    sv = _MapView(doc, sections_obj, heads)
    sections = {key: sv.str(key) for key in FORMAT_SECTIONS[fmt]}

    addenda = []
    lst = root.child("addenda", ObjType.List)
    for i in range(_length(doc, lst, heads)):
        a = _model(Addendum, _map_dict(doc, _child(doc, lst, i, ObjType.Map, heads), heads))
        if a is not None:
            addenda.append(a)
    # Signed entries (store/signing.py), read as they claim to be: whether they verify is
    # the signature state's question (store/signature_state.py), not this reader's.
    payloads = [p for p in (envelope_payload(e) for e in signed_entries(doc, heads, root).values()) if p is not None]
    # An addendum re-issued by key (an upgrade, an import) replaces its earlier form.
    signed_addenda = {a.id: a for a in (_addendum_of(p) for p in payloads if p.get("kind") == "addendum") if a}
    addenda = [a for a in addenda if a.id not in signed_addenda] + list(signed_addenda.values())
    addenda.sort(key=lambda a: (a.signed_at, a.id))
    signature = _latest_signature(payloads) or signature_from_map(doc, root.child("signature", ObjType.Map), heads)
    status = _enum(NoteStatus, root.scalar("status")) or NoteStatus.DRAFT
    eie = _model(EnteredInError, _map_dict(doc, root.child("entered_in_error", ObjType.Map), heads))
    if status == NoteStatus.ENTERED_IN_ERROR and eie is None:
        eie = EnteredInError.model_validate(
            {"reason": "(no reason recorded)", "marked_at": updated, "marked_by": "unknown"}, context=STORED
        )
    resolution = _model(
        SignatureConflictResolution,
        _map_dict(doc, root.child("resolution", ObjType.Map), heads),
    )
    return ProgressNote.model_validate(
        dict(
            id=root.str("id") or "unknown",
            client_id=root.str("client_id"),
            format=fmt,
            sections=sections,
            facts=_facts_from_doc(doc, heads, created.date(), root),
            status=status,
            signature=signature,
            addenda=addenda,
            entered_in_error=eie,
            resolution=resolution,
            created_at=created,
            updated_at=updated,
        ),
        context=STORED,
    )


# --- signed entries (store/signing.py) ------------------------------------------------------

SIGNED_PREFIX = "signed:"
ENVELOPE_VERSION = 1  # of the envelope and of every payload (store/signing.py)
NOTE_CONTENT_FIELDS = ("client_id", "format", "sections", "facts")


class _Reading:
    """What one reading of a document (`envelopes_parsed_once`) has worked out already."""

    def __init__(self) -> None:
        self.envelopes: dict[str, Any] = {}  # envelope -> parts
        # id(payload) -> its content hash, for payloads parsed here (held in `envelopes`, so
        # their ids stay their own; a dict made by a caller is never taken for one of them).
        self.content_hashes: dict[int, str | None] = {}
        self.entries: dict[tuple, tuple[Document, dict[str, Any]]] = {}  # (id(doc), heads) -> (doc, entries)
        self.roots: dict[int, tuple[Document, _MapView]] = {}  # id(doc) -> (doc, its root map as read)


_reading: ContextVar[_Reading | None] = ContextVar("document_reading", default=None)


@contextmanager
def envelopes_parsed_once() -> Iterator[None]:
    """Within it, each envelope is parsed once however many readers ask for it, and what is
    worked out from it (its content hash) and the document's signed entries are read once.

    Reading a note received whole asks three times for each signed entry: the note's reader
    (`note_from_doc`), the signature check (store/signing.py `open_entry`) and the signers
    (store/signature_index.py); the reader and the signature state each want the root's signed
    entries and the content hash of each note signature. Parsing and hashing are pure, so the
    same string gives the same parts; the parts are read, never changed, by every caller. The
    block only reads (the document is not written in it, so its entries stay what was read).
    The memo lives only as long as the block (one document), so nothing parsed outlives the
    reading that asked for it.
    """
    token = _reading.set(_Reading())
    try:
        yield
    finally:
        _reading.reset(token)


def signed_entries(doc: Document, heads: Heads = None, root: _MapView | None = None) -> dict[str, Any]:
    """entry id -> the envelope stored under "signed:<id>" at the root (any value: a reader
    that checks it says what is wrong with one that is not a string)."""
    reading = _reading.get()
    key = (id(doc), None if heads is None else tuple(heads))
    if reading is not None and key in reading.entries:
        return dict(reading.entries[key][1])
    view = root if root is not None else _root_view(doc, heads)
    entries = {k[len(SIGNED_PREFIX):]: view.scalar(k) for k in view.keys() if k.startswith(SIGNED_PREFIX)}
    if reading is not None:
        reading.entries[key] = (doc, dict(entries))  # the document is held, so its id stays its own
    return entries


def envelope_parts(envelope: Any) -> tuple[dict[str, Any], bytes, bytes] | None:
    """(payload, its bytes as signed, signature bytes) of an envelope, or None."""
    if not isinstance(envelope, str):
        return None
    reading = _reading.get()
    if reading is None:
        return _parse_envelope(envelope)
    memo = reading.envelopes
    if envelope not in memo:
        memo[envelope] = parts = _parse_envelope(envelope)
        if parts is not None:
            reading.content_hashes[id(parts[0])] = None  # not worked out yet
    return memo[envelope]


def _parse_envelope(envelope: str) -> tuple[dict[str, Any], bytes, bytes] | None:
    try:
        outer = json.loads(envelope)
        data = outer["payload"].encode("utf-8")
        sig = bytes.fromhex(outer["sig"])
        payload = json.loads(data)
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeError, RecursionError):
        return None
    return (payload, data, sig) if isinstance(payload, dict) else None


def envelope_payload(envelope: Any) -> dict[str, Any] | None:
    parts = envelope_parts(envelope)
    return None if parts is None else parts[0]


def payload_content_hash(payload: dict[str, Any]) -> str:
    """`content_hash` of the note content a note signature's payload holds (the payload keeps
    it in the canonical form `content_hash` hashes). Within `envelopes_parsed_once`, worked
    out once per payload (the note's reader and the signature state both ask)."""
    reading = _reading.get()
    parsed = reading is not None and id(payload) in reading.content_hashes
    if parsed and reading.content_hashes[id(payload)] is not None:
        return reading.content_hashes[id(payload)]
    found = hashlib.sha256(canonical_json({k: payload.get(k) for k in NOTE_CONTENT_FIELDS})).hexdigest()
    if parsed:
        reading.content_hashes[id(payload)] = found
    return found


def _latest_signature(payloads: list[dict[str, Any]]) -> Signature | None:
    """The newest note signature among the entries, as the note's `signature` (for lists,
    late-entry flags and the signer line; the signature state says whether it verifies)."""
    notes = [p for p in payloads if p.get("kind") == "note" and isinstance(p.get("signed_at"), str)]
    settled: set[str] = set()
    for p in payloads:
        if p.get("kind") == "note" and isinstance(p.get("supersedes"), list):
            settled.update(str(x) for x in p["supersedes"])
        elif p.get("kind") == "resolution" and isinstance(p.get("settles"), list):
            settled.update(str(x) for x in p["settles"] if x != p.get("keeps"))
    # Standing signatures first, newest first.
    order = sorted(notes, key=lambda p: (p.get("id") not in settled, str(p.get("signed_at")), str(p.get("id"))), reverse=True)
    for p in order:
        s = _model(
            Signature,
            {
                "signer": p.get("signer"),
                "credentials": p.get("credentials"),
                "signed_at": p.get("signed_at"),
                "device_id": p.get("device_id"),
                "heads": [],
                "content_hash": payload_content_hash(p),
            },
        )
        if s is not None:
            return s
    return None


def _addendum_of(p: dict[str, Any]) -> Addendum | None:
    """The addendum a signed payload holds. Its content hash is `addendum_hash` of what it
    says (the same on every device that holds it, whichever device's key signed it)."""
    signed_at = _datetime(p.get("signed_at"))
    strings = [p.get(k) for k in ("note_id", "text", "reason", "signer", "credentials")]
    if signed_at is None or not all(isinstance(v, str) for v in strings):
        return None
    return _model(
        Addendum,
        {
            "id": p.get("id"),
            "text": p.get("text"),
            "reason": p.get("reason"),
            "signer": p.get("signer"),
            "credentials": p.get("credentials"),
            "signed_at": p.get("signed_at"),
            "device_id": p.get("device_id"),
            "content_hash": addendum_hash(*strings, signed_at),  # type: ignore[arg-type]
        },
    )


def put_signed_entry(tx: Any, entry_id: str, envelope: str) -> None:
    tx.put(ROOT, SIGNED_PREFIX + entry_id, ScalarType.Str, envelope)


def legacy_signature(doc: Document) -> Signature | None:
    """The signature map of the earlier form (a content hash and heads), if the note has one."""
    if _reading.get() is not None:
        return signature_from_map(doc, _root_view(doc).child("signature", ObjType.Map))
    return signature_from_map(doc, _child(doc, ROOT, "signature", ObjType.Map))


def previous_signatures(doc: Document) -> list[Signature]:
    lst = _child(doc, ROOT, "previous_signatures", ObjType.List)
    out = []
    for i in range(_length(doc, lst)):
        s = signature_from_map(doc, _child(doc, lst, i, ObjType.Map))
        if s is not None:
            out.append(s)
    return out


def _write_model_map(tx: Any, obj: bytes, data: dict[str, Any]) -> None:
    for key, value in data.items():
        if isinstance(value, list):
            lst = tx.put_object(obj, key, ObjType.List)
            for i, item in enumerate(value):
                tx.insert(lst, i, ScalarType.Str, str(item))
        else:
            _put_str(tx, obj, key, None if value is None else str(value))


def write_signature(tx: Any, signature: Signature) -> None:
    # Put as a new map: concurrent signings then resolve to one whole signature, never a mix.
    obj = tx.put_object(ROOT, "signature", ObjType.Map)
    _write_model_map(tx, obj, signature.model_dump(mode="json"))


def push_previous_signature(tx: Any, signature: Signature) -> None:
    got = tx.get(ROOT, "previous_signatures")
    lst = got[1] if got is not None and got[0] == ObjType.List else tx.put_object(ROOT, "previous_signatures", ObjType.List)
    obj = tx.insert_object(lst, tx.length(lst), ObjType.Map)
    _write_model_map(tx, obj, signature.model_dump(mode="json"))


def _write_addendum(tx: Any, lst: bytes, index: int, addendum: Addendum) -> None:
    obj = tx.insert_object(lst, index, ObjType.Map)
    _write_model_map(tx, obj, addendum.model_dump(mode="json"))


def append_addendum(tx: Any, addendum: Addendum) -> None:
    got = tx.get(ROOT, "addenda")
    lst = got[1] if got is not None and got[0] == ObjType.List else tx.put_object(ROOT, "addenda", ObjType.List)
    _write_addendum(tx, lst, tx.length(lst), addendum)


def write_entered_in_error(tx: Any, eie: EnteredInError) -> None:
    obj = tx.put_object(ROOT, "entered_in_error", ObjType.Map)
    _write_model_map(tx, obj, eie.model_dump(mode="json"))


def write_resolution(tx: Any, resolution: SignatureConflictResolution) -> None:
    obj = tx.put_object(ROOT, "resolution", ObjType.Map)
    _write_model_map(tx, obj, resolution.model_dump(mode="json"))


def put_status(tx: Any, status: NoteStatus) -> None:
    tx.put(ROOT, "status", ScalarType.Str, status.value)


def put_updated_at(tx: Any, when: datetime) -> None:
    tx.put(ROOT, "updated_at", ScalarType.Str, when.isoformat())


# --- hashing ----------------------------------------------------------------------------


def canonical_facts(facts: SessionFacts) -> dict[str, Any]:
    data = facts.model_dump(mode="json")
    # Sets have no order in the document; the hash must not depend on one.
    data["diagnoses_addressed"] = sorted(data["diagnoses_addressed"])
    data["add_on_codes"] = sorted(data["add_on_codes"])
    data["goals_addressed"] = sorted(data["goals_addressed"], key=lambda g: g["goal_id"])
    # Facts added later are covered only once used: a note without them hashes as it did
    # before they existed, so its signatures still verify.
    if data.get("pcl5") is None:
        data.pop("pcl5", None)
    if data.get("participants"):
        data["participants"] = sorted(data["participants"], key=lambda p: p["client_id"] or "named:" + p["initials"])
    else:
        data.pop("participants", None)
    return data


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def content_hash(note: ProgressNote) -> str:
    """sha256 of what a signature covers: client, format, sections and session facts."""
    payload = {
        "client_id": note.client_id,
        "format": note.format.value,
        "sections": {k: note.sections.get(k, "") for k in note.section_keys},
        "facts": canonical_facts(note.facts),
    }
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def addendum_hash(note_id: str, text: str, reason: str, signer: str, credentials: str, signed_at: datetime) -> str:
    payload = {
        "note_id": note_id,
        "text": text,
        "reason": reason,
        "signer": signer,
        "credentials": credentials,
        "signed_at": signed_at.isoformat(),
    }
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def version_from_changes(doc: Document, heads: list[bytes]) -> Document:
    """The document as it was at `heads`, rebuilt from its own changes: those `heads` depend
    on, in the order the document lists them (causal), loaded into a new document. What
    fork_at gives, without fork_at's walk of the history (see RecordStore._branch)."""
    changes = doc.get_changes([])
    by_hash = {change.hash: change for change in changes}
    wanted: set[bytes] = set()
    todo = list(heads)
    while todo:
        head = todo.pop()
        if head not in wanted:
            wanted.add(head)
            todo.extend(by_hash[head].deps)
    return Document.load(b"".join(change.bytes for change in changes if change.hash in wanted))
