"""A vault and its write-ahead log after crashes, full disks and damage, on real files and
real processes.

- A checkpoint interrupted half-way (killed, or out of disk space) leaves the main file
  half-updated next to a complete log: the vault opens with every acknowledged write.
- A damaged log (committed transactions after the damage) is refused as damage and nothing
  is changed; the ordinary leftovers of a killed writer (a cut final frame, an uncommitted
  tail, a frame header written without its page over an older round of the log, a log that
  another process is writing while we read it) open normally.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
from datetime import date
from pathlib import Path

import pytest

from store.errors import DamagedVault
from store.keys import KdfParams
from store.models import Client, ProgressNote, SessionFacts
from store.vault import Vault

REPO = Path(__file__).resolve().parents[2]
PASSPHRASE = "correct horse battery staple"
FAST_KDF = KdfParams(memory_kib=8192, time_cost=1, parallelism=1)
PAGE = 4096
FRAME = 24 + PAGE
HEADER = 32


def note_text(n: int) -> str:
    """Synthetic section text for acknowledged write n: a canary and enough bytes to need pages."""
    filler = "".join(hashlib.sha256(f"{n}-{k}".encode()).hexdigest() for k in range(24))
    return f"CANARY-wal ack {n} {filler}"


CHILD_PRELUDE = f"""
import hashlib, os, sys
from datetime import date
from store.models import ProgressNote, SessionFacts
from store.vault import Vault

def note_text(n):
    filler = "".join(hashlib.sha256(f"{{n}}-{{k}}".encode()).hexdigest() for k in range(24))
    return f"CANARY-wal ack {{n}} {{filler}}"

def write(vault, n):
    note = vault.record.create_note(ProgressNote(
        id=f"n{{n:05d}}", client_id="c1", format="SOAP",
        facts=SessionFacts(date_of_service=date(2026, 3, 1))))
    vault.record.set_section(note.id, "plan", note_text(n))
    print(f"ACK {{n}}", flush=True)
