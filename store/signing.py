"""Signatures by key: what a signature covers, encoded one way only, signed with Ed25519.

A signature in the record is a signed entry: the canonical encoding of exactly what was
signed (the payload) and the Ed25519 signature over those bytes by the signing device's key
(store/device_identity.py; the device id is the SHA-256 of its certificate). A hash stored
in a CRDT document proves nothing, since any device holding the document can recompute it;
a signature by a key that device does not hold cannot be recomputed.

The canonical encoding is JSON with sorted keys, no whitespace, UTF-8 (`canonical_json`),
of a payload carrying a version ("v"). Three kinds of payload:

    note        id, note_id, client_id, format, date_of_service, sections, facts, signer,
                credentials, signed_at, device_id, supersedes (signature ids a re-signing settles)
    addendum    id, note_id, text, reason, signer, credentials, signed_at, device_id,
                amends (the content hash of the signed note it amends), amends_signature
    resolution  id, note_id, choice, keeps (signature id), settles (signature ids),
                settled_content (content hashes it accepts), addendum (id or null), signer,
                credentials, signed_at, device_id

An entry is stored in the note's document under the root key "signed:<id>" as one string,
the envelope {"v": 1, "payload": <canonical payload>, "sig": <hex>}: the payload is kept
as signed, so every signed version stays readable whatever later edits do, and an entry is
one value (concurrent entries never mix; a root key per entry cannot be lost to a
concurrent creation of a shared map).

Nothing here trusts what it reads: `open_entry` says what failed, in one sentence without
note text.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from store.documents import (
    ENVELOPE_VERSION,
    SIGNED_PREFIX,
    canonical_facts,
    canonical_json,
    envelope_parts,
    payload_content_hash,
)
from store.models import STORED, NoteFormat, ProgressNote, SessionFacts

PAYLOAD_VERSION = ENVELOPE_VERSION
ENTRY_PREFIX = SIGNED_PREFIX
KIND_NOTE_SIGNATURE = "note"
KIND_ADDENDUM = "addendum"
KIND_RESOLUTION = "resolution"
_KINDS = (KIND_NOTE_SIGNATURE, KIND_ADDENDUM, KIND_RESOLUTION)
# A signed entry is bounded: a note's content plus its envelope. Anything larger is refused
# as it is read (it came from another device).
MAX_ENVELOPE_CHARS = 2_000_000


_last_stamp = 0

# How many signed entries this process has checked against a key (`open_entry`). Reads that
# must not verify (the lists and the To do queue read stored states, store/signature_index.py)
# are held to it by tests, and bench/ reports it.
_verifications = 0


def verifications() -> int:
    """The number of Ed25519 checks of signed entries made in this process so far."""
    return _verifications


def new_entry_id() -> str:
    """A new entry id: 32 hex characters, the first 16 a time stamp (nanoseconds, strictly
    increasing in this process), so entries made in one second keep the order they were
    made in when sorted (two addenda signed in the same second read in that order)."""
    global _last_stamp
    _last_stamp = max(time.time_ns(), _last_stamp + 1)
    return f"{_last_stamp:016x}{secrets.token_hex(8)}"


def entry_key(entry_id: str) -> str:
    return ENTRY_PREFIX + entry_id


def _iso(when: datetime) -> str:
    return when.isoformat()


def note_payload(
    note: ProgressNote,
    *,
    entry_id: str,
    signer: str,
    credentials: str,
    signed_at: datetime,
    device_id: str,
    supersedes: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """What a note's signature covers: its content (client, format, date of service,
    sections, session facts), the signer, credentials, time and device."""
    return {
        "v": PAYLOAD_VERSION,
        "kind": KIND_NOTE_SIGNATURE,
        "id": entry_id,
        "note_id": note.id,
        "client_id": note.client_id,
        "format": note.format.value,
        "date_of_service": note.facts.date_of_service.isoformat(),
        "sections": {k: note.sections.get(k, "") for k in note.section_keys},
        "facts": canonical_facts(note.facts),
        "signer": signer,
        "credentials": credentials,
        "signed_at": _iso(signed_at),
        "device_id": device_id,
        "supersedes": sorted(set(supersedes)),
    }


def addendum_payload(
    *,
    entry_id: str,
    note_id: str,
    text: str,
    reason: str,
    signer: str,
    credentials: str,
    signed_at: datetime,
    device_id: str,
    amends: str,
    amends_signature: str,
) -> dict[str, Any]:
    """What an addendum's signature covers, including the signed content it amends."""
    return {
        "v": PAYLOAD_VERSION,
        "kind": KIND_ADDENDUM,
        "id": entry_id,
        "note_id": note_id,
        "text": text,
        "reason": reason,
        "signer": signer,
        "credentials": credentials,
        "signed_at": _iso(signed_at),
        "device_id": device_id,
        "amends": amends,
        "amends_signature": amends_signature,
    }


