"""A synthetic client for the client's-rights tests: two signed notes, a draft and process
notes carrying a canary (which must never appear in anything these records produce)."""

from __future__ import annotations

from datetime import date, time

from store.models import (
    Client,
    ClinicianSettings,
    Diagnosis,
    Goal,
    GoalProgress,
    ProcessNote,
    ProgressNote,
    RiskAssessment,
    SessionFacts,
)

CANARY = "CANARY-rights-9c1e"
SETTINGS = ClinicianSettings(clinician_name="Robin Quill", credentials="LCSW", practice_name="Quill Counselling")
CLIENT_ID = "c-rights-1"
CLIENT_NAME = "Avery Ashdown"
SOAP = ("subjective", "objective", "assessment", "plan")


def _facts(on: date) -> SessionFacts:
    return SessionFacts(
        date_of_service=on, start_time=time(10, 0), stop_time=time(10, 50), cpt_code="90834", modality="video",
        diagnoses_addressed=["F41.1"], goals_addressed=[GoalProgress(goal_id="g1", rating="some_progress")],
        interventions=["cognitive restructuring"], risk=RiskAssessment(suicide="none", violence="none"),
    )


def seed(vault) -> None:
    """The client, notes n-r1 and n-r2 (signed), n-r3 (draft), and canary process notes."""
    r = vault.record
    r.create_client(Client(
        id=CLIENT_ID, display_name=CLIENT_NAME, date_of_birth=date(1990, 1, 2),
        diagnoses=[Diagnosis(code="F41.1", description="Generalized anxiety disorder")],
        goals=[Goal(id="g1", description="Reduce worry episodes", objective="Fewer than 3 a week")],
    ))
    r.create_client(Client(id="c-rights-2", display_name="Blake Birchwood"))
    for note_id, on, signed in (("n-r1", date(2026, 1, 5), True), ("n-r2", date(2026, 2, 9), True),
                                ("n-r3", date(2026, 3, 2), False)):
        r.create_note(ProgressNote(id=note_id, client_id=CLIENT_ID, format="SOAP",
                                   sections={k: f"NOTE-{note_id} {k} text" for k in SOAP}, facts=_facts(on)))
        if signed:
            r.sign_note(note_id)
    for on in (date(2026, 1, 5), date(2026, 2, 9)):
        vault.private.create(ProcessNote(client_id=CLIENT_ID, session_date=on, body=f"{CANARY} process note"))


def make_vault(path, passphrase: str, kdf, settings=SETTINGS, name: str = "test device"):
    """A new vault at `path`, seeded (above), closed; returns `path`."""
    from store.vault import Vault

    v, _ = Vault.create(path, passphrase, device_name=name, settings=settings, kdf=kdf)
    try:
        seed(v)
    finally:
        v.close()
    return path