"""


def make_vault(folder: Path) -> None:
    vault, _ = Vault.create(folder, PASSPHRASE, device_name="test", kdf=FAST_KDF)
    try:
        vault.record.create_client(Client(id="c1", display_name="Test Client"))
    finally:
        vault.close()


def write_in_process(vault: Vault, numbers) -> list[int]:
    for n in numbers:
        note = vault.record.create_note(
            ProgressNote(id=f"n{n:05d}", client_id="c1", format="SOAP",
                         facts=SessionFacts(date_of_service=date(2026, 3, 1)))
        )
        vault.record.set_section(note.id, "plan", note_text(n))
    return list(numbers)


def assert_holds(folder: Path, acked) -> None:
    """The vault opens, holds every acknowledged write and checks healthy."""
    with Vault.open(folder, PASSPHRASE) as vault:
        for n in acked:
            assert vault.record.get_note(f"n{n:05d}").sections["plan"] == note_text(n), n
        assert vault.check() == []


def run_child(code: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CHILD_PRELUDE + textwrap.dedent(code), *args],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=300, **kwargs,
    )


def acks(stdout: str) -> list[int]:
    return [int(line.split()[1]) for line in stdout.splitlines() if line.startswith("ACK ")]


def folder_snapshot(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()
    }


# --- a log read by hand, independently of the code under test --------------------------------


def wal_frames(wal: bytes) -> list[tuple[int, int, int, bytes]]:
    """(offset, page number, commit size, salt) of every whole frame."""
    out = []
    for at in range(HEADER, len(wal) - FRAME + 1, FRAME):
        page, commit = struct.unpack_from(">2I", wal, at)
        out.append((at, page, commit, wal[at + 8 : at + 16]))
    return out


def current_round(wal: bytes) -> list[tuple[int, int, int, bytes]]:
    """The frames of the log's current round (its header's salts), in order."""
    salt = wal[16:24]
    frames = []
    for frame in wal_frames(wal):
        if frame[3] != salt:
            break
        frames.append(frame)
    return frames


def flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x24
    path.write_bytes(bytes(raw))


# --- (a) a checkpoint that stopped half-way, built page by page --------------------------------


@pytest.fixture(scope="module")
def checkpoint_halves(tmp_path_factory):
    """A vault closed normally (the main file after its checkpoint), and the same record.db
    before the checkpoint with the complete log that the checkpoint was folding in."""
    root = tmp_path_factory.mktemp("halves")
    folder = root / "vault"
    make_vault(folder)
    vault = Vault.open(folder, PASSPHRASE)
    try:
        vault.record_conn.execute("PRAGMA wal_autocheckpoint = 0")
        acked = write_in_process(vault, range(40))
        before = (folder / "record.db").read_bytes()
        wal = (folder / "record.db-wal").read_bytes()
        shm = (folder / "record.db-shm").read_bytes()
    finally:
        vault.close()
    after = (folder / "record.db").read_bytes()
    assert len(after) > len(before) + 8 * PAGE, "the writes must grow the main file"
    assert not (folder / "record.db-wal").exists()
    return folder, before, after, wal, shm, acked


def _pages(raw: bytes) -> list[bytes]:
    return [raw[i : i + PAGE] for i in range(0, len(raw), PAGE)]


def _mix(name: str, before: bytes, after: bytes) -> bytes:
    b, a = _pages(before), _pages(after)
    if name == "before-checkpoint":
        return before
    if name == "first-pages-written":  # killed in the ascending copy: shorter than page 1 says
        return b"".join(a[: len(b) // 2] + b[len(b) // 2 :])
    if name == "half-grown":
        return b"".join(a[: (len(a) + len(b)) // 2])
    if name == "every-other-page":
        return b"".join(a[i] if i % 2 == 0 or i >= len(b) else b[i] for i in range(len(a)))
    if name == "old-first-page":  # longer than page 1 says
        return b"".join(b[i] if i % 2 == 0 and i < len(b) else a[i] for i in range(len(a)))
    if name == "unwritten-tail":  # grown by the file system, never written: zeros
        return after + bytes(3 * PAGE)
    if name == "torn-page":  # a page half old, half new (a power cut mid-write)
        changed = [i for i in range(1, len(b)) if a[i] != b[i]]
        i = changed[len(changed) // 2]
        torn = a[i][: PAGE // 2] + b[i][PAGE // 2 :]
        return b"".join(a[:i] + [torn] + a[i + 1 :])
    raise AssertionError(name)


MIXES = [
    "before-checkpoint", "first-pages-written", "half-grown", "every-other-page",
    "old-first-page", "unwritten-tail", "torn-page",
]


@pytest.mark.parametrize("with_shm", [True, False], ids=["with-shm", "no-shm"])
@pytest.mark.parametrize("mix", MIXES)
def test_half_checkpointed_main_file_with_its_log_opens_whole(tmp_path, checkpoint_halves, mix, with_shm):
    folder, before, after, wal, shm, acked = checkpoint_halves
    vault = tmp_path / "vault"
    shutil.copytree(folder, vault)
    (vault / "record.db").write_bytes(_mix(mix, before, after))
    (vault / "record.db-wal").write_bytes(wal)
    if with_shm:
        (vault / "record.db-shm").write_bytes(shm)
    assert_holds(vault, acked)


# --- (b) the disk fills up during the close-time checkpoint ------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill up needs root")
    mount = tmp_path / "small-disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m,mode=0700", "tmpfs", str(mount)],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill_up(folder: Path) -> Path:
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        while True:
            os.write(fd, bytes(PAGE))
    except OSError:
        pass  # full
    finally:
        os.close(fd)
    return filler


def test_full_disk_during_close_time_checkpoint_loses_nothing(small_disk):
    vault_dir = small_disk / "vault"
    make_vault(vault_dir)
    vault = Vault.open(vault_dir, PASSPHRASE)
    size_before = (vault_dir / "record.db").stat().st_size
    vault.record_conn.execute("PRAGMA wal_autocheckpoint = 0")
    acked = write_in_process(vault, range(40))
    filler = fill_up(small_disk)
    vault.close()  # the checkpoint cannot grow record.db: it stops half-way
    assert (vault_dir / "record.db-wal").stat().st_size > 0, "the checkpoint was meant to fail"
    assert (vault_dir / "record.db").stat().st_size < size_before + 8 * PAGE
    filler.unlink()
    assert_holds(vault_dir, acked)


# --- (c) killed during the close-time checkpoint -----------------------------------------------

CLOSING_WRITER = """
vault = Vault.open(sys.argv[1], sys.argv[2])
vault.record_conn.execute("PRAGMA wal_autocheckpoint = 0")
start = int(sys.argv[3])
for n in range(start, start + 10):
    write(vault, n)
