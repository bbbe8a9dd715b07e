"""Signature states stored when a note is written or merged (store/signature_index.py), on
real record.db files and real Automerge documents: reading the lists and the To do queue
verifies nothing, a tampered note that arrives is a finding at once, and a change of the
device list verifies again only the notes the device whose trust changed signed.

The verifier is counted where it runs (`store.signing.verifications`: every Ed25519 check
of a signed entry in this process)."""

from __future__ import annotations

import json

from automerge.core import ROOT, ScalarType

from store import documents as D
from store import signing
from store.device_list import DEVICE_LIST_ID
from store.models import Client, Diagnosis, Goal
from store.record import RecordStore

from test_signing import SETTINGS, Device, complete_note, devices, pair, share  # noqa: E402,F401

NOTES = 200


def signed_notes(device: Device, client_id: str, count: int, prefix: str) -> list[str]:
    store = device.store
    store.create_client(
        Client(id=client_id, display_name=f"Client {client_id}", diagnoses=[Diagnosis(code="F41.1", description="GAD")],
               goals=[Goal(id="g1", description="Sleep", objective="6 of 7 nights")])
    )
    ids = []
    with store.transaction():
        for i in range(count):
            note = complete_note(f"{prefix}{i}", client_id)
            store.create_note(note)
            store.sign_note(note.id)
            ids.append(note.id)
    return ids


def forge(doc) -> None:
    """What a hostile paired device does: replaces the signature of each signed entry with
    bytes of its own (it holds no key of the signing device's)."""
    with doc.transaction() as tx:
        for entry_id, envelope in D.signed_entries(doc).items():
            outer = json.loads(envelope)
            outer["sig"] = "5d" * 64
            tx.put(ROOT, "signed:" + entry_id, ScalarType.Str, json.dumps(outer, sort_keys=True, separators=(",", ":")))


def reopened(device: Device) -> RecordStore:
    """The record as a fresh open sees it: nothing cached, nothing verified in memory."""
    return RecordStore(device.conn, device_id=device.name, settings=lambda: SETTINGS)


def test_the_lists_and_the_to_do_queue_read_stored_states_and_verify_nothing(devices):
    a, b, _ = devices
    ids = signed_notes(a, "c1", NOTES, "n")
    pair(a, b)
    share(a, b, "c1", ids[0], DEVICE_LIST_ID)
    doc = b.store.replica.load_doc(ids[0])
    forge(doc)
    a.store.replica.apply_doc(ids[0], doc)  # arrives by sync: its state is computed here

    store = reopened(a)
    before = signing.verifications()
    rows = store.verify_rows(store.notes_for_client("c1"))
    findings = store.signature_findings()
    assert signing.verifications() == before  # nothing verified as the lists are read
    assert len(store._docs._cache) == 0  # and no document loaded
    attention = store.signature_attention_rows()
    assert signing.verifications() == before and len(store._docs._cache) == 0
    labels = {r.note_id: r.signature_status for r in rows}
    assert labels[ids[0]] == "tampered"
    assert {labels[i] for i in ids[1:]} == {"verified"}
    assert [(f.note_id, f.status.value) for f in findings] == [(ids[0], "tampered")]
    assert findings[0].findings
    assert [(r[0], r[1], r[3]) for r in attention] == [(ids[0], "Client c1", "tampered")]
    assert store.signature_problems() and signing.verifications() == before


def test_a_tampered_note_arriving_by_sync_is_a_finding_at_once(devices):
    a, b, _ = devices
    [note_id] = signed_notes(a, "c1", 1, "t")
    pair(a, b)
    share(a, b)
    doc = b.store.replica.load_doc(note_id)
    forge(doc)
    before = signing.verifications()
    a.store.replica.apply_doc(note_id, doc)
    assert signing.verifications() > before  # verified on intake, where the document is loaded
    at_intake = signing.verifications()
    assert [(f.note_id, f.status.value) for f in a.store.signature_findings()] == [(note_id, "tampered")]
    [row] = a.store.verify_rows(a.store.notes_for_client("c1"))
    assert row.signature_status == "tampered"
    assert signing.verifications() == at_intake


