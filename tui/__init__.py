"""The terminal app (Textual) and the `notewell` command line.

Textual repaints a screen at most TEXTUAL_FPS times a second, read once when textual is first
imported: a typed key waits for the next frame, up to 1/60 s at its default of 60, which was
most of the slowest keystrokes' time (bench/README.md, "Keystrokes: the frame rate"). The app
asks for 120 unless the environment says otherwise; a screen that has not changed is not
repainted, so an idle app costs nothing more.
"""

import os

os.environ.setdefault("TEXTUAL_FPS", "120")