# Ballast that the closing checkpoint must copy page by page into a growing record.db, so
# that it takes long enough to be caught half-way.
vault.record_conn.execute("CREATE TABLE IF NOT EXISTS ballast (body BLOB)")
vault.record_conn.execute("BEGIN IMMEDIATE")
for _ in range(2000):
    vault.record_conn.execute("INSERT INTO ballast VALUES (randomblob(3500))")
vault.record_conn.execute("COMMIT")
print("CLOSING", flush=True)
vault.close()
print("CLOSED", flush=True)
"""


def test_killed_during_close_time_checkpoint_loses_nothing(tmp_path):
    """Each attempt kills the writer as soon as its closing checkpoint touches record.db (or
    lets it finish if it is quicker than us); every attempt must open with every write."""
    vault_dir = tmp_path / "vault"
    make_vault(vault_dir)
    main = vault_dir / "record.db"
    acked: list[int] = []
    for attempt in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD_PRELUDE + textwrap.dedent(CLOSING_WRITER),
             str(vault_dir), PASSPHRASE, str(attempt * 1000)],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            first = proc.stdout.readline()
            assert first.startswith("ACK "), proc.stderr.read()
            # Nothing checkpoints record.db while the writer writes (autocheckpoint is off).
            unchanged = (main.stat().st_mtime_ns, main.stat().st_size)
            acked.append(int(first.split()[1]))
            for line in proc.stdout:
                if line.startswith("ACK "):
                    acked.append(int(line.split()[1]))
                elif line.startswith("CLOSING"):
                    break
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:
                st = main.stat()
                if (st.st_mtime_ns, st.st_size) != unchanged:
                    proc.kill()
                    break
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
            proc.stdout.close()
            proc.stderr.close()
        assert_holds(vault_dir, acked)


# --- (d) a damaged log --------------------------------------------------------------------------

CRASHING_WRITER = """
vault = Vault.open(sys.argv[1], sys.argv[2])
conn = vault.record_conn
conn.execute("PRAGMA wal_autocheckpoint = 0")
for n in range(int(sys.argv[3])):
    write(vault, n)
if sys.argv[4] == "tail":
    # A transaction that never commits, big enough to spill into the log.
    conn.execute("CREATE TABLE IF NOT EXISTS scratch (body BLOB)")
    conn.execute("PRAGMA cache_size = 2")
    conn.execute("BEGIN IMMEDIATE")
    for _ in range(60):
        conn.execute("INSERT INTO scratch VALUES (randomblob(3000))")
    print("TAIL", flush=True)
