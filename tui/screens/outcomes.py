"""A client's PHQ-9 and GAD-7 scores over time, in a dialog over the main screen; the PCL-5 in
a second panel below when the client has PCL-5 scores (its 0-80 scale is not theirs)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Label, Static

from tui.printable import printable
from tui.screens.base import NotewellModal
from tui.widgets.outcome_plot import PTSD_PANEL, OutcomePlot


class OutcomesDialog(NotewellModal[None]):
    BINDINGS = [Binding("escape,o", "close", "Close", id="outcomes.close")]

    def __init__(self, client_id: str, client_name: str) -> None:
        super().__init__(classes="dialog")
        self._client_id = client_id
        self._client_name = client_name

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box wide"):
            yield Label(printable(f"Outcome measures: {self._client_name}"), classes="dialog-title", markup=False)
            yield OutcomePlot(id="outcome-plot")
            ptsd = OutcomePlot(id="outcome-plot-pcl5", panel=PTSD_PANEL)
            ptsd.display = False
            yield ptsd
            yield Static("Scores from every note, drafts included. Esc closes.", classes="hint")

    def on_mount(self) -> None:
        self.run_store(self._load, group="outcomes", exclusive=True)

    async def _load(self) -> None:
        from store.outcomes import client_outcomes

        client_id = self._client_id
        outcomes = await self.app.store.call(lambda v: client_outcomes(v.record, client_id))
        self.query_one("#outcome-plot", OutcomePlot).set_outcomes(outcomes)
        ptsd = self.query_one("#outcome-plot-pcl5", OutcomePlot)
        ptsd.set_outcomes(outcomes)
        ptsd.display = bool(outcomes.pcl5.points)

    def action_close(self) -> None:
        self.dismiss(None)