def reissue_payloads(
    signed: ProgressNote, signature: Any, addenda: list[Any], *, device_id: str
) -> list[tuple[str, dict[str, Any]]]:
    """(entry id, payload) of each signed entry that re-issues a signature of the earlier form
    (`signature`: signer, credentials, time) over the content `signed`, and its `addenda`, by
    the device `device_id`: what a vault's upgrade and an import seal with this device's key
    (store/record.py). Pure, so an import's worker processes make them, never holding a key."""
    entry_id = new_entry_id()
    payload = note_payload(
        signed, entry_id=entry_id, signer=signature.signer, credentials=signature.credentials,
        signed_at=signature.signed_at, device_id=device_id,
    )
    out = [(entry_id, payload)]
    # What an addendum amends: hashed only for a note that has addenda (most have none; an
    # import makes these for every note signed elsewhere).
    amends = payload_content_hash(payload) if addenda else ""
    for a in addenda:
        out.append((a.id, addendum_payload(
            entry_id=a.id, note_id=signed.id, text=a.text, reason=a.reason, signer=a.signer,
            credentials=a.credentials, signed_at=a.signed_at, device_id=device_id,
            amends=amends, amends_signature=entry_id,
        )))
    return out


def resolution_payload(
    *,
    entry_id: str,
    note_id: str,
    choice: str,
    keeps: str,
    settles: list[str],
    settled_content: list[str],
    addendum: str | None,
    signer: str,
    credentials: str,
    signed_at: datetime,
    device_id: str,
) -> dict[str, Any]:
    """How a signature conflict was settled: which signature stands, which it settles and
    which content it accepts (with the addendum that records the edits)."""
    return {
        "v": PAYLOAD_VERSION,
        "kind": KIND_RESOLUTION,
        "id": entry_id,
        "note_id": note_id,
        "choice": choice,
        "keeps": keeps,
        "settles": sorted(set(settles)),
        "settled_content": sorted(set(settled_content)),
        "addendum": addendum,
        "signer": signer,
        "credentials": credentials,
        "signed_at": _iso(signed_at),
        "device_id": device_id,
    }


# Where a signature's hex goes in an envelope laid out before it is signed: an Ed25519
# signature is 64 bytes, 128 hex characters, so the envelope's length and layout are known
# without the key.
SIGNATURE_HEX_LENGTH = 128
_UNSIGNED = "0" * SIGNATURE_HEX_LENGTH


