"""Treatment-plan reviews that are due: the To do list's plan rows.

A plan has a start date and a review interval (default 90 days; `Client.plan_start`,
`Client.review_interval_days`). A review is a signed note of the REVIEW format: progress
per goal and any change to the goals. The next review is due `interval` days after the last
signed review (or after the plan's start when there is none yet), on that day.

A review is listed from the start of the day it is due ("due", band 0), then in the same
bands as overdue progress notes (store/overdue.py: 24, 48 and 72 hours past due). Drafts do
not count as a review, nor do notes entered in error; discharged clients have no reviews due
(store/discharge.py). The day is the device's local day, as for sessions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from store.discharge import _value, attested, discharged_on
from store.models import NoteFormat
from store.overdue import DEFAULT_THRESHOLDS, _as_date, _get, _local_naive, band_for, check_thresholds

DUE = 0  # the band of a review due today, before any overdue band is passed


@dataclass(frozen=True)
class ReviewDue:
    client_id: str
    client_name: str
    due_on: date
    last_review: date | None  # None: no signed review yet (due from the plan's start)
    hours_overdue: int  # whole hours since the start of the due day
    band: int  # DUE, or the highest threshold passed, in hours


def next_review(plan_start: date | None, interval_days: int, last_review: date | None) -> date | None:
    """The day the next review is due, or None for a client without a plan start."""
    base = last_review or plan_start
    if base is None:
        return None
    try:
        return base + timedelta(days=interval_days)
    except OverflowError:  # an old vault's odd date: never due
        return None


def reviews_due(
    client_rows: Iterable, note_rows: Iterable, now: datetime, *, thresholds: Iterable[int] = DEFAULT_THRESHOLDS
) -> list[ReviewDue]:
    """Plans whose review is due at `now`, most overdue first. `client_rows`: ClientRow (or
    dicts) with plan_start and review_interval_days; `note_rows`: the intake, review and
    discharge rows (RecordStore.record_note_rows)."""
    limits = check_thresholds(thresholds)
    now = _local_naive(now)
    notes = list(note_rows)
    discharged = discharged_on(notes)
    last: dict[str, date] = {}
    for row in notes:
        fmt = _value(_get(row, "format"))
        if fmt == NoteFormat.REVIEW.value and attested(row):
            on = _as_date(_get(row, "date_of_service"))
            client_id = _get(row, "client_id")
            last[client_id] = max(on, last.get(client_id, on))
    items = []
    for client in client_rows:
        client_id = _get(client, "client_id")
        if client_id in discharged:
            continue
        start = _get(client, "plan_start")
        start = _as_date(start) if start else None
        due = next_review(start, int(_get(client, "review_interval_days") or 90), last.get(client_id))
        if due is None:
            continue
        age = now - datetime.combine(due, time())
        if age < timedelta(0):
            continue
        band = band_for(age, limits) or DUE
        items.append(
            ReviewDue(client_id, _get(client, "display_name"), due, last.get(client_id), int(age.total_seconds() // 3600), band)
        )
    items.sort(key=lambda i: (-i.hours_overdue, i.client_name, i.client_id))
    return items


def plan_reviews_due(record, now: datetime, thresholds: Iterable[int] = DEFAULT_THRESHOLDS) -> list[ReviewDue]:
    """The plan reviews due for every client of `record` (a RecordStore), from its projections."""
    return reviews_due(record.list_clients(), record.record_note_rows(), now, thresholds=thresholds)
