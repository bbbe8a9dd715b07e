"""Issue 11's findings, each as a regression test over real transports: real vaults, real
Automerge documents, direct sync over TLS on 127.0.0.1 and the mailbox folder.

The hostile device is a paired vault that uses the project's own sync code and writes what
it likes into its own copy of a note's document (the way anyone holding one of the
clinician's laptops could), then syncs.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from automerge.core import ROOT, ObjType, ScalarType

from store import documents as D
from store.errors import NoSignatureConflict
from store.synthetic import make_client, make_note

from test_convergence import PASSPHRASE, Device, _pair, direct, mailbox  # noqa: E402

CANARY = "CANARY-FORGED-93be"
PROCESS_TIMEOUT = 120


@pytest.fixture
def two(tmp_path: Path):
    a, b = Device(tmp_path / "a", "a"), Device(tmp_path / "b", "b")
    _pair(a, b)
    yield a, b
    for d in (a, b):
        d.close()


@pytest.fixture
def box(tmp_path: Path) -> Path:
    folder = tmp_path / "box"
    folder.mkdir()
    return folder


def signed_note(device: Device, *, clients: int = 1) -> str:
    """A client (or several) and a complete note, signed on `device`; the note's id."""

    def run():
        rng = random.Random(7)
        made = [device.record.create_client(make_client(rng, i)) for i in range(clients)]
        note = make_note(rng, made[0], 1, date(2026, 2, 3), complete=True)
        device.record.create_note(note)
        device.record.sign_note(note.id)
        return note.id

    return device.call(run)


def draft_note(device: Device) -> str:
    def run():
        rng = random.Random(8)
        client = device.record.create_client(make_client(rng, 0))
        note = make_note(rng, client, 1, date(2026, 2, 3), complete=True)
        device.record.create_note(note)
        return note.id

    return device.call(run)


def hostile_write(device: Device, note_id: str, change) -> None:
    """The hostile device changes its copy of the note's document as it likes and stores it
    through its own intake, as if it had arrived from yet another device."""

    def run():
        doc = device.record.replica.load_doc(note_id)
        change(doc)
        device.record.replica.apply_doc(note_id, doc)

    device.call(run)


def signed_entries(doc) -> dict:
    # The hostile device writes whatever schema the note has: signed entries, where the
    # store keeps them, and the signature map of earlier versions (so this test shows the
    # old weakness on the old code).
    read = getattr(D, "signed_entries", None)
    return read(doc) if read is not None else {}


def forge_text(doc) -> None:
    """Finding 1: rewrite the signed text, and recompute what the signature claims to cover
    so it matches (heads and content hash of a signature map; the signed payload of a
    signed entry), keeping the original signer and time."""
    key = D.note_from_doc(doc).section_keys[0]
    D.splice_section(doc, key, f"{CANARY} what the client never said.")
    forged = D.note_from_doc(doc)
    with doc.transaction() as tx:
        for entry_id, envelope in signed_entries(doc).items():
            outer = json.loads(envelope)
            payload = json.loads(outer["payload"])
            if payload.get("kind") == "note":
                payload["sections"] = {k: forged.sections.get(k, "") for k in forged.section_keys}
                outer["payload"] = D.canonical_json(payload).decode()
                tx.put(ROOT, "signed:" + entry_id, ScalarType.Str, json.dumps(outer, sort_keys=True, separators=(",", ":")))
        got = tx.get(ROOT, "signature")
        if got is not None and got[0] == ObjType.Map:
            tx.put(got[1], "content_hash", ScalarType.Str, D.content_hash(forged))
    if got is not None and got[0] == ObjType.Map:
        lst = doc.get(got[1], "heads")
        if lst is not None and lst[0] == ObjType.List:
            with doc.transaction() as tx:
                heads = tx.put_object(got[1], "heads", ObjType.List)
                for i, h in enumerate(sorted(x.hex() for x in doc.get_heads())):
                    tx.insert(heads, i, ScalarType.Str, h)


def cli_check(device: Device) -> subprocess.CompletedProcess:
    env = {**os.environ, "NOTEWELL_PASSPHRASE": PASSPHRASE, "PYTHONUNBUFFERED": "1"}
    env.pop("NOTEWELL_VAULT", None)
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", "--vault", str(device.vault.path), "check"],
        capture_output=True, text=True, timeout=PROCESS_TIMEOUT, env=env,
    )


def state(device: Device, note_id: str):
    return device.call(lambda: device.record.signature_state(note_id))


def test_finding_1_a_forged_signed_note_is_a_tamper_finding_and_check_fails(two):
    a, b = two
    note_id = signed_note(a)
    original = a.call(lambda: a.record.get_note(note_id))
    direct(b, a)
    hostile_write(b, note_id, forge_text)
    direct(b, a)
    problems = a.call(a.vault.check)
    assert any(note_id in p for p in problems), problems
    assert not any(CANARY in p for p in problems)
    found = state(a, note_id)
    assert found.status.value == "tampered" and not found.signed
    kept = [v for v in found.versions if v.kept_here]
    assert kept and kept[0].note.sections == original.sections  # the signed original, readable
    done = cli_check(a)
    assert done.returncode != 0 and note_id in done.stderr and CANARY not in done.stderr + done.stdout
    # The audit trail names what the sync changed and the finding, by id only.
    session = [e for e in a.call(a.vault.audit.entries) if e.event == "sync_session"][-1]
    assert note_id in session.details["merged_ids"]
    assert f"{note_id}: tampered" in session.details["signature_findings"]
    first = [e for e in a.call(a.vault.audit.entries) if e.event == "sync_session"][0]
    assert first.details["arrived"] == [] and CANARY not in str(session.details)


