"""RecordStore on real SQLCipher files: clients, notes, signing, addenda, conflicts, sync API."""

from __future__ import annotations

import os
from datetime import date, time
from pathlib import Path

import pytest
from automerge.core import ROOT, Document, ScalarType

pytest.importorskip("store.database")

from store.database import open_database  # noqa: E402
from store.device_identity import ensure_identity  # noqa: E402
from store.documents import new_client_doc  # noqa: E402
from store.errors import (  # noqa: E402
    ComplianceIncomplete,
    ForeignDocument,
    NoSignatureConflict,
    NoteChangedMeanwhile,
    NoteNotSigned,
    NotFound,
    SignedNoteLocked,
    SignerUnknown,
    ValidationFailed,
)
from store.models import (  # noqa: E402
    ClinicianSettings,
    Client,
    Diagnosis,
    Goal,
    GoalProgress,
    Modality,
    NoteFormat,
    NoteStatus,
    ProgressNote,
    ProgressRating,
    RiskAssessment,
    RiskLevel,
    SessionFacts,
)
from store.record import MIGRATIONS, RecordStore  # noqa: E402

CANARY = "CANARY-7f3a"


class Settings:
    """A mutable settings source, as the vault hands one to the store."""

    def __init__(self) -> None:
        self.value = ClinicianSettings(clinician_name="Dr Test Clinician", credentials="PhD")

    def __call__(self) -> ClinicianSettings:
        return self.value


