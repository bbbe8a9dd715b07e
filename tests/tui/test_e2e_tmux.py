"""The real `notewell` command in a real terminal (tmux): unlock, open a note, quit."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tui_data import PASSPHRASE

ANSI = re.compile(r"\x1b\[[0-9;]*m")

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

    def pane(self, *, styled: bool = False) -> str:
        return self.run("capture-pane", "-p", *(["-e"] if styled else []), "-t", "e2e")

    def styled_line(self, text: str) -> str:
        """The first line showing text, with its colours (how a focused row differs)."""
        styled = self.pane(styled=True).splitlines()
        plain = [ANSI.sub("", line) for line in styled]
        return next((line for line, shown in zip(styled, plain) if text in shown), "")

    def wait_until(self, what: str, done, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not happen; the pane shows:\n{self.pane()}")
            time.sleep(0.1)

    def wait_for_setup(self) -> None:
        """The setup screen is up: its heading, or its last field (the bordered form is taller
        than a 30-row terminal and can open scrolled to the focused field)."""
        self.wait_until(
            "the setup screen", lambda: any(t in self.pane() for t in ("Welcome to Notewell", "Passphrase again"))
        )

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        self.wait_until(f"{text!r} appearing", lambda: text in self.pane(), timeout)
        return self.pane()


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
        # Enter on the client moves to the timeline; Enter there opens its newest note. The
        # second Enter waits until the timeline is loaded and has taken the focus, which
        # repaints its highlighted row in the focused colours.
        tmux.wait_for("SOAP [draft]")
        unfocused = tmux.styled_line("SOAP [draft]")
        tmux.run("send-keys", "-t", "e2e", "Enter")
        tmux.wait_until("the timeline taking the focus", lambda: tmux.styled_line("SOAP [draft]") not in ("", unfocused))
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
        tmux.wait_for_setup()
        tmux.run("send-keys", "-t", "e2e", "F12")
        pane = tmux.wait_for("APP-EXITED-")
        assert "APP-EXITED-1" in pane
        assert "unexpected problem (RuntimeError)" in pane
        assert "Traceback" not in pane and "CANARY" not in pane
    finally:
        tmux.run("kill-server")
