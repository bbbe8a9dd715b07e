"""The demo data shows every format and status a clinician will meet."""

from __future__ import annotations

from store.models import ClinicianSettings
from store.synthetic import populate_demo
from store.vault import Vault


def test_demo_vault_has_every_format_and_status(tmp_path, fast_kdf):
    vault, _ = Vault.create(
        tmp_path / "v", "demo data passphrase", device_name="demo", kdf=fast_kdf,
        settings=ClinicianSettings(clinician_name="Dr. Demo Person", credentials="LCSW"),
    )
    try:
        populate_demo(vault, clients=6, notes=80, process_notes=3)
        rows = vault.record.list_notes()
        assert len(rows) == 80
        assert {r.format for r in rows} == {"SOAP", "DAP", "BIRP", "GIRP", "PIRP"}
        assert {r.status for r in rows} == {"draft", "signed", "entered_in_error"}
        assert any(r.late_entry for r in rows) and any(r.status == "signed" and not r.late_entry for r in rows)
        assert sum(r.signature_conflict for r in rows) == 1
        assert any(r.addenda_count for r in rows)
        assert vault.private.count() == 3
        assert vault.check() == []
    finally:
        vault.close()
