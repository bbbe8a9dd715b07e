"""The record beyond session notes, in the store: intake assessments, treatment-plan reviews,
discharge summaries, couples and family sessions, and the PCL-5.

Real SQLCipher files and real Automerge documents; exports read back through the importer.
Every text is synthetic; process notes carry a canary that no export may hold.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time
from pathlib import Path

import pypdf
import pytest

from store import documents as D
from store.compliance import ERROR, WARNING, blocking, check_note
from store.errors import ComplianceIncomplete, ValidationFailed
from store.export import collect, export_record
from store.importer import apply_import, parse_import
from store.models import (
    Client,
    ClinicianSettings,
    Diagnosis,
    Goal,
    GoalProgress,
    Modality,
    NoteFormat,
    NoteStatus,
    Participant,
    ProcessNote,
    ProgressNote,
    ProgressRating,
    RiskAssessment,
    RiskLevel,
    SessionFacts,
)
from store.outcomes import PCL5, client_outcomes, severity
from store.plan_reviews import DUE, plan_reviews_due
from store.vault import KdfParams, Vault
from tests.store.test_record import Device, complete_note

PASSPHRASE = "correct horse battery staple"
KDF = KdfParams(memory_kib=8192, time_cost=1, parallelism=1)
SETTINGS = ClinicianSettings(clinician_name="Robin Quill", credentials="LCSW", practice_name="Quill Counselling")
CANARY_PRIVATE = "CANARY-7f3a-process"
TODAY = date(2026, 11, 20)


@pytest.fixture
def vault(tmp_path):
    v, _ = Vault.create(tmp_path / "vault", PASSPHRASE, device_name="test", kdf=KDF, settings=SETTINGS)
    v.record.create_client(plan_client())
    v.private.create(ProcessNote(client_id="c1", session_date=date(2026, 1, 5), body=CANARY_PRIVATE))
    yield v
    v.close()


@pytest.fixture
def device(tmp_path: Path):
    d = Device(tmp_path / "a", "device-a")
    yield d
    d.close()


def plan_client(cid: str = "c1", name: str = "Avery Ashdown", **changes) -> Client:
    data = dict(
        id=cid,
        display_name=name,
        date_of_birth=date(1990, 3, 4),
        diagnoses=[Diagnosis(code="F43.10", description="Post-traumatic stress disorder")],
        goals=[
            Goal(id="g1", description="Sleep through the night", objective="6 of 7 nights"),
            Goal(id="g2", description="Return to driving", objective="drive to work twice a week"),
        ],
    )
    data.update(changes)
    return Client(**data)


def intake(nid: str = "i1", on: date = date(2026, 1, 5), cpt: str = "90791", **sections) -> ProgressNote:
    text = {
        "presenting_problem": "Nightmares and avoidance of driving since a collision in the spring.",
        "history": "No earlier treatment; works full time; lives with a partner.",
        "mental_status": "Alert, oriented; mood anxious, affect congruent; thought process linear.",
        "risk": "Denies suicidal or violent thoughts; protective factors: partner, work.",
        "diagnosis": "PTSD: intrusion, avoidance, negative mood and arousal criteria met for over a month.",
        "initial_plan": "Weekly trauma-focused CBT; PCL-5 every four sessions; sleep hygiene.",
    }
    text.update(sections)
    return ProgressNote(
        id=nid,
        client_id="c1",
        format=NoteFormat.INTAKE,
        sections=text,
        facts=SessionFacts(
            date_of_service=on,
            start_time=time(9, 0),
            stop_time=time(10, 0),
            cpt_code=cpt,
            modality=Modality.IN_PERSON,
            diagnoses_addressed=["F43.10"],
            risk=RiskAssessment(suicide=RiskLevel.NONE, violence=RiskLevel.NONE),
            pcl5=51,
        ),
    )


def discharge(nid: str = "d1", on: date = date(2026, 6, 1), **facts) -> ProgressNote:
    data = dict(
        date_of_service=on,
        goals_addressed=[
            GoalProgress(goal_id="g1", rating=ProgressRating.ACHIEVED),
            GoalProgress(goal_id="g2", rating=ProgressRating.SIGNIFICANT_PROGRESS),
        ],
        pcl5=18,
    )
    data.update(facts)
    return ProgressNote(
        id=nid,
        client_id="c1",
        format=NoteFormat.DISCHARGE,
        sections={
            "discharge_reason": "Treatment goals met; client and clinician agreed to end.",
            "course_of_treatment": "Eighteen sessions of trauma-focused CBT with exposure work.",
            "goal_progress": "Sleeps through most nights; drives to work three times a week.",
            "final_measures": "PCL-5 fell from 51 to 18.",
            "referrals": "Peer support group; return by a new intake if symptoms recur.",
        },
        facts=SessionFacts(**data),
    )


def review(nid: str = "r1", on: date = date(2026, 3, 30)) -> ProgressNote:
    return ProgressNote(
        id=nid,
        client_id="c1",
        format=NoteFormat.REVIEW,
        sections={
            "goal_progress": "Sleep improving; driving short distances with the partner.",
            "goal_changes": "No change to the goals; objective for driving kept.",
        },
        facts=SessionFacts(
            date_of_service=on,
            goals_addressed=[
                GoalProgress(goal_id="g1", rating=ProgressRating.SOME_PROGRESS),
                GoalProgress(goal_id="g2", rating=ProgressRating.SOME_PROGRESS),
            ],
        ),
    )


def elements(problems) -> set[str]:
    return {p.element for p in problems}


# --- 1. intake / diagnostic assessment ---------------------------------------------------


def test_intake_has_its_own_sections_and_checklist():
    empty = ProgressNote(client_id="c1", format=NoteFormat.INTAKE, facts=SessionFacts(date_of_service=TODAY))
    assert empty.section_keys == (
        "presenting_problem", "history", "mental_status", "risk", "diagnosis", "initial_plan",
    )
    found = elements(check_note(empty, plan_client(), today=TODAY))
    # What an intake is audited for: not a session's interventions, response or goal ratings.
    assert found == {"time", "cpt", "modality", "diagnosis", "assessment", "risk", "plan", "sections"}
    assert check_note(intake(), plan_client(), today=TODAY) == []


def test_an_intake_is_90791_or_90792_where_the_clinician_prescribes():
    wrong = check_note(intake(cpt="90834"), plan_client(), today=TODAY)
    assert [(p.element, p.severity) for p in wrong] == [("cpt", ERROR)]
    unknown = check_note(intake(cpt="90792"), plan_client(), today=TODAY)
    assert [(p.element, p.severity) for p in unknown] == [("cpt", WARNING)]
    assert blocking(check_note(intake(cpt="90792"), plan_client(), today=TODAY, credentials="LCSW"))
    assert check_note(intake(cpt="90792"), plan_client(), today=TODAY, credentials="MD, PhD") == []


def test_an_unjustified_diagnosis_blocks_the_intake():
    found = check_note(intake(diagnosis="PTSD."), plan_client(), today=TODAY)
    assert elements(found) == {"assessment"}


def test_intake_signed_like_a_progress_note_and_locked(device):
    store = device.store
    store.create_client(plan_client())
    store.create_note(intake(cpt="90792"))
    with pytest.raises(ComplianceIncomplete):
        store.sign_note("i1")  # PhD: 90792 is for a clinician who prescribes
    store.update_facts("i1", intake().facts)
    signed = store.sign_note("i1")
    assert signed.status == NoteStatus.SIGNED
    assert store.signature_state("i1").status.value == "verified"
    with pytest.raises(Exception):
        store.set_section("i1", "history", "changed after signing")


# --- 3. discharge ------------------------------------------------------------------------


def test_discharge_checklist_rates_every_active_goal_and_records_final_measures():
    note = discharge(goals_addressed=[GoalProgress(goal_id="g1", rating=ProgressRating.ACHIEVED)], pcl5=None)
    note = note.model_copy(update={"sections": {**note.sections, "final_measures": ""}})
    found = elements(check_note(note, plan_client(), today=TODAY))
    assert found == {"goals", "measures", "sections"}
    assert check_note(discharge(), plan_client(), today=TODAY) == []


def test_signing_a_discharge_marks_the_client_discharged_and_a_new_intake_reverses_it(device):
    store = device.store
    store.create_client(plan_client())
    store.create_note(intake())
    store.sign_note("i1")
    store.create_note(discharge())
    assert store.discharged_clients() == {}  # a draft discharges no one
    store.sign_note("d1")
    assert store.discharged_clients() == {"c1": date(2026, 6, 1)}
    assert [r.client_id for r in store.list_clients()] == ["c1"]  # the record is kept
    assert store.get_client("c1").display_name == "Avery Ashdown"
    # Back for a new episode: starting the intake is what makes the client active again.
    store.create_note(intake("i2", on=date(2026, 9, 1)))
    assert store.discharged_clients() == {}
    store.mark_entered_in_error("i2", "Started for the wrong client.")
    assert store.discharged_clients() == {"c1": date(2026, 6, 1)}


def test_a_discharge_entered_in_error_discharges_no_one(device):
    store = device.store
    store.create_client(plan_client())
    store.create_note(discharge())
    store.sign_note("d1")
    store.mark_entered_in_error("d1", "Wrong client.")
    assert store.discharged_clients() == {}


# --- 5. PCL-5 ----------------------------------------------------------------------------


@pytest.mark.parametrize(("score", "band"), [(0, "below the cut-off"), (32, "below the cut-off"), (33, "probable PTSD"), (80, "probable PTSD")])
def test_pcl5_bands_at_their_edges(score, band):
    assert severity(PCL5, score) == band


def test_pcl5_out_of_range_is_refused():
    for bad in (-1, 81, True):
        with pytest.raises(Exception):
            SessionFacts(date_of_service=TODAY, pcl5=bad)


def test_pcl5_is_stored_projected_and_in_the_outcomes_series(device):
    store = device.store
    store.create_client(plan_client())
    store.create_note(intake())
    store.create_note(discharge())
    assert store.get_note("i1").facts.pcl5 == 51
    series = client_outcomes(store, "c1").pcl5
    assert [(p.on, p.score, p.band) for p in series.points] == [
        (date(2026, 1, 5), 51, "probable PTSD"),
        (date(2026, 6, 1), 18, "below the cut-off"),
    ]
    assert series.change == -33
    device.reopen()
    assert [p.score for p in client_outcomes(device.store, "c1").pcl5.points] == [51, 18]


def test_notes_without_the_new_facts_hash_as_before():
    # The content hash of a session note written before the PCL-5 and participants existed
    # (computed by the earlier code): its signatures must still verify.
    assert D.content_hash(complete_note()) == "890739bf4ad80fbd8381591a764b275cb2342b1982c09a05329d788b92922775"


# --- 2. treatment-plan reviews -----------------------------------------------------------


def _due(store, at: datetime):
    return [(r.client_id, r.due_on, r.band) for r in plan_reviews_due(store, at)]


def test_a_plan_review_is_due_at_its_interval_and_banded_like_overdue_notes(device):
    store = device.store
    store.create_client(plan_client(plan_start=date(2026, 1, 1)))
    due = date(2026, 4, 1)  # 90 days after the plan's start
    assert _due(store, datetime(2026, 3, 31, 23, 59)) == []
    assert _due(store, datetime(2026, 4, 1, 0, 0)) == [("c1", due, DUE)]
    assert _due(store, datetime(2026, 4, 1, 23, 59)) == [("c1", due, DUE)]
    assert _due(store, datetime(2026, 4, 2, 0, 0)) == [("c1", due, 24)]
    assert _due(store, datetime(2026, 4, 3, 12, 0)) == [("c1", due, 48)]
    assert _due(store, datetime(2026, 4, 9, 0, 0)) == [("c1", due, 72)]


def test_a_signed_review_restarts_the_interval_and_a_draft_does_not(device):
    store = device.store
    store.create_client(plan_client(plan_start=date(2026, 1, 1)))
    store.create_note(review(on=date(2026, 3, 30)))
    assert _due(store, datetime(2026, 4, 2)) == [("c1", date(2026, 4, 1), 24)]
    store.sign_note("r1")
    assert _due(store, datetime(2026, 4, 2)) == []
    assert _due(store, datetime(2026, 6, 27, 23, 59)) == []
    assert _due(store, datetime(2026, 6, 28)) == [("c1", date(2026, 6, 28), DUE)]


def test_the_review_interval_is_configurable_and_a_plan_without_start_is_never_due(device):
    store = device.store
    store.create_client(plan_client(plan_start=date(2026, 1, 1), review_interval_days=30))
    store.create_client(plan_client(cid="c2", name="Blake Brook"))
    assert _due(store, datetime(2026, 1, 31)) == [("c1", date(2026, 1, 31), DUE)]
    assert store.get_client("c1").review_interval_days == 30
    with pytest.raises(ValidationFailed):
        store.update_client(plan_client().model_copy(update={"plan_start": date(1850, 1, 1)}))


def test_a_discharged_client_has_no_review_due(device):
    store = device.store
    store.create_client(plan_client(plan_start=date(2026, 1, 1)))
    store.create_note(discharge(on=date(2026, 3, 1)))
    store.sign_note("d1")
    assert _due(store, datetime(2026, 5, 1)) == []


def test_a_review_rates_every_active_goal():
    partial = review().model_copy(
        update={"facts": review().facts.model_copy(update={"goals_addressed": [GoalProgress(goal_id="g1", rating="no_change")]})}
    )
    assert elements(check_note(partial, plan_client(), today=TODAY)) == {"goals"}
    assert check_note(review(), plan_client(), today=TODAY) == []


# --- 4. couples and family sessions ------------------------------------------------------


def family(cpt: str, participants: list[Participant]) -> ProgressNote:
    note = complete_note(cid="c1")
    facts = note.facts.model_copy(update={"cpt_code": cpt, "participants": participants, "diagnoses_addressed": []})
    return note.model_copy(update={"facts": facts})


PARTNER = Participant(client_id="c2", name="Blake Brook", initials="B.B.")
PARENT = Participant(name="Jordan Example", initials="J.E.")


def test_family_codes_need_the_others_present():
    assert elements(check_note(family("90847", []), today=TODAY)) >= {"participants"}
    assert "participants" not in elements(check_note(family("90847", [PARTNER]), today=TODAY))
    assert "participants" not in elements(check_note(family("90846", [PARENT]), today=TODAY))
    own = check_note(family("90847", [Participant(client_id="c1", initials="A.A.")]), today=TODAY)
    assert ("participants", ERROR) in {(p.element, p.severity) for p in own}
    individual = check_note(family("90834", [PARENT]), today=TODAY)
    assert ("participants", WARNING) in {(p.element, p.severity) for p in individual}


def test_participants_round_trip_and_merge_field_by_field(tmp_path):
    a, b = Device(tmp_path / "a", "device-a"), Device(tmp_path / "b", "device-b")
    try:
        a.store.create_client(plan_client())
        a.store.create_note(family("90847", [PARTNER]))
        b.store.replica.apply_doc("c1", a.store.replica.load_doc("c1"))
        b.store.replica.apply_doc("n1", a.store.replica.load_doc("n1"))
        a_facts = a.store.get_note("n1").facts
        a.store.update_facts("n1", a_facts.model_copy(update={"participants": [PARTNER, PARENT]}))
        b_facts = b.store.get_note("n1").facts
        b.store.update_facts("n1", b_facts.model_copy(update={"participants": [Participant(client_id="c2", name="Blake Brook", initials="BB")]}))
        a.store.replica.apply_doc("n1", b.store.replica.load_doc("n1"))
        b.store.replica.apply_doc("n1", a.store.replica.load_doc("n1"))
        merged = a.store.get_note("n1").facts.participants
        assert merged == b.store.get_note("n1").facts.participants
        assert [(p.client_id, p.name, p.initials) for p in merged] == [
            ("c2", "Blake Brook", "BB"), (None, "Jordan Example", "J.E."),
        ]
    finally:
        a.close()
        b.close()


def test_the_export_names_other_participants_only_by_initials(vault, tmp_path):
    record = vault.record
    record.create_client(plan_client(cid="c2", name="Blake Brook"))
    note = family("90847", [PARTNER, PARENT])
    record.create_note(note.model_copy(update={"facts": note.facts.model_copy(update={"diagnoses_addressed": ["F43.10"]})}))
    record.sign_note("n1")
    for fmt in ("json", "pdf"):
        out = tmp_path / f"c1.{fmt}"
        export_record(record, "c1", out, fmt=fmt, settings=vault.settings())
        data = out.read_bytes()
        text = data.decode("utf-8", "replace") if fmt == "json" else "".join(p.extract_text() for p in pypdf.PdfReader(out).pages)
        for secret in ("Blake", "Brook", "Jordan", "Example", '"c2"', CANARY_PRIVATE):
            assert secret not in text and secret.encode() not in data
        assert "B.B." in text and "J.E." in text
    exported = json.loads((tmp_path / "c1.json").read_bytes())
    assert exported["progress_notes"][0]["facts"]["participants"] == [
        {"client_id": None, "name": "", "initials": "B.B."},
        {"client_id": None, "name": "", "initials": "J.E."},
    ]


# --- exports: what the export writes, the import takes --------------------------------------


def test_intake_review_discharge_and_pcl5_round_trip_through_export_and_import(vault, tmp_path):
    record = vault.record
    record.update_client(plan_client(plan_start=date(2026, 1, 5), review_interval_days=60))
    for note in (intake(), review(), discharge()):
        record.create_note(note)
        record.sign_note(note.id)
    out = tmp_path / "c1.json"
    export_record(record, "c1", out, fmt="json", settings=vault.settings())
    data = out.read_bytes()
    assert CANARY_PRIVATE.encode() not in data
    doc = json.loads(data)
    assert doc["clients"][0]["plan_start"] == "2026-01-05" and doc["clients"][0]["review_interval_days"] == 60
    assert [n["format"] for n in doc["progress_notes"]] == ["INTAKE", "REVIEW", "DISCHARGE"]
    assert doc["progress_notes"][0]["sections"]["mental_status"].startswith("Alert")
    assert doc["progress_notes"][2]["facts"]["pcl5"] == 18

    other, _ = Vault.create(tmp_path / "empty", PASSPHRASE, device_name="other", kdf=KDF, settings=SETTINGS)
    try:
        apply_import(other, parse_import(data))
        assert other.record.discharged_clients() == {"c1": date(2026, 6, 1)}
        assert other.record.get_client("c1").review_interval_days == 60
        again = tmp_path / "again.json"
        export_record(other.record, "c1", again, fmt="json", settings=other.settings())
        assert json.loads(again.read_bytes()) == doc
    finally:
        other.close()


def test_the_printable_export_titles_each_kind_of_note_and_tables_the_pcl5(vault, tmp_path):
    record = vault.record
    for note in (intake(), discharge()):
        record.create_note(note)
        record.sign_note(note.id)
    out = tmp_path / "c1.pdf"
    export_record(record, "c1", out, fmt="pdf", settings=vault.settings())
    text = "".join(p.extract_text() for p in pypdf.PdfReader(out).pages)
    assert "Intake assessment, 2026-01-05" in text and "Discharge summary, 2026-06-01" in text
    assert "Mental status exam" in text and "Reason for discharge" in text
    assert "PCL-5 51 (probable PTSD)" in text
    assert "PCL-5 (0-80): 0-32 below the cut-off, 33-80 probable PTSD." in text
    assert CANARY_PRIVATE not in text
    table = collect(record, "c1").outcomes.measure_table()
    assert [(on, {k: p.score for k, p in points.items()}) for on, points in table] == [
        (date(2026, 1, 5), {"pcl5": 51}), (date(2026, 6, 1), {"pcl5": 18}),
    ]


def test_an_import_file_with_an_out_of_range_pcl5_is_refused(vault, tmp_path):
    record = vault.record
    record.create_note(intake())
    out = tmp_path / "c1.json"
    export_record(record, "c1", out, fmt="json", settings=vault.settings(), include_drafts=True)
    doc = json.loads(out.read_bytes())
    doc["progress_notes"][0]["facts"]["pcl5"] = 81
    doc["clients"][0]["id"] = doc["progress_notes"][0]["client_id"] = "c9"
    doc["progress_notes"][0]["id"] = "i9"
    with pytest.raises(Exception) as info:
        parse_import(json.dumps(doc).encode())
    assert "pcl5" in str(getattr(info.value, "message", info.value))


# --- from another device: untrusted input ----------------------------------------------------


def test_a_received_plan_start_outside_the_plausible_range_is_refused(tmp_path):
    from automerge.core import ROOT, ScalarType

    from store.errors import ForeignDocument

    a, b = Device(tmp_path / "a", "device-a"), Device(tmp_path / "b", "device-b")
    try:
        a.store.create_client(plan_client())
        b.store.replica.apply_doc("c1", a.store.replica.load_doc("c1"))
        heads = b.store.replica.doc_heads()
        doc = a.store.replica.load_doc("c1")
        with doc.transaction() as tx:
            tx.put(ROOT, "plan_start", ScalarType.Str, "1850-01-01")
        with pytest.raises(ForeignDocument):
            b.store.replica.apply_doc("c1", doc)
        assert b.store.replica.doc_heads() == heads
        assert b.store.get_client("c1").plan_start is None
    finally:
        a.close()
        b.close()


def test_received_scores_participants_and_intervals_out_of_range_read_as_absent(tmp_path):
    from automerge.core import ROOT, ObjType, ScalarType

    a, b = Device(tmp_path / "a", "device-a"), Device(tmp_path / "b", "device-b")
    try:
        a.store.create_client(plan_client())
        a.store.create_note(intake())
        client, note = a.store.replica.load_doc("c1"), a.store.replica.load_doc("i1")
        with client.transaction() as tx:
            tx.put(ROOT, "review_interval_days", ScalarType.Int, 10**9)
        facts = note.get(ROOT, "facts")[1]
        with note.transaction() as tx:
            tx.put(facts, "pcl5", ScalarType.Int, 999)
            people = tx.put_object(facts, "participants", ObjType.Map)
            bad = tx.put_object(people, "x", ObjType.Map)
            tx.put(bad, "initials", ScalarType.Str, "<script>")  # not initials
            twice = tx.put_object(people, "named:A.B.", ObjType.Map)
            tx.put(twice, "initials", ScalarType.Str, "A.B.")
            again = tx.put_object(people, "other-key", ObjType.Map)
            tx.put(again, "initials", ScalarType.Str, "A.B.")  # the same person under another key
        b.store.replica.apply_doc("c1", client)
        b.store.replica.apply_doc("i1", note)
        assert b.store.get_client("c1").review_interval_days == 90
        got = b.store.get_note("i1").facts
        assert got.pcl5 is None
        assert [p.initials for p in got.participants] == ["A.B."]
        assert b.store.check() == []
    finally:
        a.close()
        b.close()


def test_a_discharge_marked_signed_without_a_valid_signature_discharges_no_one(tmp_path):
    # Another device could set a discharge summary's status to "signed" without signing it:
    # only a signature that verifies discharges a client (or counts as a plan review).
    from automerge.core import ROOT, ScalarType

    a, b = Device(tmp_path / "a", "device-a"), Device(tmp_path / "b", "device-b")
    try:
        a.store.create_client(plan_client(plan_start=date(2026, 1, 1)))
        a.store.create_note(discharge())
        a.store.create_note(review(on=date(2026, 3, 30)))
        for doc_id in ("c1", "d1", "r1"):
            doc = a.store.replica.load_doc(doc_id)
            if doc_id != "c1":
                with doc.transaction() as tx:
                    tx.put(ROOT, "status", ScalarType.Str, "signed")
            b.store.replica.apply_doc(doc_id, doc)
        assert b.store.get_note("d1").status == NoteStatus.SIGNED  # as the document claims
        assert b.store.discharged_clients() == {}
        assert [r.due_on for r in plan_reviews_due(b.store, datetime(2026, 4, 2))] == [date(2026, 4, 1)]
    finally:
        a.close()
        b.close()


def test_search_finds_a_discharge_summary_by_its_name_and_text(device):
    store = device.store
    store.create_client(plan_client())
    store.create_note(discharge())
    hits = store.search("discharge summary peer support")
    assert [(h.doc_id, h.title) for h in hits] == [("d1", "2026-06-01 DISCHARGE discharge summary")]
    assert store.check() == []
