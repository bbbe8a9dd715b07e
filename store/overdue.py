"""The overdue queue: sessions whose progress note is unsigned or missing past a threshold.

Payers expect a note within 24-72 hours of the session. An item is listed once it is at least
the first threshold old, in the band of the highest threshold it has passed.

What counts as a session:
- a draft progress note: its session ended at date_of_service + stop_time (local wall-clock
  time, as the note records it); without a stop time, at the end of that day;
- a day with a process note for a client but no progress note for that client on that day
  (a session was evidently held but not documented): it ended at the end of that day. The
  caller passes these (client_id, date) pairs in, because this module must not read
  private.db; the app gets them from the private store.
Signed notes and notes entered in error are never overdue; an entered-in-error note does not
document a session, so a process-note day with only such a note is still "missing".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from store.models import NoteStatus

DEFAULT_THRESHOLDS = (24, 48, 72)


@dataclass(frozen=True)
class OverdueItem:
    client_id: str
    client_name: str
    date_of_service: date
    note_id: str | None  # None: no progress note exists for the session
    hours_overdue: int  # whole hours since the session ended
    band: int  # the highest threshold passed, in hours

    @property
    def missing(self) -> bool:
        return self.note_id is None


def _local_naive(now: datetime) -> datetime:
    # Session times are local wall-clock times; compare like with like.
    return now.astimezone().replace(tzinfo=None) if now.tzinfo else now


def _as_date(value) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def _as_time(value) -> time | None:
    if value is None or value == "":
        return None
    return time.fromisoformat(value) if isinstance(value, str) else value


def session_end(on: date, stop: time | None) -> datetime:
    """When a session ended (naive local time): its stop time, else the end of its day.

    Any stored date is handled: the end of the last day Python can hold is datetime.max
    rather than an overflow (an old vault may hold 9999-12-31)."""
    if stop is not None:
        return datetime.combine(on, stop)
    try:
        return datetime.combine(on, time()) + timedelta(days=1)
    except OverflowError:
        return datetime.max


def check_thresholds(thresholds: Iterable[int]) -> tuple[int, ...]:
    values = tuple(sorted({int(t) for t in thresholds}))
    if not values or values[0] <= 0:
        raise ValueError("overdue thresholds must be positive hours")
    return values


def band_for(age: timedelta, thresholds: tuple[int, ...]) -> int | None:
    passed = [t for t in thresholds if age >= timedelta(hours=t)]
    return passed[-1] if passed else None


def _get(row, name):
    return row.get(name) if isinstance(row, dict) else getattr(row, name, None)


def overdue_from_rows(
    note_rows: Iterable,
    client_names: dict[str, str],
    now: datetime,
    *,
    thresholds: Iterable[int] = DEFAULT_THRESHOLDS,
    extra_session_dates: Iterable[tuple[str, date]] = (),
) -> list[OverdueItem]:
    """The queue from notes_view rows (objects or dicts), most overdue first."""
    limits = check_thresholds(thresholds)
    now = _local_naive(now)
    items: list[OverdueItem] = []
    documented: set[tuple[str, date]] = set()

    def add(client_id: str, on: date, note_id: str | None, ended: datetime) -> None:
        age = now - ended  # never overflows: both lie between datetime.min and datetime.max
        band = band_for(age, limits)
        if band is not None:
            hours = int(age.total_seconds() // 3600)
            items.append(OverdueItem(client_id, client_names.get(client_id, client_id), on, note_id, hours, band))

    for row in note_rows:
        status = _get(row, "status")
        status = getattr(status, "value", status)
        client_id = _get(row, "client_id")
        on = _as_date(_get(row, "date_of_service"))
        if status == NoteStatus.ENTERED_IN_ERROR.value:
            continue
        documented.add((client_id, on))
        if status == NoteStatus.DRAFT.value:
            note_id = _get(row, "note_id") or _get(row, "id")
            add(client_id, on, note_id, session_end(on, _as_time(_get(row, "stop_time"))))

    for client_id, on in sorted(set((c, _as_date(d)) for c, d in extra_session_dates)):
        if (client_id, on) not in documented:
            add(client_id, on, None, session_end(on, None))

    items.sort(key=lambda i: (-i.hours_overdue, i.client_name, i.date_of_service, i.note_id or ""))
    return items


def counts(items: Iterable[OverdueItem], thresholds: Iterable[int] = DEFAULT_THRESHOLDS) -> dict[int, int]:
    """Items per band, every band present (0 when empty), lowest threshold first."""
    result = {t: 0 for t in check_thresholds(thresholds)}
    for item in items:
        result[item.band] = result.get(item.band, 0) + 1
    return result


def overdue(
    record,
    now: datetime,
    thresholds: Iterable[int] = DEFAULT_THRESHOLDS,
    extra_session_dates: Iterable[tuple[str, date]] = (),
) -> list[OverdueItem]:
    """The queue for every client of `record` (a RecordStore), from its notes_view projection:
    its drafts, and the days in `extra_session_dates` with no progress note. Only those rows
    are read (a career's signed notes are never built into rows for a count)."""
    names = {c.client_id: c.display_name for c in record.list_clients()}
    days = sorted({(c, _as_date(d)) for c, d in extra_session_dates})
    documented = record.documented_session_days(days)
    return overdue_from_rows(
        record.list_notes(NoteStatus.DRAFT), names, now, thresholds=thresholds,
        extra_session_dates=[day for day in days if day not in documented],
    )
