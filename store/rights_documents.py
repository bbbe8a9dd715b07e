"""The client's rights records as Automerge documents: disclosures, access requests and
amendment requests (HIPAA 45 CFR 164.528, 164.524, 164.526; docs/client-rights.md).

One document per record, under a fresh id, so that two devices never create the same
document (a shared document made on two devices at once would hide one side's entries).
Its root:

    type="rights_record", schema, id, client_id, record ("disclosure", "access_request" or
    "amendment_request"), and one root key per event, "event:<name>:<entry id>", holding an
    envelope signed by the device that wrote it (store/signing.py's form).

Events: every record starts with "opened" (what was disclosed, or the request as received);
an access request may be "extended" once and is "fulfilled"; an amendment request may be
"extended" once and is "accepted" or "denied", and a denied one may gain the client's
"statement" of disagreement and the clinician's "rebuttal". An event is one value at a key of
its own, never rewritten. The entry id makes two devices' events distinct keys: when both
write the same step before they sync (two fulfilments, an acceptance here and a denial
there), both are kept after the merge, the earliest counts, and the record reports the
others (`RightsRecord.concurrent`, `conflicts`) rather than dropping one silently.

Nothing here trusts a document: `read_rights` reads every event through the models below
(sizes bounded, unknown fields refused, dates in the plausible range unless read as stored)
and returns None for anything that does not read whole. The sync intake refuses such a
document (store/doc_ids.py). Signatures are verified where they matter (`verified_by`).
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import date, datetime
from enum import Enum
from typing import Annotated, Any, Literal

from automerge.core import ROOT, Document, ScalarType
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StrictStr, ValidationError

from store import documents as D
from store.doc_id_rule import is_item_id
from store.models import STORED, PlausibleDates

KIND_RIGHTS = "rights_record"
SCHEMA = 1
EVENT_PREFIX = "event:"
PAYLOAD_KIND = "rights-event"
# More events than any record can hold (each step, a few times over for steps written on
# several devices at once) means the document is not ours.
MAX_EVENTS = 32
_ENTRY_ID_RE = re.compile(r"^[0-9a-f]{8,64}\Z")
MAX_ENVELOPE_CHARS = 64 * 1024


class RightsKind(str, Enum):
    DISCLOSURE = "disclosure"
    ACCESS = "access_request"
    AMENDMENT = "amendment_request"


class Basis(str, Enum):
    """Why a disclosure was made. The first six are exempt from the accounting of
    disclosures (164.528(a)(1)); the rest are listed in it."""

    CLIENT = "client"  # to the client, or sent where the client directed under 164.524
    TREATMENT = "treatment"
    PAYMENT = "payment"
    OPERATIONS = "operations"
    AUTHORIZED = "authorized"  # with the client's written authorization (164.508)
    LIMITED_DATA_SET = "limited-data-set"
    REQUIRED_BY_LAW = "required-by-law"  # 164.512(a)
    PUBLIC_HEALTH = "public-health"  # 164.512(b)
    ABUSE_REPORT = "abuse-report"  # 164.512(c)
    HEALTH_OVERSIGHT = "health-oversight"  # 164.512(d)
    COURT_ORDER = "court-order"  # 164.512(e)
    LAW_ENFORCEMENT = "law-enforcement"  # 164.512(f)
    SERIOUS_THREAT = "serious-threat"  # 164.512(j)
    OTHER = "other"


EXEMPT_BASES = frozenset(
    {Basis.CLIENT, Basis.TREATMENT, Basis.PAYMENT, Basis.OPERATIONS, Basis.AUTHORIZED, Basis.LIMITED_DATA_SET}
)

# The events each kind of record may hold.
EVENTS = {
    RightsKind.DISCLOSURE: ("opened",),
    RightsKind.ACCESS: ("opened", "extended", "fulfilled"),
    RightsKind.AMENDMENT: ("opened", "extended", "accepted", "denied", "statement", "rebuttal"),
}


def _doc_id_rule(v: str) -> str:
    if not is_item_id(v):
        raise ValueError("is not a record id")
    return v


RecordId = Annotated[StrictStr, AfterValidator(_doc_id_rule)]


def _text(max_length: int, min_length: int = 1) -> Any:
    return Annotated[StrictStr, Field(min_length=min_length, max_length=max_length)]


Name = _text(200)
Line = _text(300)
Prose = _text(20_000)


class _Data(PlausibleDates):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DisclosureOpened(_Data):
    disclosed_on: date
    recipient: Name
    address: _text(300, 0) = ""
    purpose: Line
    what: _text(1000)
    basis: Basis
    # How it left: "export" (written by `notewell export` or the app) or "recorded" (a
    # release made otherwise, entered by the clinician), with the export's file digest.
    via: _text(20) = "recorded"
    sha256: _text(64, 0) = ""


class AccessOpened(_Data):
    received_on: date
    requester: Name
    form_format: Line
    # A third party the client directs the copy to (164.524(c)(3)(ii)); "" for the client.
    recipient: _text(300, 0) = ""


class AmendmentOpened(_Data):
    received_on: date
    requester: Name
    note_ids: list[RecordId] = Field(min_length=1, max_length=200)
    requested_change: Prose


class Extended(_Data):
    on: date
    reason: _text(2000)


class Fulfilled(_Data):
    on: date
    how: Line  # delivered how: mail, portal, in person, encrypted e-mail
    what: _text(1000)  # what was sent
    format: _text(20)
    sent_to: _text(300, 0) = ""
    sha256: _text(64, 0) = ""


class Accepted(_Data):
    on: date
    amendment: Prose
    addenda: dict[RecordId, RecordId] = Field(default_factory=dict, max_length=200)  # note id -> addendum id


class Denied(_Data):
    on: date
    reason: Prose


class Statement(_Data):
    on: date
    text: Prose


class Rebuttal(_Data):
    on: date
    text: Prose


DATA_MODELS: dict[tuple[RightsKind, str], type[_Data]] = {
    (RightsKind.DISCLOSURE, "opened"): DisclosureOpened,
    (RightsKind.ACCESS, "opened"): AccessOpened,
    (RightsKind.ACCESS, "extended"): Extended,
    (RightsKind.ACCESS, "fulfilled"): Fulfilled,
    (RightsKind.AMENDMENT, "opened"): AmendmentOpened,
    (RightsKind.AMENDMENT, "extended"): Extended,
    (RightsKind.AMENDMENT, "accepted"): Accepted,
    (RightsKind.AMENDMENT, "denied"): Denied,
    (RightsKind.AMENDMENT, "statement"): Statement,
    (RightsKind.AMENDMENT, "rebuttal"): Rebuttal,
}


class RightsEvent(BaseModel):
    """One event as read: what it says, who wrote it and when, and the signature's parts."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    data: _Data
    by: str
    credentials: str
    at: datetime
    device_id: str
    envelope: str


class RightsRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    client_id: str
    kind: RightsKind
    events: dict[str, RightsEvent]  # the earliest of each step: the one that counts
    # The same step written on another device before the two synced, kept and shown.
    concurrent: tuple[RightsEvent, ...] = ()

    def data(self, name: str) -> Any:
        event = self.events.get(name)
        return None if event is None else event.data

    def conflicts(self) -> list[str]:
        """What two devices recorded differently: each step written more than once, and an
        amendment both accepted and denied. [] for a record without any."""
        found = sorted({e.name for e in self.concurrent})
        if "accepted" in self.events and "denied" in self.events:
            found.append("accepted and denied")
        return found

    def all_events(self) -> list[RightsEvent]:
        return sorted([*self.events.values(), *self.concurrent], key=_event_order)


def _event_order(e: RightsEvent) -> tuple:
    return (e.at, e.envelope)


class _Payload(BaseModel):
    """An event's signed payload, checked field by field before its data is read."""

    model_config = ConfigDict(extra="forbid")

    v: int
    kind: StrictStr
    record_id: StrictStr
    client_id: StrictStr
    record: RightsKind
    event: StrictStr
    data: dict[str, Any]
    by: _text(200, 0)
    credentials: _text(100, 0)
    at: AwareDatetime
    device_id: _text(64)


