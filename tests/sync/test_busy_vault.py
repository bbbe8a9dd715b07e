"""Another Notewell program holds the vault's write lock (an import, a sync, the app saving).

A real second process opens record.db with the vault's key through the store API and keeps
BEGIN IMMEDIATE until the test lets go (tests/vault_faults.py). Meanwhile the real `notewell`
commands run: those that only read (check, audit, devices, `sync serve` start-up) succeed,
because opening a vault takes no write lock; those that must write say that they wait, wait
NOTEWELL_LOCK_WAIT seconds, and then give up with one sentence and a non-zero exit, having
changed nothing. Never a traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store.errors import VaultBusy  # noqa: E402
from store.write_access import LOCK_WAIT_ENV, WAIT_NOTICE, set_wait_notice  # noqa: E402
from vault_faults import LockHolder  # noqa: E402


# The passphrase tests/sync/conftest.py gives every vault its fixtures make.
PASSPHRASE = "sync test passphrase"
BUSY = f"notewell: {VaultBusy().message}"
NOTICE = f"notewell: {WAIT_NOTICE}"
# Long enough to be seen waiting, short enough that a test giving up does not drag.
SHORT_WAIT = "0.5"

CLIENT = """
from store.models import Client
print(record.create_client(Client(display_name="Synthetic Person")).id)
"""


@pytest.fixture
def short_wait(monkeypatch):
    monkeypatch.setenv(LOCK_WAIT_ENV, SHORT_WAIT)


def assert_gave_up(done: subprocess.CompletedProcess, *, not_code: int | None = None) -> None:
    """A non-zero exit whose stderr is the wait notice and the one sentence, nothing else."""
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode != 0, done.stdout
    if not_code is not None:
        assert done.returncode != not_code
    assert done.stderr.splitlines() == [NOTICE, BUSY], done.stderr


def test_commands_that_only_read_run_while_another_program_writes(make_vault, notewell, start_notewell, in_vault, pair, short_wait):
    a, b = make_vault("office"), make_vault("home")
    pair(a, b)
    in_vault(a, CLIENT)
    with LockHolder(a.path, PASSPHRASE):
        checked = notewell(a, "check")
        assert "Traceback" not in checked.stderr, checked.stderr[-3000:]
        assert checked.returncode == 0, checked.stderr
        assert "Vault is healthy" in checked.stdout
        assert checked.stderr == ""  # nothing had to wait

        audit = notewell(a, "audit", "--verify")
        assert audit.returncode == 0, audit.stderr
        assert "chain intact" in audit.stdout

        devices = notewell(a, "sync", "devices")
        assert devices.returncode == 0, devices.stderr
        assert "home" in devices.stdout

        server = start_notewell(a, "sync", "serve", "--port", "0")
        server.wait_for("listening on")
        rc, out, err = server.terminate()
        assert "Traceback" not in err, err[-3000:]
        assert rc == 0, err
        assert out.splitlines()[-1] == "stopped"


def test_export_waits_then_gives_up_and_writes_no_file(make_vault, notewell, in_vault, tmp_path, short_wait):
    a = make_vault("office")
    client_id = in_vault(a, CLIENT).strip()
    out = tmp_path / "record.json"
    with LockHolder(a.path, PASSPHRASE) as holder:
        # An export is logged in the audit trail, a write: it waits for the lock.
        done = notewell(a, "export", "--client", client_id, "--out", str(out))
        assert_gave_up(done)
        assert not out.exists()
        holder.release()
    done = notewell(a, "export", "--client", client_id, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())


def test_a_waiting_command_goes_on_once_the_lock_is_free(make_vault, in_vault, start_notewell, tmp_path, monkeypatch):
    monkeypatch.setenv(LOCK_WAIT_ENV, "300")  # the release below ends the wait, not this bound
    a = make_vault("office")
    client_id = in_vault(a, CLIENT).strip()
    out = tmp_path / "record.json"
    with LockHolder(a.path, PASSPHRASE) as holder:
        proc = start_notewell(a, "export", "--client", client_id, "--out", str(out))
        _wait_for_stderr(proc, NOTICE)
        assert not out.exists()
        holder.release()
        rc, stdout, stderr = proc.finish()
    assert rc == 0, stderr
    assert stderr.splitlines() == [NOTICE]
    assert "Exported" in stdout
    assert out.exists()


def _wait_for_stderr(proc, line: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while line not in "".join(proc._stderr).splitlines():
        if proc.proc.poll() is not None or time.monotonic() > deadline:
            rc, out, err = proc.finish()
            raise AssertionError(f"no {line!r} on stderr (rc {rc}): {err[-3000:]!r}")
        time.sleep(0.02)


def test_passwd_while_another_program_writes_never_ends_in_a_traceback(make_vault, notewell, tmp_path, short_wait):
    a = make_vault("office")
    new = tmp_path / "new-passphrase"
    new.write_text("another synthetic passphrase\n")
    with LockHolder(a.path, PASSPHRASE):
        done = notewell(a, "passwd", "--new-passphrase-file", str(new))
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    if done.returncode == 0:
        assert "Passphrase changed." in done.stdout
    else:
        assert done.stderr.splitlines()[-1] == BUSY, done.stderr


def test_mailbox_gives_up_without_calling_the_bundle_bad_and_applies_it_later(make_vault, notewell, in_vault, pair, tmp_path, short_wait):
    a, b = make_vault("office"), make_vault("home")
    pair(a, b)
    in_vault(b, CLIENT)
    box = tmp_path / "mailbox"
    box.mkdir()
    sent = notewell(b, "sync", "mailbox", str(box))
    assert sent.returncode == 0, sent.stderr
    heads_before = in_vault(a, "print(len(record.replica.doc_heads()))").strip()
    with LockHolder(a.path, PASSPHRASE) as holder:
        done = notewell(a, "sync", "mailbox", str(box))
        assert_gave_up(done, not_code=3)  # 3: "some bundles were rejected"
        holder.release()
    assert in_vault(a, "print(len(record.replica.doc_heads()))").strip() == heads_before
    again = notewell(a, "sync", "mailbox", str(box))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "applied 1," in again.stdout


def test_sync_now_gives_up_with_one_sentence_and_the_server_says_try_again(make_vault, notewell, in_vault, pair, serve, short_wait):
    a, b = make_vault("office"), make_vault("home")
    pair(a, b)
    in_vault(b, CLIENT)
    server, port = serve(b)
    with LockHolder(a.path, PASSPHRASE) as holder:
        done = notewell(a, "sync", "now", f"127.0.0.1:{port}")
        assert_gave_up(done)
        holder.release()
    again = notewell(a, "sync", "now", f"127.0.0.1:{port}")
    assert again.returncode == 0, again.stderr
    assert "received 1," in again.stdout
    rc, _out, err = server.terminate()
    assert "Traceback" not in err, err[-3000:]
    assert "The other device stopped the sync; try again in a moment." in err


def test_import_gives_up_with_the_same_sentence(make_vault, notewell, in_vault, tmp_path, short_wait):
    a, b = make_vault("office"), make_vault("home")
    client_id = in_vault(b, CLIENT).strip()
    export = tmp_path / "client.json"
    assert notewell(b, "export", "--client", client_id, "--out", str(export)).returncode == 0
    with LockHolder(a.path, PASSPHRASE):
        done = notewell(a, "import", str(export))
        assert_gave_up(done)
    assert in_vault(a, "print(len(record.list_clients()))").strip() == "0"


def test_store_opens_reads_and_refuses_a_write_with_vault_busy(make_vault, short_wait):
    a = make_vault("office")
    heard: list[str] = []
    previous = set_wait_notice(lambda: heard.append("waiting"))
    try:
        with LockHolder(a.path, PASSPHRASE) as holder:
            vault = a.open()  # no write lock needed to open
            try:
                assert vault.check() == []
                from store.models import Client

                with pytest.raises(VaultBusy):
                    vault.record.create_client(Client(display_name="Synthetic Person"))
                assert heard == ["waiting"]
                with pytest.raises(VaultBusy):
                    vault.update_settings(practice_name="Invented Practice")
                assert vault.record.list_clients() == []
                holder.release()
                vault.record.create_client(Client(display_name="Synthetic Person"))
                assert len(vault.record.list_clients()) == 1
            finally:
                vault.close()
    finally:
        set_wait_notice(previous)


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "100000"])
def test_a_wait_that_is_not_a_number_of_seconds_is_refused_in_one_sentence(make_vault, notewell, monkeypatch, value):
    a = make_vault("office")
    monkeypatch.setenv(LOCK_WAIT_ENV, value)
    done = notewell(a, "check")
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"notewell: {LOCK_WAIT_ENV} must be a number of seconds from 0 to 3600; nothing was changed."
    ]
