"""Waiting on conditions in Pilot tests: a predicate polled with a timeout, never a sleep-as-assert."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import monotonic


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
