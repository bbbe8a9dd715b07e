"""The mapping between models and Automerge documents, on real documents."""

from __future__ import annotations

from datetime import date, datetime, time, timezone

from automerge.core import ROOT, Document, ObjType, ScalarType

from store.documents import (
    KIND_CLIENT,
    KIND_NOTE,
    actor_for,
    apply_client,
    apply_facts,
    client_from_doc,
    content_hash,
    new_client_doc,
    new_note_doc,
    note_doc_kind,
    note_from_doc,
    splice_section,
)
from store.models import (
    Client,
    Diagnosis,
    Goal,
    GoalProgress,
    NoteFormat,
    ProgressNote,
    ProgressRating,
    RiskAssessment,
    RiskLevel,
    SessionFacts,
)

A = actor_for("device-a")
B = actor_for("device-b")


def make_client() -> Client:
    return Client(
        id="client-1",
        display_name="Avery Testperson",
        date_of_birth=date(1988, 4, 2),
        identifiers={"MRN": "SYN-001"},
        diagnoses=[Diagnosis(code="F41.1", description="Generalized anxiety"), Diagnosis(code="F32.A")],
        goals=[
            Goal(id="g1", description="Sleep through the night", objective="6 of 7 nights"),
            Goal(id="g2", description="Return to work", active=False),
        ],
        created_at=datetime(2026, 1, 2, 9, 0, tzinfo=timezone.utc),
    )


def make_facts(**overrides) -> SessionFacts:
    data = dict(
        date_of_service=date(2026, 1, 5),
        start_time=time(10, 0),
        stop_time=time(10, 50),
        cpt_code="90834",
        add_on_codes=["90785"],
        modality="video",
        diagnoses_addressed=["F32.A", "F41.1"],
        goals_addressed=[GoalProgress(goal_id="g1", rating=ProgressRating.SOME_PROGRESS, comment="fewer wakings")],
        interventions=["cognitive restructuring", "sleep hygiene education"],
        risk=RiskAssessment(suicide=RiskLevel.LOW, violence=RiskLevel.NONE, actions="safety plan reviewed"),
        phq9=11,
        gad7=9,
    )
    data.update(overrides)
    return SessionFacts(**data)


def make_note(**overrides) -> ProgressNote:
    data = dict(
        id="note-1",
        client_id="client-1",
        format=NoteFormat.SOAP,
        sections={"subjective": "CANARY-7f3a reports better sleep.", "plan": "Continue weekly."},
        facts=make_facts(),
        created_at=datetime(2026, 1, 5, 11, 0, tzinfo=timezone.utc),
        updated_at=datetime(2026, 1, 5, 11, 0, tzinfo=timezone.utc),
    )
    data.update(overrides)
    return ProgressNote(**data)


def test_client_round_trips() -> None:
    client = make_client()
    doc = new_client_doc(client, A)
    assert note_doc_kind(doc) == KIND_CLIENT
    assert client_from_doc(doc) == client
    # And through save/load.
    assert client_from_doc(Document.load(doc.save())) == client


def test_note_round_trips_with_sets_in_canonical_order() -> None:
    note = make_note()
    doc = new_note_doc(note, A)
    assert note_doc_kind(doc) == KIND_NOTE
    back = note_from_doc(Document.load(doc.save()))
    assert back == note
    assert back.sections["objective"] == ""  # every section of the format is there


def test_booleans_are_real_booleans() -> None:
    doc = new_client_doc(make_client(), A)
    goals = doc.get(ROOT, "goals")[1]
    g2 = doc.get(goals, "g2")[1]
    assert doc.get(g2, "active")[0] == (ScalarType.Boolean, False)
    ndoc = new_note_doc(make_note(), A)
    facts = ndoc.get(ROOT, "facts")[1]
    dx = ndoc.get(facts, "diagnoses_addressed")[1]
    assert ndoc.get(dx, "F41.1")[0] == (ScalarType.Boolean, True)


def test_one_character_splice_is_a_small_change() -> None:
    doc = new_note_doc(make_note(sections={"subjective": "x" * 5000}), A)
    heads = doc.get_heads()
    text = "x" * 2500 + "y" + "x" * 2500
    assert splice_section(doc, "subjective", text)
    changes = doc.get_changes(heads)
    assert len(changes) == 1
    assert len(changes[0].bytes) < 200
    assert note_from_doc(doc).sections["subjective"] == text
    # Unchanged text writes nothing.
    heads = doc.get_heads()
    assert not splice_section(doc, "subjective", text)
    assert doc.get_changes(heads) == []


def test_splice_handles_replacements_and_non_ascii() -> None:
    doc = new_note_doc(make_note(), A)
    for text in ["héllo wörld 😀", "héllo 😀 wörld", "", "abc", "xabcx", "ab", "ABC ünïcode"]:
        splice_section(doc, "assessment", text)
        assert note_from_doc(doc).sections["assessment"] == text