class Device:
    """One device's record.db, reopenable."""

    def __init__(self, folder: Path, device_id: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "record.db"
        self.key = os.urandom(32)
        self.device_id = device_id
        self.settings = Settings()
        self.conn = open_database(self.path, self.key, create=True)
        self.store = RecordStore(self.conn, device_id=device_id, settings=self.settings)
        self.identity = ensure_identity(self.store.replica, device_id)

    def reopen(self) -> RecordStore:
        self.conn.close()
        self.conn = open_database(self.path, self.key)
        self.store = RecordStore(self.conn, device_id=self.device_id, settings=self.settings)
        return self.store

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def device(tmp_path: Path):
    d = Device(tmp_path / "a", "device-a")
    yield d
    d.close()


@pytest.fixture
def other(tmp_path: Path, device: Device):
    """A second device, paired with `device` (each vouches for the other, as pairing does)."""
    d = Device(tmp_path / "b", "device-b")
    device.store.replica.vouch_for(d.identity.device_id, "device-b", d.identity.cert_pem)
    d.store.replica.vouch_for(device.identity.device_id, "device-a", device.identity.cert_pem)
    yield d
    d.close()


def a_client(cid: str = "c1", name: str = "Avery Testperson") -> Client:
    return Client(
        id=cid,
        display_name=name,
        date_of_birth=date(1990, 3, 4),
        diagnoses=[Diagnosis(code="F41.1", description="Generalized anxiety")],
        goals=[Goal(id="g1", description="Sleep through the night", objective="6 of 7 nights")],
    )


def complete_note(nid: str = "n1", cid: str = "c1", on: date = date(2026, 1, 5)) -> ProgressNote:
    return ProgressNote(
        id=nid,
        client_id=cid,
        format=NoteFormat.DAP,
        sections={
            "data": f"{CANARY} client described two nights of full sleep and calmer mornings.",
            "assessment": "Symptoms easing; engaged well with the sleep diary this week.",
            "plan": "Review sleep diary next week; practise paced breathing daily.",
        },
        facts=SessionFacts(
            date_of_service=on,
            start_time=time(10, 0),
            stop_time=time(10, 50),
            cpt_code="90834",
            modality=Modality.VIDEO,
            diagnoses_addressed=["F41.1"],
            goals_addressed=[GoalProgress(goal_id="g1", rating=ProgressRating.SOME_PROGRESS)],
            interventions=["cognitive restructuring"],
            risk=RiskAssessment(suicide=RiskLevel.NONE, violence=RiskLevel.NONE),
            phq9=8,
        ),
    )


def with_note(store: RecordStore) -> ProgressNote:
    store.create_client(a_client())
    return store.create_note(complete_note())


def notes_view_row(store: RecordStore, note_id: str):
    return store._conn.execute(
        "SELECT status, signature_conflict, late_entry, addenda_count FROM notes_view WHERE note_id = ?",
        (note_id,),
    ).fetchone()


# --- clients and notes ---------------------------------------------------------------


def test_clients_create_update_list(device: Device) -> None:
    store = device.store
    store.create_client(a_client("c1", "Avery Testperson"))
    store.create_client(a_client("c2", "Blake Example"))
    with pytest.raises(ValidationFailed):
        store.create_client(a_client("c1", "Someone Else"))
    updated = store.update_client(a_client("c1", "Avery Renamed").model_copy(update={"diagnoses": []}))
    assert updated.display_name == "Avery Renamed" and updated.diagnoses == []
    assert store.get_client("c1") == updated
    assert [r.client_id for r in store.list_clients()] == ["c1", "c2"]
    assert [r.client_id for r in store.list_clients("blake")] == ["c2"]
    assert store.list_clients("%") == []
    with pytest.raises(NotFound):
        store.get_client("nope")
    with pytest.raises(NotFound):
        store.update_client(a_client("nope"))
    assert store.check() == []


def test_notes_newest_first_and_sections(device: Device) -> None:
    store = device.store
    store.create_client(a_client())
    store.create_note(complete_note("old", on=date(2025, 12, 1)))
    store.create_note(complete_note("new", on=date(2026, 1, 9)))
    store.set_section("old", "plan", "Plan: CANARY-7f3a next steps agreed.")
    assert store.get_note("old").sections["plan"] == "Plan: CANARY-7f3a next steps agreed."
    assert [r.note_id for r in store.notes_for_client("c1")] == ["new", "old"]
    with pytest.raises(ValidationFailed):
        store.set_section("old", "subjective", "not a DAP section")
    with pytest.raises(NotFound):
        store.create_note(complete_note("orphan", cid="missing-client"))
    with pytest.raises(NotFound):
        store.set_section("c1", "plan", "a client is not a note")
    assert store.check() == []


def test_update_facts_and_reopen(device: Device) -> None:
    note = with_note(device.store)
    facts = note.facts.model_copy(update={"stop_time": time(10, 55), "phq9": 5})
    device.store.update_facts(note.id, facts)
    store = device.reopen()
    assert store.get_note(note.id).facts.phq9 == 5
    assert store.notes_for_client("c1")[0].minutes == 55


# --- signing -------------------------------------------------------------------------


def test_sign_refuses_incomplete_note_and_unknown_signer(device: Device) -> None:
    store = device.store
    store.create_client(a_client())
    incomplete = complete_note().model_copy(update={"sections": {"data": "", "assessment": "", "plan": ""}})
    store.create_note(incomplete)
    heads = store.replica.doc_heads()["n1"]
    with pytest.raises(ComplianceIncomplete) as err:
        store.sign_note("n1")
    assert err.value.missing
    assert store.replica.doc_heads()["n1"] == heads

    store.set_section("n1", "data", complete_note().sections["data"])
    store.set_section("n1", "assessment", complete_note().sections["assessment"])
    store.set_section("n1", "plan", complete_note().sections["plan"])
    device.settings.value = ClinicianSettings(clinician_name="", credentials="")
    heads = store.replica.doc_heads()["n1"]
    with pytest.raises(SignerUnknown):
        store.sign_note("n1")
    assert store.replica.doc_heads()["n1"] == heads
    assert store.get_note("n1").status == NoteStatus.DRAFT


def test_signed_note_refuses_edits_and_changes_nothing(device: Device) -> None:
    store = device.store
    with_note(store)
    signed = store.sign_note("n1")
    assert signed.status == NoteStatus.SIGNED
    sig = signed.signature
    assert sig.signer == "Dr Test Clinician" and sig.credentials == "PhD"
    assert sig.device_id == device.identity.device_id  # the key that signed: the certificate's fingerprint
    assert sig.signed_at.tzinfo is not None
    assert store.signature_state("n1").signed
    heads = store.replica.doc_heads()["n1"]
    with pytest.raises(SignedNoteLocked):
        store.set_section("n1", "plan", "changed after signing")
    with pytest.raises(SignedNoteLocked):
        store.update_facts("n1", signed.facts.model_copy(update={"phq9": 20}))
    with pytest.raises(SignedNoteLocked):
        store.sign_note("n1")
    assert store.replica.doc_heads()["n1"] == heads
    assert store.get_note("n1") == signed
    assert notes_view_row(store, "n1") == ("signed", 0, 1, 0)  # a 2026-01-05 session signed now is late


def test_addenda_survive_reopening_and_leave_the_original(device: Device) -> None:
    store = device.store
    with_note(store)
    with pytest.raises(NoteNotSigned):
        store.add_addendum("n1", "too early", "no signature yet")
    signed = store.sign_note("n1")
    with pytest.raises(ValidationFailed):
        store.add_addendum("n1", "   ", "blank text")
    store.add_addendum("n1", f"{CANARY} correction: session was by video.", "modality clarified")
    store = device.reopen()
    note = store.get_note("n1")
    assert len(note.addenda) == 1
    a = note.addenda[0]
    assert a.text.startswith(CANARY) and a.signer == "Dr Test Clinician" and a.content_hash
    assert note.sections == signed.sections and note.signature == signed.signature
    assert store.signed_version("n1").sections == signed.sections
    assert notes_view_row(store, "n1")[3] == 1
    assert [h.doc_id for h in store.search("correction")] == ["n1"]
    assert store.check() == []


def test_entered_in_error_keeps_the_note(device: Device) -> None:
    store = device.store
    with_note(store)
    store.sign_note("n1")
    marked = store.mark_entered_in_error("n1", "wrong client selected")
    assert marked.status == NoteStatus.ENTERED_IN_ERROR
    assert marked.entered_in_error.reason == "wrong client selected"
    assert marked.sections == complete_note().sections and marked.signature is not None
    with pytest.raises(SignedNoteLocked):
        store.set_section("n1", "plan", "x")
    store = device.reopen()
    assert store.get_note("n1").status == NoteStatus.ENTERED_IN_ERROR
    assert [r.status for r in store.notes_for_client("c1")] == [NoteStatus.ENTERED_IN_ERROR]
    assert [h.doc_id for h in store.search(CANARY)] == ["n1"]
    assert store.check() == []


# --- signature conflicts -------------------------------------------------------------


def conflicted(device: Device, other: Device) -> None:
    """device signs n1 while other, holding a copy, edits its data section."""
    a, b = device.store, other.store
    with_note(a)
    for doc_id in ("c1", "n1"):
        assert b.replica.apply_doc(doc_id, a.replica.load_doc(doc_id))
    b.set_section("n1", "data", complete_note().sections["data"] + " Added on the other device.")
    a.sign_note("n1")
    assert a.replica.apply_doc("n1", b.replica.load_doc("n1"))
    assert not a.replica.apply_doc("n1", b.replica.load_doc("n1"))  # nothing new the second time


def test_signature_conflict_resolved_by_addendum(device: Device, other: Device) -> None:
    conflicted(device, other)
    store = device.store
    assert notes_view_row(store, "n1")[:2] == ("signed", 1)
    assert store.get_note("n1").sections["data"].endswith("Added on the other device.")
    note = store.resolve_signature_conflict("n1", "addendum")
    assert note.sections == complete_note().sections  # back to what was signed
    assert len(note.addenda) == 1 and "Added on the other device." in note.addenda[0].text
    assert note.resolution.choice == "addendum"
    assert notes_view_row(store, "n1")[:2] == ("signed", 0)
    with pytest.raises(NoSignatureConflict):
        store.resolve_signature_conflict("n1", "addendum")
    assert store.check() == []
    # The other device takes the resolution and agrees.
    assert other.store.replica.apply_doc("n1", store.replica.load_doc("n1"))
    assert other.store.get_note("n1") == store.get_note("n1")
    assert other.store.check() == []


def test_signature_conflict_resolved_by_resigning(device: Device, other: Device) -> None:
    conflicted(device, other)
    store = device.store
    first = store.get_note("n1").signature
    with pytest.raises(ValidationFailed):
        store.resolve_signature_conflict("n1", "ignore")
    note = store.resolve_signature_conflict("n1", "resign")
    assert note.sections["data"].endswith("Added on the other device.")
    assert note.signature != first and note.resolution.choice == "resign"
    assert store.previous_signatures("n1") == [first]
    assert store.signed_version("n1").sections == note.sections
    assert notes_view_row(store, "n1")[:2] == ("signed", 0)
    assert store.check() == []


# --- persistence ---------------------------------------------------------------------


def test_many_changes_compact_and_reload_identically(device: Device) -> None:
    store = device.store
    with_note(store)
    text = ""
    for i in range(130):
        text += f"w{i} "
        store.set_section("n1", "data", text)
    n_changes = store._conn.execute("SELECT n_changes FROM documents WHERE doc_id = 'n1'").fetchone()[0]
    assert n_changes < 50  # compacted at least once
    heads = store.replica.doc_heads()["n1"]
    before = store.get_note("n1")
    live = store.replica.load_doc("n1").get_heads()
    store = device.reopen()
    assert store.get_note("n1") == before
    assert sorted(store.replica.load_doc("n1").get_heads()) == sorted(live) == sorted(heads)
    assert store.check() == []


def test_typing_change_is_small(device: Device) -> None:
    store = device.store
    with_note(store)
    store.set_section("n1", "data", "x" * 3000)
    size_before = store._conn.execute("SELECT n_changes FROM documents WHERE doc_id='n1'").fetchone()[0]
    store.set_section("n1", "data", "x" * 1500 + "y" + "x" * 1500)
    row = store._conn.execute(
        "SELECT length(data) FROM document_changes WHERE doc_id='n1' AND seq = ?", (size_before + 1,)
    ).fetchone()
    assert row is not None and row[0] < 200


# --- search --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query", ['"', "AND(", "NEAR(", "*", "-", "a OR", "'", "^", "(((", "data:x", "", "  ", "NOT", '"unterminated']
)
def test_search_survives_hostile_queries(device: Device, query: str) -> None:
    with_note(device.store)
    device.store.search(query)  # must not raise


