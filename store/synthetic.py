"""Synthetic clinical data for the demo vault, benchmarks and tests.

Every name and sentence here is invented. The generator is seeded so a demo vault or a
benchmark vault is the same on every machine.
"""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta, timezone

from store.models import (
    Client,
    Diagnosis,
    Goal,
    GoalProgress,
    Modality,
    NoteFormat,
    ProcessNote,
    ProgressNote,
    ProgressRating,
    RiskAssessment,
    RiskLevel,
    SessionFacts,
    NoteStatus,
    Signature,
    FORMAT_SECTIONS,
    PROGRESS_FORMATS,
)

FIRST = ["Avery", "Blake", "Casey", "Dana", "Emery", "Finley", "Gray", "Harper", "Indigo", "Jules",
         "Kai", "Logan", "Morgan", "Noor", "Oakley", "Parker", "Quinn", "Reese", "Sage", "Tatum"]
LAST = ["Ashdown", "Birchwood", "Calloway", "Dunmore", "Ellery", "Fairweather", "Glenholm",
        "Hartwell", "Ivesdale", "Juniper", "Kestrel", "Larkspur", "Merriweather", "Northcote"]
DIAGNOSES = [("F41.1", "Generalized anxiety disorder"), ("F32.1", "Major depressive disorder, single episode, moderate"),
             ("F43.10", "Post-traumatic stress disorder, unspecified"), ("F43.23", "Adjustment disorder with mixed anxiety and depressed mood"),
             ("F40.10", "Social phobia, unspecified"), ("F33.1", "Major depressive disorder, recurrent, moderate")]
GOALS = [("Reduce worry episodes", "Fewer than 3 worry episodes a week for 4 weeks"),
         ("Improve sleep", "Sleep 7 hours on 5 nights a week"),
         ("Return to social activities", "Attend 2 social events a month"),
         ("Manage panic symptoms", "Use breathing skills in 80% of episodes"),
         ("Reduce avoidance", "Complete 6 exposure steps from the hierarchy")]
INTERVENTIONS = ["cognitive restructuring", "behavioral activation", "exposure hierarchy review",
                 "diaphragmatic breathing practice", "motivational interviewing",
                 "thought record review", "sleep hygiene psychoeducation", "grounding skills rehearsal"]
SENTENCES = {
    "subjective": ["Client reports sleeping about six hours most nights this week.",
                   "Client described two episodes of worry about work deadlines.",
                   "Client states mood has been lower since a family visit."],
    "objective": ["Client was on time, casually dressed, and maintained good eye contact.",
                  "Affect was constricted early in session and brighter by the end.",
                  "Speech was of normal rate; client tapped foot while discussing work."],
    "assessment": ["Client is making gradual progress toward the sleep goal.",
                   "Symptoms remain moderate; engagement with homework is improving.",
                   "No change in avoidance this week; client identified one barrier."],
    "plan": ["Continue weekly sessions; client will complete two thought records before next visit.",
             "Next session review the exposure hierarchy; client will practice breathing daily.",
             "Meet in one week; client will schedule one social activity."],
    "data": ["Client reported three nights of restful sleep and completed a thought record.",
             "Client discussed conflict with a sibling and practiced a grounding skill in session."],
    "behavior": ["Client arrived tense, wringing hands, and spoke quickly about the week.",
                 "Client presented calm and engaged, smiling when describing progress."],
    "intervention": ["Clinician used cognitive restructuring on a work-related belief.",
                     "Clinician guided behavioral activation planning for the coming week."],
    "response": ["Client generated two balanced alternative thoughts and rated belief lower.",
                 "Client agreed to two activities and wrote them in a planner during session."],
    "goal": ["Work toward the goal of reducing worry episodes.", "Focus on the sleep goal this week."],
    "problem": ["Client reports avoidance of the grocery store due to panic.",
                "Client describes difficulty falling asleep most nights."],
}
PROCESS_THOUGHTS = ["I noticed my own impatience when the client changed the subject; bring to supervision.",
                    "Hunch: the avoidance may protect against a feared loss of control.",
                    "Wondering whether I am colluding with the intellectualising.",
                    "Felt protective today; watch for rescuing."]



def _text(rng: random.Random, key: str) -> str:
    return " ".join(rng.sample(SENTENCES[key], k=min(2, len(SENTENCES[key]))))


