"""Nothing acknowledged is lost: a writer killed with SIGKILL mid-loop loses no acked write,
and the vault it leaves passes `notewell check`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from store.keys import KdfParams
from store.models import Client
from store.vault import Vault

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASE = "correct horse battery staple"

WRITER = textwrap.dedent(
    """
    import sys
    from datetime import date
    from store.models import ProgressNote, SessionFacts, ProcessNote
    from store.vault import Vault

    vault = Vault.open(sys.argv[1], sys.argv[2])
    n = 0
    note = None
    while True:
        if n % 10 == 0:
            note = vault.record.create_note(ProgressNote(
                id=f"n{n:05d}", client_id="c1", format="SOAP",
                facts=SessionFacts(date_of_service=date(2026, 3, 1))))
        # Each acknowledged write leaves a marker the parent will look for.
        vault.record.set_section(note.id, "plan", f"ack {n} " * 3)
        if n % 7 == 0:
            vault.private.create(ProcessNote(client_id="c1", session_date=date(2026, 3, 1), body=f"pack {n}"))
        print(f"ACK {n} {note.id}", flush=True)
        n += 1
    """
)


@pytest.fixture
def vault_dir(tmp_path: Path) -> Path:
    path = tmp_path / "vault"
    vault, _ = Vault.create(path, PASSPHRASE, device_name="test", kdf=KdfParams(memory_kib=8192, time_cost=1))
    vault.record.create_client(Client(id="c1", display_name="Test Client"))
    vault.close()
    return path


def test_sigkill_mid_write_loop_loses_no_acknowledged_write(vault_dir: Path):
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(vault_dir), PASSPHRASE],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acked: list[tuple[int, str]] = []
    deadline = time.monotonic() + 120
    try:
        while len(acked) < 150 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            _, n, note_id = line.split()
            acked.append((int(n), note_id))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        err = proc.stderr.read()
    assert len(acked) >= 150, "the writer stopped early"
    assert err == ""

    vault = Vault.open(vault_dir, PASSPHRASE)
    try:
        last_per_note: dict[str, int] = {}
        for n, note_id in acked:
            last_per_note[note_id] = n
        for note_id, n in last_per_note.items():
            assert vault.record.get_note(note_id).sections["plan"] == f"ack {n} " * 3
        bodies = {p.body for p in vault.private.for_client("c1")}
        for n, _ in acked:
            if n % 7 == 0:
                assert f"pack {n}" in bodies
        assert vault.check() == []
    finally:
        vault.close()

    env = {**os.environ, "NOTEWELL_PASSPHRASE": PASSPHRASE}
    result = subprocess.run(
        [sys.executable, "-m", "tui.cli", "--vault", str(vault_dir), "check"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