def payload(record: RightsRecord | None, *, record_id: str, client_id: str, kind: RightsKind, event: str,
            data: _Data, by: str, credentials: str, at: datetime, device_id: str) -> dict[str, Any]:
    """The payload of one event, as it is signed."""
    return {
        "v": 1,
        "kind": PAYLOAD_KIND,
        "record_id": record_id,
        "client_id": client_id,
        "record": kind.value,
        "event": event,
        "data": data.model_dump(mode="json"),
        "by": by,
        "credentials": credentials,
        "at": at.isoformat(),
        "device_id": device_id,
    }


def event_key(name: str) -> str:
    """A fresh root key for one event: its step and an entry id of its own."""
    return f"{EVENT_PREFIX}{name}:{secrets.token_hex(8)}"


def new_rights_doc(record_id: str, client_id: str, kind: RightsKind, opened: str, actor: bytes) -> Document:
    doc = Document(actor)
    with doc.transaction() as tx:
        tx.put(ROOT, "type", ScalarType.Str, KIND_RIGHTS)
        tx.put(ROOT, "schema", ScalarType.Int, SCHEMA)
        tx.put(ROOT, "id", ScalarType.Str, record_id)
        tx.put(ROOT, "client_id", ScalarType.Str, client_id)
        tx.put(ROOT, "record", ScalarType.Str, kind.value)
        tx.put(ROOT, event_key("opened"), ScalarType.Str, opened)
    return doc


def put_event(doc: Document, name: str, envelope: str) -> None:
    with doc.transaction() as tx:
        tx.put(ROOT, event_key(name), ScalarType.Str, envelope)


def is_rights_doc(doc: Document) -> bool:
    return D._scalar(doc, ROOT, "type") == KIND_RIGHTS


def read_rights(doc: Document, *, stored: bool = False) -> RightsRecord | None:
    """The record a document holds, every event read through its model; None when any part
    of it does not read (a document from another device is refused then). `stored`: a
    document already stored here, read without the plausible-date range."""
    root = D._MapView(doc, ROOT, None)
    keys = root.keys()
    if root.scalar("type") != KIND_RIGHTS or root.scalar("schema") != SCHEMA:
        return None
    record_id, client_id = root.scalar("id"), root.scalar("client_id")
    try:
        kind = RightsKind(root.scalar("record"))
    except ValueError:
        return None
    if not isinstance(record_id, str) or not isinstance(client_id, str):
        return None
    fixed = {"type", "schema", "id", "client_id", "record"}
    if len(keys) > len(fixed) + MAX_EVENTS:
        return None
    found: list[RightsEvent] = []
    for key in keys:
        if key in fixed:
            continue
        prefix, _, rest = key.partition(":")
        name, _, entry_id = rest.partition(":")
        if prefix + ":" != EVENT_PREFIX or name not in EVENTS[kind] or not _ENTRY_ID_RE.match(entry_id):
            return None
        event = _read_event(root.scalar(key), record_id, client_id, kind, name, stored)
        if event is None:
            return None
        found.append(event)
    events: dict[str, RightsEvent] = {}
    concurrent: list[RightsEvent] = []
    for event in sorted(found, key=_event_order):
        if event.name in events:
            concurrent.append(event)
        else:
            events[event.name] = event
    if "opened" not in events:
        return None
    return RightsRecord(id=record_id, client_id=client_id, kind=kind, events=events, concurrent=tuple(concurrent))