os._exit(0)  # no close, no checkpoint: as if killed
"""


@pytest.fixture(scope="module")
def crashed_vaults(tmp_path_factory):
    """Vaults left by a writer that died with its writes in the log: one with a clean end,
    one with an uncommitted transaction after its last commit."""
    out = {}
    for tail in ("clean", "tail"):
        folder = tmp_path_factory.mktemp(f"crashed-{tail}") / "vault"
        make_vault(folder)
        result = run_child(CRASHING_WRITER, str(folder), PASSPHRASE, "12", tail)
        assert result.returncode == 0, result.stderr
        acked = acks(result.stdout)
        assert len(acked) == 12
        wal = (folder / "record.db-wal").read_bytes()
        commits = [i for i, f in enumerate(current_round(wal)) if f[2]]
        assert len(commits) >= 12
        if tail == "tail":
            assert commits[-1] < len(current_round(wal)) - 3, "the tail must reach the log"
        out[tail] = (folder, acked)
    return out


def copy_vault(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _flip_offset(wal: bytes, where: str) -> int:
    frames = current_round(wal)
    commits = [i for i, f in enumerate(frames) if f[2]]
    early = frames[commits[2] + 1][0]  # first frame of a transaction with several commits after
    return {
        "log-header-salt": 17,
        "log-header-checksum": 27,
        "frame-page-data": early + 24 + 1000,
        "frame-page-number": early + 3,
        "frame-checksum": early + 21,
        "commit-frame-data": frames[commits[3]][0] + 24 + 2000,
        "first-frame": frames[0][0] + 24 + 7,
    }[where]


@pytest.mark.parametrize(
    "where",
    ["log-header-salt", "log-header-checksum", "frame-page-data", "frame-page-number",
     "frame-checksum", "commit-frame-data", "first-frame"],
)
def test_damaged_log_is_refused_and_changes_nothing(tmp_path, crashed_vaults, where):
    src, _acked = crashed_vaults["clean"]
    vault_dir = copy_vault(src, tmp_path / "vault")
    wal_path = vault_dir / "record.db-wal"
    flip(wal_path, _flip_offset(wal_path.read_bytes(), where))
    if where == "frame-page-data":
        (vault_dir / "record.db-shm").unlink()  # and no -shm is created for it
    before = folder_snapshot(vault_dir)
    with pytest.raises(DamagedVault) as err:
        Vault.open(vault_dir, PASSPHRASE)
    assert "record.db" in err.value.message and "log" in err.value.message
    assert "CANARY" not in err.value.message
    assert folder_snapshot(vault_dir) == before


def test_damaged_main_page_the_log_does_not_replace_is_still_damage(tmp_path, crashed_vaults):
    """Page checks are forgiven only for pages the log holds newer images of."""
    src, _acked = crashed_vaults["clean"]
    vault_dir = copy_vault(src, tmp_path / "vault")
    main = vault_dir / "record.db"
    logged = {f[1] for f in current_round((vault_dir / "record.db-wal").read_bytes())}
    page = next(p for p in range(2, main.stat().st_size // PAGE + 1) if p not in logged)
    flip(main, (page - 1) * PAGE + PAGE // 2)
    before = folder_snapshot(vault_dir)
    with pytest.raises(DamagedVault):
        Vault.open(vault_dir, PASSPHRASE)
    assert folder_snapshot(vault_dir) == before


def test_damaged_log_is_reported_by_the_check_command(tmp_path, crashed_vaults):
    src, _acked = crashed_vaults["clean"]
    vault_dir = copy_vault(src, tmp_path / "vault")
    wal_path = vault_dir / "record.db-wal"
    flip(wal_path, _flip_offset(wal_path.read_bytes(), "frame-page-data"))
    before = folder_snapshot(vault_dir)
    result = subprocess.run(
        [sys.executable, "-m", "tui.cli", "--vault", str(vault_dir), "check"],
        cwd=REPO, env={**os.environ, "NOTEWELL_PASSPHRASE": PASSPHRASE},
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "log" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert folder_snapshot(vault_dir) == before


def test_log_reader_agrees_with_sqlite_on_a_real_log(crashed_vaults):
    """The format facts store/write_ahead_log.py relies on, checked on a log SQLite wrote: the
    header's checksum, and a replay keeping every frame up to the last commit."""
    from store.write_ahead_log import checksum, read_log

    for tail in ("clean", "tail"):
        wal_path = crashed_vaults[tail][0] / "record.db-wal"
        wal = wal_path.read_bytes()
        assert struct.unpack(">I", wal[:4])[0] & ~1 == 0x377F0682
        big_endian = bool(wal[3] & 1)
        assert checksum(wal[:24], 0, 0, big_endian) == struct.unpack(">2I", wal[24:32])
        frames = current_round(wal)
        last_commit = max(i for i, f in enumerate(frames, 1) if f[2])
        reading = read_log(wal_path, PAGE)
        assert (reading.kept_frames, reading.damaged) == (last_commit, False)
        assert reading.database_pages == frames[last_commit - 1][2]
        assert reading.logged_pages == {f[1] for f in frames[:last_commit]}


def test_crashed_writer_log_opens_with_every_write(tmp_path, crashed_vaults):
    for tail in ("clean", "tail"):
        src, acked = crashed_vaults[tail]
        assert_holds(copy_vault(src, tmp_path / tail), acked)


def test_damage_in_the_uncommitted_tail_is_not_damage(tmp_path, crashed_vaults):
    src, acked = crashed_vaults["tail"]
    vault_dir = copy_vault(src, tmp_path / "vault")
    wal_path = vault_dir / "record.db-wal"
    wal = wal_path.read_bytes()
    frames = current_round(wal)
    last_commit = max(i for i, f in enumerate(frames) if f[2])
    flip(wal_path, frames[last_commit + 2][0] + 24 + 500)
    assert_holds(vault_dir, acked)


