"""Counting the Python calls a piece of work makes: the measure of cost the encoding tests
hold, since a count does not move with the machine's load the way a time does."""

from __future__ import annotations

import sys
from collections.abc import Callable


def python_calls(work: Callable[[], object], *, in_file: str | None = None, builtins: bool = False) -> int:
    """Calls made while `work` runs: Python functions (only those defined in `in_file`, when
    given), and calls of builtins too when `builtins`."""
    events = ("call", "c_call") if builtins else ("call",)
    count = 0

    def count_calls(frame, event, _arg) -> None:
        nonlocal count
        if event in events and (in_file is None or frame.f_code.co_filename == in_file):
            count += 1

    sys.setprofile(count_calls)
    try:
        work()
    finally:
        sys.setprofile(None)
    return count
