"""Two devices whose clocks are wrong (issue 9, finding 8), as real processes.

One vault runs 5 days fast, the other 5 days slow, each under libfaketime (Debian's
`faketime` package: every clock call of the process, Python's, OpenSSL's and SQLite's, is
shifted). They pair with the real CLI, sync directly over TLS on 127.0.0.1 and through a
mailbox folder; the disagreement is reported; an addendum on the slow device is never dated
before the fast device's signature; and the JSON export of the synced record imports into a
fresh vault on a third clock.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from datetime import date

import pytest

from tests.sync.conftest import (
    PROCESS_TIMEOUT,
    REPO,
    NotewellProcess,
    _env,
    _script,
    command,
)

_LIBFAKETIME = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
pytestmark = pytest.mark.skipif(
    not _LIBFAKETIME, reason="libfaketime is not installed (apt-get install faketime; `make tools` does it)"
)

FAST, SLOW = "+5d", "-5d"

# With the monotonic clock left alone (below), libfaketime 0.9.10 turns Python's time.sleep
# (an absolute monotonic clock_nanosleep) into EINVAL; a relative select() sleeps the same.
# Only the child processes of these tests load it; their wall clock stays shifted.
_SLEEP_SHIM = """
import select, time
def _sleep(seconds):
    if seconds > 0:
        select.select([], [], [], seconds)
time.sleep = _sleep
"""

TODAY = date.today()  # the real date: the session happened today

SIGN_ON_FAST = """
from datetime import date
from tests.store.test_record import a_client, complete_note
vault.update_settings(clinician_name="Dana Hartwell", credentials="PsyD")
record.create_client(a_client())
note = record.create_note(complete_note(on=date.fromisoformat(sys.argv[2])))
signed = record.sign_note(note.id)
print(json.dumps({"note": note.id, "signed_at": signed.signature.signed_at.isoformat()}))
"""

ADDENDUM = """
vault.update_settings(clinician_name="Dana Hartwell", credentials="PsyD")
note = record.add_addendum(sys.argv[2], "Synthetic correction text.", "Synthetic reason.")
print(json.dumps({"signed_at": note.signature.signed_at.isoformat(),
                  "addenda": [a.signed_at.isoformat() for a in note.addenda]}))