@pytest.mark.parametrize("cut", ["in-the-tail", "in-the-last-commit-frame"])
def test_log_cut_mid_frame_opens(tmp_path, crashed_vaults, cut):
    src, acked = crashed_vaults["tail" if cut == "in-the-tail" else "clean"]
    vault_dir = copy_vault(src, tmp_path / "vault")
    wal_path = vault_dir / "record.db-wal"
    wal = wal_path.read_bytes()
    frames = current_round(wal)
    if cut == "in-the-tail":
        end = frames[-2][0] + 24 + 1500
    else:
        end = frames[-1][0] + 24 + 1500  # the last transaction never finished writing
        acked = acked[:-1]
    with open(wal_path, "r+b") as f:
        f.truncate(end)
    assert_holds(vault_dir, acked)


def test_damage_inside_the_last_transaction_only_opens(tmp_path, crashed_vaults):
    """A power cut before the last commit's sync can tear that transaction alone; SQLite drops
    it as never confirmed, and the vault opens with everything before it."""
    src, acked = crashed_vaults["clean"]
    vault_dir = copy_vault(src, tmp_path / "vault")
    wal_path = vault_dir / "record.db-wal"
    frames = current_round(wal_path.read_bytes())
    commits = [i for i, f in enumerate(frames) if f[2]]
    flip(wal_path, frames[commits[-2] + 1][0] + 24 + 100)
    with Vault.open(vault_dir, PASSPHRASE) as vault:
        for n in acked[:-1]:
            assert vault.record.get_note(f"n{n:05d}").sections["plan"] == note_text(n)


OVERWRITING_WRITER = """
vault = Vault.open(sys.argv[1], sys.argv[2])
conn = vault.record_conn
conn.execute("PRAGMA wal_autocheckpoint = 0")
for n in range(12):
    write(vault, n)
conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # all folded in: the next write starts the log over
for n in range(12, 14):
    write(vault, n)
os._exit(0)
"""


def test_frame_header_written_without_its_page_over_an_older_round_opens(tmp_path):
    """Killed between writing a frame's header and its page while the log was being
    overwritten from the start: the frames after it belong to the older round."""
    vault_dir = tmp_path / "vault"
    make_vault(vault_dir)
    result = run_child(OVERWRITING_WRITER, str(vault_dir), PASSPHRASE)
    assert result.returncode == 0, result.stderr
    acked = acks(result.stdout)
    wal_path = vault_dir / "record.db-wal"
    wal = wal_path.read_bytes()
    current = current_round(wal)
    frames = wal_frames(wal)
    older = [f for f in frames[len(current):] if f[3] != wal[16:24]]
    assert sum(1 for f in older if f[2]) >= 2, "an older round with commits must follow"
    # The next frame gets a header of the current round (a commit) but keeps the old page.
    at = frames[len(current)][0]
    header = struct.pack(">2I", 2, 40) + wal[16:24] + struct.pack(">2I", 0x1234, 0x5678)
    raw = bytearray(wal)
    raw[at : at + 24] = header
    wal_path.write_bytes(bytes(raw))
    assert_holds(vault_dir, acked)


LIVE_WRITER = """
vault = Vault.open(sys.argv[1], sys.argv[2])
n = 0
while True:
    write(vault, n)
    n += 1
"""


def test_log_written_by_a_live_process_while_verifying_is_not_damage(tmp_path):
    """The app keeps writing while a command verifies the vault: never a damaged verdict."""
    from store import vaultfile
    from store.database import verify_database
    from store.vault import _database_keys, _unwrap_with_passphrase

    vault_dir = tmp_path / "vault"
    make_vault(vault_dir)
    master = _unwrap_with_passphrase(vaultfile.read(vault_dir), PASSPHRASE)
    record_key = bytes(_database_keys(master)[0])
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD_PRELUDE + textwrap.dedent(LIVE_WRITER), str(vault_dir), PASSPHRASE],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout.readline().startswith("ACK "), proc.stderr.read()
        for _ in range(25):
            verify_database(vault_dir / "record.db", record_key)
            line = proc.stdout.readline()  # the writer has moved on meanwhile
            assert line.startswith("ACK "), proc.stderr.read()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
