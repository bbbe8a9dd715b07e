"""Outcome trends: severity bands at their edges, and the plot as a person sees it."""

from __future__ import annotations

from datetime import date

import pytest
from textual.app import App, ComposeResult

from store.outcomes import GAD7, PHQ9, outcomes_from, severity
from tui.widgets.outcome_plot import OutcomePlot

ROWS = [
    {"note_id": f"n{i}", "date_of_service": on, "status": status, "phq9": phq, "gad7": gad}
    for i, (on, status, phq, gad) in enumerate(
        [
            (date(2026, 1, 5), "signed", 18, 14),
            (date(2026, 1, 12), "signed", 15, 12),
            (date(2026, 1, 26), "signed", 12, 9),
            (date(2026, 2, 9), "signed", 9, None),
            (date(2026, 2, 16), "entered_in_error", 27, 21),
            (date(2026, 3, 2), "draft", 6, 4),
        ]
    )
]


@pytest.mark.parametrize(
    "measure,score,band",
    [
        (PHQ9, 0, "minimal"), (PHQ9, 4, "minimal"), (PHQ9, 5, "mild"), (PHQ9, 9, "mild"),
        (PHQ9, 10, "moderate"), (PHQ9, 14, "moderate"), (PHQ9, 15, "moderately severe"),
        (PHQ9, 19, "moderately severe"), (PHQ9, 20, "severe"), (PHQ9, 27, "severe"),
        (GAD7, 4, "minimal"), (GAD7, 5, "mild"), (GAD7, 10, "moderate"), (GAD7, 14, "moderate"),
        (GAD7, 15, "severe"), (GAD7, 21, "severe"),
    ],
)
def test_severity_bands_at_their_edges(measure, score, band):
    assert severity(measure, score) == band


@pytest.mark.parametrize("measure,score", [(PHQ9, 28), (PHQ9, -1), (GAD7, 22)])
def test_scores_out_of_range_are_refused(measure, score):
    with pytest.raises(ValueError):
        severity(measure, score)


def test_series_skip_entered_in_error_and_optionally_drafts():
    with_drafts = outcomes_from(ROWS)
    assert [p.score for p in with_drafts.phq9.points] == [18, 15, 12, 9, 6]
    assert [p.score for p in with_drafts.gad7.points] == [14, 12, 9, 4]
    assert with_drafts.phq9.change == -12 and with_drafts.phq9.latest.draft
    signed = outcomes_from(ROWS, include_drafts=False)
    assert [p.score for p in signed.phq9.points] == [18, 15, 12, 9]
    assert signed.table()[-1] == (date(2026, 2, 9), 9, "mild", None, "")


class PlotApp(App[None]):
    def __init__(self, outcomes) -> None:
        super().__init__()
        self._outcomes = outcomes

    def compose(self) -> ComposeResult:
        yield OutcomePlot(self._outcomes)

    def on_mount(self) -> None:
        self.theme = "textual-dark"


def test_plot_renders(snap_compare):
    assert snap_compare(PlotApp(outcomes_from(ROWS)), terminal_size=(80, 20))


def test_plot_renders_empty(snap_compare):
    assert snap_compare(PlotApp(outcomes_from([])), terminal_size=(60, 12))


async def test_plot_draws_both_series_and_band_lines():
    app = PlotApp(outcomes_from(ROWS))
    async with app.run_test(size=(80, 20)) as pilot:
        await pilot.pause()
        text = app.query_one(OutcomePlot).render().plain
    assert "PHQ-9 (latest 6, mild)" in text and "GAD-7 (latest 4, minimal)" in text
    assert "10 moderate" in text and "20 severe" in text
    assert "2026-01-05" in text and "2026-03-02" in text
    band_rows = [line for line in text.splitlines() if line.count("─") >= 20 and "┤" in line]
    assert len(band_rows) == 4  # 5, 10, 15 and 20