def test_search_finds_notes_and_clients(device: Device) -> None:
    store = device.store
    with_note(store)
    hits = store.search(CANARY.lower())
    assert [(h.doc_id, h.kind, h.client_id) for h in hits] == [("n1", "progress_note", "c1")]
    assert "[" in hits[0].snippet
    assert [h.doc_id for h in store.search("Aver")] == ["c1"]  # prefix on the last word
    assert [h.kind for h in store.search("Generalized anxiety")] == ["client"]


def test_typed_text_is_found_after_deferred_indexing(device: Device) -> None:
    store = device.store
    with_note(store)
    store.set_section("n1", "plan", "Plan: try the zephyrine breathing drill nightly.")
    # Typing marks the entry as due rather than rewriting the index on every keystroke.
    assert store._conn.execute("SELECT doc_id FROM record_fts_pending").fetchall() == [("n1",)]
    assert store.check() == []
    store = device.reopen()  # the mark survives a restart
    assert [h.doc_id for h in store.search("zephyrine")] == ["n1"]
    assert store._conn.execute("SELECT count(*) FROM record_fts_pending").fetchone()[0] == 0
    assert store.check() == []


# --- the sync-facing API -------------------------------------------------------------


def test_apply_doc_refuses_foreign_documents(device: Device) -> None:
    store = device.store
    with_note(store)
    heads = store.replica.doc_heads()
    blank = Document()
    with blank.transaction() as tx:
        tx.put(ROOT, "type", ScalarType.Str, "shopping_list")
        tx.put(ROOT, "id", ScalarType.Str, "x1")
    with pytest.raises(ForeignDocument):
        store.replica.apply_doc("x1", blank)
    with pytest.raises(ForeignDocument):  # the id inside must be the id it is offered under
        store.replica.apply_doc("other-id", store.replica.load_doc("n1"))
    with pytest.raises(ForeignDocument):  # a client document offered as an existing note
        store.replica.apply_doc("n1", new_client_doc(a_client("n1"), b"\x01" * 16))
    with pytest.raises(ForeignDocument):
        store.replica.apply_changes("n1", [b"not automerge"])
    assert store.replica.doc_heads() == heads
    assert store.check() == []


