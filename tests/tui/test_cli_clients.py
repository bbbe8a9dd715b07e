"""Naming a client on the command line (issue 16, finding 10): `notewell clients` lists ids,
names and counts (never note text), and a unique name or id prefix is accepted wherever a
client is named; an ambiguous or unknown one is one sentence that lists nothing clinical."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from store.models import Client, ProgressNote, SessionFacts
from store.vault import Vault
from test_cli_bad_inputs import FAST_KDF, PASSPHRASE, notewell, refused
from tui_helpers import one_sentence

CANARY = "Tangerine-canary-4410 section text"


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    path = tmp_path / "vault"
    v, _ = Vault.create(path, PASSPHRASE, device_name="clients", kdf=FAST_KDF)
    try:
        v.update_settings(clinician_name="Dana Testwell", credentials="LCSW")
        for cid, name in (("c-jordan-1", "Jordan Ellison"), ("c-jordan-2", "Jordan Ames"), ("x-robin", "Robin Sample")):
            v.record.create_client(Client(id=cid, display_name=name))
        v.record.create_note(ProgressNote(client_id="c-jordan-1", format="SOAP", sections={"subjective": CANARY},
                                          facts=SessionFacts(date_of_service=date(2026, 11, 2))))
    finally:
        v.close()
    return path


def test_clients_lists_ids_names_and_counts_never_note_text(vault):
    run = notewell(vault, "clients")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    jordan = next(line for line in lines if "Jordan Ellison" in line)
    assert "c-jordan-1" in jordan and "1 note" in jordan and "1 draft" in jordan
    assert any("Robin Sample" in line and "x-robin" in line for line in lines)
    assert CANARY not in run.stdout + run.stderr


@pytest.mark.parametrize("named, expected", [
    ("Jordan Ellison", "c-jordan-1"), ("  jordan   ellison ", "c-jordan-1"), ("c-jordan-1", "c-jordan-1"),
    ("Jordan E", "c-jordan-1"), ("x-ro", "x-robin"), ("rob", "x-robin"),
])
def test_export_accepts_a_unique_name_or_id_prefix(vault, tmp_path, named, expected):
    out = tmp_path / "record.json"
    run = notewell(vault, "export", "--client", named, "--out", str(out), "--include-drafts")
    assert run.returncode == 0, run.stderr
    assert f"for client {expected} " in run.stdout and out.exists()


def test_audit_accepts_a_name(vault):
    run = notewell(vault, "audit", "--client", "Robin")
    assert run.returncode == 0, run.stderr


def test_an_ambiguous_or_unknown_client_is_one_sentence_listing_nothing(vault, tmp_path):
    out = tmp_path / "record.json"
    ambiguous = refused(vault, "export", "--client", "Jordan", "--out", str(out))
    assert "2 clients" in ambiguous and "Ellison" not in ambiguous and "Ames" not in ambiguous
    unknown = refused(vault, "export", "--client", "Quinn", "--out", str(out))
    assert "notewell clients" in unknown
    assert not out.exists()
    assert one_sentence(notewell(vault, "audit", "--client", "c-jordan"))
