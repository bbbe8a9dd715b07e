"""`notewell check` reads the signature states stored when each note was written or merged
(store/signature_index.py); `--full` verifies every signed note again from its document."""

from __future__ import annotations

from store.models import ClinicianSettings
from store.synthetic import populate
from store.vault import Vault
from test_cli_check import PASS, _check  # noqa: E402
from tui_data import FAST_KDF


def test_check_full_verifies_every_note_again_and_corrects_a_wrong_stored_state(tmp_path):
    path = tmp_path / "v"
    vault, _ = Vault.create(path, PASS, device_name="desk", kdf=FAST_KDF,
                            settings=ClinicianSettings(clinician_name="Dr. Check Er", credentials="PhD"))
    try:
        populate(vault, clients=2, notes=12, seed=5)
        signed = [r.note_id for r in vault.record.list_notes() if r.signed_at is not None]
        note_id = signed[0]
        assert vault.record.verified_statuses([note_id]) == {note_id: "verified"}
        # A stored state that disagrees with the note's document (what --full is for).
        with vault.record.transaction():
            vault.record_conn.execute(
                "UPDATE signature_states SET status = 'tampered', findings = '[\"stored wrongly\"]' WHERE note_id = ?",
                (note_id,),
            )
    finally:
        vault.close()

    stored = _check(path)
    assert stored.returncode == 1 and note_id in stored.stderr  # the default reads the stored state

    full = _check(path, "--full")
    assert full.returncode == 0, full.stderr
    assert "healthy" in full.stdout
    again = _check(path)
    assert again.returncode == 0, again.stderr  # --full stored what it found
