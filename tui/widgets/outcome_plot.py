"""A client's PHQ-9 and GAD-7 scores over time, with the severity bands as horizontal lines;
or, as a second panel (`OutcomePlot(panel=PTSD_PANEL)`), the PCL-5 on its own 0-80 scale with
its cut-off line. Each measure has its own point marker (● PHQ-9, ▲ GAD-7, ■ PCL-5) named in
the legend, so the series are told apart without colour.

Give it an `Outcomes` (store/outcomes.py) in the constructor or later with `set_outcomes`.
The x axis is days since the first score, labelled with dates, so uneven gaps between
sessions show as uneven gaps. The band lines are at 5, 10, 15 (both measures) and 20
(PHQ-9 only); the y axis names the bands ("15 mod-sev/sev": PHQ-9 moderately severe,
GAD-7 severe).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from textual_plotext import PlotextPlot

from store.outcomes import GAD7, PCL5, PHQ9, Measure, Outcomes

PHQ9_COLOR = "cyan"
GAD7_COLOR = "orange"
PHQ9_MARKER = "●"
GAD7_MARKER = "▲"
BAND_COLOR = "gray"
Y_TICKS = [
    (0, "0"),
    (5, "5 mild"),
    (10, "10 moderate"),
    (15, "15 mod-sev/sev"),  # PHQ-9 moderately severe, GAD-7 severe
    (20, "20 severe"),
    (27, "27"),
]


Y_LABEL_WIDTH = max(len(label) for _, label in Y_TICKS) + 3
PCL5_COLOR = "magenta"
PCL5_MARKER = "■"
PCL5_TICKS = [(0, "0"), (33, "33 probable PTSD"), (80, "80")]


@dataclass(frozen=True)
class Panel:
    """The measures one plot shows on one scale: (measure, colour, marker) each."""

    series: tuple[tuple[Measure, str, str], ...]
    maximum: int
    ticks: tuple[tuple[int, str], ...]
    title: str
    empty: str


SYMPTOMS_PANEL = Panel(
    ((PHQ9, PHQ9_COLOR, PHQ9_MARKER), (GAD7, GAD7_COLOR, GAD7_MARKER)),
    PHQ9.maximum, tuple(Y_TICKS), "PHQ-9 and GAD-7", "No PHQ-9 or GAD-7 scores recorded",
)
PTSD_PANEL = Panel(((PCL5, PCL5_COLOR, PCL5_MARKER),), PCL5.maximum, tuple(PCL5_TICKS), "PCL-5", "No PCL-5 scores recorded")


def spaced_ticks(days: list[int], first: date, width: int, label_width: int = Y_LABEL_WIDTH) -> tuple[list[int], list[str]]:
    """Date ticks at the data's days, never closer than a label's width on screen.

    Overlapping labels would be left to plotext to shuffle, and its choice is not stable.
    """
    if not days:
        return [], []
    label_len = len(first.isoformat())
    lo, hi = -1, max(days[-1], 1) + 1
    columns = max(width - label_width, 10)

    def column(day: int) -> float:
        return (day - lo) / (hi - lo) * columns

    chosen: list[int] = []
    for day in days:
        if not chosen or column(day) - column(chosen[-1]) >= label_len + 2:
            chosen.append(day)
        elif day == days[-1]:
            # The latest session matters more than the one just before it.
            chosen[-1] = day if len(chosen) > 1 else chosen[-1]
    labels = [date.fromordinal(first.toordinal() + d).isoformat() for d in chosen]
    return chosen, labels


class OutcomePlot(PlotextPlot):
    """One panel of a client's measures (PHQ-9 and GAD-7 by default)."""

    DEFAULT_CSS = """
    OutcomePlot {
        height: 16;
        min-height: 10;
    }
    """

    def __init__(
        self,
        outcomes: Outcomes | None = None,
        *,
        name: str | None = None,
        id: str | None = None,  # noqa: A002 - Textual's own parameter name
        classes: str | None = None,
        panel: Panel = SYMPTOMS_PANEL,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.panel = panel
        self._outcomes = outcomes
        self._days: list[int] = []
        self._first: date | None = None

    @property
    def outcomes(self) -> Outcomes | None:
        return self._outcomes

    def on_mount(self) -> None:
        super().on_mount()
        self.replot()

    def set_outcomes(self, outcomes: Outcomes | None) -> None:
        self._outcomes = outcomes
        self.replot()

    def replot(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        outcomes = self._outcomes
        panel = self.panel
        plt.ylim(0, panel.maximum)
        plt.yticks([y for y, _ in panel.ticks], [label for _, label in panel.ticks])
        self._days, self._first = [], None
        shown = [] if outcomes is None else [(outcomes_series(outcomes, m), c, mk) for m, c, mk in panel.series]
        points = [p for series, _, _ in shown for p in series.points]
        if not points:
            plt.title(panel.empty)
            plt.xticks([], [])
            self.refresh()
            return
        first = min(p.on for p in points)
        last_day = max(p.on for p in points).toordinal() - first.toordinal()
        plt.xlim(-1, max(last_day, 1) + 1)
        for threshold in sorted({t for m, _, _ in panel.series for t in m.thresholds}):
            plt.hline(threshold, BAND_COLOR)
        # Each series has its own point marker, named in the legend: told apart without colour.
        for series, color, marker in shown:
            if not series.points:
                continue
            xs = [p.on.toordinal() - first.toordinal() for p in series.points]
            ys = [p.score for p in series.points]
            label = f"{series.measure.name} (latest {series.points[-1].score}, {series.points[-1].band})"
            plt.plot(xs, ys, color=color, marker="braille")
            plt.scatter(xs, ys, label=label, color=color, marker=marker)
        self._days = sorted({p.on.toordinal() - first.toordinal() for p in points})
        self._first = first
        plt.title(panel.title)
        self.refresh()

    def render(self):
        # Ticks depend on the width, known only now.
        if self._days and self._first is not None:
            label_width = max(len(label) for _, label in self.panel.ticks) + 3
            self.plt.xticks(*spaced_ticks(self._days, self._first, self.size.width, label_width))
        return super().render()


def outcomes_series(outcomes: Outcomes, measure: Measure):
    return {s.measure.key: s for s in outcomes.series}[measure.key]