def make_client(rng: random.Random, index: int) -> Client:
    dx = rng.sample(DIAGNOSES, k=rng.choice([1, 2]))
    goals = rng.sample(GOALS, k=2)
    return Client(
        id=f"client{index:04d}",
        display_name=f"{rng.choice(FIRST)} {rng.choice(LAST)}",
        date_of_birth=date(1960, 1, 1) + timedelta(days=rng.randrange(0, 40 * 365)),
        identifiers={"MRN": f"SYN-{index:05d}"},
        diagnoses=[Diagnosis(code=c, description=d) for c, d in dx],
        goals=[Goal(id=f"g{index:04d}{i}", description=g, objective=o) for i, (g, o) in enumerate(goals)],
    )


def make_note(rng: random.Random, client: Client, index: int, on: date, *, complete: bool = True) -> ProgressNote:
    fmt = PROGRESS_FORMATS[index % len(PROGRESS_FORMATS)]
    start = time(rng.choice([9, 10, 11, 13, 14, 15, 16]), rng.choice([0, 15, 30]))
    minutes = rng.choice([30, 45, 53, 55])
    stop_dt = datetime.combine(on, start) + timedelta(minutes=minutes)
    cpt = {30: "90832", 45: "90834", 53: "90837", 55: "90837"}[minutes]
    sections = {key: _text(rng, key) if complete or rng.random() < 0.5 else "" for key in FORMAT_SECTIONS[fmt]}
    facts = SessionFacts(
        date_of_service=on,
        start_time=start,
        stop_time=stop_dt.time(),
        cpt_code=cpt,
        modality=rng.choice(list(Modality)),
        diagnoses_addressed=[client.diagnoses[0].code],
        goals_addressed=[GoalProgress(goal_id=client.goals[0].id, rating=rng.choice(list(ProgressRating)))],
        interventions=rng.sample(INTERVENTIONS, k=2),
        risk=RiskAssessment(suicide=RiskLevel.NONE, violence=RiskLevel.NONE) if complete else RiskAssessment(),
        phq9=rng.randrange(0, 28) if rng.random() < 0.7 else None,
        gad7=rng.randrange(0, 22) if rng.random() < 0.7 else None,
    )
    return ProgressNote(id=f"note{index:06d}", client_id=client.id, format=fmt, sections=sections, facts=facts)


def populate(vault, *, clients: int, notes: int, process_notes: int = 0, seed: int = 1,
             today: date | None = None, sign_ratio: float = 0.6) -> None:
    """Fill an open vault: `notes` progress notes spread over `clients` clients.

    A mix of statuses: signed on time, signed late (late entries), drafts (some incomplete),
    entered in error, and addenda on some signed notes. Writes are batched in transactions.
    """
    rng = random.Random(seed)
    today = today or date.today()
    record = vault.record
    made = [make_client(rng, i) for i in range(clients)]
    with record.transaction():
        for c in made:
            record.create_client(c)
    for i in range(notes):
        client = made[i % clients]
        days_ago = (notes - i) * 400 // max(notes, 1) + rng.randrange(0, 3)
        on = today - timedelta(days=days_ago)
        roll = rng.random()
        if days_ago > 21 and roll < 0.96:
            # A clinician's older notes are signed; drafts pile up only in recent weeks.
            roll = roll * sign_ratio / 0.96
        complete = roll < sign_ratio + 0.2
        note = make_note(rng, client, i, on, complete=complete)
        with record.transaction():
            if roll < sign_ratio:
                # Signed in the past, as a clinician would have: most within a day or two
                # of the session, some late (past the late-entry window).
                hours = rng.choice([2, 5, 20, 30, 46]) if rng.random() < 0.85 else rng.choice([90, 130, 200])
                session_end = datetime.combine(on, note.facts.stop_time, tzinfo=timezone.utc)
                signed_at = min(session_end + timedelta(hours=hours), datetime.now(timezone.utc))
                settings = vault.settings()
                record.import_note(note.model_copy(update={
                    "status": NoteStatus.SIGNED,
                    "signature": Signature(
                        signer=settings.clinician_name, credentials=settings.credentials,
                        signed_at=signed_at, device_id=vault.device_id, heads=[], content_hash="",
                    ),
                }))
                if rng.random() < 0.08:
                    record.add_addendum(note.id, "Clarification: the homework assigned was two thought records.",
                                        "clarify homework")
            else:
                record.create_note(note)
            if roll > 0.97:
                record.mark_entered_in_error(note.id, "written for the wrong client")
    with vault.private.transaction():
        for i in range(process_notes):
            client = made[i % clients]
            vault.private.create(ProcessNote(
                client_id=client.id,
                session_date=today - timedelta(days=rng.randrange(0, 30)),
                body=rng.choice(PROCESS_THOUGHTS),
                device_id=vault.device_id,
            ))


