"""The vault's lifecycle on real files: create, open, recover, change passphrase, close;
and the promise that a failure of any kind leaves every file byte-identical."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlcipher3

from store import keys
from store.database import integrity_problems, migrate, open_database, setting_problems
from store.errors import (
    DamagedVault,
    NewerVaultFormat,
    NotAVault,
    ValidationFailed,
    VaultError,
    VaultExists,
    VaultLocked,
    WeakPassphrase,
    WrongPassphrase,
    WrongRecoveryKey,
)
from store.models import ClinicianSettings
from store.vault import KdfParams, SearchResults, Vault
from conftest import FAST_KDF, folder_snapshot

REPO = Path(__file__).resolve().parents[2]
CANARY = "CANARY-7f3a-record"
PRIVATE_CANARY = "CANARY-7f3a-private"
NEW_PASSPHRASE = "a new passphrase for tests"
VAULT_PASSPHRASE = "correct horse battery staple"  # also conftest's open_vault passphrase
DEVICE_NAME = "Test laptop"


def make_vault(folder: Path, passphrase: str = VAULT_PASSPHRASE) -> str:
    """A closed vault with a few pages of data in each database; returns the recovery key."""
    vault, recovery = Vault.create(folder, passphrase, device_name=DEVICE_NAME, kdf=FAST_KDF)
    try:
        write_canaries(vault)
    finally:
        vault.close()
    return recovery


def write_canaries(vault: Vault, rows: int = 40) -> None:
    for conn, canary in ((vault.record_conn, CANARY), (vault.private_conn, PRIVATE_CANARY)):
        conn.execute("CREATE TABLE IF NOT EXISTS canary (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("BEGIN IMMEDIATE")
        for i in range(rows):
            conn.execute("INSERT INTO canary (body) VALUES (?)", (f"{canary} {i} " + "x" * 500,))
        conn.execute("COMMIT")


def opens_with(folder: Path, passphrase: str) -> bool:
    try:
        Vault.open(folder, passphrase).close()
    except WrongPassphrase:
        return False
    return True


def run_python(code: str, *args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


# --- create and open -------------------------------------------------------------------


def test_create_then_open_round_trip(vault_dir):
    vault, recovery = Vault.create(vault_dir, VAULT_PASSPHRASE, device_name=DEVICE_NAME, kdf=FAST_KDF)
    device_id, vault_id = vault.device_id, vault.vault_id
    assert vault.path == vault_dir
    assert vault.device_name == DEVICE_NAME
    assert len(device_id) == 64 and int(device_id, 16) >= 0
    assert recovery.count("-") == 7
    write_canaries(vault, rows=3)
    vault.close()

    assert Vault.exists(vault_dir)
    assert sorted(os.listdir(vault_dir)) == ["private.db", "record.db", "vault.json"]
    with Vault.open(vault_dir, VAULT_PASSPHRASE) as again:
        assert (again.device_id, again.vault_id, again.device_name) == (device_id, vault_id, DEVICE_NAME)
        assert again.record_conn.execute("SELECT count(*) FROM canary").fetchone()[0] == 3
        assert again.private_conn.execute("SELECT count(*) FROM canary").fetchone()[0] == 3


def test_folder_and_files_are_private_to_the_user(vault_dir):
    make_vault(vault_dir)
    assert stat.S_IMODE(vault_dir.stat().st_mode) == 0o700
    for name in ("vault.json", "record.db", "private.db"):
        assert stat.S_IMODE((vault_dir / name).stat().st_mode) == 0o600, name


def test_vault_json_holds_what_the_design_says(vault_dir):
    make_vault(vault_dir)
    data = json.loads((vault_dir / "vault.json").read_text())
    assert data["format"] == "notewell-vault"
    assert data["format_version"] == 3
    assert data["passphrase_wrap"]["format"] == 2  # its associated data binds its KDF parameters
    assert len(bytes.fromhex(data["mac"])) == 32
    canonical = {k: v for k, v in data.items() if k != "checksum"}
    assert data["checksum"] == "sha256:" + hashlib.sha256(
        json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()
    assert data["device"]["name"] == DEVICE_NAME
    assert data["passphrase_wrap"]["kdf"]["algorithm"] == "argon2id"
    assert data["passphrase_wrap"]["kdf"]["memory_kib"] == FAST_KDF.memory_kib
    assert data["recovery_wrap"]["kdf"] == {"algorithm": "hkdf-sha256"}
    assert "created_at" in data and "vault_id" in data


def test_folder_names_with_uri_characters_work(tmp_path):
    folder = tmp_path / "Dr A's notes #1 ?mode=ro & 100%"
    make_vault(folder)
    with Vault.open(folder, VAULT_PASSPHRASE) as vault:
        assert vault.record_conn.execute("SELECT count(*) FROM canary").fetchone()[0] == 40
    assert sorted(os.listdir(folder)) == ["private.db", "record.db", "vault.json"]


def test_exists_is_false_for_missing_and_empty_folders(tmp_path):
    assert not Vault.exists(tmp_path / "nowhere")
    assert not Vault.exists(tmp_path)


def test_create_with_default_kdf_uses_64_mib(vault_dir):
    vault, _ = Vault.create(vault_dir, VAULT_PASSPHRASE, device_name=DEVICE_NAME)
    vault.close()
    data = json.loads((vault_dir / "vault.json").read_text())
    assert data["passphrase_wrap"]["kdf"]["memory_kib"] == 65536
    assert data["passphrase_wrap"]["kdf"]["time_cost"] == 3
    assert opens_with(vault_dir, VAULT_PASSPHRASE)


@pytest.mark.parametrize(
    "present",
    ["vault.json", "record.db", "private.db", "record.db-wal", "private.db-shm"],
)
def test_create_never_overwrites_any_part_of_a_vault(vault_dir, present):
    vault_dir.mkdir()
    (vault_dir / present).write_bytes(b"someone else's bytes")
    before = folder_snapshot(vault_dir)
    with pytest.raises(VaultExists):
        Vault.create(vault_dir, VAULT_PASSPHRASE, device_name=DEVICE_NAME, kdf=FAST_KDF)
    assert folder_snapshot(vault_dir) == before


def test_create_over_an_existing_vault_changes_nothing(vault_dir):
    make_vault(vault_dir)
    before = folder_snapshot(vault_dir)
    with pytest.raises(VaultExists):
        Vault.create(vault_dir, "another passphrase", device_name="Other", kdf=FAST_KDF)
    assert folder_snapshot(vault_dir) == before
    assert opens_with(vault_dir, VAULT_PASSPHRASE)


def test_create_on_a_file_is_refused(tmp_path):
    target = tmp_path / "a-file"
    target.write_bytes(b"data")
    with pytest.raises(VaultExists):
        Vault.create(target, VAULT_PASSPHRASE, device_name=DEVICE_NAME, kdf=FAST_KDF)
    assert target.read_bytes() == b"data"


def test_create_in_an_existing_empty_folder(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    make_vault(folder)
    assert opens_with(folder, VAULT_PASSPHRASE)


@pytest.mark.parametrize("weak", ["", "short", "1234567"])
def test_weak_passphrase_is_refused_and_nothing_is_created(vault_dir, weak):
    with pytest.raises(WeakPassphrase):
        Vault.create(vault_dir, weak, device_name=DEVICE_NAME, kdf=FAST_KDF)
    assert not vault_dir.exists()


def test_blank_device_name_is_refused(vault_dir):
    with pytest.raises(ValidationFailed):
        Vault.create(vault_dir, VAULT_PASSPHRASE, device_name="  ", kdf=FAST_KDF)
    assert not vault_dir.exists()


def test_create_with_settings(vault_dir):
    settings = ClinicianSettings(clinician_name="Dr. Ada Example", credentials="PhD, LP")
    vault, _ = Vault.create(
        vault_dir, VAULT_PASSPHRASE, device_name=DEVICE_NAME, settings=settings, kdf=FAST_KDF
    )
    vault.close()
    with Vault.open(vault_dir, VAULT_PASSPHRASE) as vault:
        assert vault.settings() == settings


# --- failures change nothing ------------------------------------------------------------


def test_wrong_passphrase_changes_nothing(vault_dir):
    make_vault(vault_dir)
    before = folder_snapshot(vault_dir)
    with pytest.raises(WrongPassphrase):
        Vault.open(vault_dir, "not the passphrase")
    assert folder_snapshot(vault_dir) == before


def crash_with_pending_write(folder: Path) -> None:
    """A process commits to record.db and dies without closing: the write is in the WAL."""
    code = """
        import os, sys
        from store.vault import Vault
        vault = Vault.open(sys.argv[1], os.environ["PASS"])
        vault.record_conn.execute("BEGIN IMMEDIATE")
        vault.record_conn.execute("INSERT INTO canary (body) VALUES ('after crash')")
        vault.record_conn.execute("COMMIT")
        os._exit(0)  # no close, no checkpoint: as if killed
    """
    result = run_python(code, str(folder), env={"PASS": VAULT_PASSPHRASE})
    assert result.returncode == 0, result.stderr
    assert (folder / "record.db-wal").stat().st_size > 0


def test_wrong_passphrase_after_a_crash_leaves_the_wal_alone(vault_dir):
    """A killed app leaves -wal/-shm with acknowledged writes; a wrong passphrase must not
    touch them, and the right one must find the writes."""
    make_vault(vault_dir)
    crash_with_pending_write(vault_dir)
    before = folder_snapshot(vault_dir)
    with pytest.raises(WrongPassphrase):
        Vault.open(vault_dir, "not the passphrase")
    assert folder_snapshot(vault_dir) == before
    with Vault.open(vault_dir, VAULT_PASSPHRASE) as vault:
        rows = vault.record_conn.execute(
            "SELECT count(*) FROM canary WHERE body = 'after crash'"
        ).fetchone()
        assert rows[0] == 1


def test_damage_found_after_a_crash_leaves_the_other_wal_alone(vault_dir):
    """record.db has un-checkpointed writes and private.db is damaged: opening fails and
    record.db's WAL is not folded in (both databases are verified before either opens)."""
    make_vault(vault_dir)
    crash_with_pending_write(vault_dir)
    damage_middle(vault_dir / "private.db")
    before = folder_snapshot(vault_dir)
    assert "record.db-wal" in before
    with pytest.raises(DamagedVault):
        Vault.open(vault_dir, VAULT_PASSPHRASE)
    assert folder_snapshot(vault_dir) == before


