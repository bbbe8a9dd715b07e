"""Who is discharged: read from the record's own notes, so it syncs and merges with them.

A client is discharged when a signed discharge summary stands with no intake assessment
dated on or after it (a draft intake counts: starting a new intake is what brings a client
back). Notes entered in error count for nothing. The client's record is kept whole; the
active client list leaves discharged clients out, and a list of them is a filter away
(docs/record-beyond-session-notes.md).

Derived rather than stored as a flag: two devices that each wrote part of the story (one
signed the discharge, the other started a new intake) agree once their notes have merged,
and no flag can disagree with the notes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from store.models import NoteFormat, NoteStatus
from store.overdue import _as_date, _get  # a notes_view row read as the overdue queue reads one


def _value(v) -> str:
    return str(getattr(v, "value", v))


# Signature states (store/signature_state.py) in which a note was signed by a trusted key:
# "conflict" is a genuine signature on content edited since; "legacy" an earlier form.
_ATTESTED = frozenset({"verified", "conflict", "legacy"})


def attested(row) -> bool:
    """Whether a row is of a signed note whose signature stands. A status of "signed" is
    only the document's claim, which another device could write without a key: rows read
    with `RecordStore.verify_rows` carry the verified state, and only those states count
    (a state still pending counts once it has been computed)."""
    if _value(_get(row, "status")) != NoteStatus.SIGNED.value:
        return False
    verified = _get(row, "signature_status")
    return not verified or verified in _ATTESTED


def discharged_on(rows: Iterable) -> dict[str, date]:
    """client id -> the date of the discharge that stands, from notes_view rows (NoteRow or
    dict) of intake and discharge notes (other rows are ignored). Rows from the store come
    verified (`RecordStore.record_note_rows`); a discharge counts only if `attested`."""
    latest_discharge: dict[str, date] = {}
    latest_intake: dict[str, date] = {}
    for row in rows:
        status = _value(_get(row, "status"))
        fmt = _value(_get(row, "format"))
        on = _as_date(_get(row, "date_of_service"))
        client_id = _get(row, "client_id")
        if status == NoteStatus.ENTERED_IN_ERROR.value:
            continue
        if fmt == NoteFormat.DISCHARGE.value and attested(row):
            latest_discharge[client_id] = max(on, latest_discharge.get(client_id, on))
        elif fmt == NoteFormat.INTAKE.value:
            latest_intake[client_id] = max(on, latest_intake.get(client_id, on))
    return {
        client_id: on
        for client_id, on in latest_discharge.items()
        if client_id not in latest_intake or latest_intake[client_id] < on
    }
