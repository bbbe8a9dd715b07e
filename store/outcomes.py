"""Outcome measures across a client's sessions: PHQ-9, GAD-7 and PCL-5 series with severity bands.

Scores come from the notes' session facts. A note entered in error contributes nothing (its
scores are not part of the record); drafts are included unless the caller leaves them out
(the export leaves them out unless drafts are exported too).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from store.models import NoteStatus, ProgressNote


@dataclass(frozen=True)
class Band:
    low: int
    high: int
    label: str


@dataclass(frozen=True)
class Measure:
    key: str  # the SessionFacts field
    name: str
    maximum: int
    bands: tuple[Band, ...]

    def band(self, score: int) -> Band:
        for band in self.bands:
            if band.low <= score <= band.high:
                return band
        raise ValueError(f"{self.name} score out of range 0-{self.maximum}")

    @property
    def thresholds(self) -> list[int]:
        """Lower bounds of every band above the first: where the plot draws a line."""
        return [b.low for b in self.bands[1:]]


PHQ9 = Measure(
    "phq9",
    "PHQ-9",
    27,
    (
        Band(0, 4, "minimal"),
        Band(5, 9, "mild"),
        Band(10, 14, "moderate"),
        Band(15, 19, "moderately severe"),
        Band(20, 27, "severe"),
    ),
)
GAD7 = Measure(
    "gad7",
    "GAD-7",
    21,
    (
        Band(0, 4, "minimal"),
        Band(5, 9, "mild"),
        Band(10, 14, "moderate"),
        Band(15, 21, "severe"),
    ),
)
# PCL-5 (PTSD Checklist for DSM-5, 20 items scored 0-4): the National Center for PTSD gives
# 31-33 as the range of cut-offs for probable PTSD; Notewell bands at 33, the score most used.
# A change of 10 points is clinically meaningful (5 is the least a response counts).
PCL5 = Measure(
    "pcl5",
    "PCL-5",
    80,
    (
        Band(0, 32, "below the cut-off"),
        Band(33, 80, "probable PTSD"),
    ),
)
MEASURES = (PHQ9, GAD7, PCL5)


def severity(measure: Measure, score: int) -> str:
    return measure.band(score).label


@dataclass(frozen=True)
class OutcomePoint:
    on: date
    score: int
    band: str
    note_id: str
    draft: bool = False


@dataclass(frozen=True)
class OutcomeSeries:
    measure: Measure
    points: tuple[OutcomePoint, ...]

    @property
    def latest(self) -> OutcomePoint | None:
        return self.points[-1] if self.points else None

    @property
    def change(self) -> int | None:
        """Latest minus first score; negative is improvement on both measures."""
        if len(self.points) < 2:
            return None
        return self.points[-1].score - self.points[0].score


_NO_SERIES = OutcomeSeries(PCL5, ())


@dataclass(frozen=True)
class Outcomes:
    phq9: OutcomeSeries
    gad7: OutcomeSeries
    pcl5: OutcomeSeries = _NO_SERIES

    @property
    def series(self) -> tuple[OutcomeSeries, ...]:
        """Every measure's series, in MEASURES order."""
        return (self.phq9, self.gad7, self.pcl5)

    @property
    def empty(self) -> bool:
        return not any(s.points for s in self.series)

    def measure_table(self) -> list[tuple[date, dict[str, OutcomePoint]]]:
        """Rows (date, measure key -> point), oldest first, one per note with any score:
        the table of every measure (the export's)."""
        by_note: dict[str, tuple[date, dict[str, OutcomePoint]]] = {}
        for series in self.series:
            for p in series.points:
                by_note.setdefault(p.note_id, (p.on, {}))[1][series.measure.key] = p
        return [row for _, row in sorted(by_note.items(), key=lambda kv: (kv[1][0], kv[0]))]

    def table(self) -> list[tuple[date, int | None, str, int | None, str]]:
        """Rows (date, PHQ-9, its band, GAD-7, its band), oldest first, one per note."""
        by_note: dict[str, dict] = {}
        for series in (self.phq9, self.gad7):
            for p in series.points:
                row = by_note.setdefault(p.note_id, {"on": p.on})
                row[series.measure.key] = p
        rows = []
        for note_id, row in sorted(by_note.items(), key=lambda kv: (kv[1]["on"], kv[0])):
            phq, gad = row.get("phq9"), row.get("gad7")
            rows.append(
                (
                    row["on"],
                    phq.score if phq else None,
                    phq.band if phq else "",
                    gad.score if gad else None,
                    gad.band if gad else "",
                )
            )
        return rows


def _fields(item) -> tuple[str, date, str, int | None, int | None, int | None]:
    """(note id, date, status, phq9, gad7, pcl5) of a ProgressNote or a notes_view row."""
    if isinstance(item, ProgressNote):
        f = item.facts
        return item.id, f.date_of_service, item.status.value, f.phq9, f.gad7, f.pcl5
    get = item.get if isinstance(item, dict) else lambda k, d=None: getattr(item, k, d)
    on = get("date_of_service")
    if isinstance(on, str):
        on = date.fromisoformat(on)
    status = get("status")
    status = getattr(status, "value", status)
    note_id = get("note_id") or get("id")
    return str(note_id), on, str(status), get("phq9"), get("gad7"), get("pcl5")


def outcomes_from(items, *, include_drafts: bool = True) -> Outcomes:
    """Series from ProgressNotes or notes_view rows (NoteRow or dict), in date order."""
    points: dict[str, list[OutcomePoint]] = {m.key: [] for m in MEASURES}
    for item in items:
        note_id, on, status, phq9, gad7, pcl5 = _fields(item)
        if status == NoteStatus.ENTERED_IN_ERROR.value:
            continue
        draft = status == NoteStatus.DRAFT.value
        if draft and not include_drafts:
            continue
        for measure, score in ((PHQ9, phq9), (GAD7, gad7), (PCL5, pcl5)):
            if score is None:
                continue
            points[measure.key].append(OutcomePoint(on, int(score), severity(measure, int(score)), note_id, draft))
    return Outcomes(
        phq9=OutcomeSeries(PHQ9, tuple(sorted(points["phq9"], key=lambda p: (p.on, p.note_id)))),
        gad7=OutcomeSeries(GAD7, tuple(sorted(points["gad7"], key=lambda p: (p.on, p.note_id)))),
        pcl5=OutcomeSeries(PCL5, tuple(sorted(points["pcl5"], key=lambda p: (p.on, p.note_id)))),
    )


def client_outcomes(record, client_id: str, *, include_drafts: bool = True) -> Outcomes:
    """The client's series from the notes_view projection (no document is loaded)."""
    return outcomes_from(record.notes_for_client(client_id), include_drafts=include_drafts)
