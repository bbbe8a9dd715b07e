"""Keys applied in the order they were typed, each where the keys before it left the focus.

Textual routes each key, as it arrives, to the widget focused at that moment; the key only
acts (moves the focus with Tab, opens a screen with "/") once that widget, and the app for
a binding of its own, reach it in their queues. A burst of keys (a fast typist, a text
expander, a paste-speed `send-keys`) is therefore routed before the keys ahead of it have
acted: in the setup form every key after a Tab went into the first field, and after "/" the
search words went to the main screen's list (and its one-letter keys), not the search box.

`KeyOrder` holds the keys the app receives and routes them one at a time: before each, every
widget the previous keys pass through (the focused one, its ancestors, a screen just put up,
and the app itself) has handled what was queued before it. Each wait is bounded, so a widget
busy for long delays a key, never swallows it or stops the app.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

STEP_WAIT = 0.5  # seconds one widget may take to reach the key; a bound, not a pace
ROUNDS = 4  # a key may open a screen that focuses a widget: a few settle rounds


async def _drained(node) -> bool:
    """True once `node` has handled everything queued before this call (False: gave up)."""
    done = asyncio.get_running_loop().create_future()

    def reached() -> None:
        if not done.done():
            done.set_result(None)

    node.call_later(reached)
    try:
        await asyncio.wait_for(asyncio.shield(done), STEP_WAIT)
    except (asyncio.TimeoutError, TimeoutError):
        return False
    return True


def _route(app) -> list:
    """The path a key takes, bubbling outwards: the focused widget (or the screen), its
    ancestors, and the app, whose own bindings (Tab) act last."""
    path = []
    node = app.focused or app.screen
    while node is not None:
        path.append(node)
        node = node.parent
    return path


async def settle(app) -> None:
    for _ in range(ROUNDS):
        where = (app.screen, app.focused)
        for node in _route(app):
            if not await _drained(node):
                return
        if (app.screen, app.focused) == where:
            return


class KeyOrder:
    """The app's typed keys, routed in order by one task outside the app's own queue (the app
    must stay free to act on the keys before them while the next one waits)."""

    def __init__(self, app, route: Callable[[object], Awaitable[None]]) -> None:
        self._app, self._route = app, route
        self._waiting: deque = deque()
        self._task: asyncio.Task | None = None

    def add(self, event) -> None:
        self._waiting.append(event)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        while self._waiting:
            await settle(self._app)
            await self._route(self._waiting.popleft())