def test_concurrent_section_edits_merge_character_by_character() -> None:
    base = new_note_doc(make_note(sections={"subjective": "The client slept well."}), A)
    a = base.fork()
    a.set_actor(A)
    b = base.fork()
    b.set_actor(B)
    splice_section(a, "subjective", "The client slept very well.")
    splice_section(b, "subjective", "The client slept well. Mood stable.")
    a.merge(b)
    b.merge(a)
    merged = note_from_doc(a).sections["subjective"]
    assert merged == "The client slept very well. Mood stable."
    assert note_from_doc(b).sections["subjective"] == merged


def test_concurrent_client_edits_to_different_fields_both_survive() -> None:
    client = make_client()
    base = new_client_doc(client, A)
    a = base.fork()
    a.set_actor(A)
    b = base.fork()
    b.set_actor(B)
    apply_client(a, client.model_copy(update={"display_name": "Avery Renamed"}))
    goals = [g.model_copy(update={"objective": "7 of 7 nights"}) if g.id == "g1" else g for g in client.goals]
    apply_client(b, client.model_copy(update={"goals": goals, "identifiers": {"MRN": "SYN-001", "Plan": "P-9"}}))
    a.merge(b)
    merged = client_from_doc(a)
    assert merged.display_name == "Avery Renamed"
    assert merged.goals[0].objective == "7 of 7 nights"
    assert merged.identifiers == {"MRN": "SYN-001", "Plan": "P-9"}


def test_apply_client_writes_only_what_changed() -> None:
    client = make_client()
    doc = new_client_doc(client, A)
    heads = doc.get_heads()
    assert not apply_client(doc, client)
    assert doc.get_heads() == heads
    removed = client.model_copy(update={"diagnoses": client.diagnoses[:1]})
    assert apply_client(doc, removed)
    assert [d.code for d in client_from_doc(doc).diagnoses] == ["F41.1"]


def test_concurrent_set_adds_never_duplicate() -> None:
    base = new_note_doc(make_note(facts=make_facts(diagnoses_addressed=["F41.1"])), A)
    a, b = base.fork(), base.fork()
    apply_facts(a, make_facts(diagnoses_addressed=["F41.1", "F32.A"]))
    apply_facts(b, make_facts(diagnoses_addressed=["F32.A", "F41.1"]))
    a.merge(b)
    assert note_from_doc(a).facts.diagnoses_addressed == ["F32.A", "F41.1"]


def test_apply_facts_writes_only_changes() -> None:
    doc = new_note_doc(make_note(), A)
    heads = doc.get_heads()
    assert not apply_facts(doc, make_facts(diagnoses_addressed=["F41.1", "F32.A"]))
    assert doc.get_heads() == heads
    new = make_facts(stop_time=time(10, 55), interventions=["exposure hierarchy"], phq9=None)
    assert apply_facts(doc, new)
    assert note_from_doc(doc).facts == new


def test_read_at_heads_gives_the_earlier_version() -> None:
    doc = new_note_doc(make_note(), A)
    heads = doc.get_heads()
    splice_section(doc, "plan", "Continue weekly; add sleep diary.")
    assert note_from_doc(doc, heads).sections["plan"] == "Continue weekly."
    assert note_from_doc(doc).sections["plan"] == "Continue weekly; add sleep diary."


def test_content_hash_covers_content_only() -> None:
    note = make_note()
    h = content_hash(note)
    assert content_hash(note.model_copy(update={"updated_at": datetime.now(timezone.utc)})) == h
    reordered = note.model_copy(update={"facts": make_facts(diagnoses_addressed=["F41.1", "F32.A"])})
    assert content_hash(reordered) == h
    edited = note.model_copy(update={"sections": {**note.sections, "plan": "Continue weekly!"}})
    assert content_hash(edited) != h
    assert content_hash(note.model_copy(update={"facts": make_facts(phq9=12)})) != h


def test_foreign_and_partial_documents_read_with_defaults() -> None:
    empty = Document()
    assert note_doc_kind(empty) is None
    assert note_from_doc(empty).sections == {"subjective": "", "objective": "", "assessment": "", "plan": ""}
    assert client_from_doc(empty).display_name == "(unnamed)"
    odd = Document()
    with odd.transaction() as tx:
        tx.put(ROOT, "type", ScalarType.Str, KIND_NOTE)
        tx.put(ROOT, "format", ScalarType.Str, "NOPE")
        tx.put(ROOT, "sections", ScalarType.Int, 3)
        facts = tx.put_object(ROOT, "facts", ObjType.Map)
        tx.put(facts, "cpt_code", ScalarType.Str, "not a code")
        tx.put(facts, "phq9", ScalarType.Int, 99)
        tx.put(facts, "start_time", ScalarType.Str, "25:99")
        tx.put_object(facts, "diagnoses_addressed", ObjType.List)
        tx.put(ROOT, "addenda", ScalarType.Str, "not a list")
    note = note_from_doc(odd)
    assert note.format == NoteFormat.SOAP
    assert note.facts.cpt_code is None and note.facts.phq9 is None and note.facts.start_time is None
    assert note.addenda == []
