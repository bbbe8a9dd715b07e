"""Test data for the app's tests: a fast KDF, fixed ids and dates, invented people and text."""

from __future__ import annotations

from datetime import date, datetime, time, timezone

from store.models import (
    Client,
    ClinicianSettings,
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
)
from store.vault import KdfParams, Vault

FAST_KDF = KdfParams(memory_kib=8192, time_cost=1, parallelism=1)
PASSPHRASE = "synthetic passphrase 7f3a"
CLINICIAN = ClinicianSettings(clinician_name="Dana Testwell", credentials="LCSW")
CREATED = datetime(2026, 9, 1, 9, 0, tzinfo=timezone.utc)

CLIENT_A = "client-a"
CLIENT_B = "client-b"
GOAL_A = "goal-a"
DRAFT_NOTE = "note-draft"
SIGNED_NOTE = "note-signed"


def complete_sections() -> dict[str, str]:
    return {
        "subjective": "Client reports fewer worry episodes this week and better sleep.",
        "objective": "Client was calm, made steady eye contact and spoke at a normal rate.",
        "assessment": "Client responded well to restructuring and identified two distortions.",
        "plan": "Meet next week; client will complete two thought records and bring the tangerine worksheet.",
    }


def complete_facts(on: date) -> SessionFacts:
    return SessionFacts(
        date_of_service=on,
        start_time=time(10, 0),
        stop_time=time(10, 50),
        cpt_code="90834",
        modality=Modality.IN_PERSON,
        diagnoses_addressed=["F41.1"],
        goals_addressed=[GoalProgress(goal_id=GOAL_A, rating=ProgressRating.SOME_PROGRESS)],
        interventions=["cognitive restructuring", "worry postponement"],
        risk=RiskAssessment(suicide=RiskLevel.NONE, violence=RiskLevel.NONE),
        phq9=9,
    )


def seed(vault: Vault) -> None:
    record = vault.record
    record.create_client(
        Client(
            id=CLIENT_A,
            display_name="Casey Canary",
            date_of_birth=date(1985, 4, 17),
            diagnoses=[Diagnosis(code="F41.1", description="Generalized anxiety disorder")],
            goals=[Goal(id=GOAL_A, description="Reduce daily worry", objective="Worry under 1 hour a day for 4 weeks")],
            created_at=CREATED,
        )
    )
    record.create_client(Client(id=CLIENT_B, display_name="Robin Sample", created_at=CREATED))
    record.create_note(
        ProgressNote(
            id=SIGNED_NOTE,
            client_id=CLIENT_A,
            format=NoteFormat.SOAP,
            sections=complete_sections(),
            facts=complete_facts(date(2026, 10, 26)),
            created_at=CREATED,
            updated_at=CREATED,
        )
    )
    record.sign_note(SIGNED_NOTE)
    record.create_note(
        ProgressNote(
            id=DRAFT_NOTE,
            client_id=CLIENT_A,
            format=NoteFormat.SOAP,
            facts=SessionFacts(date_of_service=date(2026, 11, 2)),
            created_at=CREATED,
            updated_at=CREATED,
        )
    )
    vault.private.create(
        ProcessNote(
            id="process-a",
            client_id=CLIENT_A,
            session_date=date(2026, 11, 2),
            body="Noticed my own impatience near the tangerine exercise; bring to supervision.",
            created_at=CREATED,
            updated_at=CREATED,
            device_id=vault.device_id,
        )
    )
