"""The app repaints up to 120 times a second unless the environment says otherwise (tui/__init__.py):
at Textual's default of 60 a typed key waited up to 1/60 s for its frame. Real interpreters,
each importing the command line as `notewell` does, then asked what rate Textual took."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ASK = "import tui.cli; import textual.constants as c; print(c.MAX_FPS)"


def _rate(**env: str) -> int:
    environment = {k: v for k, v in os.environ.items() if k != "TEXTUAL_FPS"} | env
    run = subprocess.run([sys.executable, "-c", ASK], capture_output=True, text=True, cwd=REPO,
                         env=environment, timeout=120)
    assert run.returncode == 0, run.stderr[-400:]
    return int(run.stdout.strip())


def test_the_command_line_asks_textual_for_120_frames_a_second():
    assert _rate() == 120


def test_a_rate_set_in_the_environment_is_kept():
    assert _rate(TEXTUAL_FPS="30") == 30