OPEN_IN_CHILD = """
    import os, sys
    from store.errors import NotewellError
    from store.vault import Vault
    try:
        Vault.open(sys.argv[1], os.environ["PASS"]).close()
    except NotewellError as e:
        print(type(e).__name__)
    else:
        print("opened")
"""


def test_wrong_passphrase_prints_nothing_on_stderr(vault_dir):
    make_vault(vault_dir)
    before = folder_snapshot(vault_dir)
    result = run_python(OPEN_IN_CHILD, str(vault_dir), env={"PASS": "not the passphrase"})
    assert result.stdout.strip() == "WrongPassphrase"
    assert result.stderr == ""
    assert folder_snapshot(vault_dir) == before


def damage_first_page(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[200:232] = bytes(32)
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", ["middle", "first-page", "from-another-vault"])
def test_damaged_database_prints_nothing_on_stderr(tmp_path, damage):
    """SQLCipher logs failed page decryptions to stderr unless told not to."""
    vault_dir = tmp_path / "vault"
    make_vault(vault_dir)
    if damage == "middle":
        damage_middle(vault_dir / "record.db")
    elif damage == "first-page":
        damage_first_page(vault_dir / "private.db")
    else:
        make_vault(tmp_path / "other")
        (vault_dir / "record.db").write_bytes((tmp_path / "other" / "record.db").read_bytes())
    before = folder_snapshot(vault_dir)
    result = run_python(OPEN_IN_CHILD, str(vault_dir), env={"PASS": VAULT_PASSPHRASE})
    assert result.stdout.strip() == "DamagedVault"
    assert result.stderr == ""
    assert folder_snapshot(vault_dir) == before


def test_missing_folder_is_not_a_vault_and_is_not_created(tmp_path):
    with pytest.raises(NotAVault):
        Vault.open(tmp_path / "nowhere", VAULT_PASSPHRASE)
    assert not (tmp_path / "nowhere").exists()


def test_folder_without_vault_json_is_not_a_vault(tmp_path):
    (tmp_path / "notes.txt").write_text("unrelated")
    before = folder_snapshot(tmp_path)
    with pytest.raises(NotAVault):
        Vault.open(tmp_path, VAULT_PASSPHRASE)
    assert folder_snapshot(tmp_path) == before


@pytest.mark.parametrize("content", [b'{"name": "some other app"}', b"[1, 2, 3]", b'"text"'])
def test_foreign_vault_json_is_not_a_vault(vault_dir, content):
    make_vault(vault_dir)
    (vault_dir / "vault.json").write_bytes(content)
    before = folder_snapshot(vault_dir)
    with pytest.raises(NotAVault):
        Vault.open(vault_dir, VAULT_PASSPHRASE)
    assert folder_snapshot(vault_dir) == before


def _edit_vault_json(folder: Path, edit, *, reseal: bool = False) -> None:
    """Edit vault.json; `reseal` recomputes its unkeyed checksum, as a deliberate edit would."""
    data = json.loads((folder / "vault.json").read_text())
    edit(data)
    if reseal:
        data.pop("checksum", None)
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        data["checksum"] = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    (folder / "vault.json").write_text(json.dumps(data))


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[: len(raw) // 2],
        lambda raw: b"",
        lambda raw: b"\xff\xfe" + raw,
    ],
    ids=["truncated", "empty", "not-utf8"],
)
def test_unreadable_vault_json_is_damaged(vault_dir, damage):
    make_vault(vault_dir)
    path = vault_dir / "vault.json"
    path.write_bytes(damage(path.read_bytes()))
    before = folder_snapshot(vault_dir)
    with pytest.raises(DamagedVault):
        Vault.open(vault_dir, VAULT_PASSPHRASE)
    assert folder_snapshot(vault_dir) == before


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.pop("passphrase_wrap"),
        lambda d: d.pop("vault_id"),
        lambda d: d["device"].pop("id"),
        lambda d: d.pop("format_version"),
        lambda d: d["passphrase_wrap"].update(salt="not base64!"),
        lambda d: d["passphrase_wrap"].update(nonce="AAAA"),
        lambda d: d["passphrase_wrap"]["kdf"].update(memory_kib=10**9),
        lambda d: d["passphrase_wrap"]["kdf"].update(algorithm="pbkdf2"),
        lambda d: d["recovery_wrap"].update(ciphertext=None),
    ],
    ids=[
        "no-wrap", "no-vault-id", "no-device-id", "no-version", "bad-salt", "short-nonce",
        "huge-memory", "other-kdf", "null-ciphertext",
    ],
)
def test_vault_json_with_missing_or_malformed_fields_is_damaged(vault_dir, edit):
    make_vault(vault_dir)
    _edit_vault_json(vault_dir, edit)
    before = folder_snapshot(vault_dir)
    with pytest.raises(DamagedVault):
        Vault.open(vault_dir, VAULT_PASSPHRASE)
    assert folder_snapshot(vault_dir) == before


