"""Intake, review and discharge notes and the PCL-5 through the real commands: `notewell
clients` shows a standing discharge, `notewell export` writes them (never a process note) and
`notewell import` takes what export wrote into another vault, which then agrees."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

from store.models import ProcessNote
from store.vault import Vault
from test_cli_bad_inputs import FAST_KDF, PASSPHRASE, notewell

sys.path.insert(0, str(Path(__file__).parents[1] / "store"))
from test_record_notes import discharge, intake, plan_client, review  # noqa: E402

CANARY = "CANARY-7f3a-process-cli"


def _vault(path: Path) -> Path:
    v, _ = Vault.create(path, PASSPHRASE, device_name="cli", kdf=FAST_KDF)
    try:
        v.update_settings(clinician_name="Dana Testwell", credentials="LCSW")
        v.record.create_client(plan_client(plan_start=date(2026, 1, 5)))
        for note in (intake(), review(), discharge()):
            v.record.create_note(note)
            v.record.sign_note(note.id)
        v.private.create(ProcessNote(client_id="c1", session_date=date(2026, 6, 1), body=CANARY))
    finally:
        v.close()
    return path


def test_discharge_shows_in_clients_and_survives_export_and_import(tmp_path):
    source = _vault(tmp_path / "source")
    run = notewell(source, "clients")
    assert run.returncode == 0, run.stderr
    assert "c1  Avery Ashdown  (3 notes, 0 drafts, discharged 2026-06-01)" in run.stdout

    out = tmp_path / "c1.json"
    run = notewell(source, "export", "--client", "c1", "--out", str(out))
    assert run.returncode == 0, run.stderr
    data = out.read_bytes()
    assert CANARY.encode() not in data
    formats = [n["format"] for n in json.loads(data)["progress_notes"]]
    assert formats == ["INTAKE", "REVIEW", "DISCHARGE"]
    pdf = tmp_path / "c1.pdf"
    assert notewell(source, "export", "--client", "c1", "--out", str(pdf)).returncode == 0
    assert CANARY.encode() not in pdf.read_bytes()

    target = tmp_path / "target"
    Vault.create(target, PASSPHRASE, device_name="other", kdf=FAST_KDF)[0].close()
    run = notewell(target, "import", str(out))
    assert run.returncode == 0, run.stderr
    run = notewell(target, "clients")
    assert "(3 notes, 0 drafts, discharged 2026-06-01)" in run.stdout
    again = tmp_path / "again.json"
    assert notewell(target, "export", "--client", "c1", "--out", str(again)).returncode == 0
    assert json.loads(again.read_bytes())["progress_notes"] == json.loads(data)["progress_notes"]
    assert notewell(target, "check").returncode == 0
