"""The client's rights as the record keeps them: the disclosure log and its accounting
(45 CFR 164.528), requests for access (164.524) and requests for amendment (164.526).

Each record is a document of its own (store/rights_documents.py) that syncs, merges,
exports and imports like a progress note; each event in it is signed by the device that
wrote it, and the events a clinician attests (an extension, a fulfilment, an acceptance,
a denial, a rebuttal) need the clinician's name and credentials as a note's signature does.
An accepted amendment is a signed addendum on each note it concerns (RecordStore.add_addendum).
Process notes are out of reach here: this module sees record.db only.

Deadlines count calendar days from the day the request was received: an access request is
due on day 30 (60 with its one extension), an amendment request on day 60 (90). The due day
itself is on time; the day after is overdue. An extension must be written on or before the
first due day (the rule asks for the written notice within the first period).

docs/client-rights.md explains each right to the clinician.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from store import documents as D
from store.audit import Event
from store.doc_ids import is_item_id
from store.errors import NotFound, SignerUnknown, ValidationFailed
from store.models import ClinicianSettings, new_id, to_problems
from store.rights_documents import (
    EXEMPT_BASES,
    KIND_RIGHTS,
    AccessOpened,
    Accepted,
    AmendmentOpened,
    Basis,
    Denied,
    DisclosureOpened,
    Extended,
    Fulfilled,
    Rebuttal,
    RightsKind,
    RightsRecord,
    Statement,
    new_rights_doc,
    payload,
    put_event,
    read_rights,
    verified_by,
)

ACCESS_DAYS = 30
AMENDMENT_DAYS = 60
EXTENSION_DAYS = 30
ACCOUNTING_YEARS = 6


def _invalid(problems: list[tuple[str, str]]) -> ValidationFailed:
    """One sentence for the clinician: the problems, and that nothing changed."""
    *rest, (field, reason) = problems
    return ValidationFailed([*rest, (field, reason.rstrip(".") + "; nothing was changed.")])


def _data(model: type, **fields: Any) -> Any:
    try:
        return model(**fields)
    except ValidationError as e:
        raise _invalid(to_problems(e)) from None


def first_due(record: RightsRecord) -> date | None:
    """The day a request is due without an extension; None for a disclosure."""
    opened = record.data("opened")
    if record.kind == RightsKind.ACCESS:
        return opened.received_on + timedelta(days=ACCESS_DAYS)
    if record.kind == RightsKind.AMENDMENT:
        return opened.received_on + timedelta(days=AMENDMENT_DAYS)
    return None


def due_on(record: RightsRecord) -> date | None:
    """The day a request is due: the first due day, plus the extension when there is one."""
    due = first_due(record)
    if due is not None and "extended" in record.events:
        due += timedelta(days=EXTENSION_DAYS)
    return due


def is_closed(record: RightsRecord) -> bool:
    """Acted on: an access request fulfilled, an amendment request accepted or denied."""
    if record.kind == RightsKind.ACCESS:
        return "fulfilled" in record.events
    if record.kind == RightsKind.AMENDMENT:
        return "accepted" in record.events or "denied" in record.events
    return True


@dataclass(frozen=True)
class DueRequest:
    """An open request for the To do list."""

    record_id: str
    client_id: str
    kind: RightsKind
    received_on: date
    due_on: date
    extended: bool
    days_left: int  # negative: overdue by that many days
    # Steps two devices recorded differently before they synced (RightsRecord.conflicts):
    # listed until the clinician has looked, even when the request was acted on.
    conflicts: tuple[str, ...] = ()

    @property
    def overdue(self) -> bool:
        return self.days_left < 0 and not self.conflicts

    def label(self) -> str:
        what = "access request" if self.kind == RightsKind.ACCESS else "amendment request"
        if self.conflicts:
            return f"{what}: recorded differently on two devices ({', '.join(self.conflicts)}); review it"
        if self.days_left < 0:
            when = f"OVERDUE by {-self.days_left} day{'s' if self.days_left != -1 else ''}"
        elif self.days_left == 0:
            when = "due today"
        else:
            when = f"due in {self.days_left} day{'s' if self.days_left != 1 else ''}"
        return f"{what}, {when} ({self.due_on.isoformat()}{', extended' if self.extended else ''})"


def due_request(record: RightsRecord, today: date) -> DueRequest | None:
    """The To do list's item for a request: open, or recorded differently on two devices."""
    conflicts = tuple(record.conflicts())
    if record.kind == RightsKind.DISCLOSURE or (is_closed(record) and not conflicts):
        return None
    due = due_on(record)
    assert due is not None
    return DueRequest(record.id, record.client_id, record.kind, record.data("opened").received_on, due,
                      "extended" in record.events, (due - today).days, conflicts)


