"""`notewell check` reports signature conflicts: ids by default, both texts on request."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from store.models import ClinicianSettings
from store.synthetic import make_signature_conflict, populate
from store.vault import Vault
from tui_data import FAST_KDF

ROOT = Path(__file__).resolve().parents[2]
PASS = "check command passphrase"


def _check(path: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NOTEWELL_PASSPHRASE": PASS}
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", "--vault", str(path), "check", *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_check_reports_signature_conflicts_until_resolved(tmp_path):
    path = tmp_path / "v"
    vault, _ = Vault.create(path, PASS, device_name="desk", kdf=FAST_KDF,
                            settings=ClinicianSettings(clinician_name="Dr. Check Er", credentials="PhD"))
    try:
        populate(vault, clients=2, notes=12, seed=5)
        note_id = make_signature_conflict(vault.record)
        note = vault.record.get_note(note_id)
    finally:
        vault.close()
    canary = "sleep diary"  # the concurrent edit's words

    plain = _check(path)
    assert plain.returncode == 1
    assert f"Signature conflict: note {note_id}" in plain.stderr
    assert canary not in plain.stderr + plain.stdout  # no note text unless asked for

    shown = _check(path, "--show-conflicts")
    assert shown.returncode == 1
    assert "as signed:" in shown.stderr and canary in shown.stderr
    assert note.signature is not None

    with Vault.open(path, PASS) as vault:
        vault.record.resolve_signature_conflict(note_id, "addendum")
    resolved = _check(path)
    assert resolved.returncode == 0, resolved.stderr
    assert "healthy" in resolved.stdout
