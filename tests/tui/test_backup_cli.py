"""`notewell backup` and `notewell restore` as real processes: a round trip, every bad input
in one sentence with nothing written, a full and a read-only backup folder (earlier backups
untouched), a backup killed at random points (no file that looks complete unless it is), and
a backup taken while another process writes (the restored vault holds every write
acknowledged before the backup began, and passes `notewell check`).
"""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import date
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store.backup import verify_backup  # noqa: E402
from store.models import ClinicianSettings, Client, ProcessNote, ProgressNote, SessionFacts  # noqa: E402
from store.vault import KdfParams, Vault  # noqa: E402
from tui_helpers import NotewellProcess  # noqa: E402
from vault_faults import small_disk  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PASSPHRASE = "backup cli passphrase"
FAST_KDF = KdfParams(memory_kib=8192, time_cost=1, parallelism=1)
TIMEOUT = 120


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "NOTEWELL_PASSPHRASE": PASSPHRASE, "PYTHONUNBUFFERED": "1", **extra}
    env.pop("NOTEWELL_VAULT", None)
    env.pop("NOTEWELL_RECOVERY_KEY", None)
    return env


def notewell(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args], cwd=REPO, env=_env(**env), capture_output=True,
        text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
    )


def refused(done: subprocess.CompletedProcess, *words: str) -> str:
    """One sentence on stderr, a non-zero exit, no traceback."""
    assert done.returncode != 0, done.stdout
    err = done.stderr.strip()
    assert "Traceback" not in err and err.count("\n") == 0, err
    assert err.startswith("notewell: ") and err.endswith("."), err
    for word in words:
        assert word in err, (word, err)
    return err


@pytest.fixture
def vault(tmp_path: Path) -> tuple[Path, str]:
    """A small vault with a client, a note and a process note; (folder, recovery key)."""
    path = tmp_path / "vault"
    v, recovery = Vault.create(path, PASSPHRASE, device_name="old laptop", kdf=FAST_KDF,
                               settings=ClinicianSettings(clinician_name="Dr. Quinn Example", credentials="LPC"))
    try:
        v.record.create_client(Client(id="c1", display_name="Jules Example"))
        v.record.create_note(ProgressNote(id="n1", client_id="c1", format="SOAP",
                                          facts=SessionFacts(date_of_service=date(2026, 3, 3))))
        v.private.create(ProcessNote(client_id="c1", session_date=date(2026, 3, 3), body="A private hunch."))
    finally:
        v.close()
    return path, recovery


