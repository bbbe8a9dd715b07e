"""Fixtures for sync tests: real vaults in tmp_path and real `notewell` processes.

    make_vault("laptop") -> VaultRef          a vault (fast KDF) with a device identity
    ref.open() -> Vault                       open it in this process (close it yourself)
    notewell(ref, "sync", "devices") -> CompletedProcess   run a command to completion
    start_notewell(ref, "sync", "serve", "--port", "0") -> NotewellProcess   runs in the background
    proc.wait_for("listening on") -> the line; proc.finish() -> (rc, stdout, stderr)
    in_vault(ref, source, *args) -> stdout    run Python in a subprocess with `vault` and `record`
                                              open (`args` = sys.argv[2:])
    start_in_vault(ref, source, *args) -> NotewellProcess   the same, in the background
    pair(a, b)                                pair two vaults with the real CLI (a listens)
    serve(ref) -> (process, port)             `sync serve` on a free port

Every process started here is killed at the end of the test if it is still running.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from store.vault import KdfParams, Vault

FAST_KDF = KdfParams(memory_kib=8192, time_cost=1, parallelism=1)
PASSPHRASE = "sync test passphrase"
REPO = Path(__file__).resolve().parents[2]
PROCESS_TIMEOUT = 60.0


@dataclass(frozen=True)
class VaultRef:
    path: Path
    name: str
    device_id: str

    def open(self) -> Vault:
        return Vault.open(self.path, PASSPHRASE)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["NOTEWELL_PASSPHRASE"] = PASSPHRASE
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("NOTEWELL_VAULT", None)
    return env


def command(ref: VaultRef, *args: str) -> list[str]:
    return [sys.executable, "-m", "tui.cli", "--vault", str(ref.path), *args]


class NotewellProcess:
    """A background process whose stdout lines can be awaited (with a timeout, never a sleep)."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            argv, cwd=REPO, env=env or _env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self._queue), daemon=True),
            threading.Thread(target=self._drain, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _pump(stream, q) -> None:
        for line in stream:
            q.put(line.rstrip("\n"))
        q.put(None)

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self._stderr.append(line)

    def wait_for(self, prefix: str, timeout: float = PROCESS_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line starting {prefix!r}; got {self.lines!r}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(timeout=5)
                raise AssertionError(
                    f"process ended (rc {self.proc.returncode}) before {prefix!r}; "
                    f"stdout {self.lines!r}; stderr {''.join(self._stderr)!r}"
                )
            self.lines.append(line)
            if line.startswith(prefix):
                return line

    def finish(self, timeout: float = PROCESS_TIMEOUT) -> tuple[int, str, str]:
        rc = self.proc.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout=10)  # both end at EOF, which follows the exit
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return rc, "\n".join(self.lines), "".join(self._stderr)

    def terminate(self) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.finish()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=PROCESS_TIMEOUT)


@pytest.fixture
def make_vault(tmp_path: Path):
    """`make_vault(name, identity=True)`; identity=False leaves it as an older vault would be."""

    def make(name: str, identity: bool = True) -> VaultRef:
        from store.device_identity import ensure_identity, load_identity

        path = tmp_path / name
        vault, _recovery = Vault.create(path, PASSPHRASE, device_name=name, kdf=FAST_KDF)
        try:
            made = ensure_identity(vault.record.replica, vault.device_name) if identity else load_identity(vault.record.replica)
        finally:
            vault.close()
        return VaultRef(path, name, made.device_id if made else "")

    return make


@pytest.fixture
def notewell():
    def run(ref: VaultRef, *args: str, timeout: float = PROCESS_TIMEOUT) -> subprocess.CompletedProcess:
        return subprocess.run(
            command(ref, *args), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout
        )

    return run


@pytest.fixture
def start_notewell():
    started: list[NotewellProcess] = []

    def start(ref: VaultRef, *args: str) -> NotewellProcess:
        proc = NotewellProcess(command(ref, *args))
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


_PRELUDE = """
import json, sys
from store.vault import Vault
vault = Vault.open(sys.argv[1], {passphrase!r})
record = vault.record
try:
{body}
finally:
    vault.close()
"""


def _script(source: str) -> str:
    return _PRELUDE.format(passphrase=PASSPHRASE, body=textwrap.indent(textwrap.dedent(source), "    "))


@pytest.fixture
def in_vault():
    """Run `source` in a fresh Python process with `vault` and `record` open; returns stdout."""

    def run(ref: VaultRef, source: str, *args: str, timeout: float = PROCESS_TIMEOUT) -> str:
        done = subprocess.run(
            [sys.executable, "-c", _script(source), str(ref.path), *args], cwd=REPO, env=_env(),
            capture_output=True, text=True, timeout=timeout,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    return run


@pytest.fixture
def start_in_vault(start_notewell):
    started: list[NotewellProcess] = []

    def start(ref: VaultRef, source: str, *args: str) -> NotewellProcess:
        proc = NotewellProcess([sys.executable, "-c", _script(source), str(ref.path), *args])
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


@pytest.fixture
def pair(start_notewell, notewell):
    def do(listener: VaultRef, joiner: VaultRef) -> None:
        proc = start_notewell(listener, "sync", "pair", "--listen", "--port", "0")
        port = int(proc.wait_for("listening on").rsplit(":", 1)[1])
        code = proc.wait_for("pairing code:").split()[-1]
        joined = notewell(joiner, "sync", "pair", f"127.0.0.1:{port}", "--code", code)
        assert joined.returncode == 0, joined.stderr
        rc, _out, err = proc.finish()
        assert rc == 0, err

    return do


@pytest.fixture
def serve(start_notewell):
    def do(ref: VaultRef) -> tuple[NotewellProcess, int]:
        proc = start_notewell(ref, "sync", "serve", "--port", "0")
        port = int(proc.wait_for("listening on").rsplit(":", 1)[1])
        return proc, port

    return do
