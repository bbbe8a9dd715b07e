"""Pairing two devices with a short single-use code (SPAKE2 over plain TCP).

One device listens and shows a code; the other connects and types it. Both run SPAKE2 with
the code as the password (the `spake2` package: the joiner is side A, the listener side B), so
an eavesdropper learns nothing and an active attacker gets exactly one guess. Then:

1. Key confirmation: the joiner sends HMAC(confirm key, transcript) first; the listener checks
   it before it says anything derived from the key. A wrong code burns the code: the listener
   answers "wrong-code" and stops. Only then does the listener send its own confirmation.
2. Under AES-256-GCM (keys per direction from HKDF over the SPAKE2 key and the transcript,
   nonces are per-direction counters) the joiner sends its name, device id, certificate and its
   sync-group key if it has one; the listener answers with the same about itself and the
   group key both will use; the joiner stores the listener as a peer and acknowledges; the
   listener stores the joiner.

Group key rule: the listener's key wins if it has one; otherwise the joiner's; otherwise the
listener makes a new random one. So a new device joins an existing group from either side,
and when two devices that each already have a group pair, the joiner adopts the listener's key
(`PairingResult.group_key_replaced` tells it that its old group's bundles will no longer open).

A code is single-use: the first connection that sends a SPAKE2 message consumes it, whatever
happens next. It expires after `CODE_TTL` seconds (checked when that message arrives, and the
listener stops waiting then). Connections that close before sending anything do not consume it.

    listen_for_pairing(record_store, identity, host, port, *, ttl=CODE_TTL, on_ready=None) -> PairingResult
    pair_with(record_store, identity, host, port, code) -> PairingResult
    pair_over(connected_socket, record_store, identity, code) -> PairingResult
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import select
import socket
import struct
import time
from dataclasses import dataclass
from typing import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from spake2 import SPAKE2_A, SPAKE2_B
from spake2.spake2 import SPAKEError

from store.device_identity import DeviceIdentity, fingerprint
from sync.addresses import DEFAULT_PAIR_PORT
from sync.errors import (
    ConnectionLost,
    PairingCodeExpired,
    PairingFailed,
    PeerUnreachable,
    ProtocolError,
    SyncError,
    WrongPairingCode,
)
from sync.framing import Frame, FrameType, recv_frame, send_frame
from sync.peers import GROUP_KEY_BYTES, Peer, PeerBook, group_key, set_group_key

CODE_TTL = 300.0
PAIR_VERSION = 1
MAX_PAIR_FRAME = 64 * 1024
CODE_DIGITS = 8
_ID_JOINER = b"notewell-pair-joiner"
_ID_LISTENER = b"notewell-pair-listener"
_LABEL = b"notewell-pair-v1"


@dataclass(frozen=True)
class PairingResult:
    peer: Peer
    group_key_replaced: bool = False  # the joiner had another group key and adopted this one


# --- codes -------------------------------------------------------------------------------


def new_code() -> str:
    digits = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))
    return f"{digits[:4]}-{digits[4:]}"


def normalise_code(code: str) -> str:
    digits = "".join(ch for ch in code if ch.isdigit())
    if len(digits) != CODE_DIGITS or len(digits) != len("".join(ch for ch in code if ch.isalnum())):
        raise PairingFailed(f"A pairing code is {CODE_DIGITS} digits, as shown on the other device (like 1234-5678).")
    return digits


def _password(code: str) -> bytes:
    return _LABEL + b":" + normalise_code(code).encode("ascii")


# --- keys and the sealed channel -------------------------------------------------------


@dataclass(frozen=True)
class _Keys:
    confirm_joiner: bytes
    confirm_listener: bytes
    joiner_to_listener: bytes
    listener_to_joiner: bytes
    transcript: bytes


def _derive(shared: bytes, joiner_msg: bytes, listener_msg: bytes) -> _Keys:
    transcript = hashlib.sha256(_LABEL + joiner_msg + listener_msg).digest()
    okm = HKDF(hashes.SHA256(), length=128, salt=transcript, info=_LABEL + b" keys").derive(shared)
    return _Keys(okm[:32], okm[32:64], okm[64:96], okm[96:], transcript)


def _confirmation(key: bytes, side: bytes, transcript: bytes) -> bytes:
    return hmac.new(key, _LABEL + b" confirm " + side + transcript, hashlib.sha256).digest()


class _Sealer:
    """AES-256-GCM in one direction; the nonce is a counter, so no nonce is ever reused."""

    def __init__(self, key: bytes, direction: bytes) -> None:
        self._aead = AESGCM(key)
        self._aad = _LABEL + b" " + direction
        self._counter = 0

    def _nonce(self) -> bytes:
        nonce = struct.pack(">4xQ", self._counter)
        self._counter += 1
        return nonce

    def seal(self, data: dict) -> Frame:
        plain = json.dumps(data, sort_keys=True).encode("utf-8")
        return Frame(FrameType.SEALED, self._aead.encrypt(self._nonce(), plain, self._aad))

    def open(self, frame: Frame) -> dict:
        if frame.type == FrameType.ERROR:
            _raise_pair_error(frame)
        if frame.type != FrameType.SEALED:
            raise PairingFailed("The other device broke off the pairing; nothing was stored.")
        try:
            plain = self._aead.decrypt(self._nonce(), frame.payload, self._aad)
            data = json.loads(plain)
        except (InvalidTag, ValueError):
            raise PairingFailed("A pairing message was altered in transit; nothing was stored.") from None
        if not isinstance(data, dict):
            raise PairingFailed("The other device sent a malformed pairing message; nothing was stored.")
        return data


# --- errors on the wire ------------------------------------------------------------------


def _error(code: str) -> Frame:
    return Frame(FrameType.ERROR, json.dumps({"code": code}).encode("utf-8"))


def _raise_pair_error(frame: Frame) -> None:
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
        raise PairingFailed("A device cannot be paired with itself.")
    raise PairingFailed("The other device broke off the pairing; nothing was stored.")


def _send_quietly(sock: socket.socket, frame: Frame) -> None:
    try:
        send_frame(sock, frame, MAX_PAIR_FRAME)
    except (SyncError, OSError):
        pass


def _recv(sock: socket.socket) -> Frame:
    return recv_frame(sock, MAX_PAIR_FRAME)


# --- what each side tells the other ----------------------------------------------------


def _introduction(identity: DeviceIdentity, key: bytes | None) -> dict:
    return {
        "device_id": identity.device_id,
        "name": identity.name,
        "cert_pem": identity.cert_pem,
        "group_key": base64.b64encode(key).decode("ascii") if key else None,
    }


def _read_introduction(data: dict, own_id: str) -> tuple[str, str, str, bytes | None]:
    device_id, name, cert_pem, key = (data.get(k) for k in ("device_id", "name", "cert_pem", "group_key"))
    if not (isinstance(device_id, str) and isinstance(name, str) and isinstance(cert_pem, str)):
        raise PairingFailed("The other device sent a malformed pairing message; nothing was stored.")
    try:
        matches = fingerprint(cert_pem) == device_id
    except ValueError:
        matches = False
    if not matches:
        raise PairingFailed("The other device's certificate does not match its device id; nothing was stored.")
    if device_id == own_id:
        raise PairingFailed("A device cannot be paired with itself.")
    raw_key = None
    if key is not None:
        try:
            raw_key = base64.b64decode(key, validate=True) if isinstance(key, str) else b""
        except ValueError:
            raw_key = b""
        if len(raw_key) != GROUP_KEY_BYTES:
            raise PairingFailed("The other device sent a malformed sync-group key; nothing was stored.")
    name = "".join(ch for ch in name if ch.isprintable())[:100] or "unnamed device"
    return device_id, name, cert_pem, raw_key


def _pake_frame(message: bytes) -> Frame:
    return Frame(FrameType.PAKE, bytes([PAIR_VERSION]) + message)


def _read_pake(frame: Frame) -> bytes:
    if frame.type == FrameType.ERROR:
        _raise_pair_error(frame)
    if frame.type != FrameType.PAKE or len(frame.payload) < 2:
        raise ProtocolError("The other device did not speak the pairing protocol.")
    if frame.payload[0] != PAIR_VERSION:
        raise ProtocolError("The other device uses another pairing protocol version; update Notewell on the older device.")
    return frame.payload[1:]


# --- listener ----------------------------------------------------------------------------


def listen_for_pairing(
    record_store,
    identity: DeviceIdentity,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PAIR_PORT,
    *,
    ttl: float = CODE_TTL,
    code: str | None = None,
    on_ready: Callable[[str, int, str], None] | None = None,
    timeout: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
) -> PairingResult:
    """Show a code (through `on_ready(host, port, code)`) and wait for one device to use it."""
    code = code or new_code()
    try:
        listener = socket.create_server((host, port))
    except OSError as e:
        raise PeerUnreachable(f"Cannot listen on {host}:{port}: {e.strerror or 'address unavailable'}.") from None
    deadline = clock() + ttl
    with listener:
        bound_host, bound_port = listener.getsockname()[:2]
        if on_ready is not None:
            on_ready(bound_host, bound_port, code)
        while True:
            remaining = deadline - clock()
            # A connection already queued when the code expires is still answered (with
            # "expired"), so a late joiner hears why instead of seeing a reset.
            readable, _, _ = select.select([listener], [], [], max(0.0, min(remaining, 0.5)))
            if not readable:
                if remaining <= 0:
                    raise PairingCodeExpired(
                        "The pairing code expired before another device used it; start pairing again for a new code."
                    )
                continue
            conn, _addr = listener.accept()
            with conn:
                conn.settimeout(timeout)
                try:
                    first = _recv(conn)
                except SyncError:
                    continue  # closed or garbled before trying a code: the code is still unused
                if first.type != FrameType.PAKE:
                    _send_quietly(conn, _error("protocol"))
                    continue
                # From here the code is consumed, whatever happens.
                return _listener_exchange(conn, first, record_store, identity, code, deadline, clock)


def _listener_exchange(conn, first, record_store, identity, code, deadline, clock) -> PairingResult:
    if clock() > deadline:
        _send_quietly(conn, _error("expired"))
        raise PairingCodeExpired("Another device tried the pairing code after it expired; start pairing again for a new code.")
    try:
        joiner_msg = _read_pake(first)
        spake = SPAKE2_B(_password(code), idA=_ID_JOINER, idB=_ID_LISTENER)
        listener_msg = spake.start()
        shared = spake.finish(joiner_msg)
    except (SPAKEError, ProtocolError, ValueError):
        _send_quietly(conn, _error("protocol"))
        raise PairingFailed("Another device sent a malformed pairing message; the code is now void, so start pairing again.") from None
    keys = _derive(shared, joiner_msg, listener_msg)
    send_frame(conn, _pake_frame(listener_msg), MAX_PAIR_FRAME)
    confirm = _recv(conn)
    expected = _confirmation(keys.confirm_joiner, b"joiner", keys.transcript)
    if confirm.type != FrameType.CONFIRM or not hmac.compare_digest(confirm.payload, expected):
        _send_quietly(conn, _error("wrong-code"))
        raise WrongPairingCode(
            "The other device entered a wrong pairing code; the code is now void, so start pairing again for a new one."
        )
    send_frame(conn, Frame(FrameType.CONFIRM, _confirmation(keys.confirm_listener, b"listener", keys.transcript)), MAX_PAIR_FRAME)
    inbound = _Sealer(keys.joiner_to_listener, b"joiner->listener")
    outbound = _Sealer(keys.listener_to_joiner, b"listener->joiner")
    try:
        device_id, name, cert_pem, joiner_key = _read_introduction(inbound.open(_recv(conn)), identity.device_id)
    except PairingFailed as e:
        _send_quietly(conn, _error("self" if "itself" in e.message else "protocol"))
        raise
    own_key = group_key(record_store)
    agreed = own_key or joiner_key or os.urandom(GROUP_KEY_BYTES)
    send_frame(conn, outbound.seal(_introduction(identity, agreed)), MAX_PAIR_FRAME)
    ack = inbound.open(_recv(conn))
    if ack.get("ok") is not True:
        raise PairingFailed("The other device did not finish the pairing; nothing was stored.")
    if own_key is None:
        set_group_key(record_store, agreed)
    return PairingResult(PeerBook(record_store).add(device_id, name, cert_pem))


# --- joiner ------------------------------------------------------------------------------


def pair_with(
    record_store,
    identity: DeviceIdentity,
    host: str,
    port: int,
    code: str,
    *,
    timeout: float = 30.0,
) -> PairingResult:
    """Use the code shown by the listening device at host:port to pair with it."""
    normalise_code(code)  # a mistyped code fails here, before it burns the real one
    try:
        conn = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        raise PeerUnreachable(
            f"Could not reach a device at {host}:{port}; is `notewell sync pair --listen` running there?"
        ) from None
    with conn:
        return pair_over(conn, record_store, identity, code)


def pair_over(conn: socket.socket, record_store, identity: DeviceIdentity, code: str) -> PairingResult:
    """The joining side over an already connected socket (`pair_with` connects first)."""
    password = _password(code)
    try:
        return _joiner_exchange(conn, record_store, identity, password)
    except ConnectionLost:
        raise PairingFailed("The other device closed the connection; nothing was stored.") from None


def _joiner_exchange(conn, record_store, identity, password) -> PairingResult:
    spake = SPAKE2_A(password, idA=_ID_JOINER, idB=_ID_LISTENER)
    joiner_msg = spake.start()
    send_frame(conn, _pake_frame(joiner_msg), MAX_PAIR_FRAME)
    try:
        listener_msg = _read_pake(_recv(conn))
        shared = spake.finish(listener_msg)
    except (SPAKEError, ValueError):
        raise PairingFailed("The other device sent a malformed pairing message; nothing was stored.") from None
    keys = _derive(shared, joiner_msg, listener_msg)
    send_frame(conn, Frame(FrameType.CONFIRM, _confirmation(keys.confirm_joiner, b"joiner", keys.transcript)), MAX_PAIR_FRAME)
    reply = _recv(conn)
    if reply.type == FrameType.ERROR:
        _raise_pair_error(reply)
    expected = _confirmation(keys.confirm_listener, b"listener", keys.transcript)
    if reply.type != FrameType.CONFIRM or not hmac.compare_digest(reply.payload, expected):
        raise PairingFailed("The other device could not prove it knows the code; nothing was stored.")
    outbound = _Sealer(keys.joiner_to_listener, b"joiner->listener")
    inbound = _Sealer(keys.listener_to_joiner, b"listener->joiner")
    own_key = group_key(record_store)
    send_frame(conn, outbound.seal(_introduction(identity, own_key)), MAX_PAIR_FRAME)
    device_id, name, cert_pem, agreed = _read_introduction(inbound.open(_recv(conn)), identity.device_id)
    if agreed is None:
        raise PairingFailed("The other device sent no sync-group key; nothing was stored.")
    peer = PeerBook(record_store).add(device_id, name, cert_pem)
    if own_key != agreed:
        set_group_key(record_store, agreed)
    send_frame(conn, outbound.seal({"ok": True}), MAX_PAIR_FRAME)
    return PairingResult(peer, group_key_replaced=own_key is not None and own_key != agreed)