def test_changes_round_trip_between_devices(device: Device, other: Device) -> None:
    a, b = device.store, other.store
    with_note(a)
    for doc_id, heads in a.replica.doc_heads().items():
        assert b.replica.apply_changes(doc_id, a.replica.changes_since(doc_id, []))
    assert b.get_note("n1") == a.get_note("n1")
    known = b.replica.doc_heads()["n1"]
    a.set_section("n1", "plan", "Plan revised: review diary, add worry time.")
    assert b.replica.apply_changes("n1", a.replica.changes_since("n1", known))
    assert not b.replica.apply_changes("n1", a.replica.changes_since("n1", known))
    assert b.get_note("n1").sections["plan"] == "Plan revised: review diary, add worry time."
    # A change whose ancestors are missing waits instead of failing.
    h1 = a.replica.doc_heads()["n1"]
    a.set_section("n1", "plan", "Plan revised again: one.")
    h2 = a.replica.doc_heads()["n1"]
    a.set_section("n1", "plan", "Plan revised again: two.")
    b_heads = b.replica.doc_heads()["n1"]
    assert not b.replica.apply_changes("n1", a.replica.changes_since("n1", h2))
    assert b.replica.doc_heads()["n1"] == b_heads
    assert b.replica.apply_changes("n1", a.replica.changes_since("n1", h1))
    assert b.get_note("n1").sections["plan"] == "Plan revised again: two."
    assert a.replica.changes_since("n1", a.replica.doc_heads()["n1"]) == []
    assert b.check() == [] and a.check() == []
    with pytest.raises(NotFound):
        a.replica.load_doc("missing")


