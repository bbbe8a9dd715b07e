"""Faults from outside the program, for tests: another program holding a vault's write lock,
and a disk that fills up. Both are real: a second Python process with the vault open through
the store API, and a tmpfs mount (as root) filled with a filler file.

    with LockHolder(vault_path, passphrase) as holder:   # returns once the lock is held
        ...                                               # every write elsewhere waits
        holder.release()                                  # optional; __exit__ releases

    with small_disk(folder, size="16m") as disk:          # pytest.skip when not root / no mount
        disk.fill(leave=0)                                # ENOSPC from here on
        disk.free()                                       # removes the filler

Test modules import this file by name (`sys.path` gets this folder, as tests/tui/conftest.py
does for its helpers).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 60.0

# The other program: opens the vault with its key like any Notewell program, takes the write
# lock with a store transaction and keeps it until a line (or end of file) arrives on stdin.
_HOLDER = """
import sys
from store.vault import Vault
vault = Vault.open(sys.argv[1], sys.argv[2])
store = vault.record if sys.argv[3] == "record" else vault.private
try:
    with store.transaction():
        print("holding", flush=True)
        sys.stdin.readline()
finally:
    vault.close()
print("released", flush=True)
"""


class LockHolder:
    """A second process that holds the write lock of record.db (or private.db)."""

    def __init__(self, vault_path: Path, passphrase: str, database: str = "record") -> None:
        env = dict(os.environ)
        env.pop("NOTEWELL_LOCK_WAIT", None)  # the holder itself never has to wait long
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(vault_path), passphrase, database],
            cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )
        try:
            line = _read_line(self.proc.stdout, TIMEOUT)
            if line.strip() != "holding":
                raise AssertionError(f"the lock holder did not start: {line!r} {self.proc.stderr.read()!r}")
        except BaseException:
            self.proc.kill()
            self.proc.wait(TIMEOUT)
            raise

    def release(self) -> None:
        """Let go of the lock and wait until the process has ended cleanly."""
        if self.proc.returncode is not None:
            return
        _out, err = self.proc.communicate("\n", timeout=TIMEOUT)
        assert self.proc.returncode == 0, err[-2000:]

    def __enter__(self) -> LockHolder:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.release()
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(TIMEOUT)


def _read_line(stream, timeout: float) -> str:
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not box:
        raise AssertionError("no line from the lock holder in time")
    return box[0]


class SmallDisk:
    """A mounted tmpfs at `path`; `fill()` takes (almost) all of its space."""

    FILLER = ".filler"

    def __init__(self, path: Path) -> None:
        self.path = path

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int = 0) -> None:
        """Write a filler file until the disk refuses (ENOSPC), then give `leave` bytes back."""
        filler = self.path / self.FILLER
        chunk = b"\0" * (1 << 16)
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 16, 1 << 12, 1 << 9):
                chunk = chunk[:size]
                while True:
                    try:
                        os.write(fd, chunk)
                    except OSError as e:
                        if e.errno != errno.ENOSPC:
                            raise
                        break
            if leave:
                os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
        finally:
            os.close(fd)

    def free(self) -> None:
        (self.path / self.FILLER).unlink(missing_ok=True)


@contextmanager
def small_disk(path: Path, size: str = "16m"):
    """Mount a tmpfs of `size` at `path` for the block; always unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("a full disk is made with a tmpfs mount, which needs root")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True, text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield SmallDisk(path)
    finally:
        done = subprocess.run(["umount", str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            # Still in use by a process the test is ending: detach now, freed when it exits.
            subprocess.run(["umount", "-l", str(path)], capture_output=True, text=True)
