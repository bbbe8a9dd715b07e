"""Signatures by key (store/signing.py), the device list (store/device_list.py) and the
signature state (store/signature_state.py), on real record.db files and real Automerge
documents. Devices here are bare record stores with identities of their own; the sync
tests (tests/sync/test_signature_findings.py) run the same across real transports."""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from automerge.core import ROOT, ScalarType
from cryptography.hazmat.primitives.asymmetric import ed25519

from store import documents as D
from store import signing
from store.database import open_database
from store.device_identity import ensure_identity
from store.device_list import DEVICE_LIST_ID, trust_from
from store.models import ClinicianSettings, Client, NoteFormat, ProgressNote, SessionFacts
from store.record import RecordStore
from store.signature_state import SignatureStatus, signature_state

CANARY = "CANARY-SIGN-41c2"
SETTINGS = ClinicianSettings(clinician_name="Dr Test Signer", credentials="LCSW")


class Device:
    def __init__(self, folder: Path, name: str) -> None:
        folder.mkdir(parents=True)
        self.conn = open_database(folder / "record.db", os.urandom(32), create=True)
        self.store = RecordStore(self.conn, device_id=name, settings=lambda: SETTINGS)
        self.identity = ensure_identity(self.store.replica, name)
        self.name = name


def pair(x: Device, y: Device) -> None:
    """What pairing leaves in the device list: each vouches for the other."""
    x.store.replica.vouch_for(y.identity.device_id, y.name, y.identity.cert_pem)
    y.store.replica.vouch_for(x.identity.device_id, x.name, x.identity.cert_pem)


def share(src: Device, dst: Device, *doc_ids: str) -> None:
    """A sync from src to dst, as the intake sees it, and its end (the vouches shared)."""
    for doc_id in doc_ids or tuple(src.store.replica.doc_heads()):
        dst.store.replica.apply_doc(doc_id, src.store.replica.load_doc(doc_id))
    dst.store.replica.share_vouches()


@pytest.fixture
def devices(tmp_path: Path):
    made = [Device(tmp_path / n, n) for n in ("a", "b", "c")]
    yield made
    for d in made:
        d.conn.close()


def complete_note(note_id: str = "n1", client_id: str = "c1") -> ProgressNote:
    from store.models import GoalProgress, Modality, ProgressRating, RiskAssessment, RiskLevel

    return ProgressNote(
        id=note_id,
        client_id=client_id,
        format=NoteFormat.DAP,
        sections={
            "data": f"{CANARY} client reported sleeping five hours most nights.",
            "assessment": "Anxiety symptoms persist; engaged in cognitive restructuring.",
            "plan": "Continue weekly; sleep diary; next session in one week.",
        },
        facts=SessionFacts(
            date_of_service=date(2026, 1, 5),
            start_time="10:00",
            stop_time="10:53",
            cpt_code="90837",
            modality=Modality.IN_PERSON,
            diagnoses_addressed=["F41.1"],
            goals_addressed=[GoalProgress(goal_id="g1", rating=ProgressRating.SOME_PROGRESS)],
            interventions=["cognitive restructuring"],
            risk=RiskAssessment(suicide=RiskLevel.NONE, violence=RiskLevel.NONE),
        ),
    )


def with_signed_note(d: Device, note_id: str = "n1") -> ProgressNote:
    from store.models import Diagnosis, Goal

    if not d.store.replica.doc_heads_of("c1"):
        d.store.create_client(
            Client(id="c1", display_name="Avery Signtest", diagnoses=[Diagnosis(code="F41.1", description="GAD")],
                   goals=[Goal(id="g1", description="Sleep", objective="6 of 7 nights")])
        )
    d.store.create_note(complete_note(note_id))
    return d.store.sign_note(note_id)


def test_the_canonical_encoding_is_one_byte_string_for_one_content():
    note = complete_note()
    when = datetime(2026, 1, 6, 9, 0, tzinfo=timezone.utc)
    a = signing.note_payload(note, entry_id="e1", signer="Dr X", credentials="PhD", signed_at=when, device_id="d")
    shuffled = json.loads(json.dumps(a), object_pairs_hook=lambda kv: dict(reversed(kv)))
    assert D.canonical_json(a) == D.canonical_json(shuffled)
    data = D.canonical_json(a)
    assert json.loads(data)["v"] == 1 and data.decode("utf-8")
    for field in ("note_id", "client_id", "format", "date_of_service", "sections", "facts", "signer",
                  "credentials", "signed_at", "device_id"):
        assert field in a
    assert D.payload_content_hash(a) == D.content_hash(note)


def test_a_signature_verifies_and_every_altered_byte_fails(devices):
    a = devices[0]
    with_signed_note(a)
    doc = a.store.replica.load_doc("n1")
    state = a.store.signature_state("n1")
    assert state.status == SignatureStatus.VERIFIED and state.signed
    assert state.shown.device_label == "this device"
    assert state.shown.note.sections == complete_note().sections
    (entry_id, envelope), = D.signed_entries(doc).items()
    outer = json.loads(envelope)
    forged_payload = outer["payload"].replace("five hours", "nine hours")
    forged = json.dumps({**outer, "payload": forged_payload}, sort_keys=True, separators=(",", ":"))
    key_for = a.store.replica.device_trust().public_key
    opened = signing.open_entry(entry_id, forged, "n1", key_for)
    assert not opened.verified and "does not verify" in opened.problem
    assert CANARY not in opened.problem
    # Signed by a key of no trusted device: refused even though the signature is sound.
    stranger = ed25519.Ed25519PrivateKey.generate()
    payload = json.loads(outer["payload"])
    assert not signing.open_entry(entry_id, signing.seal(stranger, payload), "n1", key_for).verified
    # Stored under another id, or for another note.
    assert "another entry" in signing.open_entry("other", envelope, "n1", key_for).problem
    assert "another note" in signing.open_entry(entry_id, envelope, "n2", key_for).problem
    assert signing.open_entry(entry_id, envelope, "n1", key_for).verified