def test_newer_format_is_refused(vault_dir):
    make_vault(vault_dir)
    _edit_vault_json(vault_dir, lambda d: d.update(format_version=4), reseal=True)
    before = folder_snapshot(vault_dir)
    with pytest.raises(NewerVaultFormat):
        Vault.open(vault_dir, VAULT_PASSPHRASE)
    assert folder_snapshot(vault_dir) == before


@pytest.mark.parametrize("name", ["record.db", "private.db"])
def test_missing_database_is_damage_and_is_not_recreated(vault_dir, name):
    make_vault(vault_dir)
    (vault_dir / name).unlink()
    before = folder_snapshot(vault_dir)
    with pytest.raises(DamagedVault):
        Vault.open(vault_dir, VAULT_PASSPHRASE)
    assert folder_snapshot(vault_dir) == before


@pytest.mark.parametrize("name", ["record.db", "private.db"])
def test_empty_database_is_damage_and_is_not_initialised(vault_dir, name):
    make_vault(vault_dir)
    (vault_dir / name).write_bytes(b"")
    before = folder_snapshot(vault_dir)
    with pytest.raises(DamagedVault):
        Vault.open(vault_dir, VAULT_PASSPHRASE)
    assert folder_snapshot(vault_dir) == before


def damage_middle(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    assert len(raw) >= 3 * 4096, "the test needs a database of several pages"
    middle = len(raw) // 2
    raw[middle : middle + 32] = bytes(b ^ 0x5A for b in raw[middle : middle + 32])
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("name", ["record.db", "private.db"])
def test_damaged_page_in_the_middle_is_detected_and_nothing_changes(vault_dir, name):
    make_vault(vault_dir)
    damage_middle(vault_dir / name)
    before = folder_snapshot(vault_dir)
    with pytest.raises(DamagedVault):
        Vault.open(vault_dir, VAULT_PASSPHRASE)
    assert folder_snapshot(vault_dir) == before


@pytest.mark.parametrize("name", ["record.db", "private.db"])
def test_damaged_first_page_is_detected_and_nothing_changes(vault_dir, name):
    make_vault(vault_dir)
    damage_first_page(vault_dir / name)
    before = folder_snapshot(vault_dir)
    with pytest.raises(DamagedVault):
        Vault.open(vault_dir, VAULT_PASSPHRASE)
    assert folder_snapshot(vault_dir) == before


def test_database_from_another_vault_is_refused(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_vault(a)
    make_vault(b)
    (a / "record.db").write_bytes((b / "record.db").read_bytes())
    before = folder_snapshot(a)
    with pytest.raises(DamagedVault):
        Vault.open(a, VAULT_PASSPHRASE)
    assert folder_snapshot(a) == before


def test_wrapped_key_from_another_vault_does_not_unlock(tmp_path):
    """Same passphrase in both vaults; the associated data ties each wrap to its vault."""
    a, b = tmp_path / "a", tmp_path / "b"
    make_vault(a)
    make_vault(b)
    other = json.loads((b / "vault.json").read_text())
    _edit_vault_json(a, lambda d: d.update(passphrase_wrap=other["passphrase_wrap"]), reseal=True)
    with pytest.raises(WrongPassphrase):
        Vault.open(a, VAULT_PASSPHRASE)


def test_changing_the_vault_id_breaks_the_wrap(vault_dir):
    make_vault(vault_dir)
    _edit_vault_json(vault_dir, lambda d: d.update(vault_id="0" * 32), reseal=True)
    with pytest.raises(WrongPassphrase):
        Vault.open(vault_dir, VAULT_PASSPHRASE)


# --- passphrase change and recovery -------------------------------------------------------


def test_change_passphrase_round_trip(vault_dir):
    recovery = make_vault(vault_dir)
    Vault.change_passphrase(vault_dir, VAULT_PASSPHRASE, NEW_PASSPHRASE)
    assert not opens_with(vault_dir, VAULT_PASSPHRASE)
    with Vault.open(vault_dir, NEW_PASSPHRASE) as vault:
        assert vault.record_conn.execute("SELECT count(*) FROM canary").fetchone()[0] == 40
    assert not (vault_dir / "vault.json.tmp").exists()
    assert stat.S_IMODE((vault_dir / "vault.json").stat().st_mode) == 0o600
    # The recovery key is untouched by a passphrase change.
    Vault.recover(vault_dir, recovery, "third passphrase here").close()


def test_change_passphrase_only_rewraps_the_master_key(vault_dir):
    make_vault(vault_dir)
    private_before = (vault_dir / "private.db").read_bytes()
    before = json.loads((vault_dir / "vault.json").read_text())
    Vault.change_passphrase(vault_dir, VAULT_PASSPHRASE, NEW_PASSPHRASE)
    after = json.loads((vault_dir / "vault.json").read_text())
    # The databases keep their keys: process notes are untouched, and the record gains
    # only the audit entry for the change.
    assert (vault_dir / "private.db").read_bytes() == private_before
    with Vault.open(vault_dir, NEW_PASSPHRASE) as vault:
        assert vault.audit.entries()[-1].event == "passphrase_changed"
        assert vault.audit.verify().ok
    assert after["recovery_wrap"] == before["recovery_wrap"]
    assert after["passphrase_wrap"]["salt"] != before["passphrase_wrap"]["salt"]
    # The MAC and the checksum cover the new wrap; nothing else changes.
    changed = ("passphrase_wrap", "mac", "checksum")
    assert {k: v for k, v in after.items() if k not in changed} == {
        k: v for k, v in before.items() if k not in changed
    }


def test_change_passphrase_with_wrong_old_changes_nothing(vault_dir):
    make_vault(vault_dir)
    before = folder_snapshot(vault_dir)
    with pytest.raises(WrongPassphrase):
        Vault.change_passphrase(vault_dir, "not the passphrase", NEW_PASSPHRASE)
    assert folder_snapshot(vault_dir) == before


def test_change_to_a_weak_passphrase_changes_nothing(vault_dir):
    make_vault(vault_dir)
    before = folder_snapshot(vault_dir)
    with pytest.raises(WeakPassphrase):
        Vault.change_passphrase(vault_dir, VAULT_PASSPHRASE, "short")
    assert folder_snapshot(vault_dir) == before


def test_recover_sets_a_new_passphrase(vault_dir):
    recovery = make_vault(vault_dir)
    with Vault.recover(vault_dir, recovery, NEW_PASSPHRASE) as vault:
        assert vault.record_conn.execute("SELECT count(*) FROM canary").fetchone()[0] == 40
    assert not opens_with(vault_dir, VAULT_PASSPHRASE)
    assert opens_with(vault_dir, NEW_PASSPHRASE)


def test_recovery_key_is_read_case_insensitively(vault_dir):
    recovery = make_vault(vault_dir)
    Vault.recover(vault_dir, recovery.lower().replace("-", " "), NEW_PASSPHRASE).close()
    assert opens_with(vault_dir, NEW_PASSPHRASE)


def test_wrong_recovery_key_changes_nothing(vault_dir):
    make_vault(vault_dir)
    _secret, other_key = keys.new_recovery_key()
    before = folder_snapshot(vault_dir)
    with pytest.raises(WrongRecoveryKey) as info:
        Vault.recover(vault_dir, other_key, NEW_PASSPHRASE)
    assert "typo" not in info.value.message
    assert folder_snapshot(vault_dir) == before


def test_mistyped_recovery_key_says_typo_and_changes_nothing(vault_dir):
    recovery = make_vault(vault_dir)
    typo = ("A" if recovery[0] != "A" else "B") + recovery[1:]
    before = folder_snapshot(vault_dir)
    with pytest.raises(WrongRecoveryKey, match="typo"):
        Vault.recover(vault_dir, typo, NEW_PASSPHRASE)
    assert folder_snapshot(vault_dir) == before


def test_recover_with_damaged_database_changes_nothing(vault_dir):
    recovery = make_vault(vault_dir)
    damage_middle(vault_dir / "private.db")
    before = folder_snapshot(vault_dir)
    with pytest.raises(DamagedVault):
        Vault.recover(vault_dir, recovery, NEW_PASSPHRASE)
    assert folder_snapshot(vault_dir) == before


def test_recover_to_a_weak_passphrase_changes_nothing(vault_dir):
    recovery = make_vault(vault_dir)
    before = folder_snapshot(vault_dir)
    with pytest.raises(WeakPassphrase):
        Vault.recover(vault_dir, recovery, "short")
    assert folder_snapshot(vault_dir) == before


# --- interrupted passphrase change -------------------------------------------------------


def test_leftover_tmp_from_a_killed_run_is_ignored_then_cleaned(vault_dir):
    make_vault(vault_dir)
    (vault_dir / "vault.json.tmp").write_bytes(b'{"format": "notewell-vault", "half')
    before = folder_snapshot(vault_dir)
    with pytest.raises(WrongPassphrase):
        Vault.open(vault_dir, NEW_PASSPHRASE)
    assert folder_snapshot(vault_dir) == before
    Vault.open(vault_dir, VAULT_PASSPHRASE).close()
    assert not (vault_dir / "vault.json.tmp").exists()


def test_passwd_that_cannot_write_changes_nothing(vault_dir):
    make_vault(vault_dir)
    # A directory where the temporary file should go makes the write fail for real.
    (vault_dir / "vault.json.tmp").mkdir()
    before = folder_snapshot(vault_dir)
    with pytest.raises(VaultError, match="nothing was changed"):
        Vault.change_passphrase(vault_dir, VAULT_PASSPHRASE, NEW_PASSPHRASE)
    assert folder_snapshot(vault_dir) == before
    assert _working_passphrases(vault_dir) == [VAULT_PASSPHRASE]


PASSWD_IN_CHILD = """
    import os, sys, time
    from store.vault import KdfParams, Vault

    pause_at = sys.argv[2]
    real_replace = os.replace

    def replace(src, dst):
        # Stop at a chosen point and wait to be killed.
        if pause_at == "before-rename":
            print("paused", flush=True)
            time.sleep(120)
        real_replace(src, dst)
        if pause_at == "after-rename":
            print("paused", flush=True)
            time.sleep(120)

    os.replace = replace
    print("ready", flush=True)
    # The fast KDF keeps every step of the change within the kill delays below.
    fast = KdfParams(memory_kib=8192, time_cost=1, parallelism=1)
    Vault.change_passphrase(sys.argv[1], os.environ["OLD"], os.environ["NEW"], kdf=fast)
    print("done", flush=True)
"""


def _start_passwd(folder: Path, pause_at: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OLD": VAULT_PASSPHRASE, "NEW": NEW_PASSPHRASE}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(PASSWD_IN_CHILD), str(folder), pause_at],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _working_passphrases(folder: Path) -> list[str]:
    return [p for p in (VAULT_PASSPHRASE, NEW_PASSPHRASE) if opens_with(folder, p)]


@pytest.mark.parametrize(
    ("pause_at", "survivor"),
    [("before-rename", VAULT_PASSPHRASE), ("after-rename", NEW_PASSPHRASE)],
)
def test_passwd_killed_mid_way_leaves_exactly_one_passphrase(vault_dir, pause_at, survivor):
    make_vault(vault_dir)
    child = _start_passwd(vault_dir, pause_at)
    try:
        assert child.stdout.readline().strip() == "ready"
        assert child.stdout.readline().strip() == "paused"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=60)
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    assert _working_passphrases(vault_dir) == [survivor]


@pytest.mark.parametrize("delay_ms", [0, 2, 5, 8, 11, 14, 18, 25])
def test_passwd_killed_at_any_moment_leaves_exactly_one_passphrase(vault_dir, delay_ms):
    import time

    make_vault(vault_dir)
    child = _start_passwd(vault_dir, "nowhere")
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(delay_ms / 1000)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=60)
        child.stdout.close()
        child.stderr.close()
    assert len(_working_passphrases(vault_dir)) == 1


# --- connections, settings, on-disk secrecy ------------------------------------------------


def test_every_connection_holds_its_pragmas(open_vault):
    for conn in (open_vault.record_conn, open_vault.private_conn):
        assert conn.execute("PRAGMA cipher_log_level").fetchone()[0].upper() == "NONE"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA temp_store").fetchone()[0] == 2  # MEMORY
        assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.isolation_level is None
        assert setting_problems(conn) == []
        assert integrity_problems(conn) == []


def test_setting_problems_notices_a_changed_pragma(open_vault):
    conn = open_vault.private_conn
    conn.execute("PRAGMA foreign_keys = OFF")
    assert setting_problems(conn) == ["foreign_keys is 0, expected ON"]
    conn.execute("PRAGMA foreign_keys = ON")


def test_check_of_a_healthy_vault_is_empty(open_vault):
    write_canaries(open_vault, rows=5)
    assert open_vault.check() == []


def test_check_reports_a_page_damaged_while_open(vault_dir):
    make_vault(vault_dir)
    with Vault.open(vault_dir, VAULT_PASSPHRASE) as vault:
        assert vault.check() == []
        damage_middle(vault_dir / "private.db")
        problems = vault.check()
        assert problems
        assert all(p.startswith("private.db: ") for p in problems)
        assert not any("CANARY" in p for p in problems)


def test_nothing_readable_on_disk(vault_dir):
    vault, recovery = Vault.create(vault_dir, VAULT_PASSPHRASE, device_name=DEVICE_NAME, kdf=FAST_KDF)
    write_canaries(vault)
    vault.update_settings(clinician_name="CANARY-7f3a-clinician")
    secrets_ = [
        CANARY.encode(),
        PRIVATE_CANARY.encode(),
        b"CANARY-7f3a",
        VAULT_PASSPHRASE.encode(),
        recovery.encode(),
        recovery.replace("-", "").encode(),
    ]

    def assert_clean():
        for name in os.listdir(vault_dir):
            raw = (vault_dir / name).read_bytes()
            for secret in secrets_:
                assert secret not in raw, f"{name} holds a plaintext secret"

    assert (vault_dir / "record.db-wal").exists()  # the WAL is checked too
    assert_clean()
    vault.close()
    assert_clean()


def test_settings_default_update_and_persist(open_vault, vault_dir, vault_passphrase):
    assert open_vault.settings() == ClinicianSettings()
    updated = open_vault.update_settings(clinician_name="Dr. Ada Example", late_entry_hours=48)
    assert updated.clinician_name == "Dr. Ada Example"
    assert updated.late_entry_hours == 48
    assert open_vault.settings() == updated
    open_vault.close()
    with Vault.open(vault_dir, vault_passphrase) as again:
        assert again.settings() == updated


@pytest.mark.parametrize(
    "fields",
    [{"late_entry_hours": 0}, {"late_entry_hours": "soon"}, {"favourite_colour": "blue"}],
)
def test_bad_settings_are_refused_and_nothing_is_saved(open_vault, fields):
    open_vault.update_settings(clinician_name="Dr. Ada Example")
    before = open_vault.settings()
    with pytest.raises(ValidationFailed):
        open_vault.update_settings(**fields)
    assert open_vault.settings() == before


def test_close_drops_connections_and_keys(vault_dir):
    vault, _ = Vault.create(vault_dir, VAULT_PASSPHRASE, device_name=DEVICE_NAME, kdf=FAST_KDF)
    write_canaries(vault, rows=2)
    held = list(vault._db_keys)
    conn = vault.record_conn
    vault.close()
    assert all(key == bytearray(32) for key in held)
    assert vault.closed
    with pytest.raises(VaultLocked):
        vault.record_conn
    with pytest.raises(VaultLocked):
        vault.settings()
    with pytest.raises(sqlcipher3.ProgrammingError):
        conn.execute("SELECT 1")
    vault.close()  # twice is fine
    # The WAL was folded in and removed.
    assert sorted(os.listdir(vault_dir)) == ["private.db", "record.db", "vault.json"]


def test_search_combines_both_stores(open_vault):
    pytest.importorskip("store.record")
    pytest.importorskip("store.private")
    results = open_vault.search("anything")
    assert isinstance(results, SearchResults)
    assert results.record == [] and results.private == []


# --- open_database on its own -------------------------------------------------------------


def test_open_database_without_create_never_makes_a_file(tmp_path):
    path = tmp_path / "record.db"
    with pytest.raises(DamagedVault):
        open_database(path, bytes(32))
    assert os.listdir(tmp_path) == []


def test_open_database_create_refuses_an_existing_file(tmp_path):
    path = tmp_path / "record.db"
    path.write_bytes(b"precious")
    with pytest.raises(VaultExists):
        open_database(path, bytes(32), create=True)
    assert path.read_bytes() == b"precious"
    assert os.listdir(tmp_path) == ["record.db"]


def test_open_database_wrong_key_leaves_the_file_alone(tmp_path):
    path = tmp_path / "x.db"
    conn = open_database(path, b"k" * 32, create=True)
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES ('CANARY-7f3a')")
    conn.close()
    before = folder_snapshot(tmp_path)
    assert list(before) == ["x.db"]
    with pytest.raises(WrongPassphrase):
        open_database(path, b"j" * 32)
    assert folder_snapshot(tmp_path) == before
    conn = open_database(path, b"k" * 32)
    assert conn.execute("SELECT x FROM t").fetchone()[0] == "CANARY-7f3a"
    conn.close()


def test_open_database_refuses_a_plain_sqlite_file(tmp_path):
    import sqlite3

    path = tmp_path / "plain.db"
    plain = sqlite3.connect(path)
    plain.execute("CREATE TABLE t (x)")
    plain.commit()
    plain.close()
    before = folder_snapshot(tmp_path)
    with pytest.raises((WrongPassphrase, DamagedVault)):
        open_database(path, bytes(32))
    assert folder_snapshot(tmp_path) == before


# --- migrations ------------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path):
    conn = open_database(tmp_path / "m.db", b"m" * 32, create=True)
    yield conn
    conn.close()


def _step(sql: str):
    def step(conn):
        conn.execute(sql)

    return step


def test_migrate_applies_each_step_once(db):
    steps = [_step("CREATE TABLE a (x)"), _step("CREATE TABLE b (y)")]
    assert migrate(db, steps[:1]) == 1
    assert migrate(db, steps) == 2
    assert migrate(db, steps) == 2
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"a", "b"} <= names


def test_failing_step_rolls_back_with_its_version(db):
    def bad(conn):
        conn.execute("CREATE TABLE half (x)")
        raise RuntimeError("step failed")

    with pytest.raises(RuntimeError):
        migrate(db, [_step("CREATE TABLE a (x)"), bad])
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchone() is None
    assert not db.in_transaction


def test_step_that_commits_on_its_own_is_a_bug(db):
    def commits(conn):
        conn.executescript("CREATE TABLE c (x);")

    with pytest.raises(RuntimeError, match="transaction"):
        migrate(db, [commits])
    assert db.execute("PRAGMA user_version").fetchone()[0] == 0


def test_database_ahead_of_the_code_is_refused(db):
    db.execute("PRAGMA user_version = 5")
    with pytest.raises(NewerVaultFormat):
        migrate(db, [_step("CREATE TABLE a (x)")])
    assert db.execute("PRAGMA user_version").fetchone()[0] == 5