def test_a_device_list_change_verifies_again_only_the_notes_that_device_signed(devices):
    a, b, c = devices
    own = signed_notes(a, "ca", 30, "a")  # this device's notes: their signer's trust never changes
    pair(b, c)
    theirs = signed_notes(c, "cc", 3, "c")
    share(c, b)  # b trusts c (paired); c's notes and its device list reach b
    pair(a, b)
    # c's notes reach a before any device list that vouches for c: not verifiable here yet.
    share(b, a, "cc", *theirs)
    assert {a.store.verified_statuses(theirs)[i] for i in theirs} == {"tampered"}

    before = signing.verifications()
    share(b, a, DEVICE_LIST_ID)  # b's vouch for c arrives: c is trusted here now
    # The first screen after it: the To do queue and a client's list verify nothing.
    a.store.signature_findings()
    a.store.verify_rows(a.store.notes_for_client("ca") + a.store.notes_for_client("cc"))
    assert signing.verifications() - before <= len(theirs)
    while a.store.settle_signature_states():  # off the first screen, in bounded batches
        pass
    assert a.store.signature_findings() == []
    statuses = a.store.verified_statuses(own + theirs)
    assert {statuses[i] for i in own + theirs} == {"verified"}
    # One signed entry per note of c's, verified again; a's own 30 untouched.
    assert signing.verifications() - before == len(theirs)


def test_a_state_is_believed_only_for_the_heads_it_was_computed_at(devices):
    a, _, _ = devices
    [note_id] = signed_notes(a, "c1", 1, "h")
    assert a.store.verified_statuses([note_id]) == {note_id: "verified"}
    # As if the document had been changed by a path that bypassed the store (an older build).
    a.conn.execute("UPDATE signature_states SET heads = x'00' WHERE note_id = ?", (note_id,))
    assert a.store.verified_statuses([note_id]) == {note_id: "pending"}  # never shown as signed
    a.store.recheck_signatures()
    assert a.store.verified_statuses([note_id]) == {note_id: "verified"}


def test_a_record_from_before_stored_states_computes_them_in_batches(devices):
    a, _, _ = devices
    ids = signed_notes(a, "c1", 12, "u")
    # As a record made before states were stored: the table empty, the migration not run.
    a.conn.execute("DROP TABLE signature_states")
    a.conn.execute("DROP TABLE signature_signers")
    a.conn.execute("CREATE TABLE signature_checks(note_id TEXT PRIMARY KEY, heads BLOB NOT NULL, "
                   "trust BLOB NOT NULL, status TEXT NOT NULL)")
    a.conn.execute("DELETE FROM local_kv WHERE key = 'signature_states.trust.v1'")
    a.conn.execute("PRAGMA user_version = 3")
    store = reopened(a)
    before = signing.verifications()
    assert set(store.verified_statuses(ids).values()) == {"pending"}  # opening verified nothing
    assert signing.verifications() == before
    assert store.settle_signature_states(limit=5) == 7  # bounded: five at a time
    while store.settle_signature_states(limit=5):
        pass
    assert set(store.verified_statuses(ids).values()) == {"verified"}
    assert signing.verifications() - before == len(ids)


