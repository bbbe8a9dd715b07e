"""Waiting on conditions in Pilot tests: a predicate polled with a timeout, never a sleep-as-assert."""

from __future__ import annotations

import asyncio
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from time import monotonic

REPO = Path(__file__).resolve().parents[2]
PROCESS_WAIT = 30.0


async def wait_for(pilot, predicate: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = monotonic() + timeout
    while True:
        await pilot.pause()
        try:
            if predicate():
                return
        except Exception:
            # The widget may not be mounted yet; keep waiting.
            pass
        if monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def unlock(pilot, passphrase: str) -> None:
    from textual.widgets import Input

    from tui.screens.main import MainScreen
    from tui.screens.unlock import UnlockScreen

    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, UnlockScreen), what="unlock screen")
    app.screen.query_one("#passphrase", Input).value = passphrase
    await pilot.press("enter")
    # Unlocking returns to where the clinician was: the main screen or an editor above it.
    await wait_for(pilot, lambda: any(isinstance(s, MainScreen) for s in app.screen_stack), what="main screen")


def static_text(widget) -> str:
    """The plain text a Static shows (markup removed)."""
    content = widget.content
    plain = getattr(content, "plain", None)
    if plain is not None:
        return plain
    visual = widget.visual
    return getattr(visual, "plain", None) or str(content)


def screen_text(app) -> str:
    """What the current screen's Static widgets show, as plain text."""
    from textual.widgets import Static

    return "\n".join(static_text(w) for w in app.screen.query(Static))


class NotewellProcess:
    """A real `notewell` process on one vault, whose stdout lines can be awaited with a timeout."""

    def __init__(self, vault: Path, passphrase: str, *args: str) -> None:
        env = dict(os.environ, NOTEWELL_PASSPHRASE=passphrase, PYTHONUNBUFFERED="1")
        env.pop("NOTEWELL_VAULT", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tui.cli", "--vault", str(vault), *args], cwd=REPO, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, prefix: str, timeout: float = PROCESS_WAIT) -> str:
        deadline = monotonic() + timeout
        while monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"notewell ended before a line starting {prefix!r}")
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no line starting {prefix!r} within {timeout} s")

    def succeeds(self) -> None:
        assert self.proc.wait(timeout=PROCESS_WAIT) == 0

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout=PROCESS_WAIT)


def started_processes():
    """For a fixture: `start(vault, passphrase, *args)`, and every process still running
    killed at the end."""
    started: list[NotewellProcess] = []

    def start(vault: Path, passphrase: str, *args: str) -> NotewellProcess:
        started.append(NotewellProcess(vault, passphrase, *args))
        return started[-1]

    return start, started


def kill_all(started: list[NotewellProcess]) -> None:
    for p in started:
        if p.proc.poll() is None:
            p.proc.kill()


def folder_files(folder: Path) -> dict[str, str]:
    """Every file of a folder (a vault), by name, with the SHA-256 of its bytes: equal before
    and after a refused command shows it changed nothing."""
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def one_sentence(run: subprocess.CompletedProcess) -> str:
    """Holds a finished `notewell` command to the rule for a refusal (a non-zero exit, no
    traceback, one sentence on stderr) and returns the sentence."""
    assert run.returncode != 0, run.stdout
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("notewell: ") and lines[0].rstrip().endswith("."), lines[0]
    return lines[0]
