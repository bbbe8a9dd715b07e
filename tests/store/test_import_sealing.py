"""A note signed elsewhere is sealed by this device's key in the importing process (the key
never goes to a worker). The workers lay out each envelope and the change that stores it,
with zeros where the signature goes; the importing process only signs, fills in and hashes
(store/importer.py `_to_seal` and `_sealed`). What it stores is what the record's own
re-issue makes of the same document, byte for byte. Real vaults, real Automerge documents."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from automerge.core import Document

from store import documents as D
from store import importer, signing
from store.importer import build_items, parse_import
from store.vault import KdfParams, Vault

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "import.json"
NOW = datetime(2026, 11, 27, tzinfo=timezone.utc)
FAST_KDF = KdfParams(memory_kib=8192, time_cost=1, parallelism=1)


@pytest.fixture
def vault(tmp_path):
    made, _ = Vault.create(tmp_path / "v", "correct horse battery staple", device_name="desk", kdf=FAST_KDF)
    yield made
    made.close()


def _built_signed_notes(vault: Vault) -> list[tuple]:
    """The example file's signed notes (with and without addenda) as a round of building
    gives them to the importing process."""
    plan = parse_import(EXAMPLE.read_bytes(), now=NOW)
    record = vault.record
    items = [("progress_notes", i, plan.raw("progress_notes", i), None) for i in range(plan.count("progress_notes"))]
    out = build_items(items, 48, (vault.device_id, NOW, record.import_signer()))
    signed = [r for r in out if r[0] != "bad" and r[6][4] is not None]
    assert signed and any(len(r[6][4][1]) > 1 for r in signed)  # one with addenda among them
    return signed


def test_the_importing_process_only_signs_and_fills_in_what_a_worker_laid_out(vault, monkeypatch):
    built = _built_signed_notes(vault)

    def not_here(*_args, **_kwargs):
        raise AssertionError("laid out in the process that holds the key")

    monkeypatch.setattr(importer, "root_puts_change", not_here)
    monkeypatch.setattr(signing, "canonical_json", not_here)
    sealed = [importer._sealed(vault.record, r[2], r[3], r[6][4]) for r in built]
    monkeypatch.undo()
    public = vault.record._signing_key()[1].public_key()
    for (_kind, doc_id, data, _heads, _view, _fts, _extra), (got, heads) in zip(built, sealed):
        doc = Document.load(got)
        assert doc.get_heads() == heads
        entries = D.signed_entries(doc)
        opened = [signing.open_entry(eid, env, doc_id, lambda _d: public) for eid, env in entries.items()]
        assert opened and all(o.verified for o in opened), [o.problem for o in opened]
        # What the record's own re-issue signs for the same document (entry ids are new each
        # time one is made, so the payloads are compared without them and what names them).
        reissued = Document.load(vault.record.reissue_imported(data)[0])
        assert _without_ids(entries) == _without_ids(D.signed_entries(reissued))
        assert D.note_from_doc(doc) == D.note_from_doc(reissued)


def _without_ids(entries: dict) -> list[dict]:
    payloads = [json.loads(json.loads(env)["payload"]) for env in entries.values()]
    return sorted((json.dumps({k: v for k, v in p.items() if k not in ("id", "amends_signature")}, sort_keys=True) for p in payloads))


def test_signatures_are_made_only_for_payloads_that_name_this_device(vault):
    record = vault.record
    me = record.import_signer()
    payload = signing.canonical_json({"device_id": me, "note_id": "n1", "text": "synthetic canary"})
    other = signing.canonical_json({"device_id": "e" * 32, "note_id": "n1", "text": f'"device_id":"{me}"'})
    [sig] = record.sign_imported([payload])
    assert len(sig) == signing.SIGNATURE_HEX_LENGTH
    with pytest.raises(ValueError, match="another device"):
        record.sign_imported([payload, other])


def test_an_envelope_laid_out_without_the_key_is_the_sealed_one_once_filled_in(vault):
    key = vault.record._signing_key()[1]
    payload = {"v": 1, "text": 'a "sig":"quoted" \\ é \u2028 \U0001f600', "device_id": "d" * 32}
    data, envelope, at = signing.unsigned_envelope(payload)
    assert envelope[at:at + signing.SIGNATURE_HEX_LENGTH] == b"0" * signing.SIGNATURE_HEX_LENGTH
    filled = envelope[:at] + key.sign(data).hex().encode() + envelope[at + signing.SIGNATURE_HEX_LENGTH:]
    assert filled.decode() == signing.seal(key, payload)
    opened = json.loads(filled)
    assert opened["payload"].encode() == data
