"""A repeated `notewell import` is refused by its ids, right after the unlock, without first
verifying every page of the record (a scan that took 4-12 s at 100,000 notes, longer than
the refusal may take); every page is still verified before anything is written, so an
import into a vault with a damaged page is refused and changes nothing.

Real vaults, the real command in its own process, a page of record.db damaged on disk.
"""

from __future__ import annotations

import json
from pathlib import Path

from store.vault import Vault
from test_cli_bad_inputs import EXAMPLE, FAST_KDF, PASSPHRASE, files, notewell, one_sentence

PAGE = 4096


def damage_last_page(path: Path) -> None:
    """Flip bytes inside the last page of record.db: a page that reading the vault's ids
    does not read, which only the scan of every page finds."""
    raw = bytearray(path.read_bytes())
    at = len(raw) - PAGE + 1000
    raw[at : at + 32] = bytes(b ^ 0x5A for b in raw[at : at + 32])
    path.write_bytes(bytes(raw))


def imported_then_damaged(tmp_path: Path) -> Path:
    vault = tmp_path / "vault"
    Vault.create(vault, PASSPHRASE, device_name="import-repeat", kdf=FAST_KDF)[0].close()
    run = notewell(vault, "import", str(EXAMPLE))
    assert run.returncode == 0, run.stderr
    damage_last_page(vault / "record.db")
    return vault


def test_a_repeat_is_refused_by_its_ids_without_waiting_for_every_page(tmp_path):
    vault = imported_then_damaged(tmp_path)
    before = files(vault)
    sentence = one_sentence(notewell(vault, "import", str(EXAMPLE)))
    # Refused for what it is (the scan of every page, which alone finds this damage, was
    # not waited for), and nothing changed.
    assert "already exists in the vault" in sentence, sentence
    assert files(vault) == before


def test_an_import_into_a_vault_with_a_damaged_page_is_refused_and_changes_nothing(tmp_path):
    vault = imported_then_damaged(tmp_path)
    data = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    fresh = {"kind": data["kind"], "version": data["version"], "clients": [dict(data["clients"][0], id="client-fresh")]}
    other = tmp_path / "fresh.json"
    other.write_text(json.dumps(fresh), encoding="utf-8")
    before = files(vault)
    sentence = one_sentence(notewell(vault, "import", str(other)))
    assert "damaged" in sentence, sentence
    assert files(vault) == before