def test_a_device_never_paired_with_verifies_through_the_vouches_that_travel(devices):
    a, b, c = devices
    pair(a, b)
    pair(b, c)  # a and c never meet
    with_signed_note(a)
    share(a, b)
    share(b, c)  # the device list travels like any record document
    assert DEVICE_LIST_ID in c.store.replica.doc_heads()
    state = c.store.signature_state("n1")
    assert state.status == SignatureStatus.VERIFIED
    assert state.shown.device_label == "a" and state.shown.device_id == a.identity.device_id
    # Without B's vouch for A, C does not trust A's key: a finding, never "signed".
    lonely = trust_from(None, c.identity)
    assert signature_state(c.store.replica.load_doc("n1"), lonely).status == SignatureStatus.TAMPERED


def test_a_vouch_by_an_untrusted_device_adds_no_trust(devices):
    a, b, c = devices
    pair(b, c)  # c trusts b; a vouched for by nobody c trusts
    a.store.replica.vouch_for(c.identity.device_id, "c", c.identity.cert_pem)  # a's claim about c
    a.store.replica.list_this_device()  # into a's device list (as when a first signs)
    share(a, c, DEVICE_LIST_ID)
    assert a.identity.device_id not in c.store.replica.device_trust().devices
    assert b.identity.device_id in c.store.replica.device_trust().devices


def test_concurrent_additions_to_the_device_list_all_survive(devices):
    a, b, c = devices
    pair(a, b)
    a.store.replica.vouch_for(c.identity.device_id, "c", c.identity.cert_pem)
    b.store.replica.vouch_for(c.identity.device_id, "c", c.identity.cert_pem)
    for d in (a, b):  # both lists made at once, on two devices, then merged
        d.store.replica.list_this_device()
    share(a, b, DEVICE_LIST_ID)
    share(b, a, DEVICE_LIST_ID)
    keys = set(D._MapView(a.store.replica.load_doc(DEVICE_LIST_ID), ROOT).keys())
    for voucher in (a, b):
        assert f"vouch:{voucher.identity.device_id}:{c.identity.device_id}" in keys
    assert a.store.replica.doc_heads_of(DEVICE_LIST_ID) == b.store.replica.doc_heads_of(DEVICE_LIST_ID)


def test_addenda_are_signed_over_the_content_they_amend(devices):
    a = devices[0]
    with_signed_note(a)
    note = a.store.add_addendum("n1", f"{CANARY} the session was by video.", "modality clarified")
    state = a.store.signature_state("n1")
    assert state.signed and len(state.addenda) == 1 and note.addenda[0].id == state.addenda[0].id
    payload = json.loads(json.loads(D.signed_entries(a.store.replica.load_doc("n1"))[note.addenda[0].id])["payload"])
    assert payload["amends"] == state.shown.content_hash and payload["kind"] == "addendum"


def test_a_signed_entry_altered_in_the_document_is_a_finding_and_the_original_stays(devices):
    a, b, _c = devices
    pair(a, b)
    with_signed_note(a)
    share(a, b)
    doc = b.store.replica.load_doc("n1")
    (entry_id, envelope), = D.signed_entries(doc).items()
    outer = json.loads(envelope)
    payload = json.loads(outer["payload"])
    payload["sections"]["data"] = "FORGED text"
    D.splice_section(doc, "data", "FORGED text")
    with doc.transaction() as tx:
        tx.put(ROOT, "signed:" + entry_id, ScalarType.Str,
               json.dumps({**outer, "payload": D.canonical_json(payload).decode()}, sort_keys=True, separators=(",", ":")))
    b.store.replica.apply_doc("n1", doc)
    share(b, a, "n1")
    state = a.store.signature_state("n1")
    assert state.status == SignatureStatus.TAMPERED and not state.signed
    assert any("altered by a sync" in f for f in state.findings)
    kept = [v for v in state.versions if v.kept_here]
    assert kept and kept[0].note.sections["data"] == complete_note().sections["data"]
    assert any("n1" in p and "fails signature verification" in p for p in a.store.check())


def test_reissued_payloads_hash_the_content_only_for_the_addenda_that_amend_it(monkeypatch):
    """An import makes the payloads of every note signed elsewhere (`reissue_payloads`): the
    hash of the note's content is what an addendum's payload names as amended, so a note
    without addenda (most of them) does not compute it (before: once for every note)."""
    hashed = []
    real = signing.payload_content_hash
    monkeypatch.setattr(signing, "payload_content_hash", lambda p: hashed.append(p) or real(p))
    note = complete_note()
    sig = SimpleNamespace(signer="Dr. A", credentials="PhD", signed_at=datetime(2026, 3, 2, 9, tzinfo=timezone.utc))
    [(entry_id, payload)] = signing.reissue_payloads(note, sig, [], device_id="dev-1")
    assert hashed == []
    assert payload["id"] == entry_id and payload["note_id"] == note.id
    addendum = SimpleNamespace(id="a1", text="More.", reason="Late detail.", signer="Dr. A", credentials="PhD",
                               signed_at=datetime(2026, 3, 3, 9, tzinfo=timezone.utc))
    _note, (_id, amending) = signing.reissue_payloads(note, sig, [addendum], device_id="dev-1")
    assert len(hashed) == 1 and amending["amends"] == real(_note[1])