@dataclass(frozen=True)
class Accounting:
    """The accounting of disclosures for one client (164.528): the disclosures it lists,
    newest first, and how many of the period's were left out as exempt."""

    client_id: str
    as_of: date
    since: date
    listed: tuple[RightsRecord, ...]
    exempt: int


def accounting_start(as_of: date) -> date:
    """Six years before `as_of`, the same calendar day (29 February falls back to the 28th)."""
    try:
        return as_of.replace(year=as_of.year - ACCOUNTING_YEARS)
    except ValueError:
        return as_of.replace(year=as_of.year - ACCOUNTING_YEARS, day=28)


class ClientRights:
    """Rights records on a RecordStore's documents and transactions (RecordStore.rights)."""

    def __init__(self, conn, docs, transactions, *, now: Callable[[], datetime],
                 settings: Callable[[], ClinicianSettings], signing_key: Callable[[], tuple],
                 trust: Callable[[], Any], list_this_device: Callable[[], None], audit: Any,
                 record: Any) -> None:
        self._conn = conn
        self._docs = docs
        self._tx = transactions
        self._now = now
        self._settings = settings
        self._signing_key = signing_key
        self._trust = trust
        self._list_this_device = list_this_device
        self.audit = audit
        self._record = record

    # --- reading -----------------------------------------------------------------

    def get(self, record_id: str) -> RightsRecord:
        doc = self._docs.get(record_id) if self._docs.kind(record_id) == KIND_RIGHTS else None
        record = read_rights(doc, stored=True) if doc is not None else None
        if record is None:
            raise NotFound(f"There is no rights record {record_id}.")
        return record

    def all(self) -> list[RightsRecord]:
        ids = [r[0] for r in self._conn.execute(
            "SELECT doc_id FROM documents WHERE kind = ? ORDER BY doc_id", (KIND_RIGHTS,)).fetchall()]
        found = []
        for doc_id in ids:
            doc = self._docs.get(doc_id)
            record = read_rights(doc, stored=True) if doc is not None else None
            if record is not None:
                found.append(record)
        return found

    def for_client(self, client_id: str, kind: RightsKind | None = None) -> list[RightsRecord]:
        """The client's records of `kind` (all kinds if None), oldest first."""
        return sorted(
            (r for r in self.all() if r.client_id == client_id and (kind is None or r.kind == kind)),
            key=lambda r: (_day(r), r.events["opened"].at, r.id),
        )

    def amendments_for_notes(self, note_ids: set[str]) -> list[RightsRecord]:
        """Amendment requests concerning any of `note_ids` (every later export of a note
        carries them), oldest first."""
        return sorted(
            (r for r in self.all() if r.kind == RightsKind.AMENDMENT and set(r.data("opened").note_ids) & note_ids),
            key=lambda r: (_day(r), r.id),
        )

    def verified(self, record: RightsRecord) -> dict[str, bool]:
        """For each event (those written concurrently elsewhere as "<step> #2", ...), whether
        its signature verifies by a device trusted here."""
        trust = self._trust()
        found = {name: verified_by(event, trust) for name, event in record.events.items()}
        for i, event in enumerate(record.concurrent, 2):
            found[f"{event.name} #{i}"] = verified_by(event, trust)
        return found

    def unverified(self, records: list[RightsRecord]) -> set[str]:
        """The ids of the records holding an event whose signature does not verify here:
        shown and exported marked as such, never as attested."""
        return {r.id for r in records if not all(self.verified(r).values())}

    def open_requests(self, today: date) -> list[DueRequest]:
        """Access and amendment requests not yet acted on, the most pressing first."""
        due = [d for r in self.all() if (d := due_request(r, today)) is not None]
        return sorted(due, key=lambda d: (d.days_left, d.received_on, d.record_id))

    def accounting(self, client_id: str, as_of: date) -> Accounting:
        """The disclosures of the six years before `as_of` (inclusive), less the exempt ones."""
        since = accounting_start(as_of)
        period = [r for r in self.for_client(client_id, RightsKind.DISCLOSURE)
                  if since <= r.data("opened").disclosed_on <= as_of]
        listed = [r for r in period if r.data("opened").basis not in EXEMPT_BASES]
        listed.sort(key=lambda r: (r.data("opened").disclosed_on, r.id), reverse=True)
        return Accounting(client_id, as_of, since, tuple(listed), len(period) - len(listed))

    # --- writing -----------------------------------------------------------------

    def record_disclosure(self, client_id: str, *, disclosed_on: date, recipient: str, purpose: str, what: str,
                          basis: Basis | str, address: str = "", via: str = "recorded",
                          sha256: str = "") -> RightsRecord:
        """A release of the client's record to someone, logged (an export logs its own)."""
        data = _data(DisclosureOpened, disclosed_on=disclosed_on, recipient=recipient.strip(), address=address.strip(),
                     purpose=purpose.strip(), what=what.strip(), basis=basis, via=via, sha256=sha256)
        self._not_after_today(disclosed_on, "disclosed_on")
        return self._open(client_id, RightsKind.DISCLOSURE, data)

    def open_access_request(self, client_id: str, *, received_on: date, requester: str, form_format: str,
                            recipient: str = "") -> RightsRecord:
        data = _data(AccessOpened, received_on=received_on, requester=requester.strip(),
                     form_format=form_format.strip(), recipient=recipient.strip())
        self._not_after_today(received_on, "received_on")
        return self._open(client_id, RightsKind.ACCESS, data)

    def open_amendment_request(self, client_id: str, *, received_on: date, requester: str, note_ids: list[str],
                               requested_change: str) -> RightsRecord:
        data = _data(AmendmentOpened, received_on=received_on, requester=requester.strip(),
                     note_ids=sorted(set(note_ids)), requested_change=requested_change.strip())
        self._not_after_today(received_on, "received_on")
        for note_id in data.note_ids:
            if self._docs.kind(note_id) != D.KIND_NOTE or self._record.get_note(note_id).client_id != client_id:
                raise _invalid([("notes", f"{note_id} is not a progress note of client {client_id}")])
        return self._open(client_id, RightsKind.AMENDMENT, data)

    def extend(self, record_id: str, reason: str, *, on: date | None = None) -> RightsRecord:
        """The one extension of a request (30 days), written within the first period."""
        record = self.open_request(record_id)
        on = on or self.today()
        if "extended" in record.events:
            raise _invalid([("extension", "this request has already had its one extension")])
        first = first_due(record)
        if on > first:
            raise _invalid([("extension", f"must be given by {first.isoformat()}, the first due day, "
                                     "and that day has passed")])
        self._not_before_receipt(record, on)
        return self._add(record, "extended", _data(Extended, on=on, reason=reason.strip()), attested=True)

    def fulfil_access(self, record_id: str, *, how: str, what: str, format: str, sent_to: str = "",
                      sha256: str = "", on: date | None = None) -> RightsRecord:
        record = self.open_request(record_id, RightsKind.ACCESS)
        on = on or self.today()
        self._not_before_receipt(record, on)
        data = _data(Fulfilled, on=on, how=how.strip(), what=what.strip(), format=format, sent_to=sent_to.strip(),
                     sha256=sha256)
        return self._add(record, "fulfilled", data, attested=True)

    def accept_amendment(self, record_id: str, amendment: str, *, on: date | None = None) -> RightsRecord:
        """Accepts the request: the amendment is appended to each note it concerns as a
        signed addendum, and the acceptance names each addendum."""
        record = self.open_request(record_id, RightsKind.AMENDMENT)
        on = on or self.today()
        self._not_before_receipt(record, on)
        text = amendment.strip()
        _data(Accepted, on=on, amendment=text)  # checked before any addendum is written
        with self._tx:
            addenda = {}
            for note_id in record.data("opened").note_ids:
                note = self._record.add_addendum(
                    note_id, text, f"Amendment accepted at the client's request (request {record.id})")
                addenda[note_id] = note.addenda[-1].id
            return self._add(record, "accepted", _data(Accepted, on=on, amendment=text, addenda=addenda),
                             attested=True)

    def deny_amendment(self, record_id: str, reason: str, *, on: date | None = None) -> RightsRecord:
        record = self.open_request(record_id, RightsKind.AMENDMENT)
        on = on or self.today()
        self._not_before_receipt(record, on)
        return self._add(record, "denied", _data(Denied, on=on, reason=reason.strip()), attested=True)

    def add_statement(self, record_id: str, text: str, *, on: date | None = None) -> RightsRecord:
        """The client's statement of disagreement with a denial, as the client wrote it."""
        record = self._denied(record_id, "statement")
        on = on or self.today()
        return self._add(record, "statement", _data(Statement, on=on, text=text.strip()), attested=False)

    def add_rebuttal(self, record_id: str, text: str, *, on: date | None = None) -> RightsRecord:
        """The clinician's rebuttal of the client's statement of disagreement."""
        record = self._denied(record_id, "rebuttal")
        if "statement" not in record.events:
            raise _invalid([("rebuttal", "answers the client's statement of disagreement, and there is none yet")])
        on = on or self.today()
        return self._add(record, "rebuttal", _data(Rebuttal, on=on, text=text.strip()), attested=True)

    def import_record(self, record: RightsRecord) -> RightsRecord:
        """A rights record from an import file, every event sealed here by this device's key,
        with the author, credentials and time the file states (as an imported note's
        signature is)."""
        if not is_item_id(record.id):
            raise _invalid([("id", "is not a record id")])
        me, key = self._signing_key()
        from store import signing

        envelopes = []
        # "opened" first: the document is made with it.
        for event in sorted([*record.events.values(), *record.concurrent], key=lambda e: e.name != "opened"):
            p = payload(None, record_id=record.id, client_id=record.client_id, kind=record.kind, event=event.name,
                        data=event.data, by=event.by, credentials=event.credentials, at=event.at,
                        device_id=me.device_id)
            envelopes.append((event.name, signing.seal(key, p)))
        with self._tx:
            if self._docs.exists(record.id):
                raise _invalid([("id", f"{record.id} already exists in the vault")])
            self._record.get_client(record.client_id)
            doc = new_rights_doc(record.id, record.client_id, record.kind, envelopes[0][1], self._docs.actor)
            for name, envelope in envelopes[1:]:
                put_event(doc, name, envelope)
            self._docs.insert(record.id, KIND_RIGHTS, doc)
            self._list_this_device()
            self._log(record.client_id, record.id, record.kind, "imported", None)
        return self.get(record.id)

    # --- helpers -----------------------------------------------------------------

    def today(self) -> date:
        """Today on this device's clock, in local time: the day requests are counted by."""
        return self._now().astimezone().date()

    def _not_after_today(self, on: date, field: str) -> None:
        if on > self.today():
            raise _invalid([(field, "is in the future")])

    def _not_before_receipt(self, record: RightsRecord, on: date) -> None:
        if on < record.data("opened").received_on:
            raise _invalid([("date", "is before the request was received")])
        self._not_after_today(on, "date")

    def open_request(self, record_id: str, kind: RightsKind | None = None) -> RightsRecord:
        record = self.get(record_id)
        if record.kind == RightsKind.DISCLOSURE or (kind is not None and record.kind != kind):
            what = "an access request" if kind == RightsKind.ACCESS else "an amendment request" if kind else "a request"
            raise _invalid([("request", f"{record_id} is not {what}")])
        if is_closed(record):
            raise _invalid([("request", f"{record_id} has already been acted on")])
        return record

    def _denied(self, record_id: str, event: str) -> RightsRecord:
        record = self.get(record_id)
        if record.kind != RightsKind.AMENDMENT or "denied" not in record.events:
            raise _invalid([(event, f"belongs to a denied amendment request, and {record_id} is not one")])
        if event in record.events:
            raise _invalid([(event, f"request {record_id} already has one")])
        return record

    def require_signer(self) -> None:
        """SignerUnknown unless the clinician's name and credentials are set (before an
        attested step that also writes something else, such as a fulfilment's export)."""
        self._signer(True)

    def _signer(self, attested: bool) -> tuple[str, str]:
        s = self._settings()
        if attested and (not s.clinician_name.strip() or not s.credentials.strip()):
            raise SignerUnknown()
        return s.clinician_name.strip(), s.credentials.strip()

    def _seal(self, record_id: str, client_id: str, kind: RightsKind, name: str, data: Any, attested: bool) -> str:
        from store import signing

        by, credentials = self._signer(attested)
        me, key = self._signing_key()
        p = payload(None, record_id=record_id, client_id=client_id, kind=kind, event=name, data=data, by=by,
                    credentials=credentials, at=self._now(), device_id=me.device_id)
        return signing.seal(key, p)

    def _open(self, client_id: str, kind: RightsKind, data: Any) -> RightsRecord:
        record_id = new_id()
        with self._tx:
            self._record.get_client(client_id)  # NotFound for an unknown client
            envelope = self._seal(record_id, client_id, kind, "opened", data, attested=False)
            doc = new_rights_doc(record_id, client_id, kind, envelope, self._docs.actor)
            self._docs.insert(record_id, KIND_RIGHTS, doc)
            self._list_this_device()  # other devices verify this device's signature by it
            self._log(client_id, record_id, kind, "opened", data)
        return self.get(record_id)

    def _add(self, record: RightsRecord, name: str, data: Any, *, attested: bool) -> RightsRecord:
        with self._tx:
            envelope = self._seal(record.id, record.client_id, record.kind, name, data, attested)
            doc = self._docs.get(record.id)
            put_event(doc, name, envelope)
            self._docs.save_changes(record.id)
            self._list_this_device()
            self._log(record.client_id, record.id, record.kind, name, data)
        return self.get(record.id)

    def _log(self, client_id: str, record_id: str, kind: RightsKind, name: str, data: Any) -> None:
        # The audit trail names the record and event, never what it says.
        if self.audit is not None:
            details = {"record_id": record_id, "record": kind.value, "step": name}
            if isinstance(data, DisclosureOpened):
                details["basis"] = data.basis.value
            self.audit.append(Event.CLIENT_RIGHTS, client_id=client_id, **details)


def _day(record: RightsRecord) -> date:
    opened = record.data("opened")
    return opened.disclosed_on if record.kind == RightsKind.DISCLOSURE else opened.received_on


def describe_export(result: Any) -> str:
    """What an export released (store/export.py's ExportResult), as the disclosure log and a
    fulfilled request keep it: counts and the period, never content."""
    notes = "1 progress note" if result.notes == 1 else f"{result.notes} progress notes"
    addenda = "1 addendum" if result.addenda == 1 else f"{result.addenda} addenda"
    start = result.date_from.isoformat() if result.date_from else "the first session"
    end = result.date_to.isoformat() if result.date_to else "the latest session"
    period = "all dates of service" if not (result.date_from or result.date_to) else f"{start} to {end}"
    return (f"record export: demographics, diagnoses, treatment plan, {notes} with {addenda}, "
            f"amendment records ({period}; {result.format.upper()}{', encrypted' if result.encrypted else ''})")
