"""A client's PHQ-9 and GAD-7 scores over time, with the severity bands as horizontal lines.

Give it an `Outcomes` (store/outcomes.py) in the constructor or later with `set_outcomes`.
The x axis is days since the first score, labelled with dates, so uneven gaps between
sessions show as uneven gaps. The band lines are at 5, 10, 15 (both measures) and 20
(PHQ-9 only); the y axis names the bands ("15 mod-sev/sev": PHQ-9 moderately severe,
GAD-7 severe).
"""

from __future__ import annotations

from datetime import date

from textual_plotext import PlotextPlot

from store.outcomes import GAD7, PHQ9, Outcomes

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


def spaced_ticks(days: list[int], first: date, width: int) -> tuple[list[int], list[str]]:
    """Date ticks at the data's days, never closer than a label's width on screen.

    Overlapping labels would be left to plotext to shuffle, and its choice is not stable.
    """
    if not days:
        return [], []
    label_len = len(first.isoformat())
    lo, hi = -1, max(days[-1], 1) + 1
    columns = max(width - Y_LABEL_WIDTH, 10)

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
    """PHQ-9 and GAD-7 series for one client."""

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
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
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
        plt.ylim(0, PHQ9.maximum)
        plt.yticks([y for y, _ in Y_TICKS], [label for _, label in Y_TICKS])
        self._days, self._first = [], None
        if outcomes is None or outcomes.empty:
            plt.title("No PHQ-9 or GAD-7 scores recorded")
            plt.xticks([], [])
            self.refresh()
            return
        points = [p for s in (outcomes.phq9, outcomes.gad7) for p in s.points]
        first = min(p.on for p in points)
        last_day = max(p.on for p in points).toordinal() - first.toordinal()
        plt.xlim(-1, max(last_day, 1) + 1)
        for threshold in sorted(set(PHQ9.thresholds) | set(GAD7.thresholds)):
            plt.hline(threshold, BAND_COLOR)
        # Each series has its own point marker, named in the legend: told apart without colour.
        for series, color, marker in ((outcomes.phq9, PHQ9_COLOR, PHQ9_MARKER), (outcomes.gad7, GAD7_COLOR, GAD7_MARKER)):
            if not series.points:
                continue
            xs = [p.on.toordinal() - first.toordinal() for p in series.points]
            ys = [p.score for p in series.points]
            label = f"{series.measure.name} (latest {series.points[-1].score}, {series.points[-1].band})"
            plt.plot(xs, ys, color=color, marker="braille")
            plt.scatter(xs, ys, label=label, color=color, marker=marker)
        self._days = sorted({p.on.toordinal() - first.toordinal() for p in points})
        self._first = first
        plt.title("PHQ-9 and GAD-7")
        self.refresh()

    def render(self):
        # Ticks depend on the width, known only now.
        if self._days and self._first is not None:
            self.plt.xticks(*spaced_ticks(self._days, self._first, self.size.width))
        return super().render()