def _read_event(envelope: Any, record_id: str, client_id: str, kind: RightsKind, name: str,
                stored: bool) -> RightsEvent | None:
    if not isinstance(envelope, str) or len(envelope) > MAX_ENVELOPE_CHARS:
        return None
    parts = D.envelope_parts(envelope)
    if parts is None:
        return None
    try:
        p = _Payload.model_validate(parts[0])
        data = DATA_MODELS[(kind, name)].model_validate(p.data, context=STORED if stored else None)
    except (ValidationError, KeyError):
        return None
    if (p.v, p.kind, p.record_id, p.client_id, p.record, p.event) != (1, PAYLOAD_KIND, record_id, client_id, kind, name):
        return None
    return RightsEvent(name=name, data=data, by=p.by, credentials=p.credentials, at=p.at,
                       device_id=p.device_id, envelope=envelope)


def verified_by(event: RightsEvent, trust: Any) -> bool:
    """True when the event's signature verifies by the key of the device it names, and that
    device is trusted here (store/device_list.py's DeviceTrust)."""
    parts = D.envelope_parts(event.envelope)
    if parts is None or trust is None:
        return False
    key = trust.public_key(event.device_id)
    if key is None:
        return False
    try:
        key.verify(parts[2], parts[1])
    except Exception:  # InvalidSignature, or a signature of the wrong length
        return False
    return True


def canonical(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _event_json(e: RightsEvent) -> dict[str, Any]:
    return {"data": e.data.model_dump(mode="json"), "by": e.by, "credentials": e.credentials,
            "at": e.at.astimezone().isoformat()}


def rights_json(record: RightsRecord) -> dict[str, Any]:
    """A record in the import format (docs/import-format.md, "client_rights"): its events
    with their author, credentials and time, and any written concurrently on two devices;
    the signatures are sealed again by the device that imports it, as an imported note's are."""
    data: dict[str, Any] = {
        "id": record.id,
        "client_id": record.client_id,
        "record": record.kind.value,
        "events": {name: _event_json(e) for name, e in sorted(record.events.items())},
    }
    if record.concurrent:
        data["concurrent"] = [{"event": e.name, **_event_json(e)} for e in record.concurrent]
    return data


class FileEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: dict[str, Any]
    by: _text(200, 0)
    credentials: _text(100, 0)
    at: AwareDatetime


class FileConcurrentEvent(FileEvent):
    event: StrictStr


class FileRightsRecord(BaseModel):
    """A rights record as an import file holds it, read as strictly as one from sync."""

    model_config = ConfigDict(extra="forbid")

    id: RecordId
    client_id: RecordId
    record: RightsKind
    events: dict[StrictStr, FileEvent] = Field(max_length=len(RightsKind.__members__) * 3)
    concurrent: list[FileConcurrentEvent] = Field(default_factory=list, max_length=MAX_EVENTS - 6)
    signature_verification: Literal["failed"] | None = None

    def to_record(self) -> RightsRecord:
        """The record it describes; ValueError naming the event that does not read."""
        if self.signature_verification is not None:
            raise ValueError("signature_verification: its signatures failed verification where it was exported, "
                             "so it is not imported as signed")
        if "opened" not in self.events:
            raise ValueError("events: a record starts with opened")
        events = {name: self._event(f"events.{name}", name, e) for name, e in self.events.items()}
        concurrent = tuple(self._event(f"concurrent[{i}]", e.event, e) for i, e in enumerate(self.concurrent))
        return RightsRecord(id=self.id, client_id=self.client_id, kind=self.record, events=events,
                            concurrent=concurrent)

    def _event(self, where: str, name: str, e: FileEvent) -> RightsEvent:
        if name not in EVENTS[self.record]:
            raise ValueError(f"{where}: not an event of a {self.record.value}")
        try:
            data = DATA_MODELS[(self.record, name)].model_validate(e.data)
        except ValidationError as err:
            raise ValueError(f"{where}: {err.errors()[0]['msg']}") from None
        return RightsEvent(name=name, data=data, by=e.by, credentials=e.credentials, at=e.at, device_id="",
                           envelope="")
