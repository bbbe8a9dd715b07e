"""A write-ahead log that holds its header and no frame yet is not damage.

SQLite starts its log over after a checkpoint: the next write transaction writes a fresh
32-byte header, then its frames at commit. A program killed between the two (an export
killed while it held the write lock, tests/tui/test_encrypted_export.py) leaves exactly
that: `record.db-wal` of 32 bytes beside the `-shm` index. There is nothing to replay, and
the database file alone is the whole record; the vault must open with everything in it.
Verifying such a file through `mode=ro&readonly_shm=1` fails with SQLite's "locking
protocol" error, which was reported as "record.db is damaged" and locked the clinician out.
"""

from __future__ import annotations

import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from store.models import Client
from store.vault import KdfParams, Vault
from store.write_ahead_log import MAGIC, VERSION, checksum

PASSPHRASE = "header only log passphrase"
FAST_KDF = KdfParams(memory_kib=8192, time_cost=1, parallelism=1)
REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 60


def killed_while_open(folder: Path) -> None:
    """A real process opens the vault and is SIGKILLed while it holds it open: its `-shm`
    index files stay behind, as they do when a program dies."""
    code = (
        "import sys, time\n"
        "from store.vault import Vault\n"
        "v = Vault.open(sys.argv[1], sys.argv[2])\n"
        "print('open', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(folder), PASSPHRASE], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "open"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=TIMEOUT)


def header_only_log(page_size: int = 4096) -> bytes:
    head = struct.pack(">6I", MAGIC, VERSION, page_size, 3, 0x11B0DD15, 0x67BD9258)
    s0, s1 = checksum(head, 0, 0, big_endian=True)
    return head + struct.pack(">2I", s0, s1)


@pytest.mark.parametrize("name", ["record.db", "private.db"])
def test_a_log_with_only_its_header_opens(tmp_path: Path, name: str):
    folder = tmp_path / "vault"
    v, _ = Vault.create(folder, PASSPHRASE, device_name="log test", kdf=FAST_KDF)
    try:
        v.record.create_client(Client(id="c1", display_name="Quinn Quarry"))
    finally:
        v.close()
    killed_while_open(folder)
    assert (folder / f"{name}-shm").exists()
    (folder / f"{name}-wal").write_bytes(header_only_log())

    v = Vault.open(folder, PASSPHRASE)
    try:
        assert v.record.get_client("c1").display_name == "Quinn Quarry"
        assert v.check() == []
    finally:
        v.close()