def unsigned_envelope(payload: dict[str, Any]) -> tuple[bytes, bytes, int]:
    """(the bytes to sign, the envelope as UTF-8 with zeros where the signature's hex goes,
    the offset of those zeros): `seal` without the key, so that work can be done where the
    key is not (an import's worker processes; store/importer.py fills them in)."""
    data = canonical_json(payload)
    envelope = json.dumps(
        {"v": PAYLOAD_VERSION, "payload": data.decode("utf-8"), "sig": _UNSIGNED},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    # "sig" is the last key but one ("v" sorts after it) and the payload's own quotes are
    # escaped, so the last '"sig":"' is the signature's.
    return data, envelope, envelope.rindex(b'"sig":"') + 7


def seal(private_key: ed25519.Ed25519PrivateKey, payload: dict[str, Any]) -> str:
    """The envelope of `payload` signed by `private_key`: the string stored in the note."""
    data, envelope, at = unsigned_envelope(payload)
    signature = private_key.sign(data).hex().encode()
    return (envelope[:at] + signature + envelope[at + SIGNATURE_HEX_LENGTH:]).decode()


@dataclass(frozen=True)
class OpenedEntry:
    """A signed entry as read: its payload when it could be parsed, and what failed (None
    when the signature verifies by a trusted device's key)."""

    entry_id: str
    envelope: str
    payload: dict[str, Any] | None
    problem: str | None

    @property
    def verified(self) -> bool:
        return self.problem is None and self.payload is not None

    @property
    def kind(self) -> str | None:
        return self.payload.get("kind") if self.payload else None

    @property
    def device_id(self) -> str:
        return str(self.payload.get("device_id", "")) if self.payload else ""

    @property
    def signed_at(self) -> datetime | None:
        return _moment(self.payload.get("signed_at")) if self.payload else None


PublicKeyFor = Callable[[str], "ed25519.Ed25519PublicKey | None"]


def open_entry(entry_id: str, envelope: Any, note_id: str, public_key_for: PublicKeyFor | None) -> OpenedEntry:
    """Reads and verifies one entry stored under "signed:<entry_id>" in note `note_id`.

    `public_key_for(device_id)` is the key of a trusted device (store/device_list.py), None
    for a device not trusted here; None reads the entry without checking any key (a
    structural reading, never one that shows a note as signed). The problem says what failed, never what the note says."""
    envelope_text = envelope if isinstance(envelope, str) else ""
    what = f"signed entry {entry_id}"

    def bad(problem: str, payload: dict | None = None) -> OpenedEntry:
        return OpenedEntry(entry_id, envelope_text, payload, f"{what}: {problem}")

    parts = envelope_parts(envelope_text) if 0 < len(envelope_text) <= MAX_ENVELOPE_CHARS else None
    if parts is None:
        return bad("it cannot be read as a signed entry")
    payload, data, sig = parts
    if not isinstance(payload, dict) or payload.get("v") != PAYLOAD_VERSION or payload.get("kind") not in _KINDS:
        return bad("it is of an unknown form")
    if canonical_json(payload) != data:
        return bad("its content is not in the one canonical form", payload)
    if payload.get("id") != entry_id:
        return bad("it is stored under another entry's id", payload)
    if payload.get("note_id") != note_id:
        return bad("it was signed for another note", payload)
    device_id = payload.get("device_id")
    if public_key_for is None:  # structural reading only (store/signature_state.py)
        return OpenedEntry(entry_id, envelope_text, payload, None)
    key = public_key_for(device_id) if isinstance(device_id, str) else None
    if key is None:
        return bad("it names a device that is not in the trusted device list", payload)
    global _verifications
    _verifications += 1
    try:
        key.verify(sig, data)
    except (InvalidSignature, ValueError):
        return bad("its signature does not verify (the signed content was altered)", payload)
    return OpenedEntry(entry_id, envelope_text, payload, None)


def _moment(v: Any) -> datetime | None:
    if not isinstance(v, str):
        return None
    try:
        return datetime.fromisoformat(v)
    except ValueError:
        return None


def signed_note(payload: dict[str, Any]) -> ProgressNote | None:
    """The note's content as a note signature's payload holds it (None if it cannot be read)."""
    try:
        fmt = NoteFormat(payload["format"])
        facts = SessionFacts.model_validate(payload["facts"], context=STORED)
        return ProgressNote.model_validate(
            {
                "id": payload["note_id"],
                "client_id": payload["client_id"],
                "format": fmt,
                "sections": payload["sections"],
                "facts": facts,
            },
            context=STORED,
        )
    except (KeyError, TypeError, ValueError):
        return None


def entry_digest(envelope: str) -> str:
    """sha256 of an envelope: names one exact signed entry (an altered one differs)."""
    return hashlib.sha256(envelope.encode("utf-8")).hexdigest()
