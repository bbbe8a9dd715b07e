"""Length-prefixed frames with a type byte, for pairing and direct sync.

    frame   = length (u32, big-endian) | type (u8) | payload
    length  = 1 + len(payload), never 0 and never above the limit (16 MiB by default)

The header is checked before any payload is buffered, so an oversized frame costs the
receiver nothing but the four length bytes: it raises `FrameTooLarge` and the caller closes
the connection. `FrameReader` is sans-IO (bytes in, frames out); `send_frames` and
`recv_some` are the thin socket helpers `sync.driver` runs every conversation with (its
`FrameChannel` adds the deadlines); `send_frame` and `recv_frame`, one frame at a time, serve
tests that act as a peer. What each frame type carries is `sync.wire`.

A `FrameTap` (callable(direction, frame_bytes)) sees every plaintext frame as sent or
received; tests use it to prove what does and does not cross the wire.
"""

from __future__ import annotations

import socket
import ssl
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Callable

from sync.errors import ConnectionLost, FrameTooLarge, MalformedFrame

MAX_FRAME = 16 * 1024 * 1024
HEADER = struct.Struct(">IB")

FrameTap = Callable[[str, bytes], None]  # ("sent" | "received", whole frame bytes)


class FrameType(IntEnum):
    """Every frame type on the wire, pairing and sync alike (unique so logs never confuse them)."""

    # direct sync (sync/protocol.py; payloads in sync/wire.py)
    HELLO = 0x01
    MANIFEST = 0x02
    SYNC = 0x03
    TURN_END = 0x04
    DONE = 0x05
    WHOLE = 0x06  # a whole document the peer has none of (its stored bytes)
    PING = 0x07  # live session: keepalive
    BYE = 0x08  # live session: this side is closing
    # direct sync, for a peer whose hello lists the feature (sync/wire.py, FEATURES)
    PROGRESS = 0x21  # "still working": whole documents this side has settled so far
    CHANGES = 0x22  # a document's changes since the heads both sides held after the last sync
    # pairing (sync/pairing_exchange.py)
    PAKE = 0x11
    CONFIRM = 0x12
    SEALED = 0x13
    # either
    ERROR = 0x7F


@dataclass(frozen=True)
class Frame:
    type: FrameType
    payload: bytes = b""

    def encode(self, max_size: int = MAX_FRAME) -> bytes:
        return encode_frame(self.type, self.payload, max_size)


def encode_frame(frame_type: int, payload: bytes, max_size: int = MAX_FRAME) -> bytes:
    if 1 + len(payload) > max_size:
        raise FrameTooLarge(
            f"A sync message of {len(payload)} bytes is over the limit of {max_size} bytes."
        )
    return HEADER.pack(1 + len(payload), frame_type) + payload


def _check_header(length: int, type_byte: int, max_size: int) -> FrameType:
    if length == 0:
        raise MalformedFrame("The other device sent a malformed sync message (empty frame).")
    if length > max_size:
        raise FrameTooLarge(
            f"The other device sent a message of {length} bytes, over the limit of {max_size} bytes; "
            "the connection was closed."
        )
    try:
        return FrameType(type_byte)
    except ValueError:
        raise MalformedFrame(
            f"The other device sent a malformed sync message (unknown type {type_byte:#04x})."
        ) from None


class FrameReader:
    """Sans-IO decoder: `feed(data)` returns the complete frames found so far."""

    def __init__(self, max_size: int = MAX_FRAME) -> None:
        self.max_size = max_size
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        at = 0  # consumed bytes are dropped once, at the end (not once per frame)
        while len(self._buf) - at >= HEADER.size:
            length, type_byte = HEADER.unpack_from(self._buf, at)
            frame_type = _check_header(length, type_byte, self.max_size)
            end = at + 4 + length
            if len(self._buf) < end:
                break
            frames.append(Frame(frame_type, bytes(self._buf[at + HEADER.size:end])))
            at = end
        del self._buf[:at]
        return frames

    @property
    def pending(self) -> int:
        return len(self._buf)


def recv_some(sock: socket.socket, n: int) -> bytes:
    """Up to n bytes, at least one; a typed error for a timeout, a lost or closed connection."""
    try:
        chunk = sock.recv(n)
    except TimeoutError:
        raise ConnectionLost("The other device stopped answering; the sync was interrupted.") from None
    except ssl.SSLError:
        raise  # TLS alerts (e.g. "unknown CA") mean something specific to sync.direct
    except OSError:
        raise ConnectionLost("The connection to the other device was lost.") from None
    if not chunk:
        raise ConnectionLost("The other device closed the connection before the sync finished.")
    return chunk


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunks += recv_some(sock, min(n - len(chunks), 1 << 20))
    return bytes(chunks)


def recv_frame(sock: socket.socket, max_size: int = MAX_FRAME, tap: FrameTap | None = None) -> Frame:
    header = _recv_exact(sock, HEADER.size)
    length, type_byte = HEADER.unpack(header)
    frame_type = _check_header(length, type_byte, max_size)
    payload = _recv_exact(sock, length - 1) if length > 1 else b""
    if tap is not None:
        tap("received", header + payload)
    return Frame(frame_type, payload)


def send_frame(sock: socket.socket, frame: Frame, max_size: int = MAX_FRAME, tap: FrameTap | None = None) -> None:
    send_frames(sock, [frame], max_size, tap)


def send_frames(sock: socket.socket, frames: list[Frame], max_size: int = MAX_FRAME, tap: FrameTap | None = None) -> None:
    """Send frames in as few writes as practical (one small write each would stall on Nagle)."""
    batch = bytearray()
    for frame in frames:
        data = frame.encode(max_size)
        if tap is not None:
            tap("sent", data)
        batch += data
        if len(batch) >= _BATCH:
            _sendall(sock, bytes(batch))
            batch.clear()
    if batch:
        _sendall(sock, bytes(batch))


_BATCH = 1 << 20


def _sendall(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except TimeoutError:
        raise ConnectionLost("The other device stopped answering; the sync was interrupted.") from None
    except ssl.SSLError:
        raise
    except OSError:
        raise ConnectionLost("The connection to the other device was lost.") from None
