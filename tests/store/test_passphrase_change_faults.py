"""`notewell passwd` and `notewell recover` either change the passphrase and say so, or change
nothing and say why: with record.db locked by another process, with record.db damaged, and
when killed between the switch and its audit entry (which the next unlock then writes).

Real vault folders and real processes: the lock is held by a child process in a
`BEGIN IMMEDIATE` transaction until the test tells it, through a pipe, to let go.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from store.errors import DamagedVault, WrongPassphrase
from store.vault import KdfParams, Vault
from conftest import FAST_KDF, folder_snapshot

REPO = Path(__file__).resolve().parents[2]
OLD = "correct horse battery staple"
NEW = "a new passphrase for tests"
DEVICE_NAME = "Test laptop"


def make_vault(folder: Path) -> str:
    vault, recovery = Vault.create(folder, OLD, device_name=DEVICE_NAME, kdf=FAST_KDF)
    vault.close()
    return recovery


def accepted(folder: Path, passphrase: str) -> bool:
    """Whether vault.json takes this passphrase (a damaged record.db is reported after the
    unwrap, so it still tells a right passphrase from a wrong one)."""
    try:
        Vault.open(folder, passphrase).close()
    except WrongPassphrase:
        return False
    except DamagedVault as e:
        assert "vault.json" not in e.message
    return True


def working(folder: Path) -> list[str]:
    return [p for p in (OLD, NEW) if accepted(folder, p)]


def env(**extra: str) -> dict[str, str]:
    out = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **extra}
    out.pop("NOTEWELL_VAULT", None)
    return out


def run_cli(*args: str, **extra_env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args],
        cwd=REPO, env=env(**extra_env), capture_output=True, text=True, timeout=120,
    )


def change(folder: Path, how: str, recovery: str, tmp_path: Path) -> subprocess.CompletedProcess:
    if how == "passwd":
        return run_cli("--vault", str(folder), "passwd", NOTEWELL_PASSPHRASE=OLD, NOTEWELL_NEW_PASSPHRASE=NEW,
                       NOTEWELL_LOCK_WAIT="1")
    key_file = tmp_path / "recovery.txt"
    key_file.write_text(recovery)
    return run_cli(
        "--vault", str(folder), "recover", "--recovery-key-file", str(key_file), NOTEWELL_NEW_PASSPHRASE=NEW,
        NOTEWELL_LOCK_WAIT="1",
    )


LOCKER = """
    import os, sys
    from store.vault import Vault

    vault = Vault.open(sys.argv[1], os.environ["LOCKER_PASSPHRASE"])
    vault.record_conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    sys.stdin.readline()  # hold the write lock until the test says so
    vault.record_conn.execute("ROLLBACK")
    vault.close()
    print("released", flush=True)
"""


class Locker:
    """A second process holding record.db's write lock until `release()`."""

    def __init__(self, folder: Path, passphrase: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(LOCKER), str(folder)],
            cwd=REPO, env=env(LOCKER_PASSPHRASE=passphrase),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        line = self.proc.stdout.readline().strip()
        assert line == "locked", self.proc.stderr.read()

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
            assert self.proc.stdout.readline().strip() == "released"
        self.proc.wait(timeout=60)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            stream.close()

    def __enter__(self) -> Locker:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is not None and self.proc.poll() is None:
            self.proc.kill()
        self.release()


WAITING = "notewell: Waiting for another Notewell program to finish writing..."


def one_sentence(stderr: str) -> str:
    """The one sentence a failure ends with (after the notice of a wait for the lock, if any)."""
    assert "Traceback" not in stderr
    lines = [line for line in stderr.strip().splitlines() if line != WAITING]
    assert len(lines) == 1, stderr
    return lines[0]


def the_entry(folder: Path, passphrase: str, event: str):
    """The one audit entry of `event` (failed unlocks of this test may follow it)."""
    with Vault.open(folder, passphrase) as vault:
        assert vault.audit.verify().ok
        found = [e for e in vault.audit.entries() if e.event == event]
    assert len(found) == 1, found
    return found[0]


EXPECTED_EVENT = {"passwd": "passphrase_changed", "recover": "vault_recovered"}


@pytest.mark.parametrize("how", ["passwd", "recover"])
def test_change_with_record_db_locked_by_another_process_is_all_or_nothing(vault_dir, tmp_path, how):
    recovery = make_vault(vault_dir)
    with Locker(vault_dir, OLD):
        result = change(vault_dir, how, recovery, tmp_path)
    if result.returncode == 0:
        assert working(vault_dir) == [NEW]
        the_entry(vault_dir, NEW, EXPECTED_EVENT[how])
    else:
        # Failure must mean the old passphrase is still the one (then: one sentence).
        assert working(vault_dir) == [OLD]
        sentence = one_sentence(result.stderr)
        assert "nothing was changed" in sentence


