"""The passphrase wrap's Argon2id parameters (vault.json).

An edit to vault.json must never make a guess of the passphrase cheaper: the parameters are
bound into the wrap's associated data, a file asking for less than today's defaults is
refused as damaged before any key is derived, and vaults written by the earlier formats
(kept in tests/store/data) open and are upgraded. The suite's vaults use the test KDF, which
only a process started with NOTEWELL_TEST_KDF=1 accepts (tests/conftest.py); the tests of the
floor itself run without it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from conftest import FAST_KDF, folder_snapshot
from store import keys, vaultfile
from store.audit import canonical
from store.errors import DamagedVault, WrongPassphrase
from store.vault import KdfParams, Vault

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"
SWITCH = "NOTEWELL_TEST_KDF"
PASSPHRASE = "kdf binding passphrase"
NEW_PASSPHRASE = "a new passphrase for the kdf tests"
OLD_VAULTS = {
    "format1": ("first format passphrase", "I42VQUJ-EHPLG4U-GVQKPMK-74NZE5O-NWW7BR5-QEGN5ZV-RBVBLF5-UH6XO3A"),
    "format2": ("second format passphrase", "7BBN7JE-5ESEXHH-JJQTC6L-YPAE6FZ-RE3UZRY-3HMEMIA-DHBXCTZ-VZQDXRS"),
}


def read_json(folder: Path) -> dict:
    return json.loads((folder / "vault.json").read_text(encoding="utf-8"))


def write_resealed(folder: Path, data: dict) -> None:
    """vault.json as an attacker who edits it writes it: the unkeyed checksum recomputed."""
    data["checksum"] = vaultfile.checksum(data)
    (folder / "vault.json").write_text(json.dumps(data, indent=2), encoding="utf-8")


def copy_old(name: str, tmp_path: Path) -> Path:
    folder = tmp_path / name
    shutil.copytree(DATA / f"vault_{name}", folder, ignore=shutil.ignore_patterns("README.md"))
    return folder


def aad_without_kdf(vault_id: str) -> bytes:
    """The passphrase wrap's associated data in formats 1 and 2."""
    return f"notewell-vault\x001\x00{vault_id}\x00passphrase".encode()


def aad_with_kdf(vault_id: str, kdf: dict) -> bytes:
    return f"notewell-vault\x002\x00{vault_id}\x00passphrase".encode() + b"\x00" + canonical(kdf)


def wrap_opens(folder: Path, passphrase: str, aad: bytes) -> bool:
    """Whether the passphrase wrap in vault.json opens under `aad` (with the right key)."""
    data = read_json(folder)
    wrap = data["passphrase_wrap"]
    kek = keys.passphrase_kek(passphrase, _b64(wrap["salt"]), KdfParams.from_json(wrap["kdf"]))
    try:
        AESGCM(bytes(kek)).decrypt(_b64(wrap["nonce"]), _b64(wrap["ciphertext"]), aad)
    except InvalidTag:
        return False
    return True


def _b64(text: str) -> bytes:
    import base64

    return base64.b64decode(text)


def binds_its_kdf(folder: Path, passphrase: str) -> bool:
    data = read_json(folder)
    kdf, vault_id = data["passphrase_wrap"]["kdf"], data["vault_id"]
    stronger = dict(kdf, time_cost=kdf["time_cost"] + 1)
    return (
        wrap_opens(folder, passphrase, aad_with_kdf(vault_id, kdf))
        and not wrap_opens(folder, passphrase, aad_with_kdf(vault_id, stronger))
        and not wrap_opens(folder, passphrase, aad_without_kdf(vault_id))
    )


# --- the parameters are bound into the wrap ----------------------------------------------


def test_a_new_vaults_passphrase_wrap_binds_its_kdf_parameters(tmp_path):
    Vault.create(tmp_path / "v", PASSPHRASE, device_name="Binding test", kdf=FAST_KDF)[0].close()
    assert binds_its_kdf(tmp_path / "v", PASSPHRASE)


def test_a_new_passphrase_wrap_binds_its_kdf_parameters(tmp_path):
    folder = tmp_path / "v"
    recovery = Vault.create(folder, PASSPHRASE, device_name="Binding test", kdf=FAST_KDF)[1]
    Vault.change_passphrase(folder, PASSPHRASE, NEW_PASSPHRASE, kdf=FAST_KDF)
    assert binds_its_kdf(folder, NEW_PASSPHRASE)
    Vault.recover(folder, recovery, PASSPHRASE, kdf=FAST_KDF).close()
    assert binds_its_kdf(folder, PASSPHRASE)


# --- the floor when reading --------------------------------------------------------------


def test_a_vault_json_cheaper_than_the_floor_is_refused_as_damaged(tmp_path, monkeypatch):
    folder = tmp_path / "v"
    recovery = Vault.create(folder, PASSPHRASE, device_name="Floor test", kdf=FAST_KDF)[1]
    monkeypatch.delenv(SWITCH)  # as a clinician's process runs: the test KDF is refused
    before = folder_snapshot(folder)
    for attempt in (lambda: Vault.open(folder, PASSPHRASE),
                    lambda: Vault.recover(folder, recovery, NEW_PASSPHRASE),
                    lambda: Vault.change_passphrase(folder, PASSPHRASE, NEW_PASSPHRASE)):
        with pytest.raises(DamagedVault) as refused:
            attempt()
        assert "cheaper passphrase key derivation" in refused.value.message
        assert refused.value.message.count(". ") == 0 and refused.value.message.endswith(".")
    assert folder_snapshot(folder) == before


