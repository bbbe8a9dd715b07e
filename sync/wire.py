"""What every sync and pairing message looks like inside its frame, and the stored baseline.

The frame around a message (length, type byte, size limit) is `sync.framing`; this module is
the payload of each frame type: building it, and reading it back with its size and shape
checked. A payload that breaks a rule is refused here, with the typed error and the sentence
the other device's user would see (`MalformedFrame`, `ProtocolError`, `PairingFailed` ...).
What a message means and when it may arrive is decided by the conversations that use these
codecs: `sync.protocol.SyncSession` and `sync.pairing_exchange`. Nothing here keeps state or
touches a socket or the store; docs/sync-protocol.md has the byte layouts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
from dataclasses import dataclass
from typing import Iterable, NoReturn

from store.device_identity import fingerprint
from store.doc_ids import DOC_ID_PATTERN
from store.errors import DiskFull, VaultBusy
from sync.errors import (
    FrameTooLarge,
    MalformedFrame,
    NotPaired,
    PairingCodeExpired,
    PairingFailed,
    PeerReportedError,
    ProtocolError,
    ProtocolVersionMismatch,
    RemotePairingError,
    WrongPairingCode,
)
from sync.framing import Frame, FrameType
from sync.peers import GROUP_KEY_BYTES

PROTOCOL_NAME = "notewell-sync"
SUPPORTED_VERSIONS: tuple[int, ...] = (2,)
DOC_ID_RE = re.compile(DOC_ID_PATTERN)  # the record's one document-id rule (store/doc_ids.py)
HEAD_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_HEADS_PER_DOC = 4096

_TURN_END = struct.Struct(">I")
_PROGRESS = struct.Struct(">I")
# What this side speaks beyond the version, listed in its hello; a feature is used only when
# both hellos list it, so an older peer (no list) is spoken to as before:
#   progress  PROGRESS frames: a side that works for long (storing, applying) says how far it
#             is, so the waiting side sees progress and its read deadline never fires
#   changes   CHANGES frames: a document both sides held at the end of their last sync (the
#             per-peer baseline, kept locally on each device) travels as the changes made
#             since, instead of a fresh Automerge sync whose first message lists every change
#             the document ever had (15.8 KB for a note edited 5,000 times, issue 14)
FEATURES = ("progress", "changes")
_DOC_ID_LEN = struct.Struct(">H")


# --- JSON payloads (HELLO, MANIFEST, DONE, ERROR) ---------------------------------------


def json_frame(frame_type: FrameType, data: dict) -> Frame:
    return Frame(frame_type, json.dumps(data, separators=(",", ":"), sort_keys=True).encode("utf-8"))


def read_json(frame: Frame, what: str) -> dict:
    """The frame's JSON object; `what` names it in the sentence when it is not one."""
    try:
        data = json.loads(frame.payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise MalformedFrame(f"The other device sent a malformed {what}.") from None
    if not isinstance(data, dict):
        raise MalformedFrame(f"The other device sent a malformed {what}.")
    return data


# --- HELLO ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    """A peer's hello as read: only its shape is checked; the session judges the contents."""

    versions: list            # as sent: the session picks the common ones
    device_id: object
    name: object
    baseline: object
    live: object
    time: object              # absent (None) from an older peer
    features: object = None   # absent (None) from an older peer: see FEATURES


def hello_frame(*, versions: Iterable[int], device_id: str, name: str, baseline: str | None,
                live: bool, time: float, features: Iterable[str] = FEATURES) -> Frame:
    return json_frame(
        FrameType.HELLO,
        {"protocol": PROTOCOL_NAME, "versions": list(versions), "device_id": device_id, "name": name,
         "baseline": baseline, "live": live, "time": time, "features": sorted(features)},
    )


def common_features(hello: "Hello") -> frozenset[str]:
    """The features both sides speak: ours that the peer's hello lists (none from an older peer)."""
    listed = hello.features
    if not isinstance(listed, list):
        return frozenset()
    return frozenset(f for f in listed if isinstance(f, str)) & frozenset(FEATURES)


def read_hello(frame: Frame) -> Hello:
    data = read_json(frame, "hello")
    versions = data.get("versions")
    if data.get("protocol") != PROTOCOL_NAME or not isinstance(versions, list):
        raise MalformedFrame("The other device sent a malformed hello.")
    return Hello(versions, data.get("device_id"), data.get("name"), data.get("baseline"),
                 data.get("live"), data.get("time"), data.get("features"))


def version_mismatch(theirs: Iterable[object], ours: Iterable[int]) -> ProtocolVersionMismatch:
    their_text = ", ".join(str(v) for v in theirs if isinstance(v, int))
    our_text = ", ".join(str(v) for v in ours)
    return ProtocolVersionMismatch(
        f"The other device speaks sync protocol version {their_text or '?'} and this one speaks "
        f"version {our_text}; update Notewell on the older device."
    )


def printable_name(name: object) -> str:
    """A device name fit for the screen: printable characters only (no terminal escapes)."""
    return "".join(ch for ch in name if ch.isprintable())[:100] if isinstance(name, str) else ""


# --- MANIFEST ------------------------------------------------------------------------------


def manifest_frame(heads_by_doc: dict[str, Iterable[bytes]], *, delta: bool) -> Frame:
    docs = {doc_id: sorted(h.hex() for h in heads) for doc_id, heads in heads_by_doc.items()}
    return json_frame(FrameType.MANIFEST, {"docs": docs, "delta": delta})


def read_manifest(frame: Frame) -> tuple[dict[str, set[bytes]], object]:
    """The listed heads per document, and the "delta" value as sent (the session compares it
    with its own by identity, so anything but the same boolean disagrees)."""
    data = read_json(frame, "document list")
    docs = data.get("docs")
    if not isinstance(docs, dict):
        raise MalformedFrame("The other device sent a malformed document list.")
    listed: dict[str, set[bytes]] = {}
    for doc_id, heads in docs.items():
        if (not DOC_ID_RE.match(doc_id) or not isinstance(heads, list)
                or len(heads) > MAX_HEADS_PER_DOC
                or not all(isinstance(h, str) and HEAD_RE.match(h) for h in heads)):
            raise MalformedFrame("The other device sent a malformed document list.")
        listed[doc_id] = {bytes.fromhex(h) for h in heads}
    return listed, data.get("delta", False)


# --- SYNC and WHOLE: a document id and bytes ---------------------------------------------


def encode_sync(doc_id: str, message: bytes) -> bytes:
    raw = doc_id.encode("ascii")
    return _DOC_ID_LEN.pack(len(raw)) + raw + message


def decode_sync(payload: bytes) -> tuple[str, bytes]:
    if len(payload) < _DOC_ID_LEN.size:
        raise MalformedFrame("The other device sent a malformed document message.")
    (n,) = _DOC_ID_LEN.unpack_from(payload)
    raw = payload[_DOC_ID_LEN.size:_DOC_ID_LEN.size + n]
    message = payload[_DOC_ID_LEN.size + n:]
    try:
        doc_id = raw.decode("ascii")
    except UnicodeDecodeError:
        doc_id = ""
    if len(raw) != n or not DOC_ID_RE.match(doc_id) or not message:
        raise MalformedFrame("The other device sent a malformed document message.")
    return doc_id, message


def sync_frame(doc_id: str, message: bytes) -> Frame:
    return Frame(FrameType.SYNC, encode_sync(doc_id, message))


def whole_frame(doc_id: str, stored: bytes) -> Frame:
    return Frame(FrameType.WHOLE, encode_sync(doc_id, stored))


def changes_frame(doc_id: str, changes: bytes) -> Frame:
    return Frame(FrameType.CHANGES, encode_sync(doc_id, changes))


def progress_frame(settled: int) -> Frame:
    return Frame(FrameType.PROGRESS, _PROGRESS.pack(max(0, min(settled, 0xFFFFFFFF))))


def read_progress(frame: Frame) -> int:
    if len(frame.payload) != _PROGRESS.size:
        raise MalformedFrame("The other device sent a malformed progress message.")
    (settled,) = _PROGRESS.unpack(frame.payload)
    return settled


# --- TURN_END and DONE ----------------------------------------------------------------------


def turn_end_frame(count: int) -> Frame:
    return Frame(FrameType.TURN_END, _TURN_END.pack(count))


def read_turn_end(frame: Frame) -> int:
    if len(frame.payload) != _TURN_END.size:
        raise MalformedFrame("The other device sent a malformed end of turn.")
    (count,) = _TURN_END.unpack(frame.payload)
    return count


def done_frame(received: int, digest: str) -> Frame:
    return json_frame(FrameType.DONE, {"received": received, "digest": digest})


def read_done(frame: Frame) -> tuple[int, str]:
    data = read_json(frame, "end of sync")
    received, digest = data.get("received"), data.get("digest")
    if not isinstance(received, int) or isinstance(received, bool) or not isinstance(digest, str):
        raise MalformedFrame("The other device sent a malformed end of sync.")
    return received, digest


def heads_digest(heads_by_doc: dict[str, Iterable[bytes]]) -> str:
    """What DONE carries: SHA-256 over every document id and its sorted heads."""
    h = hashlib.sha256()
    for doc_id in sorted(heads_by_doc):
        h.update(doc_id.encode("ascii") + b"\0")
        for head in sorted(heads_by_doc[doc_id]):
            h.update(head)
        h.update(b"\n")
    return h.hexdigest()


# --- ERROR (direct sync) ------------------------------------------------------------------

# An ERROR frame carries a code, never free text: the receiver shows its own sentence, so a
# peer cannot put arbitrary words on this device's screen.
_ERROR_SENTENCES = {
    "version": "The other device uses an incompatible sync protocol version; update Notewell on the older device.",
    "not-paired": "The other device does not accept this device: it is not paired, or the pairing was revoked.",
    "protocol": "The other device rejected a malformed sync message; the connection was closed.",
    "too-large": "The other device rejected a sync message over its size limit; the connection was closed.",
    "busy": "The other device stopped the sync; try again in a moment.",
    "disk-full": "The other device's disk is full; nothing was lost. Free some space there and try again.",
    "internal": "The other device hit a problem and stopped the sync; nothing was lost.",
}


def error_frame(exc: BaseException) -> Frame:
    if isinstance(exc, ProtocolVersionMismatch):
        code = "version"
    elif isinstance(exc, NotPaired):
        code = "not-paired"
    elif isinstance(exc, FrameTooLarge):
        code = "too-large"
    elif isinstance(exc, ProtocolError):
        code = "protocol"
    elif isinstance(exc, DiskFull):
        code = "disk-full"  # our disk, not their data: they must not call it malformed
    elif isinstance(exc, VaultBusy):
        code = "busy"
    else:
        code = "internal"
    data: dict = {"code": code}
    if code == "version":
        data["versions"] = list(SUPPORTED_VERSIONS)
    return json_frame(FrameType.ERROR, data)


def raise_peer_error(frame: Frame, ours: tuple[int, ...] = SUPPORTED_VERSIONS) -> NoReturn:
    try:
        data = json.loads(frame.payload.decode("utf-8"))
        code = data.get("code") if isinstance(data, dict) else None
    except (UnicodeDecodeError, ValueError):
        code = None
    if code == "version":
        versions = data.get("versions")
        raise version_mismatch(versions if isinstance(versions, list) else (), ours)
    if code == "not-paired":
        raise NotPaired(_ERROR_SENTENCES["not-paired"])
    raise PeerReportedError(_ERROR_SENTENCES.get(code, _ERROR_SENTENCES["internal"]))


# --- the baseline, as kept in the local table ------------------------------------------

_BASELINE_MAGIC = b"NWB1"


def encode_baseline(heads_by_doc: dict[str, Iterable[bytes]]) -> bytes:
    """Compact form for the local table: magic, then per document: u8 id length, id,
    u16 number of heads, the 32-byte heads."""
    out = bytearray(_BASELINE_MAGIC)
    for doc_id in sorted(heads_by_doc):
        raw, heads = doc_id.encode("ascii"), sorted(heads_by_doc[doc_id])
        out += bytes([len(raw)]) + raw + struct.pack(">H", len(heads)) + b"".join(heads)
    return bytes(out)


def decode_baseline(data: bytes) -> dict[str, set[bytes]]:
    """Raises ValueError for anything but a whole baseline (the caller then falls back to a
    full manifest, which rewrites it)."""
    if data[:4] != _BASELINE_MAGIC:
        raise ValueError("not a baseline")
    view, i, out = memoryview(data), 4, {}
    while i < len(data):
        n = data[i]
        if i + 1 + n + 2 > len(data):
            raise ValueError("truncated baseline")
        doc_id = bytes(view[i + 1:i + 1 + n]).decode("ascii")
        i += 1 + n
        (count,) = struct.unpack_from(">H", data, i)
        i += 2
        end = i + 32 * count
        if end > len(data):
            raise ValueError("truncated baseline")
        out[doc_id] = {bytes(view[j:j + 32]) for j in range(i, end, 32)}
        i = end
    return out


# --- pairing: PAKE, CONFIRM, ERROR, and the introductions sealed inside SEALED -----------

PAIR_VERSION = 1
SELF_PAIRING = "A device cannot be paired with itself."


def pake_frame(message: bytes) -> Frame:
    return Frame(FrameType.PAKE, bytes([PAIR_VERSION]) + message)


def read_pake(frame: Frame) -> bytes:
    """The SPAKE2 message; an ERROR from the other side raises its own error."""
    if frame.type == FrameType.ERROR:
        raise_pair_error(frame)
    if frame.type != FrameType.PAKE or len(frame.payload) < 2:
        raise ProtocolError("The other device did not speak the pairing protocol.")
    if frame.payload[0] != PAIR_VERSION:
        raise ProtocolError("The other device uses another pairing protocol version; update Notewell on the older device.")
    return frame.payload[1:]


def confirm_frame(mac: bytes) -> Frame:
    return Frame(FrameType.CONFIRM, mac)


def pair_error_frame(code: str) -> Frame:
    """Pairing's ERROR: a code only ("wrong-code", "expired", "self", "protocol")."""
    return Frame(FrameType.ERROR, json.dumps({"code": code}).encode("utf-8"))


def raise_pair_error(frame: Frame) -> NoReturn:
    try:
        code = json.loads(frame.payload).get("code")
    except (ValueError, AttributeError):
        code = None
    if code == "wrong-code":
        raise WrongPairingCode(
            "The pairing code was not accepted; it is now void, so ask the other device for a new one."
        )
    if code == "expired":
        raise PairingCodeExpired()
    if code == "self":
        raise PairingFailed(SELF_PAIRING)
    raise PairingFailed("The other device broke off the pairing; nothing was stored.")


def sealed_plaintext(data: dict) -> bytes:
    return json.dumps(data, sort_keys=True).encode("utf-8")


def read_sealed_plaintext(plain: bytes) -> dict:
    try:
        data = json.loads(plain)
    except ValueError:
        raise RemotePairingError("A pairing message was altered in transit; nothing was stored.") from None
    if not isinstance(data, dict):
        raise RemotePairingError("The other device sent a malformed pairing message; nothing was stored.")
    return data


def introduction(device_id: str, name: str, cert_pem: str, group_key: bytes | None) -> dict:
    return {
        "device_id": device_id,
        "name": name,
        "cert_pem": cert_pem,
        "group_key": base64.b64encode(group_key).decode("ascii") if group_key else None,
    }


@dataclass(frozen=True)
class Introduction:
    device_id: str
    name: str
    cert_pem: str
    group_key: bytes | None


def read_introduction(data: dict, own_id: str) -> Introduction:
    """A device's introduction, checked: its certificate is its id, it is not this device,
    and a group key, if any, has the right size."""
    device_id, name, cert_pem, key = (data.get(k) for k in ("device_id", "name", "cert_pem", "group_key"))
    if not (isinstance(device_id, str) and isinstance(name, str) and isinstance(cert_pem, str)):
        raise RemotePairingError("The other device sent a malformed pairing message; nothing was stored.")
    try:
        matches = fingerprint(cert_pem) == device_id
    except ValueError:
        matches = False
    if not matches:
        raise RemotePairingError("The other device's certificate does not match its device id; nothing was stored.")
    if device_id == own_id:
        raise PairingFailed(SELF_PAIRING)
    raw_key = None
    if key is not None:
        try:
            raw_key = base64.b64decode(key, validate=True) if isinstance(key, str) else b""
        except ValueError:
            raw_key = b""
        if len(raw_key) != GROUP_KEY_BYTES:
            raise RemotePairingError("The other device sent a malformed sync-group key; nothing was stored.")
    name = "".join(ch for ch in name if ch.isprintable())[:100] or "unnamed device"
    return Introduction(device_id, name, cert_pem, raw_key)