def test_the_audit_trail_names_the_notes_that_arrived(two):
    a, b = two
    note_id = signed_note(a)
    direct(b, a)
    session = [e for e in b.call(b.vault.audit.entries) if e.event == "sync_session"][-1]
    assert note_id in session.details["arrived"] and session.details["signature_findings"] == []


def test_finding_2_a_deleted_signed_addendum_is_detected_and_still_readable(two, box):
    a, b = two
    note_id = signed_note(a)
    a.call(lambda: a.record.add_addendum(note_id, "Clarification: homework was two thought records.", "clarify"))
    mailbox(a, box)
    mailbox(b, box)
    assert len(b.call(lambda: b.record.get_note(note_id)).addenda) == 1

    def delete_addendum(doc):
        with doc.transaction() as tx:
            for entry_id, envelope in signed_entries(doc).items():
                if json.loads(json.loads(envelope)["payload"]).get("kind") == "addendum":
                    tx.delete(ROOT, "signed:" + entry_id)
            got = tx.get(ROOT, "addenda")
            if got is not None and got[0] == ObjType.List and tx.length(got[1]):
                tx.delete(got[1], 0)

    hostile_write(b, note_id, delete_addendum)
    mailbox(b, box)
    mailbox(a, box)
    problems = a.call(a.vault.check)
    assert any(note_id in p for p in problems), problems
    found = state(a, note_id)
    assert found.status.value == "tampered"
    assert any("removed by a sync" in f for f in found.findings)
    assert [x.text for x in found.addenda] == ["Clarification: homework was two thought records."]


def test_finding_2_a_signed_note_moved_to_another_client_is_detected(two):
    a, b = two
    note_id = signed_note(a, clients=2)
    signed_for = a.call(lambda: a.record.get_note(note_id)).client_id
    direct(b, a)
    other = next(r.client_id for r in b.call(b.record.list_clients) if r.client_id != signed_for)

    def move(doc):
        with doc.transaction() as tx:
            tx.put(ROOT, "client_id", ScalarType.Str, other)

    hostile_write(b, note_id, move)
    direct(a, b)
    problems = a.call(a.vault.check)
    assert any(note_id in p for p in problems), problems
    found = state(a, note_id)
    assert found.status.value == "tampered"
    assert any("another client" in f or "not the client" in f for f in found.findings)
    assert [v.note.client_id for v in found.versions] == [signed_for]  # the signed original


def test_finding_3_both_signatures_survive_concurrent_signing_with_an_edit(two, box):
    a, b = two
    note_id = draft_note(a)
    direct(b, a)

    def edit_and_sign():
        note = b.record.get_note(note_id)
        key = note.section_keys[-1]
        b.record.set_section(note_id, key, note.sections[key] + " Added on the second laptop.")
        b.record.sign_note(note_id)

    b.call(edit_and_sign)
    a.call(lambda: a.record.sign_note(note_id))
    mailbox(a, box)
    mailbox(b, box)
    mailbox(a, box)
    for device in (a, b):
        rows = device.call(lambda d=device: d.record.notes_for_client(d.record.get_note(note_id).client_id))
        assert [r.signature_conflict for r in rows if r.note_id == note_id] == [True]
        found = state(device, note_id)
        assert found.status.value == "conflict" and not found.signed
        assert len(found.versions) == 2 and all(v.verified for v in found.versions)
    signers = {v.device_id for v in state(a, note_id).versions}
    assert signers == {a.identity.device_id, b.identity.device_id}


def test_finding_4_labels_are_the_viewers_and_two_resolutions_converge(two):
    a, b = two
    note_id = draft_note(a)
    direct(b, a)

    def edit():
        note = b.record.get_note(note_id)
        key = note.section_keys[-1]
        b.record.set_section(note_id, key, note.sections[key] + " Typed on the second laptop.")

    b.call(edit)
    a.call(lambda: a.record.sign_note(note_id))
    direct(b, a)
    for viewer, other in ((a, b), (b, a)):
        found = state(viewer, note_id)
        assert found.status.value == "conflict"
        (signed,) = found.versions
        assert signed.device_id == a.identity.device_id
        assert signed.device_label == ("this device" if viewer is a else "a")
    # Both resolve before they sync again, differently.
    a.call(lambda: a.record.resolve_signature_conflict(note_id, "addendum"))
    b.call(lambda: b.record.resolve_signature_conflict(note_id, "resign"))
    direct(a, b)
    ends = [state(d, note_id) for d in (a, b)]
    assert a.call(lambda: a.record.replica.doc_heads_of(note_id)) == b.call(lambda: b.record.replica.doc_heads_of(note_id))
    for found in ends:
        assert found.status.value == "verified", found.findings
        assert all(v.verified for v in found.versions)
    assert {v.entry_id for v in ends[0].versions} == {v.entry_id for v in ends[1].versions}
    assert len(ends[0].versions) == 2  # the first signature and the re-signing, both kept
    assert ends[0].shown.entry_id == ends[1].shown.entry_id
    for d in (a, b):
        with pytest.raises(NoSignatureConflict):
            d.call(lambda d=d: d.record.resolve_signature_conflict(note_id, "addendum"))
