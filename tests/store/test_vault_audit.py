"""The vault writes its key events and the record's signing events to the audit trail."""

from __future__ import annotations

from datetime import date, time

import pytest

from store.errors import WrongPassphrase, WrongRecoveryKey
from store.models import (
    Client, ClinicianSettings, Goal, GoalProgress, ProgressNote, RiskAssessment, SessionFacts, Diagnosis,
)
from store.vault import Vault

PASS = "audit events passphrase"


def _complete_note(client: Client) -> ProgressNote:
    return ProgressNote(
        client_id=client.id,
        format="BIRP",
        sections={
            "behavior": "Client arrived on time and sat calmly, speaking at a normal rate.",
            "intervention": "Cognitive restructuring of a belief about failing at work.",
            "response": "Client named two balanced thoughts and rated the belief lower afterwards.",
            "plan": "Meet next week; client completes two thought records.",
        },
        facts=SessionFacts(
            date_of_service=date(2026, 6, 1), start_time=time(10), stop_time=time(10, 50), cpt_code="90834",
            modality="in_person", diagnoses_addressed=["F41.1"],
            goals_addressed=[GoalProgress(goal_id="g1", rating="some_progress")],
            interventions=["cognitive restructuring"], risk=RiskAssessment(suicide="none", violence="none"),
        ),
    )


def test_key_and_record_events_are_audited(tmp_path, fast_kdf):
    path = tmp_path / "v"
    vault, recovery = Vault.create(
        path, PASS, device_name="desk", kdf=fast_kdf,
        settings=ClinicianSettings(clinician_name="Dr. Ida Quill", credentials="PsyD"),
    )
    client = vault.record.create_client(Client(
        display_name="Audit Client", diagnoses=[Diagnosis(code="F41.1")], goals=[Goal(id="g1", description="Sleep")],
    ))
    note = vault.record.create_note(_complete_note(client))
    vault.record.sign_note(note.id)
    vault.record.add_addendum(note.id, "Addendum text ADD-CANARY", "clarify")
    vault.close()

    with pytest.raises(WrongPassphrase):
        Vault.open(path, "not the passphrase")
    with pytest.raises(WrongRecoveryKey):
        Vault.recover(path, recovery[:-1] + ("A" if recovery[-1] != "A" else "B"), "another passphrase x")
    Vault.recover(path, recovery, "recovered passphrase").close()
    Vault.change_passphrase(path, "recovered passphrase", PASS)

    with Vault.open(path, PASS) as vault:
        entries = vault.audit.entries()
        events = [e.event for e in entries]
        assert events[0] == "vault_created"
        assert "note_signed" in events and "addendum_added" in events
        failures = [e for e in entries if e.event == "unlock_failures"]
        assert sum(e.details["count"] for e in failures) == 2
        assert events.index("vault_recovered") < events.index("passphrase_changed")
        assert vault.audit.verify().ok
        signed = next(e for e in entries if e.event == "note_signed")
        assert signed.client_id == client.id
        assert all("ADD-CANARY" not in repr(e) for e in entries)