def populate_demo(vault, *, clients: int = 12, notes: int = 200, process_notes: int = 8, seed: int = 1) -> None:
    """The demo vault: every format and status, a few process notes, and one signature
    conflict (a note edited on "another device" while it was being signed here)."""
    populate(vault, clients=clients, notes=notes, process_notes=process_notes, seed=seed)
    make_signature_conflict(vault.record)


def make_signature_conflict(record) -> str | None:
    """Merge an edit made concurrently with the signing of the newest signed note, the way
    a sync from another device would. Returns the note's id."""
    from store import documents
    from store.automerge_guard import panics_as

    signed = record.list_notes(status=NoteStatus.SIGNED)
    if not signed:
        return None
    note = record.get_note(signed[0].note_id)
    assert note.signature is not None
    # Its copy, edited there: content that changed after signing is a conflict however the
    # edit and the signing were ordered.
    with panics_as():
        other_device = record.replica.load_doc(note.id)
    key = note.section_keys[-1]
    documents.splice_section(other_device, key, note.sections[key] + " Client also agreed to a sleep diary.")
    record.replica.apply_doc(note.id, other_device)  # as a sync from that device would
    return note.id


# --- documents at the edges of the document budget (store/document_budget.py) -------------

YEAR_WORDS = "client reported progress toward the goal and practiced the skill twice this week".split()


def a_year_of_daily_edits(doc, key: str, *, days: int = 365, saves: int = 36, seed: int = 3) -> None:
    """What the editor's saves make of a year of daily sessions on one note (in place): each
    day a sentence typed word by word, a save per pause (a splice and updated_at, as
    `documents.splice_section` writes them), and one word replaced. The honest large note the
    document budget is measured against."""
    from automerge.core import ROOT, ScalarType

    rng = random.Random(seed)
    sections = doc.get(ROOT, "sections")[1]
    text_obj = doc.get(sections, key)[1]
    length = doc.length(text_obj)
    when = datetime(2026, 1, 5, 17, tzinfo=timezone.utc)
    for _day in range(days):
        for _save in range(saves):
            word = " " + rng.choice(YEAR_WORDS)
            with doc.transaction() as tx:
                tx.splice_text(text_obj, length, 0, word)
                tx.put(ROOT, "updated_at", ScalarType.Str, when.isoformat())
            length += len(word)
            when += timedelta(seconds=20)
        with doc.transaction() as tx:
            tx.splice_text(text_obj, rng.randrange(max(1, length - 8)), 5, "noted")
        when += timedelta(days=1)


def inflated_note(note_bytes: bytes, key: str, chars: int) -> bytes:
    """A note document (saved bytes) with `chars` one-character insertions at the start of
    section `key`: a few kilobytes once saved (runs of one value, then DEFLATE), `chars`
    operations once loaded. The shape of an operation bomb, for tests and bench/; building it
    costs what loading it does, so they build it in a process of their own."""
    from automerge.core import ROOT, Document

    doc = Document.load(note_bytes)
    sections = doc.get(ROOT, "sections")[1]
    text_obj = doc.get(sections, key)[1]
    with doc.transaction() as tx:
        tx.splice_text(text_obj, 0, 0, "a" * chars)
    return doc.save()


def leb128(n: int, *, signed: bool = False) -> bytes:
    """`n` as Automerge writes numbers: LEB128, unsigned or signed."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        done = (n == 0 and not byte & 0x40) or (n == -1 and byte & 0x40) if signed else n == 0
        out.append(byte if done else byte | 0x80)
        if done:
            return bytes(out)


def crafted_chunk(op_columns: list[tuple[int, bytes]]) -> bytes:
    """An Automerge document chunk with no actors, heads or changes and the given operation
    columns ((specification, data) each): bytes Automerge itself refuses, for what the
    document budget's header reader makes of hostile columns (tests and bench/). The
    checksum is left zero: the reader does not check it, Automerge does."""
    specs = b"".join(leb128(spec) + leb128(len(data)) for spec, data in op_columns)
    body = (leb128(0) + leb128(0) + leb128(0) + leb128(len(op_columns)) + specs
            + b"".join(data for _spec, data in op_columns))
    return b"\x85\x6f\x4a\x83" + b"\0\0\0\0" + b"\0" + leb128(len(body)) + body
