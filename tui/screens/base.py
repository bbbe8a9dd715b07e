"""What every Notewell screen shares: store work in workers, failures reported in one place."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Generic, TypeVar

from textual.screen import ModalScreen, Screen
from textual.worker import Worker, WorkerState


class StoreWorkMixin:
    """Runs store calls as Textual workers; a failed worker becomes a message on screen.

    Worker.StateChanged does not bubble, so each screen forwards failures to the app's single
    `report_error`, which turns a NotewellError into its title and sentence and anything else
    into a plain apology: never a traceback.
    """

    def run_store(
        self,
        work: Callable[..., Awaitable] | Awaitable,
        *args: object,
        group: str = "store",
        exclusive: bool = False,
    ) -> Worker:
        """Run `work(*args)` (an async function) or an awaitable as a worker.

        Prefer the function form: an exclusive worker replaced before it starts then never
        leaves an un-awaited coroutine behind.
        """
        if not inspect.isawaitable(work):
            work = partial(work, *args)
        return self.run_worker(work, group=group, exclusive=exclusive, exit_on_error=False)  # type: ignore[attr-defined]

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.app.report_error(event.worker.error)  # type: ignore[attr-defined]


ResultType = TypeVar("ResultType")


class NotewellScreen(StoreWorkMixin, Screen[ResultType], Generic[ResultType]):
    pass


class NotewellModal(StoreWorkMixin, ModalScreen[ResultType], Generic[ResultType]):
    # Every dialog centred over a dimmed view of the screen below (app.tcss `.dialog`), even
    # one whose constructor names no classes.
    DEFAULT_CLASSES = "dialog"


class EditorScreen(NotewellScreen[None]):
    """An autosaving editor: it closes only once what was typed is saved.

    Subclasses provide `flush() -> bool` (save anything pending; False if it could not be
    saved) and `UNSAVED_MESSAGE`, shown when the editor must stay open.
    """

    UNSAVED_MESSAGE = "The text could not be saved yet, so it stays open."

    async def flush(self) -> bool:
        raise NotImplementedError

    def action_close(self) -> None:
        self.run_store(self._close, group="editor-close", exclusive=True)

    async def _close(self) -> None:
        if await self.flush():
            self.dismiss(None)
        else:
            self.notify(self.UNSAVED_MESSAGE, severity="error")
