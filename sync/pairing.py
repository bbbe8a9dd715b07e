"""Pairing two devices with a short single-use code (SPAKE2 over plain TCP): the sockets.

The protocol itself, message by message, is `sync.pairing_exchange` (sans-IO); this module
listens, connects, runs an exchange through the one driver (`sync.driver`) and stores what
the two devices agreed. What follows is what the two together do.

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

A code is single-use: the first connection whose guess is tested (its key confirmation
arrives), or whose SPAKE2 message is refused (malformed, or after expiry), consumes it,
whatever happens next. It expires after `CODE_TTL` seconds (checked when that message
arrives, and the listener stops waiting then). Anyone on the network can connect, so no
connection can hold the listener: every connection waiting for its first message is watched
at once (the first whole message goes first), each attempt has `pair_attempt` seconds in all
(sync/limits.py; bytes sent now and then do not stretch it), and a connection that closes,
stalls or is cut off before its guess is tested leaves the code unused.

    listen_for_pairing(record_store, identity, host, port, *, ttl=CODE_TTL, on_ready=None) -> PairingResult
    pair_with(record_store, identity, host, port, code) -> PairingResult
    pair_over(connected_socket, record_store, identity, code) -> PairingResult
"""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass, field
from typing import Callable

from store.device_identity import DeviceIdentity
from sync import driver
from sync.driver import FrameChannel
from sync.addresses import DEFAULT_PAIR_PORT
from sync.errors import ConnectionLost, PairingCodeExpired, PairingFailed, PeerUnreachable, SyncError
from sync.framing import Frame, FrameReader
from sync.limits import Limits
from sync.pairing_exchange import (  # noqa: F401  (the codes are part of this module's API)
    CODE_DIGITS,
    JoinerExchange,
    ListenerExchange,
    Paired,
    new_code,
    normalise_code,
)
from sync.peers import Peer, PeerBook, group_key, set_group_key

CODE_TTL = 300.0
MAX_PAIR_FRAME = 64 * 1024
# Connections waiting for their first message at once; a new one pushes out the oldest.
MAX_WAITING = 16


@dataclass(frozen=True)
class PairingResult:
    peer: Peer
    group_key_replaced: bool = False  # the joiner had another group key and adopted this one


# --- storing what was agreed -------------------------------------------------------------


def _store_as_listener(record_store) -> Callable[[Paired], PairingResult]:
    def commit(paired: Paired) -> PairingResult:
        if paired.store_group_key:
            set_group_key(record_store, paired.group_key)
        return PairingResult(PeerBook(record_store).add(paired.device_id, paired.name, paired.cert_pem))
    return commit


def _store_as_joiner(record_store) -> Callable[[Paired], PairingResult]:
    def commit(paired: Paired) -> PairingResult:
        peer = PeerBook(record_store).add(paired.device_id, paired.name, paired.cert_pem)
        if paired.store_group_key:
            set_group_key(record_store, paired.group_key)
        return PairingResult(peer, group_key_replaced=paired.group_key_replaced)
    return commit


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
    attempt_timeout: float | None = None,
) -> PairingResult:
    """Show a code (through `on_ready(host, port, code)`) and wait for one device to use it.

    `attempt_timeout` (default: sync/limits.py's `pair_attempt`, or its environment variable)
    is the most one connection may take, from its accept() to the end of its attempt."""
    code = code or new_code()
    attempt_timeout = attempt_timeout or Limits.from_env().pair_attempt
    try:
        listener = socket.create_server((host, port))
    except OSError as e:
        raise PeerUnreachable(f"Cannot listen on {host}:{port}: {e.strerror or 'address unavailable'}.") from None
    deadline = clock() + ttl
    waiting = _Waiting(attempt_timeout)
    with listener:
        bound_host, bound_port = listener.getsockname()[:2]
        if on_ready is not None:
            on_ready(bound_host, bound_port, code)
        try:
            swept = False
            while True:
                expired = deadline - clock() <= 0
                if expired and not swept:
                    waiting.take_queued(listener)  # those that came in time are answered
                    swept = True
                if expired and not waiting:
                    raise PairingCodeExpired(
                        "The pairing code expired before another device used it; start pairing again for a new code."
                    )
                # A connection already waiting when the code expires is still answered (with
                # "expired"), so a late joiner hears why instead of seeing a reset.
                arrival = waiting.next_first_message(None if expired else listener,
                                                     0.5 if expired else min(deadline - clock(), 0.5))
                if arrival is None:
                    continue
                with arrival.conn:
                    exchange = ListenerExchange(code, identity, own_group_key=group_key(record_store),
                                                commit=_store_as_listener(record_store),
                                                expires_at=deadline, clock=clock)
                    channel = FrameChannel(arrival.conn, MAX_PAIR_FRAME, timeout=timeout, deadline=arrival.deadline,
                                           reader=arrival.reader, early=arrival.frames)
                    try:
                        driver.run(channel, exchange)
                    except SyncError:
                        if exchange.code_used:
                            raise  # the code is consumed, whatever happened
                        continue  # closed, garbled, stalled or not pairing before its guess: still unused
                    return exchange.result
        finally:
            waiting.close()


