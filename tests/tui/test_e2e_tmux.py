"""The real `notewell` command in a real terminal (tmux): unlock, open a note, quit."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tui_data import PASSPHRASE

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


class Tmux:
    def __init__(self, socket: str) -> None:
        self.socket = socket

    def run(self, *args: str) -> str:
        out = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=20)
        return out.stdout

    def pane(self) -> str:
        return self.run("capture-pane", "-p", "-t", "e2e")

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            pane = self.pane()
            if text in pane:
                return pane
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} did not appear; the pane shows:\n{pane}")
            time.sleep(0.1)


def test_notewell_unlock_open_note_quit(seeded_vault: Path, tmp_path: Path):
    notewell = Path(sys.executable).with_name("notewell")
    if not notewell.exists():
        pytest.skip("the notewell console script is not installed in this environment")
    tmux = Tmux(f"notewell-e2e-{uuid.uuid4().hex[:8]}")
    env = {
        "NOTEWELL_VAULT": str(seeded_vault),
        "NOTEWELL_CONFIG": str(tmp_path / "no-config.toml"),
        "NOTEWELL_TEST_MODE": "1",
        "TERM": "xterm-256color",
    }
    exports = " ".join(f"{k}={v}" for k, v in env.items())
    command = f"env {exports} {notewell}; echo NOTEWELL-EXITED-$?; sleep 60"
    tmux.run("new-session", "-d", "-s", "e2e", "-x", "120", "-y", "40", command)
    try:
        tmux.wait_for("Enter your passphrase")
        tmux.run("send-keys", "-t", "e2e", "-l", PASSPHRASE)
        tmux.run("send-keys", "-t", "e2e", "Enter")
        tmux.wait_for("Casey Canary")
        # Enter on the client moves to the timeline; Enter there opens its newest note.
        tmux.run("send-keys", "-t", "e2e", "Enter")
        time.sleep(0.3)
        tmux.run("send-keys", "-t", "e2e", "Enter")
        tmux.wait_for("Casey Canary - SOAP - 2026-11-02 - draft")
        pane = tmux.wait_for("to complete")
        assert PASSPHRASE not in pane
        tmux.run("send-keys", "-t", "e2e", "C-q")
        pane = tmux.wait_for("NOTEWELL-EXITED-")
        assert "NOTEWELL-EXITED-0" in pane
        assert "Traceback" not in pane
    finally:
        tmux.run("kill-server")


CRASHING_APP = """
import sys
from textual.binding import Binding
from tui.app import NotewellApp

class Crashing(NotewellApp):
    BINDINGS = NotewellApp.BINDINGS + [Binding("f12", "crash", "Crash")]

    def action_crash(self):
        note_text = "CANARY-7f3a what the client said"
        raise RuntimeError(note_text)

app = Crashing(sys.argv[1], test_mode=True)
app.run()
sys.exit(app.return_code)
"""


def test_a_bug_never_prints_a_traceback_or_note_text(tmp_path: Path):
    script = tmp_path / "crashing_app.py"
    script.write_text(CRASHING_APP)
    tmux = Tmux(f"notewell-e2e-{uuid.uuid4().hex[:8]}")
    env = f"env NOTEWELL_CONFIG={tmp_path / 'none.toml'} TERM=xterm-256color PYTHONPATH={Path(__file__).parents[2]}"
    command = f"{env} {sys.executable} {script} {tmp_path / 'vault'}; echo APP-EXITED-$?; sleep 60"
    tmux.run("new-session", "-d", "-s", "e2e", "-x", "100", "-y", "30", command)
    try:
        tmux.wait_for("Welcome to Notewell")
        tmux.run("send-keys", "-t", "e2e", "F12")
        pane = tmux.wait_for("APP-EXITED-")
        assert "APP-EXITED-1" in pane
        assert "unexpected problem (RuntimeError)" in pane
        assert "Traceback" not in pane and "CANARY" not in pane
    finally:
        tmux.run("kill-server")