def test_lowering_a_real_vaults_parameters_is_named_as_such_before_any_key_is_derived(tmp_path, monkeypatch):
    monkeypatch.delenv(SWITCH)
    folder = tmp_path / "v"
    recovery = Vault.create(folder, PASSPHRASE, device_name="Floor test")[1]  # today's defaults
    data = read_json(folder)
    data["passphrase_wrap"]["kdf"].update(memory_kib=8192, time_cost=1)  # 8 MiB, one pass
    write_resealed(folder, data)
    before = folder_snapshot(folder)
    with pytest.raises(DamagedVault, match="cheaper passphrase key derivation"):
        Vault.open(folder, PASSPHRASE)
    with pytest.raises(DamagedVault, match="cheaper passphrase key derivation"):
        Vault.recover(folder, recovery, NEW_PASSPHRASE)
    assert folder_snapshot(folder) == before


def test_the_command_line_without_the_test_switch_refuses_the_test_kdf(tmp_path):
    folder = tmp_path / "v"
    Vault.create(folder, PASSPHRASE, device_name="Floor test", kdf=FAST_KDF)[0].close()
    before = folder_snapshot(folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTEWELL_")}
    env["NOTEWELL_PASSPHRASE"] = PASSPHRASE
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "--vault", str(folder), "check"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and "cheaper passphrase key derivation" in done.stderr
    assert "Traceback" not in done.stderr
    assert folder_snapshot(folder) == before


def test_a_vault_cheaper_than_the_floor_is_never_made(tmp_path, monkeypatch):
    monkeypatch.delenv(SWITCH)
    with pytest.raises(ValueError):
        Vault.create(tmp_path / "v", PASSPHRASE, device_name="Floor test", kdf=FAST_KDF)
    assert not (tmp_path / "v" / "vault.json").exists()


# --- earlier formats open and are upgraded -----------------------------------------------


@pytest.mark.parametrize("name", sorted(OLD_VAULTS))
def test_an_earlier_format_is_upgraded_at_its_next_unlock_with_the_passphrase(name, tmp_path):
    passphrase, recovery = OLD_VAULTS[name]
    folder = copy_old(name, tmp_path)
    old = read_json(folder)
    assert not binds_its_kdf(folder, passphrase)

    before = folder_snapshot(folder)
    with pytest.raises(WrongPassphrase):
        Vault.open(folder, "not the passphrase at all")
    assert folder_snapshot(folder) == before

    with Vault.open(folder, passphrase) as vault:
        upgrades = [e.details for e in vault.audit.entries() if e.event == "vault_file_upgraded"]
        assert upgrades[-1]["to_format"] == 3 and upgrades[-1]["passphrase_wrap_binds_kdf"] is True
        assert vault.check() == []
    new = read_json(folder)
    assert new["format_version"] == 3
    assert binds_its_kdf(folder, passphrase)
    # The same key (salt and cost) wraps it again; the recovery wrap cannot be remade.
    assert new["passphrase_wrap"]["kdf"] == old["passphrase_wrap"]["kdf"]
    assert new["passphrase_wrap"]["salt"] == old["passphrase_wrap"]["salt"]
    assert new["recovery_wrap"] == old["recovery_wrap"]

    # Once: the next unlock writes nothing, and both keys still open the vault.
    raw = (folder / "vault.json").read_bytes()
    Vault.open(folder, passphrase).close()
    assert (folder / "vault.json").read_bytes() == raw
    Vault.recover(folder, recovery, NEW_PASSPHRASE, kdf=FAST_KDF).close()
    Vault.open(folder, NEW_PASSPHRASE).close()
    assert binds_its_kdf(folder, NEW_PASSPHRASE)


@pytest.mark.parametrize("name", sorted(OLD_VAULTS))
def test_an_earlier_format_recovered_first_gets_a_bound_wrap_at_todays_defaults(name, tmp_path):
    _passphrase, recovery = OLD_VAULTS[name]
    folder = copy_old(name, tmp_path)
    with Vault.recover(folder, recovery, NEW_PASSPHRASE) as vault:
        events = [e.event for e in vault.audit.entries()]
        assert "vault_recovered" in events and "vault_file_upgraded" in events
        assert vault.check() == []
    new = read_json(folder)
    assert new["format_version"] == 3
    assert new["passphrase_wrap"]["kdf"]["memory_kib"] >= 65536
    assert new["passphrase_wrap"]["kdf"]["time_cost"] >= 3
    assert binds_its_kdf(folder, NEW_PASSPHRASE)
    Vault.open(folder, NEW_PASSPHRASE).close()


def test_a_second_format_vault_gets_a_bound_wrap_from_passwd(tmp_path):
    passphrase, _recovery = OLD_VAULTS["format2"]
    folder = copy_old("format2", tmp_path)
    Vault.change_passphrase(folder, passphrase, NEW_PASSPHRASE, kdf=FAST_KDF)
    assert read_json(folder)["format_version"] == 3
    assert binds_its_kdf(folder, NEW_PASSPHRASE)
    with Vault.open(folder, NEW_PASSPHRASE) as vault:
        assert vault.check() == []
