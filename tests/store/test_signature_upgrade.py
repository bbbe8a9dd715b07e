"""Signatures of the earlier form (a content hash and heads inside the note) on a vault made
before signatures were verified, and signed notes arriving in an import file: re-issued by
this device's key where this device vouches for them, otherwise shown as signed before
verification existed; never silently trusted, never lost."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from pathlib import Path

from store import documents as D
from store.export import collect, render_json
from store.importer import apply_import, parse_import
from store.models import ClinicianSettings, Client, Diagnosis, Goal, NoteStatus, Signature
from store.signature_state import SignatureStatus
from store.vault import Vault

from conftest import FAST_KDF, VAULT_PASSPHRASE
from test_signing import complete_note

SETTINGS = ClinicianSettings(clinician_name="Dr Upgrade Example", credentials="PsyD")
SIGNED_AT = datetime(2026, 1, 6, 9, 30, tzinfo=timezone.utc)


def _legacy_sign(record, note_id: str, device_id: str, signer: str = "Dr Upgrade Example") -> None:
    """What signing wrote before signatures were verified: a signature map with the heads
    and content hash, and the status; and one addendum in the list of that time."""
    doc = record.replica.load_doc(note_id)
    note = D.note_from_doc(doc)
    sig = Signature(signer=signer, credentials="PsyD", signed_at=SIGNED_AT, device_id=device_id,
                    heads=sorted(h.hex() for h in doc.get_heads()), content_hash=D.content_hash(note))
    with doc.transaction() as tx:
        D.write_signature(tx, sig)
        D.put_status(tx, NoteStatus.SIGNED)
    from store.models import Addendum

    addendum = Addendum(text="Legacy clarification.", reason="clarify", signer=signer, credentials="PsyD",
                        signed_at=SIGNED_AT, device_id=device_id,
                        content_hash=D.addendum_hash(note_id, "Legacy clarification.", "clarify", signer, "PsyD", SIGNED_AT))
    with doc.transaction() as tx:
        D.append_addendum(tx, addendum)
    record.replica.apply_doc(note_id, doc)


def test_an_older_vault_upgrades_on_open_mine_reissued_others_legacy(tmp_path: Path):
    path = tmp_path / "vault"
    vault, _ = Vault.create(path, VAULT_PASSPHRASE, device_name="old laptop", settings=SETTINGS, kdf=FAST_KDF)
    try:
        r = vault.record
        r.create_client(Client(id="c1", display_name="Avery Upgrade", diagnoses=[Diagnosis(code="F41.1", description="GAD")],
                               goals=[Goal(id="g1", description="Sleep", objective="6 of 7")]))
        r.create_note(complete_note("mine"))
        r.create_note(complete_note("theirs"))
        _legacy_sign(r, "mine", vault.device_id)
        _legacy_sign(r, "theirs", "f" * 64, signer="Dr Other Device")
        # As a vault written by the earlier version: never upgraded.
        r._conn.execute("DELETE FROM local_kv WHERE key = 'signing.upgraded.v1'")
    finally:
        vault.close()
    vault = Vault.open(path, VAULT_PASSPHRASE)
    try:
        mine = vault.record.signature_state("mine")
        assert mine.status == SignatureStatus.VERIFIED
        s = mine.shown.signature
        assert (s.signer, s.credentials, s.signed_at) == ("Dr Upgrade Example", "PsyD", SIGNED_AT)
        assert mine.shown.device_label == "this device"
        assert [a.text for a in mine.addenda] == ["Legacy clarification."]
        theirs = vault.record.signature_state("theirs")
        assert theirs.status == SignatureStatus.LEGACY and not theirs.signed
        assert theirs.shown.signature.signer == "Dr Other Device"  # kept, not lost
        assert len(vault.record.get_note("theirs").addenda) == 1
        assert vault.check() == []
    finally:
        vault.close()


def test_an_imported_signed_note_is_signed_here_by_key_as_the_file_states(tmp_path: Path):
    vault, _ = Vault.create(tmp_path / "vault", VAULT_PASSPHRASE, device_name="new laptop", settings=SETTINGS, kdf=FAST_KDF)
    try:
        note = complete_note("imp")
        doc = {
            "kind": "notewell-import",
            "version": 1,
            "clients": [{"id": "c1", "display_name": "Avery Import", "diagnoses": [{"code": "F41.1", "description": "GAD"}],
                         "goals": [{"id": "g1", "description": "Sleep", "objective": "6 of 7"}]}],
            "progress_notes": [{
                "id": "imp", "client_id": "c1", "format": "DAP", "status": "signed",
                "sections": note.sections, "facts": note.facts.model_dump(mode="json", exclude={"minutes"}),
                "signature": {"signer": "Dr Elsewhere", "credentials": "LMFT", "signed_at": "2026-01-06T09:30:00Z"},
                "addenda": [{"text": "Imported clarification.", "reason": "clarify", "signer": "Dr Elsewhere",
                             "credentials": "LMFT", "signed_at": "2026-01-07T10:00:00Z"}],
            }],
            "process_notes": [],
        }
        apply_import(vault, parse_import(json.dumps(doc).encode()))
        state = vault.record.signature_state("imp")
        assert state.status == SignatureStatus.VERIFIED
        s = state.shown.signature
        assert (s.signer, s.credentials, s.signed_at) == ("Dr Elsewhere", "LMFT", SIGNED_AT)
        assert s.device_id == vault.device_id  # this device's key vouches for it
        assert [a.text for a in state.addenda] == ["Imported clarification."]
        exported = collect(vault.record, "c1", settings=SETTINGS)
        assert [n.signature_status for n in exported.notes] == ["verified"]
        assert json.loads(render_json(exported))["progress_notes"][0]["signature"]["signer"] == "Dr Elsewhere"
    finally:
        vault.close()