@dataclass
class _Arrival:
    """A connection to the pairing listener, before its first whole message."""

    conn: socket.socket
    deadline: float  # time.monotonic(): the end of this connection's attempt
    reader: FrameReader = field(default_factory=lambda: FrameReader(MAX_PAIR_FRAME))
    frames: list[Frame] = field(default_factory=list)


class _Waiting:
    """The connections waiting for their first message, all watched at once, so one that
    sends nothing, or a byte now and then, keeps no other waiting; each is closed at its
    deadline."""

    def __init__(self, attempt_timeout: float) -> None:
        self.attempt_timeout = attempt_timeout
        self._arrivals: list[_Arrival] = []

    def __bool__(self) -> bool:
        return bool(self._arrivals)

    def next_first_message(self, listener: socket.socket | None, wait: float) -> _Arrival | None:
        """Accepts new connections (unless `listener` is None) and reads the waiting ones for
        up to `wait` seconds; the first whose whole first message came, or None."""
        now = time.monotonic()
        for arrival in [a for a in self._arrivals if a.deadline <= now]:
            self._drop(arrival)
        if self._arrivals:
            wait = min(wait, min(a.deadline for a in self._arrivals) - now)
        watched = [a.conn for a in self._arrivals] + ([listener] if listener is not None else [])
        readable, _, _ = select.select(watched, [], [], max(0.0, wait))
        if listener is not None and listener in readable:
            self._accept(listener)
        for arrival in list(self._arrivals):
            if arrival.conn not in readable:
                continue
            try:
                data = arrival.conn.recv(MAX_PAIR_FRAME)
                frames = arrival.reader.feed(data) if data else None
            except (OSError, SyncError):  # reset, or a frame header no pairing message has
                frames = None
            if frames is None:
                self._drop(arrival)  # closed before its guess: the code stays unused
            elif frames:
                self._arrivals.remove(arrival)
                arrival.conn.setblocking(True)
                arrival.frames = frames
                return arrival
        return None

    def take_queued(self, listener: socket.socket) -> None:
        """Accepts the connections already queued on `listener` (at most MAX_WAITING)."""
        for _ in range(MAX_WAITING):
            readable, _, _ = select.select([listener], [], [], 0)
            if not readable:
                return
            self._accept(listener)

    def _accept(self, listener: socket.socket) -> None:
        try:
            conn, _addr = listener.accept()
        except OSError:
            return  # gone before it was taken, or no descriptor left: the next one may do
        if len(self._arrivals) >= MAX_WAITING:
            # The one silent longest makes room: a joiner sends its first message at once, so
            # a stranger keeping many connections open cannot keep it out.
            self._drop(self._arrivals[0])
        conn.setblocking(False)
        self._arrivals.append(_Arrival(conn, time.monotonic() + self.attempt_timeout))

    def _drop(self, arrival: _Arrival) -> None:
        self._arrivals.remove(arrival)
        arrival.conn.close()

    def close(self) -> None:
        for arrival in list(self._arrivals):
            self._drop(arrival)


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
    exchange = JoinerExchange(code, identity, own_group_key=group_key(record_store),
                              commit=_store_as_joiner(record_store))
    try:
        driver.run(FrameChannel(conn, MAX_PAIR_FRAME), exchange)
    except ConnectionLost:
        raise PairingFailed("The other device closed the connection; nothing was stored.") from None
    return exchange.result