def _backups(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _hashes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_backup_verify_and_restore_through_the_command_line(vault, tmp_path: Path):
    folder, recovery = vault
    out = tmp_path / "drive"
    out.mkdir()
    done = notewell("--vault", str(folder), "backup", "--to", str(out))
    assert done.returncode == 0, done.stderr
    assert "Backup written:" in done.stdout and "1 process notes" in done.stdout
    [backup] = _backups(out)
    done = notewell("backup", "--verify", str(backup))
    assert done.returncode == 0 and "Backup verified" in done.stdout, done.stderr
    # The order the issue writes it in: the file, then --vault.
    done = notewell("restore", str(backup), "--vault", str(tmp_path / "new"), "--device-name", "new laptop")
    assert done.returncode == 0, done.stderr
    assert "new device" in done.stdout and "pair" in done.stdout
    checked = notewell("--vault", str(tmp_path / "new"), "check")
    assert checked.returncode == 0, checked.stderr
    key_file = tmp_path / "key.txt"
    key_file.write_text(recovery + "\n")
    new_pass = tmp_path / "new-pass.txt"
    new_pass.write_text("the restored passphrase\n")
    done = notewell("restore", str(backup), "--vault", str(tmp_path / "new2"), "--recovery-key-file", str(key_file),
                    "--new-passphrase-file", str(new_pass))
    assert done.returncode == 0, done.stderr
    Vault.open(tmp_path / "new2", "the restored passphrase").close()
    with Vault.open(folder, PASSPHRASE) as v:
        assert [e.event for e in v.audit.entries()][-1] == "backup_written"


def test_bad_inputs_get_one_sentence_and_change_nothing(vault, tmp_path: Path):
    folder, _recovery = vault
    out = tmp_path / "drive"
    out.mkdir()
    assert notewell("--vault", str(folder), "backup", "--to", str(out)).returncode == 0
    [backup] = _backups(out)
    data = backup.read_bytes()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "cut.nwbackup").write_bytes(data[: len(data) * 2 // 3])
    (bad / "altered.nwbackup").write_bytes(data[:-40] + bytes([data[-40] ^ 0x10]) + data[-39:])
    (bad / "foreign.nwbackup").write_bytes(b"%PDF-1.7 not a backup at all\n" * 100)
    before_vault, before_out = _hashes(folder), _hashes(out)

    refused(notewell("--vault", str(folder), "backup", "--to", str(tmp_path / "unplugged")), "does not exist")
    refused(notewell("--vault", str(folder), "backup", "--to", str(backup)), "not a folder")
    refused(notewell("--vault", str(folder), "backup"), "--to")
    refused(notewell("backup", "--verify", str(bad / "cut.nwbackup")), "incomplete")
    refused(notewell("backup", "--verify", str(bad / "altered.nwbackup")), "damaged or was altered")
    refused(notewell("backup", "--verify", str(bad / "foreign.nwbackup")), "not a Notewell backup")
    refused(notewell("backup", "--verify", str(tmp_path / "missing.nwbackup")), "no backup file")
    refused(notewell("backup", "--verify", str(bad)), "a folder")
    refused(notewell("backup", "--verify", str(backup), NOTEWELL_PASSPHRASE="not the passphrase"),
            "when the backup was made")
    for name in ("cut", "altered", "foreign"):
        refused(notewell("restore", str(bad / f"{name}.nwbackup"), "--vault", str(tmp_path / f"r-{name}")))
        assert not (tmp_path / f"r-{name}").exists()
    refused(notewell("restore", str(backup), "--vault", str(folder)), "already exists")
    refused(notewell("restore", str(backup), "--vault", str(out)), "not empty")
    refused(notewell("restore", str(backup), "--vault", str(tmp_path / "r-wrong"), NOTEWELL_PASSPHRASE="wrong one!"),
            "when the backup was made")
    refused(notewell("restore", str(backup), "--vault", str(tmp_path / "r-key"), "--recovery-key"), "recovery key")
    assert not (tmp_path / "r-wrong").exists() and not (tmp_path / "r-key").exists()
    assert not [p for p in tmp_path.iterdir() if ".restoring-" in p.name]
    assert _hashes(folder) == before_vault and _hashes(out) == before_out


def test_a_full_backup_folder_leaves_the_earlier_backups_intact(vault, tmp_path: Path):
    folder, _recovery = vault
    with small_disk(tmp_path / "drive", size="2m") as disk:
        assert notewell("--vault", str(folder), "backup", "--to", str(disk.path)).returncode == 0
        disk.fill(leave=32 * 1024)
        before = _hashes(disk.path)
        err = refused(notewell("--vault", str(folder), "backup", "--to", str(disk.path)), "is full")
        assert "earlier backups are untouched" in err
        assert _hashes(disk.path) == before  # the earlier backup, the filler, and no partial file
        disk.free()
        [earlier] = _backups(disk.path)
        assert verify_backup(earlier, passphrase=PASSPHRASE).counts.process_notes == 1


def test_a_read_only_backup_folder_leaves_the_earlier_backups_intact(vault, tmp_path: Path):
    folder, _recovery = vault
    # Root writes through permissions; a read-only mount is the honest test.
    with small_disk(tmp_path / "drive", size="4m") as disk:
        assert notewell("--vault", str(folder), "backup", "--to", str(disk.path)).returncode == 0
        before = _hashes(disk.path)
        remounted = subprocess.run(["mount", "-o", "remount,ro", str(disk.path)], capture_output=True, text=True)
        if remounted.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {remounted.stderr.strip()}")
        refused(notewell("--vault", str(folder), "backup", "--to", str(disk.path)), "cannot be written")
        assert _hashes(disk.path) == before
    assert not [p for p in folder.iterdir() if p.name.startswith(".backup-staging-")]


def _with_large_file(folder: Path, tmp_path: Path, size: int) -> Path:
    """Something of the clinician's own in the vault that makes the writing take a while;
    returns an empty backup folder."""
    (folder / "scans").mkdir()
    (folder / "scans" / "letter.bin").write_bytes(os.urandom(size))
    out = tmp_path / "drive"
    out.mkdir()
    return out


def _whole_run(*args: str) -> float:
    """How long one whole run of the command takes here and now, so that random kill
    instants span all of it (start-up, unlock, the work, the rename and after). Not a
    measurement: nothing is asserted on it."""
    started = time.monotonic()
    assert notewell(*args).returncode == 0
    return time.monotonic() - started


def test_a_backup_killed_at_random_points_leaves_no_file_that_looks_complete(vault, tmp_path: Path):
    folder, _recovery = vault
    # Something of the clinician's own that makes the writing take a while (8 chunks).
    out = _with_large_file(folder, tmp_path, 8 << 20)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    whole_run = _whole_run("--vault", str(folder), "backup", "--to", str(out))
    killed_running = 0
    for attempt in range(8):
        proc = NotewellProcess(folder, PASSPHRASE, "backup", "--to", str(out))
        try:
            if attempt % 2 == 0:
                # Somewhere inside the writing: after a random number of progress lines.
                proc.wait_for("Writing the backup")
                for _ in range(rng.randrange(0, 10)):
                    proc.wait_for("  ")
            else:
                # Anywhere from the start, the snapshot included: a random instant.
                threading.Event().wait(rng.uniform(0.0, whole_run * 1.1))
        except AssertionError:
            pass  # it ended before the chosen point: a complete run is a case too
        if proc.proc.poll() is None:
            killed_running += 1
            os.killpg(proc.proc.pid, signal.SIGKILL)
        proc.proc.wait(timeout=TIMEOUT)
        for path in out.iterdir():
            if path.name.startswith("."):
                assert path.name.endswith(".nwbackup.partial"), (seed, path.name)
            else:
                # A file under a final name is a complete backup.
                assert verify_backup(path, passphrase=PASSPHRASE).counts.progress_notes == 1, seed
        with Vault.open(folder, PASSPHRASE) as v:
            assert v.check() == [], seed
    assert killed_running >= 3, seed
    # The next backup clears what the killed ones left, here and in the vault.
    assert notewell("--vault", str(folder), "backup", "--to", str(out)).returncode == 0
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert not [p for p in folder.iterdir() if p.name.startswith(".backup-staging-")]


def test_a_restore_killed_at_random_points_leaves_no_vault_or_a_whole_one(vault, tmp_path: Path):
    folder, _recovery = vault
    out = _with_large_file(folder, tmp_path, 4 << 20)
    assert notewell("--vault", str(folder), "backup", "--to", str(out)).returncode == 0
    [backup] = _backups(out)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    whole_run = _whole_run("restore", str(backup), "--vault", str(tmp_path / "timed"))
    for attempt in range(5):
        target = tmp_path / f"restored-{attempt}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "tui.cli", "restore", str(backup), "--vault", str(target)], cwd=REPO,
            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            proc.wait(timeout=rng.uniform(0.0, whole_run * 1.1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=TIMEOUT)
        # Either nothing under the target's name, or a vault that opens and checks.
        if target.exists():
            with Vault.open(target, PASSPHRASE) as v:
                assert v.check() == [], seed
        # What a killed restore leaves is a hidden folder beside it, never the vault's name.
        for leftover in tmp_path.iterdir():
            assert not leftover.name.startswith(f"restored-{attempt}") or leftover == target, seed
    # Restoring to the same folder again clears what a killed restore there left.
    for attempt in range(5):
        target = tmp_path / f"restored-{attempt}"
        if not target.exists():
            assert notewell("restore", str(backup), "--vault", str(target)).returncode == 0
        assert not list(tmp_path.glob(f".restored-{attempt}.restoring-*")), seed


# A second program writing progress notes and process notes, one commit per line it prints.
_WRITER = """
import sys
from datetime import date
from store.models import Client, ProcessNote, ProgressNote, SessionFacts
from store.vault import Vault
vault = Vault.open(sys.argv[1], sys.argv[2])
try:
    vault.record.create_client(Client(id="w-client", display_name="Writer Client"))
    i = 0
    while True:
        vault.record.create_note(ProgressNote(id=f"w-note-{i}", client_id="w-client", format="DAP",
                                 facts=SessionFacts(date_of_service=date(2026, 4, 1))))
        print(f"note w-note-{i}", flush=True)
        p = vault.private.create(ProcessNote(client_id="w-client", session_date=date(2026, 4, 1),
                                 body=f"private thought {i}"))
        print(f"process {p.id}", flush=True)
        i += 1
finally:
    vault.close()
"""


class Writer:
    def __init__(self, folder: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(_WRITER), str(folder), PASSPHRASE], cwd=REPO, env=_env(),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def acknowledged(self, at_least: int = 0) -> list[str]:
        """Every write acknowledged so far (waiting for `at_least` of them)."""
        got: list[str] = []
        while True:
            try:
                line = self.lines.get(timeout=TIMEOUT if len(got) < at_least else 0.0)
            except queue.Empty:
                return got
            assert line is not None, self.proc.stderr.read()[-2000:]
            got.append(line)


def test_a_backup_taken_while_another_program_writes_holds_every_acknowledged_write(vault, tmp_path: Path):
    folder, _recovery = vault
    out = tmp_path / "drive"
    out.mkdir()
    writer = Writer(folder)
    try:
        acknowledged = writer.acknowledged(at_least=20)
        backup = NotewellProcess(folder, PASSPHRASE, "backup", "--to", str(out))
        line = backup.wait_for("Backup written:")
        assert backup.proc.wait(timeout=TIMEOUT) == 0
        later = writer.acknowledged(at_least=10)  # it went on writing throughout
        assert later
    finally:
        writer.proc.kill()
        writer.proc.wait(timeout=TIMEOUT)
    path = Path(line.split("Backup written: ", 1)[1].rsplit(" (", 1)[0])
    done = notewell("restore", str(path), "--vault", str(tmp_path / "restored"), "--device-name", "spare")
    assert done.returncode == 0, done.stderr
    checked = notewell("--vault", str(tmp_path / "restored"), "check")
    assert checked.returncode == 0, checked.stderr
    notes = [a.split()[1] for a in acknowledged if a.startswith("note ")]
    processes = [a.split()[1] for a in acknowledged if a.startswith("process ")]
    assert notes and processes
    with Vault.open(tmp_path / "restored", PASSPHRASE) as restored:
        heads = restored.record.replica.doc_heads()
        assert [n for n in notes if n not in heads] == []
        kept = {p.id for p in restored.private.for_client("w-client")}
        assert [p for p in processes if p not in kept] == []