def test_notes_stored_whole_in_bulk_have_their_states_computed_as_they_are_read(devices):
    """A first sync's whole documents are read once for their rows; their states are verified
    there with the trusted keys and stored with them: the end of the session verifies
    nothing again (before, every signed note was pending and loaded again to settle it)."""
    a, b, _ = devices
    signed = signed_notes(b, "c1", 2, "w")
    b.store.create_note(complete_note("w-draft", "c1"))
    pair(a, b)
    doc = b.store.replica.load_doc(signed[0])
    forge(doc)
    b.store.replica.apply_doc(signed[0], doc)
    items = [(i, b.store.replica.stored_doc(i)[0]) for i in ("c1", DEVICE_LIST_ID, *signed, "w-draft")]
    applied, refused = a.store.replica.apply_snapshots(items)
    assert not refused and len(applied) == len(items)
    assert a.store.verified_statuses([*signed, "w-draft"]) == {
        signed[0]: "tampered", signed[1]: "verified", "w-draft": "unsigned"
    }
    assert a.store.pending_signature_states() == 0
    before = signing.verifications()
    # What the session's audit entry names, from the stored states alone.
    assert a.store.replica.signature_findings_among(frozenset(applied)) == {signed[0]: "tampered"}
    assert signing.verifications() == before
    # The states are those the store computes itself from the same documents.
    assert reopened(a).replica.signatures.stale() == []
    for note_id in signed:
        assert a.store.signature_state(note_id).status.value == a.store.verified_statuses([note_id])[note_id]


def test_a_state_read_with_keys_that_changed_before_it_is_stored_is_settled_again(devices):
    """The keys a reading verified with are the trust when it started; a signer whose trust
    changed by the time the note is stored makes the note pending, computed again."""
    a, b, _ = devices
    signed = signed_notes(b, "c1", 3, "k")
    items = [(i, b.store.replica.stored_doc(i)[0]) for i in ("c1", *signed)]
    paired = []

    def after_batch(_done: int) -> None:
        if not paired:  # after the client, before the notes: b becomes trusted here
            pair(a, b)
            paired.append(True)

    applied, refused = a.store.replica.apply_snapshots(items, batch=1, on_batch=after_batch)
    assert not refused and len(applied) == len(items)
    assert set(a.store.verified_statuses(signed).values()) == {"pending"}  # read without b's key
    assert a.store.replica.signature_findings_among(frozenset(applied)) == {}
    assert set(a.store.verified_statuses(signed).values()) == {"verified"}



def test_check_full_verifies_on_workers_exactly_what_the_store_verifies(devices, monkeypatch, answers_by_thread,
                                                                       caller_after_a_worker):
    """`check --full` verifies every signed note again, on worker processes when there are
    many (store/check_reading.py): the states stored are those the store computes alone, a
    forged note's finding included, and a worker did a share of the verifying."""
    from store import check_reading, prepare_pool
    from tests.store.conftest import FEEDER

    a, b, _ = devices
    ids = signed_notes(a, "c1", 3 * prepare_pool.MIN_PARALLEL, "w")
    pair(a, b)
    share(a, b, "c1", ids[7], DEVICE_LIST_ID)
    doc = b.store.replica.load_doc(ids[7])
    forge(doc)
    a.store.replica.apply_doc(ids[7], doc)
    states = "SELECT note_id, heads, status, findings FROM signature_states ORDER BY note_id"
    signers = "SELECT device_id, note_id FROM signature_signers ORDER BY note_id, device_id"

    a.store.recheck_signatures(full=True)
    alone = (a.conn.execute(states).fetchall(), a.conn.execute(signers).fetchall())
    assert FEEDER not in answers_by_thread
    assert [(r[0], r[2]) for r in alone[0] if r[2] != "verified"] == [(ids[7], "tampered")]

    monkeypatch.setattr(check_reading, "PARALLEL_FROM", 10)
    monkeypatch.setattr(check_reading, "WINDOW", 2 * prepare_pool.MIN_PARALLEL)  # two windows
    a.conn.execute("UPDATE signature_states SET status = 'verified', findings = '[]'")  # forgotten, must come back
    before = signing.verifications()
    a.store.recheck_signatures(full=True, workers=True)
    assert answers_by_thread.get(FEEDER, 0) > 0  # a worker verified a share
    assert signing.verifications() - before < len(ids)  # the rest were not verified here
    assert (a.conn.execute(states).fetchall(), a.conn.execute(signers).fetchall()) == alone
    assert a.store.pending_signature_states() == 0
