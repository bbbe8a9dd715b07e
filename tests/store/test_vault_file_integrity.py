"""vault.json is authenticated: damage to any field is reported as damage (never as a wrong
passphrase or recovery key), a deliberate edit is caught after the unwrap, nothing is ever
rewritten to hide either, and a vault.json of the first format is upgraded at its first
unlock. Real vault folders; `notewell check` and `notewell recover` run as real processes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from store.device_identity import generate_identity, save_identity
from store.errors import DamagedVault, NewerVaultFormat, WrongPassphrase, WrongRecoveryKey
from store.keys import new_recovery_key
from store.vault import _FILE_FORMAT_KEY as FILE_FORMAT_KEY
from store.vault import KdfParams, Vault
from conftest import FAST_KDF, folder_snapshot

REPO = Path(__file__).resolve().parents[2]
VAULT_PASSPHRASE = "correct horse battery staple"
NEW_PASSPHRASE = "a new passphrase for tests"
DEVICE_NAME = "Test laptop"


def make_vault(folder: Path) -> str:
    vault, recovery = Vault.create(folder, VAULT_PASSPHRASE, device_name=DEVICE_NAME, kdf=FAST_KDF)
    vault.close()
    return recovery


def read_json(folder: Path) -> dict:
    return json.loads((folder / "vault.json").read_text(encoding="utf-8"))


def notewell(folder: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "NOTEWELL_PASSPHRASE": VAULT_PASSPHRASE, **(env or {})}
    full_env.pop("NOTEWELL_VAULT", None)
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", "--vault", str(folder), *args],
        cwd=REPO, env=full_env, capture_output=True, text=True, timeout=120,
    )


def assert_one_sentence(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


# --- byte flips in each field --------------------------------------------------------------

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _other_char(ch: str) -> str:
    """A different character of the same kind, so the file stays well-formed JSON."""
    for alphabet in ("0123456789", "abcdef", _B64, "abcdefghijklmnopqrstuvwxyz"):
        if ch in alphabet:
            return alphabet[(alphabet.index(ch) + 1) % len(alphabet)]
    return "x" if ch != "x" else "y"


def _flip(value):
    if isinstance(value, int):
        return value + 1
    middle = len(value) // 2
    return value[:middle] + _other_char(value[middle]) + value[middle + 1 :]


# (field, path into the JSON)
FIELDS = {
    "passphrase-salt": ("passphrase_wrap", "salt"),
    "passphrase-nonce": ("passphrase_wrap", "nonce"),
    "passphrase-ciphertext": ("passphrase_wrap", "ciphertext"),
    "kdf-memory": ("passphrase_wrap", "kdf", "memory_kib"),
    "kdf-time": ("passphrase_wrap", "kdf", "time_cost"),
    "kdf-parallelism": ("passphrase_wrap", "kdf", "parallelism"),
    "recovery-salt": ("recovery_wrap", "salt"),
    "recovery-nonce": ("recovery_wrap", "nonce"),
    "recovery-ciphertext": ("recovery_wrap", "ciphertext"),
    "vault-id": ("vault_id",),
    "device-id": ("device", "id"),
    "device-name": ("device", "name"),
    "created-at": ("created_at",),
    "format-version": ("format_version",),
    "mac": ("mac",),
    "checksum": ("checksum",),
}


def flip_field(folder: Path, path: tuple[str, ...]) -> None:
    """Change one character (or one digit) of one field in place; every other byte stays."""
    file = folder / "vault.json"
    raw = file.read_text(encoding="utf-8")
    value = read_json(folder)
    for key in path:
        value = value[key]
    old = f'"{path[-1]}": {json.dumps(value, ensure_ascii=False)}'
    new = f'"{path[-1]}": {json.dumps(_flip(value), ensure_ascii=False)}'
    assert raw.count(old) == 1, old
    file.write_text(raw.replace(old, new), encoding="utf-8")


@pytest.mark.parametrize("path", FIELDS.values(), ids=FIELDS.keys())
def test_a_flipped_field_is_damage_for_open_recover_and_check(vault_dir, path):
    recovery = make_vault(vault_dir)
    flip_field(vault_dir, path)
    before = folder_snapshot(vault_dir)

    with pytest.raises(DamagedVault, match="vault.json") as opened:
        Vault.open(vault_dir, VAULT_PASSPHRASE)
    assert "passphrase" not in opened.value.message
    assert folder_snapshot(vault_dir) == before

    with pytest.raises(DamagedVault, match="vault.json") as recovered:
        Vault.recover(vault_dir, recovery, NEW_PASSPHRASE)
    assert "recovery key" not in recovered.value.message
    assert folder_snapshot(vault_dir) == before

    checked = notewell(vault_dir, "check")
    assert checked.returncode != 0
    assert_one_sentence(checked.stderr)
    assert "vault.json" in checked.stderr and "damaged" in checked.stderr
    assert "not correct" not in checked.stderr
    assert folder_snapshot(vault_dir) == before


def test_recover_with_the_right_key_on_a_damaged_recovery_wrap_says_damaged(vault_dir, tmp_path):
    recovery = make_vault(vault_dir)
    flip_field(vault_dir, ("recovery_wrap", "ciphertext"))
    before = folder_snapshot(vault_dir)
    key_file = tmp_path / "recovery.txt"
    key_file.write_text(recovery)
    result = notewell(
        vault_dir, "recover", "--recovery-key-file", str(key_file),
        env={"NOTEWELL_NEW_PASSPHRASE": NEW_PASSPHRASE},
    )
    assert result.returncode != 0
    assert_one_sentence(result.stderr)
    assert "damaged" in result.stderr and "vault.json" in result.stderr
    assert "not correct" not in result.stderr
    assert folder_snapshot(vault_dir) == before


def test_a_wrong_passphrase_or_key_on_an_intact_file_is_still_wrong(vault_dir):
    make_vault(vault_dir)
    before = folder_snapshot(vault_dir)
    with pytest.raises(WrongPassphrase):
        Vault.open(vault_dir, "not the passphrase at all")
    _secret, other_key = new_recovery_key()
    with pytest.raises(WrongRecoveryKey):
        Vault.recover(vault_dir, other_key, NEW_PASSPHRASE)
    assert folder_snapshot(vault_dir) == before


# --- deliberate edits: a recomputed checksum does not pass the MAC ---------------------------


def reseal_checksum(folder: Path, edit) -> None:
    """Edit vault.json and recompute its unkeyed checksum, as someone editing it on purpose
    would: only the MAC, which needs the master key, can tell."""
    data = read_json(folder)
    edit(data)
    data.pop("checksum", None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    data["checksum"] = "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    (folder / "vault.json").write_text(json.dumps(data, indent=2), encoding="utf-8")


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["device"].update(name="Someone else's laptop"),
        lambda d: d.update(created_at="2001-01-01T00:00:00+00:00"),
        lambda d: d["recovery_wrap"].update(nonce=_flip(d["recovery_wrap"]["nonce"])),
        lambda d: d["device"].update(id=_flip(d["device"]["id"])),
    ],
    ids=["device-name", "created-at", "recovery-wrap", "device-id"],
)
def test_an_edit_with_a_recomputed_checksum_is_caught_by_the_mac(vault_dir, edit):
    make_vault(vault_dir)
    reseal_checksum(vault_dir, edit)
    before = folder_snapshot(vault_dir)
    with pytest.raises(DamagedVault, match="vault.json"):
        Vault.open(vault_dir, VAULT_PASSPHRASE)
    assert folder_snapshot(vault_dir) == before
    checked = notewell(vault_dir, "check")
    assert checked.returncode != 0 and "vault.json" in checked.stderr
    assert_one_sentence(checked.stderr)
    assert folder_snapshot(vault_dir) == before


def test_a_version_bump_with_a_valid_checksum_is_a_newer_format(vault_dir):
    make_vault(vault_dir)
    reseal_checksum(vault_dir, lambda d: d.update(format_version=d["format_version"] + 1))
    with pytest.raises(NewerVaultFormat):
        Vault.open(vault_dir, VAULT_PASSPHRASE)


@pytest.mark.parametrize(
    "damage",
    [
        lambda folder: flip_field(folder, ("recovery_wrap", "ciphertext")),
        lambda folder: reseal_checksum(
            folder, lambda d: d["recovery_wrap"].update(salt=_flip(d["recovery_wrap"]["salt"]))
        ),
    ],
    ids=["flipped", "edited-with-checksum"],
)
def test_check_reports_vault_json_damaged_while_the_vault_is_open(vault_dir, damage):
    make_vault(vault_dir)
    with Vault.open(vault_dir, VAULT_PASSPHRASE) as vault:
        assert vault.check() == []
        damage(vault_dir)
        problems = vault.check()
    assert any("vault.json" in p and "damaged" in p for p in problems), problems


def test_a_checksum_with_foreign_characters_is_damage(vault_dir):
    make_vault(vault_dir)
    data = read_json(vault_dir)
    data["checksum"] = "sha256:" + "\u00e9" * 64
    (vault_dir / "vault.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    before = folder_snapshot(vault_dir)
    with pytest.raises(DamagedVault, match="checksum"):
        Vault.open(vault_dir, VAULT_PASSPHRASE)
    assert folder_snapshot(vault_dir) == before


# --- the device id is never silently rewritten ----------------------------------------------


def test_a_device_id_that_disagrees_with_the_certificate_is_reported_not_rewritten(vault_dir):
    make_vault(vault_dir)
    # record.db now holds another certificate than the one vault.json names (vault.json
    # itself is intact and authentic).
    with Vault.open(vault_dir, VAULT_PASSPHRASE) as vault:
        save_identity(vault.record.replica, generate_identity(DEVICE_NAME))
    named = read_json(vault_dir)["device"]["id"]
    before = folder_snapshot(vault_dir)
    with pytest.raises(DamagedVault, match="certificate"):
        Vault.open(vault_dir, VAULT_PASSPHRASE)
    assert folder_snapshot(vault_dir) == before
    assert read_json(vault_dir)["device"]["id"] == named


# --- the first format: upgraded at the first unlock -----------------------------------------


def write_first_format(folder: Path, *, forget_upgrade: bool = True) -> dict:
    """Make the vault look as the first format left it: vault.json without checksum or MAC,
    written as that format's writer did, and record.db without the note of an upgrade."""
    if forget_upgrade:
        with Vault.open(folder, VAULT_PASSPHRASE) as vault:
            vault.record_conn.execute("DELETE FROM local_settings WHERE key = ?", (FILE_FORMAT_KEY,))
    data = read_json(folder)
    for key in ("mac", "checksum"):
        data.pop(key, None)
    data["format_version"] = 1
    (folder / "vault.json").write_bytes(
        (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    )
    return data


def test_a_first_format_vault_json_opens_and_is_upgraded(vault_dir):
    recovery = make_vault(vault_dir)
    old = write_first_format(vault_dir)

    # A wrong passphrase on the old format still writes nothing.
    before = folder_snapshot(vault_dir)
    with pytest.raises(WrongPassphrase):
        Vault.open(vault_dir, "not the passphrase at all")
    assert folder_snapshot(vault_dir) == before

    with Vault.open(vault_dir, VAULT_PASSPHRASE) as vault:
        assert vault.device_id == old["device"]["id"]
        upgrades = [e for e in vault.audit.entries() if e.event == "vault_file_upgraded"]
        assert len(upgrades) == 1
        assert upgrades[0].details == {
            "from_format": 1, "to_format": 3, "device_id_changed": False, "passphrase_wrap_binds_kdf": True,
        }
        assert vault.check() == []
    new = read_json(vault_dir)
    assert new["format_version"] == 3
    assert new["mac"] and new["checksum"].startswith("sha256:")
    for key in ("vault_id", "created_at", "device", "passphrase_wrap", "recovery_wrap"):
        assert new[key] == old[key], key
    assert not (vault_dir / "vault.json.tmp").exists()

    # Upgraded once: the next unlock writes nothing to vault.json, and both keys still work.
    raw = (vault_dir / "vault.json").read_bytes()
    Vault.open(vault_dir, VAULT_PASSPHRASE).close()
    assert (vault_dir / "vault.json").read_bytes() == raw
    Vault.recover(vault_dir, recovery, NEW_PASSPHRASE).close()
    Vault.open(vault_dir, NEW_PASSPHRASE).close()


FIRST_FORMAT_VAULT = Path(__file__).parent / "data" / "vault_format1"
FIRST_FORMAT_PASSPHRASE = "first format passphrase"
FIRST_FORMAT_RECOVERY = "I42VQUJ-EHPLG4U-GVQKPMK-74NZE5O-NWW7BR5-QEGN5ZV-RBVBLF5-UH6XO3A"


def test_a_vault_written_by_the_first_format_opens_and_is_upgraded(tmp_path):
    """A vault as the previous version wrote it (kept in tests/store/data)."""
    folder = tmp_path / "old"
    shutil.copytree(FIRST_FORMAT_VAULT, folder, ignore=shutil.ignore_patterns("README.md"))
    old = read_json(folder)
    assert old["format_version"] == 1 and "mac" not in old

    before = folder_snapshot(folder)
    with pytest.raises(WrongPassphrase):
        Vault.open(folder, "not the passphrase at all")
    assert folder_snapshot(folder) == before

    with Vault.open(folder, FIRST_FORMAT_PASSPHRASE) as vault:
        assert vault.device_id == old["device"]["id"] == vault.identity.device_id
        upgrades = [e for e in vault.audit.entries() if e.event == "vault_file_upgraded"]
        assert [e.details["device_id_changed"] for e in upgrades] == [False]
        assert vault.audit.verify().ok
        assert vault.check() == []
    new = read_json(folder)
    assert new["format_version"] == 3 and new["mac"] and new["checksum"]
    for key in ("vault_id", "created_at", "device", "recovery_wrap"):
        assert new[key] == old[key], key
    # Wrapped again under the same key (same salt and cost), now binding that cost.
    assert new["passphrase_wrap"]["format"] == 2
    for key in ("kdf", "salt"):
        assert new["passphrase_wrap"][key] == old["passphrase_wrap"][key], key

    assert notewell(folder, "check", env={"NOTEWELL_PASSPHRASE": FIRST_FORMAT_PASSPHRASE}).returncode == 0
    Vault.recover(folder, FIRST_FORMAT_RECOVERY, NEW_PASSPHRASE).close()
    Vault.open(folder, NEW_PASSPHRASE).close()


def test_an_upgraded_vault_json_cannot_be_swapped_back_for_the_first_format(vault_dir):
    make_vault(vault_dir)
    write_first_format(vault_dir)
    Vault.open(vault_dir, VAULT_PASSPHRASE).close()
    # Stripping the MAC by rewriting the file in the old format would bypass it.
    write_first_format(vault_dir, forget_upgrade=False)
    before = folder_snapshot(vault_dir)
    with pytest.raises(DamagedVault, match="vault.json"):
        Vault.open(vault_dir, VAULT_PASSPHRASE)
    assert folder_snapshot(vault_dir) == before