def test_load_doc_is_a_fork(device: Device) -> None:
    store = device.store
    with_note(store)
    heads = store.replica.doc_heads()["n1"]
    fork = store.replica.load_doc("n1")
    with fork.transaction() as tx:
        tx.put(ROOT, "status", ScalarType.Str, "signed")
    assert store.replica.doc_heads()["n1"] == heads
    assert store.get_note("n1").status == NoteStatus.DRAFT


def test_local_kv(device: Device) -> None:
    store = device.store
    assert store.replica.local_get("sync.peer") is None
    store.replica.local_put("sync.peer", b"\x00\x01")
    store.replica.local_put("sync.peer", b"\x02")
    assert device.reopen().replica.local_get("sync.peer") == b"\x02"


def test_two_connections_to_one_file_never_lose_or_corrupt(device: Device) -> None:
    """The app and a command run at the same time: each sees the other's writes."""
    first = device.store
    with_note(first)
    first.get_note("n1")  # cached in the first store
    conn2 = open_database(device.path, device.key)
    try:
        second = RecordStore(conn2, device_id=device.device_id, settings=device.settings)
        second.set_section("n1", "plan", "Plan from the second connection, step one.")
        first.set_section("n1", "data", "Data from the first connection.")
        second.set_section("n1", "plan", "Plan from the second connection, step two.")
        for store in (first, second):
            note = store.get_note("n1")
            assert note.sections["data"] == "Data from the first connection."
            assert note.sections["plan"] == "Plan from the second connection, step two."
            assert store.check() == []
    finally:
        conn2.close()
    assert device.reopen().get_note("n1").sections["plan"] == "Plan from the second connection, step two."


def test_late_entry_follows_the_setting(device: Device) -> None:
    store = device.store
    store.create_client(a_client())
    store.create_note(complete_note("n1", on=date.today()))
    store.create_note(complete_note("n2", on=date(2025, 6, 1)))
    device.settings.value = device.settings.value.model_copy(update={"late_entry_hours": 24 * 365 * 2})
    for nid in ("n1", "n2"):
        store.sign_note(nid)
    assert {r.note_id: r.late_entry for r in store.notes_for_client("c1")} == {"n1": False, "n2": False}
    device.settings.value = device.settings.value.model_copy(update={"late_entry_hours": 72})
    assert {r.note_id: r.late_entry for r in store.notes_for_client("c1")} == {"n1": False, "n2": True}
    assert store.check() == []