@pytest.mark.parametrize("how", ["passwd", "recover"])
def test_change_with_record_db_damaged_changes_nothing(vault_dir, tmp_path, how):
    recovery = make_vault(vault_dir)
    path = vault_dir / "record.db"
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 32] = bytes(b ^ 0x5A for b in raw[middle : middle + 32])
    path.write_bytes(bytes(raw))
    before = folder_snapshot(vault_dir)
    result = change(vault_dir, how, recovery, tmp_path)
    assert result.returncode != 0
    assert folder_snapshot(vault_dir) == before
    assert working(vault_dir) == [OLD]
    assert "record.db" in one_sentence(result.stderr)


# A real `notewell` command whose rename of vault.json is followed by a pause: the test then
# either kills it (a crash between the switch and its audit entry) or lets another process
# take the write lock before it goes on (an audit entry that cannot be written now).
PAUSED_AFTER_SWITCH = """
    import os, sys

    real_replace = os.replace

    def replace(src, dst):
        real_replace(src, dst)
        if str(dst).endswith("vault.json"):
            print("switched", flush=True)
            sys.stdin.readline()

    os.replace = replace
    from tui.cli import main

    sys.exit(main(sys.argv[1:]))
"""


def start_paused(folder: Path, how: str, recovery: str, tmp_path: Path) -> subprocess.Popen:
    args = ["--vault", str(folder), how]
    extra = {"NOTEWELL_NEW_PASSPHRASE": NEW, "NOTEWELL_LOCK_WAIT": "1"}
    if how == "passwd":
        extra["NOTEWELL_PASSPHRASE"] = OLD
    else:
        key_file = tmp_path / "recovery.txt"
        key_file.write_text(recovery)
        args += ["--recovery-key-file", str(key_file)]
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(PAUSED_AFTER_SWITCH), *args],
        cwd=REPO, env=env(**extra),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.parametrize("how", ["passwd", "recover"])
def test_killed_after_the_switch_the_next_unlock_writes_the_audit_entry(vault_dir, tmp_path, how):
    recovery = make_vault(vault_dir)
    child = start_paused(vault_dir, how, recovery, tmp_path)
    try:
        assert child.stdout.readline().strip() == "switched", child.stderr.read()
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=60)
        for stream in (child.stdin, child.stdout, child.stderr):
            stream.close()
    assert working(vault_dir) == [NEW]
    assert the_entry(vault_dir, NEW, EXPECTED_EVENT[how]).details.get("recorded_late") is True
    # Written once, not at every unlock.
    the_entry(vault_dir, NEW, EXPECTED_EVENT[how])


@pytest.mark.parametrize("how", ["passwd", "recover"])
def test_audit_entry_blocked_after_the_switch_is_success_with_a_note(vault_dir, tmp_path, how):
    recovery = make_vault(vault_dir)
    child = start_paused(vault_dir, how, recovery, tmp_path)
    try:
        assert child.stdout.readline().strip() == "switched", child.stderr.read()
        with Locker(vault_dir, NEW):
            child.stdin.write("\n")
            child.stdin.flush()
            out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=60)
    assert child.returncode == 0, err
    assert "Traceback" not in err
    assert "audit" in out and "next unlock" in out
    assert working(vault_dir) == [NEW]
    assert the_entry(vault_dir, NEW, EXPECTED_EVENT[how]).details.get("recorded_late") is True


def test_a_change_that_never_reached_vault_json_leaves_no_audit_entry(vault_dir):
    """The intent written before the switch is dropped, not logged, when the switch did not
    happen (killed before the rename)."""
    make_vault(vault_dir)
    code = """
        import os, sys
        def replace(src, dst):
            os.kill(os.getpid(), 9)
        os.replace = replace
        from store.vault import Vault
        Vault.change_passphrase(sys.argv[1], os.environ["OLD"], os.environ["NEW"])
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(vault_dir)],
        cwd=REPO, env=env(OLD=OLD, NEW=NEW), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == -signal.SIGKILL
    assert working(vault_dir) == [OLD]
    with Vault.open(vault_dir, OLD) as vault:
        events = [e.event for e in vault.audit.entries()]
    assert "passphrase_changed" not in events
