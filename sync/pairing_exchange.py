"""Pairing as an exchange of messages: frames in, frames out, no sockets, clocks or store.

The listener shows a code; the joiner types it. `JoinerExchange` and `ListenerExchange` run
the pairing protocol (docs/sync-protocol.md, "Pairing") for their side: SPAKE2 with the code
as the password (the `spake2` package: the joiner is side A, the listener side B), key
confirmation (the joiner's first; the listener checks it before it says anything derived from
the key), then introductions sealed with AES-256-GCM and the listener's acknowledgement.
`sync.pairing` runs them over TCP through the one driver (`sync.driver`); tests run two of
them against each other in memory.

Every state an exchange can be in, what it waits for there and where that leads, is the table
`_WAITS_FOR` (the shape of h11's `_state.py`). Who broke the rules decides the error:

- the other side (a frame out of order, malformed, altered or replayed, a wrong code):
  `ProtocolError` or `PairingFailed` and its subclasses (`RemotePairingError`,
  `WrongPairingCode`, `PairingCodeExpired`), with the sentence the user sees; the exchange
  is then `FAILED`, and `farewell()` gives the ERROR frame the listener sends before it closes;
- this device's own code (a frame handed over before `start()` or after the end, `start()`
  twice): `ExchangeMisuse`.

Storing the result is the caller's: `commit(Paired)` is called once, at the moment the
protocol says the pairing stands (the joiner: before it acknowledges; the listener: when the
acknowledgement arrives), and what it returns is `exchange.result`.

Group key rule: the listener's key wins if it has one; otherwise the joiner's; otherwise the
listener makes a new random one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import struct
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from spake2 import SPAKE2_A, SPAKE2_B
from spake2.ed25519_basic import NotOnCurve
from spake2.spake2 import SPAKEError

from store.device_identity import DeviceIdentity
from store.errors import NotewellError
from sync.errors import (
    ExchangeMisuse,
    PairingCodeExpired,
    PairingFailed,
    ProtocolError,
    RemotePairingError,
    WrongPairingCode,
)
from sync.framing import Frame, FrameType
from sync.peers import GROUP_KEY_BYTES
from sync.wire import (
    SELF_PAIRING,
    confirm_frame,
    introduction,
    pair_error_frame,
    pake_frame,
    raise_pair_error,
    read_introduction,
    read_pake,
    read_sealed_plaintext,
    sealed_plaintext,
)

CODE_DIGITS = 8
_ID_JOINER = b"notewell-pair-joiner"
_ID_LISTENER = b"notewell-pair-listener"
_LABEL = b"notewell-pair-v1"


# What `spake2` raises for a message it cannot use: its own errors, ValueError for a point
# outside the group, and NotOnCurve (a plain Exception) for bytes that are no point at all.
_SPAKE_REFUSALS = (SPAKEError, ValueError, NotOnCurve)
# A SPAKE2 message on Ed25519 as the spake2 library writes it: a side byte and a point.
SPAKE2_MESSAGE_BYTES = 33


def _finish(spake: SPAKE2_A | SPAKE2_B, message: bytes) -> bytes:
    """The shared secret. The library reads some messages of the wrong size as points and
    would fail only at the confirmation, as if the code were wrong: refused here instead."""
    if len(message) != SPAKE2_MESSAGE_BYTES:
        raise ValueError("a SPAKE2 message of the wrong size")
    return spake.finish(message)


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
    """AES-256-GCM in one direction; the nonce is a counter, so no nonce is ever reused (and a
    replayed or reordered message fails to open)."""

    def __init__(self, key: bytes, direction: bytes) -> None:
        self._aead = AESGCM(key)
        self._aad = _LABEL + b" " + direction
        self._counter = 0

    def _nonce(self) -> bytes:
        nonce = struct.pack(">4xQ", self._counter)
        self._counter += 1
        return nonce

    def seal(self, data: dict) -> Frame:
        return Frame(FrameType.SEALED, self._aead.encrypt(self._nonce(), sealed_plaintext(data), self._aad))

    def open(self, frame: Frame) -> dict:
        try:
            plain = self._aead.decrypt(self._nonce(), frame.payload, self._aad)
        except InvalidTag:
            raise RemotePairingError("A pairing message was altered in transit; nothing was stored.") from None
        return read_sealed_plaintext(plain)


# --- the states ------------------------------------------------------------------------------


class Role(str, Enum):
    JOINER = "joiner"
    LISTENER = "listener"


class State(str, Enum):
    START = "start"                            # nothing sent or received yet
    AWAIT_PAKE = "await-pake"                  # the other side's SPAKE2 message
    AWAIT_CONFIRM = "await-confirm"            # its key confirmation
    AWAIT_INTRODUCTION = "await-introduction"  # its sealed name, id, certificate, group key
    AWAIT_ACK = "await-ack"                    # (listener) the joiner's sealed acknowledgement
    PAIRED = "paired"
    FAILED = "failed"


# Everything that moves an exchange lives here: in each state, the one frame type a side
# waits for and the state that frame leads to. `start()` moves START to AWAIT_PAKE. Any other
# frame is the other side's fault (see `_unexpected`), and any error ends in FAILED.
_WAITS_FOR: dict[tuple[Role, State], tuple[FrameType, State]] = {
    (Role.JOINER, State.AWAIT_PAKE): (FrameType.PAKE, State.AWAIT_CONFIRM),
    (Role.JOINER, State.AWAIT_CONFIRM): (FrameType.CONFIRM, State.AWAIT_INTRODUCTION),
    (Role.JOINER, State.AWAIT_INTRODUCTION): (FrameType.SEALED, State.PAIRED),
    (Role.LISTENER, State.AWAIT_PAKE): (FrameType.PAKE, State.AWAIT_CONFIRM),
    (Role.LISTENER, State.AWAIT_CONFIRM): (FrameType.CONFIRM, State.AWAIT_INTRODUCTION),
    (Role.LISTENER, State.AWAIT_INTRODUCTION): (FrameType.SEALED, State.AWAIT_ACK),
    (Role.LISTENER, State.AWAIT_ACK): (FrameType.SEALED, State.PAIRED),
}

# Where an ERROR frame from the other side is believed (its code becomes our error). Before
# key confirmation the listener believes nothing: an ERROR there counts as a wrong code.
_BELIEVES_ERRORS = {
    (Role.JOINER, State.AWAIT_PAKE), (Role.JOINER, State.AWAIT_CONFIRM),
    (Role.JOINER, State.AWAIT_INTRODUCTION),
    (Role.LISTENER, State.AWAIT_INTRODUCTION), (Role.LISTENER, State.AWAIT_ACK),
}

_BROKE_OFF = "The other device broke off the pairing; nothing was stored."


def _unexpected(role: Role, state: State) -> NotewellError:
    """The error for a frame the other side should not have sent in `state`."""
    if state == State.AWAIT_PAKE:
        return ProtocolError("The other device did not speak the pairing protocol.")
    if state == State.AWAIT_CONFIRM:
        return _wrong_code() if role == Role.LISTENER else _listener_unproven()
    return RemotePairingError(_BROKE_OFF)


def _wrong_code() -> WrongPairingCode:
    return WrongPairingCode(
        "The other device entered a wrong pairing code; the code is now void, so start pairing again for a new one."
    )


def _listener_unproven() -> RemotePairingError:
    return RemotePairingError("The other device could not prove it knows the code; nothing was stored.")


@dataclass(frozen=True)
class Paired:
    """What the two devices agreed; the caller stores it (`commit`)."""

    device_id: str
    name: str
    cert_pem: str
    group_key: bytes                # the key both now use
    store_group_key: bool           # this side's stored key must become `group_key`
    group_key_replaced: bool = False  # the joiner had another group key and adopts this one


Commit = Callable[[Paired], Any]


class _Exchange:
    role: Role

    def __init__(self, code: str, identity: DeviceIdentity, own_group_key: bytes | None, commit: Commit) -> None:
        self._password = _password(code)  # a mistyped code fails here, before anything is sent
        self._identity = identity
        self._own_key = own_group_key
        self._commit = commit
        self._state = State.START
        self._farewell: list[Frame] = []
        self._keys: _Keys | None = None
        self._inbound: _Sealer | None = None
        self._outbound: _Sealer | None = None
        self.result: Any = None

    @property
    def state(self) -> State:
        return self._state

    @property
    def finished(self) -> bool:
        return self._state in (State.PAIRED, State.FAILED)

    @property
    def paired(self) -> bool:
        return self._state == State.PAIRED

    def farewell(self, error: BaseException | None = None) -> list[Frame]:
        """The ERROR frame this side sends before closing, if its refusal has one (once)."""
        out, self._farewell = self._farewell, []
        return out

    def start(self) -> list[Frame]:
        if self._state != State.START:
            raise ExchangeMisuse("The pairing was started twice; nothing was stored.")
        self._state = State.AWAIT_PAKE
        return self._opening()

    def receive(self, frame: Frame) -> list[Frame]:
        step = _WAITS_FOR.get((self.role, self._state))
        if step is None:
            raise ExchangeMisuse(
                f"A pairing message was handled {'before the start' if self._state == State.START else 'after the end'}"
                " of the pairing; nothing was stored."
            )
        expected, then = step
        state = self._state
        try:
            if frame.type == expected:
                out = self._handle(state, frame)
            elif frame.type == FrameType.ERROR and (self.role, state) in _BELIEVES_ERRORS:
                raise_pair_error(frame)
            else:
                raise _unexpected(self.role, state)
        except NotewellError as e:
            self._state = State.FAILED
            code = self._refusal_code(state, e)
            if code is not None:
                self._farewell = [pair_error_frame(code)]
            raise
        self._state = then
        return out

    # -- for the two sides

    def _opening(self) -> list[Frame]:
        return []

    def _handle(self, state: State, frame: Frame) -> list[Frame]:
        raise NotImplementedError

    def _refusal_code(self, state: State, error: NotewellError) -> str | None:
        return None

    def _sealers(self, inbound: tuple[bytes, bytes], outbound: tuple[bytes, bytes]) -> None:
        self._inbound, self._outbound = _Sealer(*inbound), _Sealer(*outbound)

    def _introduction(self, key: bytes | None) -> Frame:
        ident = self._identity
        return self._outbound.seal(introduction(ident.device_id, ident.name, ident.cert_pem, key))


class JoinerExchange(_Exchange):
    """The side that types the code: it speaks first."""

    role = Role.JOINER

    def __init__(self, code: str, identity: DeviceIdentity, *, own_group_key: bytes | None, commit: Commit) -> None:
        super().__init__(code, identity, own_group_key, commit)
        self._spake = SPAKE2_A(self._password, idA=_ID_JOINER, idB=_ID_LISTENER)
        self._joiner_msg = b""

    def _opening(self) -> list[Frame]:
        self._joiner_msg = self._spake.start()
        return [pake_frame(self._joiner_msg)]

    def _handle(self, state: State, frame: Frame) -> list[Frame]:
        if state == State.AWAIT_PAKE:
            listener_msg = read_pake(frame)
            try:
                shared = _finish(self._spake, listener_msg)
            except _SPAKE_REFUSALS:
                raise RemotePairingError("The other device sent a malformed pairing message; nothing was stored.") from None
            keys = self._keys = _derive(shared, self._joiner_msg, listener_msg)
            return [confirm_frame(_confirmation(keys.confirm_joiner, b"joiner", keys.transcript))]
        keys = self._keys
        if state == State.AWAIT_CONFIRM:
            expected = _confirmation(keys.confirm_listener, b"listener", keys.transcript)
            if not hmac.compare_digest(frame.payload, expected):
                raise _listener_unproven()
            self._sealers((keys.listener_to_joiner, b"listener->joiner"), (keys.joiner_to_listener, b"joiner->listener"))
            return [self._introduction(self._own_key)]
        # AWAIT_INTRODUCTION: the listener's introduction, with the key both will use
        intro = read_introduction(self._inbound.open(frame), self._identity.device_id)
        if intro.group_key is None:
            raise RemotePairingError("The other device sent no sync-group key; nothing was stored.")
        own = self._own_key
        self.result = self._commit(Paired(
            intro.device_id, intro.name, intro.cert_pem, intro.group_key,
            store_group_key=own != intro.group_key,
            group_key_replaced=own is not None and own != intro.group_key,
        ))
        return [self._outbound.seal({"ok": True})]


class ListenerExchange(_Exchange):
    """The side that shows the code. `code_used` turns true when the code is tested (a frame
    arrives where the key confirmation belongs) or a SPAKE2 message is refused: from then on
    the code is consumed, whatever happens next. A connection that stops after a well-formed
    SPAKE2 message has learnt nothing (nothing derived from the key was sent yet), so it
    leaves the code unused. A code is refused once `clock()` is past `expires_at`."""

    role = Role.LISTENER

    def __init__(self, code: str, identity: DeviceIdentity, *, own_group_key: bytes | None, commit: Commit,
                 expires_at: float, clock: Callable[[], float]) -> None:
        super().__init__(code, identity, own_group_key, commit)
        self._expires_at, self._clock = expires_at, clock
        self._pake_arrived = False
        self._joiner: Any = None
        self._agreed = b""

    @property
    def code_used(self) -> bool:
        return self._pake_arrived and self._state != State.AWAIT_CONFIRM

    def _refusal_code(self, state: State, error: NotewellError) -> str | None:
        if state == State.AWAIT_PAKE:
            return "expired" if isinstance(error, PairingCodeExpired) else "protocol"
        if state == State.AWAIT_CONFIRM:
            return "wrong-code"
        if state == State.AWAIT_INTRODUCTION and isinstance(error, PairingFailed):
            return "self" if error.message == SELF_PAIRING else "protocol"
        return None

    def _handle(self, state: State, frame: Frame) -> list[Frame]:
        if state == State.AWAIT_PAKE:
            self._pake_arrived = True
            if self._clock() > self._expires_at:
                raise PairingCodeExpired(
                    "Another device tried the pairing code after it expired; start pairing again for a new code."
                )
            try:
                joiner_msg = read_pake(frame)
                spake = SPAKE2_B(self._password, idA=_ID_JOINER, idB=_ID_LISTENER)
                listener_msg = spake.start()
                shared = _finish(spake, joiner_msg)
            except (*_SPAKE_REFUSALS, ProtocolError):
                raise RemotePairingError(
                    "Another device sent a malformed pairing message; the code is now void, so start pairing again."
                ) from None
            self._keys = _derive(shared, joiner_msg, listener_msg)
            return [pake_frame(listener_msg)]
        keys = self._keys
        if state == State.AWAIT_CONFIRM:
            expected = _confirmation(keys.confirm_joiner, b"joiner", keys.transcript)
            if not hmac.compare_digest(frame.payload, expected):
                raise _wrong_code()
            self._sealers((keys.joiner_to_listener, b"joiner->listener"), (keys.listener_to_joiner, b"listener->joiner"))
            return [confirm_frame(_confirmation(keys.confirm_listener, b"listener", keys.transcript))]
        if state == State.AWAIT_INTRODUCTION:
            self._joiner = read_introduction(self._inbound.open(frame), self._identity.device_id)
            self._agreed = self._own_key or self._joiner.group_key or os.urandom(GROUP_KEY_BYTES)
            return [self._introduction(self._agreed)]
        # AWAIT_ACK
        if self._inbound.open(frame).get("ok") is not True:
            raise RemotePairingError("The other device did not finish the pairing; nothing was stored.")
        joiner = self._joiner
        self.result = self._commit(Paired(
            joiner.device_id, joiner.name, joiner.cert_pem, self._agreed, store_group_key=self._own_key is None,
        ))
        return []
