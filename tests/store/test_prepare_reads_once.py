"""Reading a note received whole parses each signed entry once (store/projections.py
`prepare_whole`), and gives the same rows and signature states as the readers alone.

The note's reader, the signature check and the signers each read every signed entry; before,
each parsed its JSON again. Real vault, real Automerge documents, real Ed25519 keys; the
parses are counted by wrapping `json.loads`, nothing else is replaced.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from automerge.core import Document

from store import documents as D
from store.device_list import DeviceTrust, TrustedDevice, _public_key
from store.models import ClinicianSettings
from store.projections import note_fts, note_row, prepare_whole
from store.signature_index import prepared_state, worker_keys
from store.signature_state import signature_state
from store.synthetic import make_signature_conflict, populate
from store.vault import KdfParams, Vault

FAST_KDF = KdfParams(memory_kib=8192, time_cost=1, parallelism=1)
LATE_HOURS = 72


@pytest.fixture(scope="module")
def received(tmp_path_factory):
    """(keys, trust, [(doc_id, bytes)]) of every note of a synthetic vault with signed notes,
    addenda, entered-in-error notes and a signature conflict, as a first sync sends them."""
    vault, _ = Vault.create(tmp_path_factory.mktemp("once") / "vault", "reads once passphrase",
                            device_name="Reads once laptop", kdf=FAST_KDF,
                            settings=ClinicianSettings(clinician_name="Dr. Once Example", credentials="LCSW"))
    try:
        populate(vault, clients=4, notes=60, seed=5)
        make_signature_conflict(vault.record)
        me = vault.identity
        replica = vault.record.replica
        docs = [(doc_id, replica.stored_doc(doc_id)[0]) for doc_id in sorted(replica.doc_heads())]
    finally:
        vault.close()
    trust = DeviceTrust("receiver", {me.device_id: TrustedDevice(me.device_id, me.name, _public_key(me.cert_pem, me.device_id))})
    notes = [(i, b) for i, b in docs if D.note_doc_kind(Document.load(b)) == D.KIND_NOTE]
    return worker_keys(trust), trust, notes


def _envelopes(data: bytes) -> list[str]:
    return [e for e in D.signed_entries(Document.load(data)).values() if isinstance(e, str)]


@pytest.fixture
def parses(monkeypatch):
    """How many times each string was parsed as JSON."""
    seen: Counter = Counter()
    real = json.loads

    def counting(s, *args, **kwargs):
        if isinstance(s, (str, bytes)):
            seen[s if isinstance(s, str) else s.decode("utf-8", "replace")] += 1
        return real(s, *args, **kwargs)

    monkeypatch.setattr(json, "loads", counting)
    return seen


@pytest.mark.parametrize("with_keys", [False, True])
def test_each_signed_entry_of_a_received_note_is_parsed_once(received, parses, with_keys):
    keys, _trust, notes = received
    signed = [(i, b) for i, b in notes if _envelopes(b)]
    assert len(signed) >= 10
    for doc_id, data in signed:
        envelopes = _envelopes(data)
        parses.clear()
        result = prepare_whole(doc_id, data, LATE_HOURS, keys if with_keys else None)
        assert isinstance(result, tuple)
        # Counts only: the envelopes hold note text, never shown in a failure.
        assert [parses[e] for e in envelopes] == [1] * len(envelopes)


def test_nothing_parsed_outlives_the_document(received, parses):
    """The memo is one document's: reading the same bytes again parses them again."""
    keys, _trust, notes = received
    doc_id, data = next((i, b) for i, b in notes if _envelopes(b))
    envelope = _envelopes(data)[0]
    parses.clear()
    prepare_whole(doc_id, data, LATE_HOURS, keys)
    prepare_whole(doc_id, data, LATE_HOURS, keys)
    assert parses[envelope] == 2


def test_rows_and_states_are_the_readers_alone(received):
    """Every note (signed, amended, entered in error, in conflict, draft): the rows and the
    state prepared are what the readers give, each reading on its own."""
    keys, trust, notes = received
    statuses = Counter()
    for doc_id, data in notes:
        doc = Document.load(data)
        note = D.note_from_doc(doc)
        state, signature = prepared_state(doc, D.note_from_doc(doc), trust)
        structural = signature_state(doc, None)
        statuses[state.status.value] += 1
        expected_rows = (note_row(note, LATE_HOURS, structural.needs_attention), note_fts(note))
        for with_keys in (None, keys):
            got = prepare_whole(doc_id, data, LATE_HOURS, with_keys)
            assert got[1:3] == expected_rows
            assert got[3] == doc.get_heads()
        got = prepare_whole(doc_id, data, LATE_HOURS, keys)
        assert got[4] == signature
    assert statuses["verified"] and statuses["unsigned"] and statuses["conflict"]


def test_a_signature_over_the_current_content_reuses_the_note_read(received, monkeypatch):
    """The usual signed note, signed at its document's heads: its signed version is built from
    the note already read, not from the payload again (store/signature_state.py `_version`)."""
    import store.signature_state as S

    keys, _trust, notes = received
    built = Counter()
    real = S.signed_note

    def counting(payload):
        built[payload.get("note_id")] += 1
        return real(payload)

    monkeypatch.setattr(S, "signed_note", counting)
    verified = 0
    for doc_id, data in notes:
        result = prepare_whole(doc_id, data, LATE_HOURS, keys)
        if result[4] is not None and result[4][0] == "verified":
            verified += 1
            assert built[doc_id] == 0
    assert verified >= 10


