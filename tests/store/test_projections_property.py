"""Property: whatever happens to the record, the projections say what the documents say."""

from __future__ import annotations

import os
import tempfile
from datetime import date, time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("store.database")

from store.database import open_database  # noqa: E402
from store.documents import apply_facts, splice_section  # noqa: E402
from store.errors import NotewellError  # noqa: E402
from store.models import (  # noqa: E402
    FORMAT_SECTIONS,
    ClinicianSettings,
    Client,
    Diagnosis,
    Goal,
    GoalProgress,
    Modality,
    NoteFormat,
    PROGRESS_FORMATS,
    ProgressNote,
    ProgressRating,
    RiskAssessment,
    RiskLevel,
    SessionFacts,
)
from store.record import RecordStore  # noqa: E402

SETTINGS = ClinicianSettings(clinician_name="Dr Prop Test", credentials="LCSW", late_entry_hours=72)
WORDS = ["calm", "sleep", "CANARY-7f3a", "plan", "weekly", "héllo", "😀", "diary", "", " ", "\n"]

text = st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join)
index = st.integers(min_value=0, max_value=3)

ops = st.one_of(
    st.tuples(st.just("client"), st.sampled_from(["Avery", "Blake", "Casey"])),
    st.tuples(st.just("note"), index, st.sampled_from(PROGRESS_FORMATS), st.integers(0, 400)),
    st.tuples(st.just("section"), index, index, text),
    st.tuples(st.just("facts"), index, st.integers(0, 27), st.booleans()),
    st.tuples(st.just("sign"), index),
    st.tuples(st.just("addendum"), index, text),
    st.tuples(st.just("error"), index),
    st.tuples(st.just("resolve"), index, st.sampled_from(["addendum", "resign"])),
    st.tuples(st.just("client_edit"), index, st.sampled_from(["Renamed", "Other Name"])),
    st.tuples(st.just("fork_section"), index, index, text),
    st.tuples(st.just("fork_facts"), index, st.integers(0, 27)),
    # The signing paths again, so conflicts and their resolutions come up often.
    st.tuples(st.just("sign"), index),
    st.tuples(st.just("fork_section"), index, index, text),
    st.tuples(st.just("resolve"), index, st.sampled_from(["addendum", "resign"])),
)


def _client(i: int, name: str) -> Client:
    return Client(
        id=f"c{i}",
        display_name=f"{name} Prop{i}",
        diagnoses=[Diagnosis(code="F41.1", description="anxiety")],
        goals=[Goal(id="g1", description="sleep")],
    )


def _facts(on: date, phq9: int | None, long: bool) -> SessionFacts:
    return SessionFacts(
        date_of_service=on,
        start_time=time(9, 0),
        stop_time=time(9, 55) if long else time(9, 45),
        cpt_code="90837" if long else "90834",
        modality=Modality.IN_PERSON,
        diagnoses_addressed=["F41.1"],
        goals_addressed=[GoalProgress(goal_id="g1", rating=ProgressRating.NO_CHANGE)],
        interventions=["exposure hierarchy"],
        risk=RiskAssessment(suicide=RiskLevel.NONE, violence=RiskLevel.NONE),
        phq9=phq9,
    )


def _note(i: int, client_id: str, fmt: NoteFormat, days: int) -> ProgressNote:
    on = date.fromordinal(date(2025, 1, 1).toordinal() + days)
    sections = {k: f"{k} observed: client practised the plan daily and reports calmer evenings." for k in FORMAT_SECTIONS[fmt]}
    return ProgressNote(id=f"n{i}", client_id=client_id, format=fmt, sections=sections, facts=_facts(on, 10, False))


def _run(store: RecordStore, program: list[tuple]) -> None:
    clients: list[str] = []
    notes: list[str] = []
    for op in program:
        kind = op[0]
        try:
            if kind == "client":
                cid = f"c{len(clients)}"
                store.create_client(_client(len(clients), op[1]))
                clients.append(cid)
            elif kind == "client_edit" and clients:
                cid = clients[op[1] % len(clients)]
                store.update_client(store.get_client(cid).model_copy(update={"display_name": op[2]}))
            elif not notes and kind != "note":
                continue
            elif kind == "note" and clients:
                n = _note(len(notes), clients[op[1] % len(clients)], op[2], op[3])
                store.create_note(n)
                notes.append(n.id)
            elif kind == "section":
                nid = notes[op[1] % len(notes)]
                keys = store.get_note(nid).section_keys
                store.set_section(nid, keys[op[2] % len(keys)], op[3])
            elif kind == "facts":
                nid = notes[op[1] % len(notes)]
                on = store.get_note(nid).facts.date_of_service
                store.update_facts(nid, _facts(on, op[2], op[3]))
            elif kind == "sign":
                store.sign_note(notes[op[1] % len(notes)])
            elif kind == "addendum":
                store.add_addendum(notes[op[1] % len(notes)], op[2] or "x", "correction")
            elif kind == "error":
                store.mark_entered_in_error(notes[op[1] % len(notes)], "wrong client")
            elif kind == "resolve":
                store.resolve_signature_conflict(notes[op[1] % len(notes)], op[2])
            elif kind == "fork_section":
                # Another device edits its copy (even of a signed note), then we merge it.
                nid = notes[op[1] % len(notes)]
                fork = store.replica.load_doc(nid)
                keys = FORMAT_SECTIONS[store.get_note(nid).format]
                splice_section(fork, keys[op[2] % len(keys)], op[3])
                store.replica.apply_doc(nid, fork)
            elif kind == "fork_facts":
                nid = notes[op[1] % len(notes)]
                fork = store.replica.load_doc(nid)
                on = store.get_note(nid).facts.date_of_service
                apply_facts(fork, _facts(on, op[2], True))
                store.replica.apply_doc(nid, fork)
        except NotewellError:
            pass  # refused operations must change nothing; the check below sees to it
        assert store.check() == [], op[0]


# NOTEWELL_PROPERTY_EXAMPLES raises the count for a longer local hunt.
@settings(max_examples=int(os.environ.get("NOTEWELL_PROPERTY_EXAMPLES", "30")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=1, max_size=25))
def test_projections_always_match_documents(program: list[tuple]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "record.db"
        key = os.urandom(32)
        conn = open_database(path, key, create=True)
        try:
            store = RecordStore(conn, device_id="device-prop", settings=lambda: SETTINGS)
            # Start from a client with two notes, one signed, so most operations have
            # something to act on and edits from elsewhere can run into a signature.
            start = [
                ("client", "Avery"),
                ("note", 0, NoteFormat.SOAP, 10),
                ("note", 0, NoteFormat.DAP, 300),
                ("sign", 0),
            ]
            _run(store, start + program)
            before = {doc_id: store.get_note(doc_id) for doc_id in store.replica.doc_heads() if doc_id.startswith("n")}
        finally:
            conn.close()
        # What was persisted is what was in memory.
        conn = open_database(path, key)
        try:
            store = RecordStore(conn, device_id="device-prop", settings=lambda: SETTINGS)
            assert {doc_id: store.get_note(doc_id) for doc_id in before} == before
            assert store.check() == []
        finally:
            conn.close()