"""

SKEWS = """
from sync.clock import current_skews
print(json.dumps([[c.peer_name, c.offset_seconds, c.transport, c.seen_at] for c in current_skews(record.replica)]))
"""


@pytest.fixture(autouse=True, scope="module")
def _sleep_shim(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faketime-shim")
    (folder / "sitecustomize.py").write_text(_SLEEP_SHIM)
    _SHIM_DIR.append(str(folder))
    yield
    _SHIM_DIR.clear()


_SHIM_DIR: list[str] = []


def faked(offset: str | None) -> dict[str, str]:
    env = _env()
    if offset is not None:
        env["PYTHONPATH"] = os.pathsep.join(_SHIM_DIR + [p for p in [env.get("PYTHONPATH")] if p])
        env["LD_PRELOAD"] = _LIBFAKETIME[0]
        env["FAKETIME"] = offset
        # Only the wall clock is wrong on a real device; a shifted monotonic clock also breaks
        # every timed wait inside libfaketime (threads and sockets then never time out).
        env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
    return env


def run(argv: list[str], offset: str | None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=REPO, env=faked(offset), capture_output=True, text=True, timeout=PROCESS_TIMEOUT)


def cli(ref, offset: str | None, *args: str) -> subprocess.CompletedProcess:
    return run(command(ref, *args), offset)


def script(ref, offset: str | None, source: str, *args: str):
    done = run([sys.executable, "-c", _script(source), str(ref.path), *args], offset)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.fixture
def fast_and_slow(make_vault, pair):
    fast, slow = make_vault("fast"), make_vault("slow")
    pair(slow, fast)
    return fast, slow


def test_the_clock_check_runs_under_libfaketime():
    # Guards the set-up: the shifted clock is what the child processes really see.
    done = run([sys.executable, "-c", "import datetime; print(datetime.date.today())"], FAST)
    assert (date.fromisoformat(done.stdout.strip()) - TODAY).days == 5


def test_direct_sync_between_a_fast_and_a_slow_device(fast_and_slow, tmp_path, make_vault):
    fast, slow = fast_and_slow
    signed = script(fast, FAST, SIGN_ON_FAST, TODAY.isoformat())

    server = NotewellProcess(command(slow, "sync", "serve", "--port", "0"), env=faked(SLOW))
    try:
        port = int(server.wait_for("listening on").rsplit(":", 1)[1])
        done = cli(fast, FAST, "sync", "now", f"127.0.0.1:{port}")
        assert done.returncode == 0, done.stderr
        server.wait_for("synced with")
    finally:
        _rc, _out, server_err = server.terminate()

    # Each side says so, in one line, naming the other device.
    assert (
        "This device's clock is about 10 days ahead of slow's; check the date and time settings. "
        "Times it records are shown with a caveat." in done.stderr.splitlines()
    )
    assert (
        "This device's clock is about 10 days behind fast's; check the date and time settings. "
        "Times it records are shown with a caveat." in server_err.splitlines()
    )
    # ... and remembers it per peer, with when it was seen (on its own clock).
    (on_fast,) = script(fast, None, SKEWS)
    (on_slow,) = script(slow, None, SKEWS)
    assert on_fast[0] == "slow" and on_fast[2] == "direct" and abs(on_fast[1] + 10 * 86400) < 600
    assert on_slow[0] == "fast" and on_slow[2] == "direct" and abs(on_slow[1] - 10 * 86400) < 600
    # seen_at is the device's own (shifted) time, in UTC; a day either way allows for midnight.
    assert (date.fromisoformat(on_fast[3][:10]) - TODAY).days in (4, 5, 6)
    assert (date.fromisoformat(on_slow[3][:10]) - TODAY).days in (-6, -5, -4)

    # The slow device amends the fast device's signature: never dated before it.
    amended = script(slow, SLOW, ADDENDUM, signed["note"])
    assert amended["signed_at"] == signed["signed_at"]
    assert all(at >= amended["signed_at"] for at in amended["addenda"])

    # The synced record, exported as JSON on either device, imports into a fresh vault
    # whose clock is the slow one (the signature is 10 days in its future).
    fresh = make_vault("fresh")
    for ref, offset in ((slow, SLOW), (fast, FAST)):
        out = tmp_path / f"export-{ref.name}.json"
        exported = cli(ref, offset, "export", "--client", "c1", "--out", str(out), "--format", "json")
        assert exported.returncode == 0, exported.stderr
    imported = cli(fresh, SLOW, "import", str(tmp_path / "export-slow.json"))
    assert imported.returncode == 0, imported.stderr
    note = json.loads((tmp_path / "export-slow.json").read_text())["progress_notes"][0]
    assert note["status"] == "signed" and len(note["addenda"]) == 1


def test_mailbox_between_a_fast_and_a_slow_device(fast_and_slow, tmp_path, make_vault):
    fast, slow = fast_and_slow
    folder = tmp_path / "mailbox"
    folder.mkdir()
    signed = script(fast, FAST, SIGN_ON_FAST, TODAY.isoformat())

    wrote = cli(fast, FAST, "sync", "mailbox", str(folder))
    assert wrote.returncode == 0, wrote.stderr
    read = cli(slow, SLOW, "sync", "mailbox", str(folder))
    assert read.returncode == 0, read.stderr
    # The fast device's bundle is from the slow device's future: its clock is ahead.
    assert (
        "This device's clock is about 10 days behind fast's; check the date and time settings. "
        "Times it records are shown with a caveat." in read.stderr.splitlines()
    )
    (on_slow,) = script(slow, None, SKEWS)
    assert on_slow[0] == "fast" and on_slow[2] == "mailbox"

    amended = script(slow, SLOW, ADDENDUM, signed["note"])
    assert all(at >= amended["signed_at"] for at in amended["addenda"])
    back = cli(slow, SLOW, "sync", "mailbox", str(folder))
    assert back.returncode == 0, back.stderr
    # A bundle from the past may simply have waited in the folder: the fast device cannot
    # tell a slow clock from a late delivery, so it claims nothing (docs/mailbox-format.md).
    merged = cli(fast, FAST, "sync", "mailbox", str(folder))
    assert merged.returncode == 0, merged.stderr
    assert "clock" not in merged.stderr
    assert script(fast, None, SKEWS) == []

    out = tmp_path / "export.json"
    exported = cli(fast, FAST, "export", "--client", "c1", "--out", str(out), "--format", "json")
    assert exported.returncode == 0, exported.stderr
    fresh = make_vault("fresh")
    imported = cli(fresh, None, "import", str(out))
    assert imported.returncode == 0, imported.stderr