def test_a_failed_write_leaves_document_and_projection_unchanged(device: Device) -> None:
    store = device.store
    with_note(store)
    before = store.get_note("n1")
    heads = store.replica.doc_heads()
    # A write that fails inside the transaction, after the document changed in memory.
    store._conn.execute(
        "CREATE TEMP TRIGGER refuse BEFORE INSERT ON document_changes BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    with pytest.raises(Exception, match="refused"):
        store.set_section("n1", "plan", "This edit never lands.")
    store._conn.execute("DROP TRIGGER refuse")
    assert store.get_note("n1") == before
    assert store.replica.doc_heads() == heads
    assert store.check() == []
    store.set_section("n1", "plan", "This edit lands.")
    assert device.reopen().get_note("n1").sections["plan"] == "This edit lands."


def test_an_interrupted_create_leaves_no_trace(device: Device) -> None:
    store = device.store
    with pytest.raises(KeyboardInterrupt):
        with store.transaction():
            store.create_client(a_client())
            raise KeyboardInterrupt
    with pytest.raises(NotFound):
        store.get_client("c1")
    assert store.replica.doc_heads() == {} and store.list_clients() == []
    store.create_client(a_client())
    assert store.get_client("c1").display_name == "Avery Testperson"


def test_concurrent_signings_resolve_to_one_whole_signature(device: Device, other: Device) -> None:
    a, b = device.store, other.store
    with_note(a)
    for doc_id in ("c1", "n1"):
        b.replica.apply_doc(doc_id, a.replica.load_doc(doc_id))
    other.settings.value = ClinicianSettings(clinician_name="Dr Other Device", credentials="LCSW")
    sig_a = a.sign_note("n1").signature
    sig_b = b.sign_note("n1").signature
    a.replica.apply_doc("n1", b.replica.load_doc("n1"))
    b.replica.apply_doc("n1", a.replica.load_doc("n1"))
    merged = a.get_note("n1").signature
    assert merged in (sig_a, sig_b)  # never a mix of the two
    assert b.get_note("n1").signature == merged
    assert notes_view_row(a, "n1")[:2] == ("signed", 0)
    assert a.check() == [] and b.check() == []


def test_import_note_keeps_a_signature_made_elsewhere(device: Device) -> None:
    from datetime import datetime, timezone

    from store.models import Addendum, EnteredInError, Signature

    store = device.store
    store.create_client(a_client())
    signed_at = datetime(2025, 6, 2, 9, 0, tzinfo=timezone.utc)
    given = complete_note("imp", on=date(2025, 6, 1)).model_copy(
        update={
            "status": NoteStatus.SIGNED,
            "signature": Signature(
                signer="Dr Former System", credentials="PsyD", signed_at=signed_at, device_id="", heads=[], content_hash=""
            ),
            "addenda": [
                Addendum(
                    text="Late correction.", reason="typo", signer="Dr Former System", credentials="PsyD",
                    signed_at=datetime(2025, 6, 3, tzinfo=timezone.utc), device_id="", content_hash="",
                )
            ],
        }
    )
    note = store.import_note(given)
    assert note.status == NoteStatus.SIGNED and note.signature.signer == "Dr Former System"
    assert note.signature.signed_at == signed_at and note.signature.content_hash
    # Re-signed by this device's key on import, with signer, credentials and time as given.
    assert store.signature_state("imp").signed and note.signature.device_id == device.identity.device_id
    assert note.addenda[0].content_hash and note.addenda[0].device_id == device.identity.device_id
    assert store.signed_version("imp").sections == given.sections
    assert notes_view_row(store, "imp") == ("signed", 0, 0, 1)  # signed the next morning: not late
    with pytest.raises(SignedNoteLocked):
        store.set_section("imp", "plan", "edited after import")
    eie = given.model_copy(
        update={
            "id": "imp2",
            "status": NoteStatus.ENTERED_IN_ERROR,
            "entered_in_error": EnteredInError(reason="duplicate", marked_at=signed_at, marked_by="Dr Former System"),
        }
    )
    assert store.import_note(eie).status == NoteStatus.ENTERED_IN_ERROR
    with pytest.raises(ValidationFailed):
        store.import_note(given.model_copy(update={"id": "imp3", "signature": None}))
    assert store.check() == []


# --- an editor's saves while a sync brings edits to the same note ----------------------


def _draft(store: RecordStore) -> ProgressNote:
    store.create_client(a_client())
    return store.create_note(ProgressNote(
        id="n1", client_id="c1", format=NoteFormat.DAP, sections={"data": "Session opened with a check-in."},
        facts=SessionFacts(date_of_service=date(2026, 1, 5), add_on_codes=["90785"], phq9=8),
    ))


def _share(a: RecordStore, b: RecordStore) -> None:
    for doc_id in ("c1", "n1"):
        b.replica.apply_doc(doc_id, a.replica.load_doc(doc_id))


def test_an_editor_save_with_nothing_else_written_is_the_typing_path(device: Device) -> None:
    store = device.store
    note = _draft(store)
    base = store.draft_heads("n1")
    saved = store.save_draft("n1", base=base, sections={"data": note.sections["data"] + " More."})
    assert saved.merged is None and sorted(saved.base) == sorted(saved.heads) == sorted(store.draft_heads("n1"))
    assert store.get_note("n1").sections["data"].endswith(" More.")
    assert store.check() == []


def test_edits_synced_in_while_the_editor_is_open_are_kept(device: Device, other: Device) -> None:
    a, b = device.store, other.store
    note = _draft(a)
    _share(a, b)
    opened_at = a.draft_heads("n1")  # the editor shows the note as it was here
    shown = original = note.sections["data"]

    # The other device edits the same text, and its edit arrives by sync.
    b.set_section("n1", "data", "REMOTE " + shown)
    assert a.replica.apply_doc("n1", b.replica.load_doc("n1"))

    # The editor, unaware, saves its own typing relative to what it shows.
    saved = a.save_draft("n1", base=opened_at, sections={"data": shown + " LOCAL"})
    text = a.get_note("n1").sections["data"]
    assert text == "REMOTE " + shown + " LOCAL"
    assert saved.merged is not None and saved.merged.sections["data"] == text
    # Still typing, from where its own line stands: nothing duplicated, nothing lost.
    saved = a.save_draft("n1", base=saved.base, sections={"data": shown + " LOCAL more"})
    assert a.get_note("n1").sections["data"] == "REMOTE " + shown + " LOCAL more"
    # Once it shows the merged text it stands on the note's own heads.
    shown = saved.merged.sections["data"]
    saved = a.save_draft("n1", base=saved.heads, sections={"data": shown + "."})
    assert saved.merged is None and a.get_note("n1").sections["data"] == "REMOTE " + original + " LOCAL more."
    assert a.check() == []
    # And the other device converges on the same text.
    b.replica.apply_doc("n1", a.replica.load_doc("n1"))
    assert b.get_note("n1").sections == a.get_note("n1").sections


def test_facts_the_editor_did_not_touch_keep_the_synced_values(device: Device, other: Device) -> None:
    a, b = device.store, other.store
    note = _draft(a)
    _share(a, b)
    opened_at, before = a.draft_heads("n1"), note.facts
    b.update_facts("n1", before.model_copy(update={"phq9": 12, "add_on_codes": ["90785", "90840"]}))
    a.replica.apply_doc("n1", b.replica.load_doc("n1"))

    mine = before.model_copy(update={"gad7": 5, "add_on_codes": ["90785", "90839"]})
    saved = a.save_draft("n1", base=opened_at, facts=mine, facts_before=before)
    facts = a.get_note("n1").facts
    assert (facts.phq9, facts.gad7) == (12, 5)
    assert facts.add_on_codes == ["90785", "90839", "90840"]
    assert saved.merged is not None and saved.merged.facts == facts
    # A removal is a removal, of that code only.
    saved = a.save_draft("n1", base=saved.heads, facts=facts.model_copy(update={"add_on_codes": ["90839", "90840"]}),
                         facts_before=facts)
    assert a.get_note("n1").facts.add_on_codes == ["90839", "90840"]
    assert a.check() == []


def test_another_window_on_this_device_writing_meanwhile_is_kept_too(device: Device) -> None:
    """Two connections of one device share its actor: the editor's edit on the old version
    must not reuse a sequence number the other one already used."""
    a = device.store
    note = _draft(a)
    opened_at, shown = a.draft_heads("n1"), note.sections["data"]
    second_conn = open_database(device.path, device.key)
    try:
        second = RecordStore(second_conn, device_id=device.device_id, settings=device.settings)
        second.set_section("n1", "data", shown + " FROM THE COMMAND LINE")
    finally:
        second_conn.close()
    saved = a.save_draft("n1", base=opened_at, sections={"data": "EDITOR " + shown})
    assert a.get_note("n1").sections["data"] == "EDITOR " + shown + " FROM THE COMMAND LINE"
    assert saved.merged is not None
    assert device.reopen().get_note("n1").sections["data"] == "EDITOR " + shown + " FROM THE COMMAND LINE"
    assert device.store.check() == []


def test_a_base_the_note_does_not_have_edits_the_note_as_it_is(device: Device) -> None:
    a = device.store
    note = _draft(a)
    saved = a.save_draft("n1", base=[b"\x01" * 32], sections={"data": note.sections["data"] + " Kept."})
    assert a.get_note("n1").sections["data"].endswith(" Kept.") and saved.merged is None


def test_signing_the_version_shown_refuses_one_changed_meanwhile(device: Device, other: Device) -> None:
    a, b = device.store, other.store
    with_note(a)
    _share(a, b)
    shown = a.draft_heads("n1")
    b.set_section("n1", "plan", complete_note().sections["plan"] + " Added at home.")
    a.replica.apply_doc("n1", b.replica.load_doc("n1"))
    with pytest.raises(NoteChangedMeanwhile):
        a.sign_note("n1", expected_heads=shown)
    assert a.get_note("n1").status == NoteStatus.DRAFT and a.check() == []
    signed = a.sign_note("n1", expected_heads=a.draft_heads("n1"))
    assert signed.status == NoteStatus.SIGNED and signed.sections["plan"].endswith(" Added at home.")


def test_an_older_record_gets_the_heads_index_and_keeps_everything(device: Device) -> None:
    store = device.store
    with_note(store)
    before = (store.replica.doc_heads(), store.get_note("n1"))
    # As a record written before the index existed.
    device.conn.execute("DROP INDEX documents_heads")
    device.conn.execute("DROP TABLE signature_kept")
    device.conn.execute("DROP TABLE signature_states")
    device.conn.execute("DROP TABLE signature_signers")
    device.conn.execute("PRAGMA user_version = 1")
    reopened = device.reopen()
    assert device.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    plan = device.conn.execute("EXPLAIN QUERY PLAN SELECT doc_id, heads FROM documents").fetchall()
    assert "documents_heads" in str(plan)
    assert (reopened.replica.doc_heads(), reopened.get_note("n1")) == before
    assert reopened.check() == []


def test_typing_on_while_the_note_is_signed_elsewhere_makes_a_conflict_not_a_loss(device: Device, other: Device) -> None:
    a, b = device.store, other.store
    note = with_note(a)
    _share(a, b)
    opened_at = a.draft_heads("n1")  # open in the editor here
    b.sign_note("n1")  # signed on the other laptop
    a.replica.apply_doc("n1", b.replica.load_doc("n1"))  # and synced in while the editor is open
    typed = note.sections["plan"] + " Typed here after it was signed there."
    saved = a.save_draft("n1", base=opened_at, sections={"plan": typed})
    merged = a.get_note("n1")
    assert merged.status == NoteStatus.SIGNED and merged.sections["plan"] == typed
    assert notes_view_row(a, "n1")[:2] == ("signed", 1)  # a signature conflict to resolve
    assert saved.merged is not None and saved.merged.status == NoteStatus.SIGNED
    # Once the editor knows, it stands on a signed note: no more edits.
    with pytest.raises(SignedNoteLocked):
        a.save_draft("n1", base=saved.heads, sections={"plan": typed + " More."})
    assert a.resolve_signature_conflict("n1", "addendum").addenda[0].text.endswith("Typed here after it was signed there.")
    assert a.check() == []