def _content(note):
    return note.model_dump(exclude={"created_at", "updated_at"})


def test_every_signed_version_is_the_content_its_payload_holds(received):
    """Whichever way a signed version's content is built, it is what the signed payload says,
    for every signature of every note (superseded, conflicting and amended ones included)."""
    from store.signing import signed_note

    _keys, trust, notes = received
    versions = 0
    for _doc_id, data in notes:
        doc = Document.load(data)
        state = signature_state(doc, trust, note=D.note_from_doc(doc))
        for v in state.versions:
            if v.entry_id == "legacy":
                continue
            payload = D.envelope_payload(state.entries[v.entry_id])
            expected = signed_note(payload)
            assert _content(v.note) == _content(expected.model_copy(update={"status": v.note.status, "signature": v.note.signature}))
            assert list(v.note.sections) == list(expected.sections)
            versions += 1
    assert versions >= 10


def test_an_absent_map_is_not_validated(received, monkeypatch):
    """A note without a resolution or an entered-in-error mark (most notes) reads those as
    absent without a pydantic validation of an empty map, which can only fail."""
    from pydantic import BaseModel

    _keys, _trust, notes = received
    empty = Counter()
    real = BaseModel.model_validate.__func__

    def counting(cls, obj, *args, **kwargs):
        if obj == {}:
            empty[cls.__name__] += 1
        return real(cls, obj, *args, **kwargs)

    monkeypatch.setattr(BaseModel, "model_validate", classmethod(counting))
    for doc_id, data in notes:
        assert isinstance(prepare_whole(doc_id, data, LATE_HOURS), tuple)
    assert sum(empty.values()) == 0, dict(empty)


def test_each_signatures_content_hash_is_worked_out_once(received, monkeypatch):
    """The note's reader (its latest signature) and the signature state (each signed version)
    both want the content hash of each note signature's payload: it is encoded once a
    document. Counted by the identity of the payload's facts in what is encoded."""
    keys, _trust, notes = received
    parsed_facts: list = []  # the facts of every payload parsed (held, so ids stay theirs)
    real_parse, real_json = D._parse_envelope, D.canonical_json
    encoded = Counter()

    def parse(envelope):
        parts = real_parse(envelope)
        if parts is not None and isinstance(parts[0].get("facts"), dict):
            parsed_facts.append(parts[0]["facts"])
        return parts

    def encode(data):
        if isinstance(data, dict) and set(data) == set(D.NOTE_CONTENT_FIELDS):
            for facts in parsed_facts:
                if data["facts"] is facts:
                    encoded[id(facts)] += 1
        return real_json(data)

    monkeypatch.setattr(D, "_parse_envelope", parse)
    monkeypatch.setattr(D, "canonical_json", encode)
    signed = 0
    for doc_id, data in notes:
        for with_keys in (None, keys):
            parsed_facts.clear()
            encoded.clear()
            assert isinstance(prepare_whole(doc_id, data, LATE_HOURS, with_keys), tuple)
            assert all(n == 1 for n in encoded.values()), sorted(encoded.values())
            signed += bool(encoded)
    assert signed >= 20


def test_the_root_is_read_once(received, monkeypatch):
    """The kind check, the note's reader, the signature state and the signers all want the
    root's fields (its kind, id, signed entries, facts, legacy signature map): the root map
    is read once a document (with keys and without), and none of its fields one by one."""
    from automerge.core import ROOT

    keys, _trust, notes = received
    roots = Counter()
    real = D._MapView
    real_get = D._get

    def get(doc, obj, prop, heads=None):
        if obj == ROOT:
            roots["one field"] += 1
        return real_get(doc, obj, prop, heads)

    monkeypatch.setattr(D, "_get", get)

    class Counting(real):
        def __init__(self, doc, obj, heads=None):
            if obj == ROOT:
                roots[heads is None] += 1
            super().__init__(doc, obj, heads)

    monkeypatch.setattr(D, "_MapView", Counting)
    for doc_id, data in notes:
        for with_keys in (None, keys):
            roots.clear()
            assert isinstance(prepare_whole(doc_id, data, LATE_HOURS, with_keys), tuple)
            assert roots[True] == 1 and roots["one field"] == 0, dict(roots)


def test_signed_entries_outside_a_reading_are_read_each_time(received):
    """The memo of signed entries is one reading's: outside it every call reads the document,
    and within it a copy is returned (a caller changing it changes nothing read later)."""
    _keys, _trust, notes = received
    doc_id, data = next((i, b) for i, b in notes if _envelopes(b))
    doc = Document.load(data)
    first = D.signed_entries(doc)
    first.clear()
    assert D.signed_entries(doc)
    with D.envelopes_parsed_once():
        got = D.signed_entries(doc)
        got.clear()
        assert D.signed_entries(doc)
