"""The one socket loop for every sync conversation: the IO that the conversations leave out.

`SyncSession` (sync/protocol.py) and the pairing exchanges (sync/pairing_exchange.py) decide
everything about a conversation and perform no IO: frames in, frames out. This module is the
runtime around them, the same for `sync serve`, `sync now`, live sync and pairing: it reads
with a deadline, cuts the stream into frames (checked against the size limit before any
payload is buffered), hands them over, writes what comes back, and on an error sends the
exchange's own farewell (an ERROR code) before it lets the error go. What a socket failure
means to the user is the caller's (`sync.direct` turns TLS alerts into "not paired").

    channel = FrameChannel(sock, max_frame, tap, timeout=30)
    run(channel, exchange, in_store=..., live=LiveOptions(...) or None)

Store calls made by an exchange run through `in_store` (the thread that owns the record
store's SQLite connection), once per batch of frames that arrived together.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from typing import Any, Callable, Protocol

from store.errors import NotewellError
from sync.report import SyncReport
from sync.errors import ConnectionLost, SyncError
from sync.framing import Frame, FrameReader, FrameTap, recv_some, send_frames

DEFAULT_TIMEOUT = 30.0
# Live sessions: how often local changes are looked for, when an idle side sends a PING, and
# how long without a byte from the other side ends the session. A look costs one PRAGMA when
# nothing changed; every 20 ms keeps an edit made by another process well inside 50 ms.
LIVE_POLL_INTERVAL = 0.02
LIVE_KEEPALIVE = 15.0
LIVE_IDLE_TIMEOUT = 45.0

RunInStore = Callable[[Callable[[], Any]], Any]

# What a deadline that no client can stretch says when it ends a connection (sync/limits.py).
_TOO_SLOW = "The other device took too long to send one sync message; the connection was closed."
_TOO_LONG = "The other device took too long; the connection was closed."


def call_here(fn):
    """The default `RunInStore`: the store belongs to the calling thread."""
    return fn()


# --- what the driver asks of a conversation --------------------------------------------


class Exchange(Protocol):
    """A sans-IO conversation: `start()` and `receive(frame)` return the frames to send."""

    @property
    def finished(self) -> bool: ...

    def start(self) -> list[Frame]: ...

    def receive(self, frame: Frame) -> list[Frame]: ...

    def farewell(self, error: BaseException) -> list[Frame]:
        """Frames to send before closing because of `error` (often none)."""
        ...


class SteppedExchange(Exchange, Protocol):
    """A conversation that does long work in steps (sync/protocol.py): with `in_steps` set,
    `more()` returns the next step's frames while `has_more`."""

    in_steps: bool

    @property
    def has_more(self) -> bool: ...

    def more(self) -> list[Frame]: ...


class LiveExchange(SteppedExchange, Protocol):
    """A conversation that may stay open after its first part (`live`) and push changes."""

    @property
    def live(self) -> bool: ...

    @property
    def report(self) -> SyncReport: ...

    def poll_local(self) -> list[Frame]: ...

    def ping(self) -> Frame: ...

    def close(self) -> list[Frame]: ...

    def wake_on_commit(self, wake: Callable[[], None]) -> None: ...

    def detach(self) -> None: ...


# --- the connection's frames --------------------------------------------------------------


class FrameChannel:
    """Frames over one connected socket (plain TCP or TLS): reading with deadlines, framing
    with a size limit both ways, writing in few calls. A `tap` sees every frame (tests).

    Deadlines: the socket's timeout bounds each wait for data (that long without a byte is
    `ConnectionLost`); `frame_timeout` bounds each frame from its first byte to its last, and
    `deadline` (a `time.monotonic()` value) the whole conversation, so a peer that sends a
    byte now and then cannot hold the connection beyond either. `early` are frames read
    before the channel was made, with `reader` holding what followed them (sync.pairing)."""

    def __init__(self, sock: socket.socket, max_frame: int, tap: FrameTap | None = None,
                 *, timeout: float | None = None, frame_timeout: float | None = None,
                 deadline: float | None = None, reader: FrameReader | None = None,
                 early: list[Frame] | None = None) -> None:
        self.sock, self.max_frame, self.tap = sock, max_frame, tap
        if timeout is not None:
            sock.settimeout(timeout)
        self.read_timeout = sock.gettimeout()
        self.frame_timeout, self.deadline = frame_timeout, deadline
        self.reader = reader or FrameReader(max_frame)
        self._early = list(early or ())
        # When the part of a frame held in `reader` began to arrive (None: none held).
        self._frame_began: float | None = time.monotonic() if self.reader.pending else None

    def send(self, frames: list[Frame]) -> None:
        if frames:
            send_frames(self.sock, frames, self.max_frame, self.tap)

    def send_quietly(self, frames: list[Frame]) -> None:
        """For goodbyes on a connection that may be gone already: failures are ignored."""
        try:
            self.send(frames)
        except (SyncError, OSError):
            pass

    def receive(self) -> list[Frame]:
        """Waits for at least one whole frame; returns every whole frame read so far.

        A side's turn can be a thousand frames: reading them as they come, many per read,
        costs one call per TLS record instead of two per frame. What is left of a frame stays
        in `reader` for the next call."""
        if self._early:
            frames, self._early = self._early, []
            return frames
        if self.reader.pending:
            # What this side did with the frames before (store work) is not the peer's time.
            self._frame_began = time.monotonic()
        while True:
            bound = self._nearest_deadline()
            wait = self.read_timeout
            if bound is not None:
                left = bound[0] - time.monotonic()
                if left <= 0:
                    raise ConnectionLost(bound[1])
                wait = left if wait is None else min(wait, left)
            self.sock.settimeout(wait)
            try:
                frames = self._feed(recv_some(self.sock, 1 << 20))
            except ConnectionLost:
                if bound is not None and time.monotonic() >= bound[0]:
                    raise ConnectionLost(bound[1]) from None
                raise
            finally:
                self.sock.settimeout(self.read_timeout)
            if frames:
                for frame in frames:
                    self.received(frame)
                return frames

    def _feed(self, data: bytes) -> list[Frame]:
        """The reader's whole frames, noting when a part of the next one began to arrive."""
        frames = self.reader.feed(data)
        if not self.reader.pending:
            self._frame_began = None
        elif frames or self._frame_began is None:
            self._frame_began = time.monotonic()
        return frames

    def _nearest_deadline(self) -> tuple[float, str] | None:
        """The nearest total deadline (a `time.monotonic()` value) and what it says, if any."""
        bounds = []
        if self.deadline is not None:
            bounds.append((self.deadline, _TOO_LONG))
        if self.frame_timeout is not None and self._frame_began is not None:
            bounds.append((self._frame_began + self.frame_timeout, _TOO_SLOW))
        return min(bounds) if bounds else None

    def receive_now(self, wait: float, wake: "Waker | None" = None) -> list[Frame] | None:
        """Full duplex: waits up to `wait` seconds for data (or for `wake`), then returns the
        whole frames read without blocking: None when nothing arrived, [] for part of a frame.
        The end of the stream is `ConnectionLost`. The caller shows each to the tap
        (`received`) as it takes it."""
        sock = self.sock
        if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
            ready, _, _ = select.select([sock] if wake is None else [sock, wake], [], [], wait)
            if wake is not None and wake in ready:
                wake.drain()
        timeout = sock.gettimeout() or DEFAULT_TIMEOUT
        sock.setblocking(False)
        try:
            data = sock.recv(1 << 16)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return None
        except ssl.SSLZeroReturnError:
            data = b""
        except ssl.SSLError:
            raise  # TLS alerts mean something specific to the caller (sync.direct)
        except OSError:
            raise ConnectionLost("The connection to the other device was lost.") from None
        finally:
            sock.settimeout(timeout)
        if data == b"":
            raise ConnectionLost("The other device closed the connection without ending the live sync.")
        frames = self._feed(data)
        bound = self._nearest_deadline()
        if bound is not None and time.monotonic() >= bound[0]:
            raise ConnectionLost(bound[1])
        return frames

    def received(self, frame: Frame) -> None:
        if self.tap is not None:
            self.tap("received", frame.encode(self.max_frame))


# --- live sessions: waking and options ------------------------------------------------------


class Waker:
    """Wakes a live session at once: the app calls `wake()` after it commits an edit, so the
    change goes out without waiting for the session's next look at the store (20 ms). Changes
    made by other processes are still found by that look. Safe to call from any thread."""

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)

    def wake(self) -> None:
        try:
            self._w.send(b"\0")
        except OSError:
            pass  # already awake (buffer full) or closed: nothing to do

    def fileno(self) -> int:
        return self._r.fileno()

    def drain(self) -> None:
        try:
            while self._r.recv(4096):
                pass
        except OSError:
            pass

    def close(self) -> None:
        self._r.close()
        self._w.close()


class LiveOptions:
    """How a live session runs: `stop_event` ends it (a BYE is sent); `on_exchange(report)`
    is called after each batch of frames received (from the connection's thread)."""

    def __init__(
        self,
        stop_event: threading.Event | None = None,
        *,
        poll_interval: float = LIVE_POLL_INTERVAL,
        keepalive: float = LIVE_KEEPALIVE,
        idle_timeout: float = LIVE_IDLE_TIMEOUT,
        on_live: Callable[[SyncReport], None] | None = None,
        on_exchange: Callable[[SyncReport], None] | None = None,
        waker: Waker | None = None,
    ) -> None:
        self.stop_event = stop_event
        self.waker = waker
        self.poll_interval, self.keepalive, self.idle_timeout = poll_interval, keepalive, idle_timeout
        self.on_live, self.on_exchange = on_live, on_exchange


# --- the loops --------------------------------------------------------------------------------


def run(channel: FrameChannel, exchange: Exchange, *, in_store: RunInStore = call_here,
        live: LiveOptions | None = None, stepped: bool = False) -> None:
    """Runs `exchange` over `channel` until it is finished (or, with `live`, until it has
    gone live and the live part has ended). `stepped`: the exchange is a `SteppedExchange`
    (every live one is), whose steps go out one by one.

    Half duplex first: the exchange's turn, then the other side's. An error from the exchange,
    from the store or from reading a frame sends `exchange.farewell(error)` and is raised; a
    lost connection and TLS failures are raised as they are (nothing can be said over them)."""
    try:
        left = _half_duplex(channel, exchange, in_store, live is not None, stepped or live is not None)
        if live is not None and not exchange.finished:
            _live(channel, exchange, in_store, live, left)  # type: ignore[arg-type]
    except (ConnectionLost, ssl.SSLError):
        raise
    except NotewellError as e:
        channel.send_quietly(exchange.farewell(e))
        raise


def _half_duplex(channel: FrameChannel, exchange: Exchange, in_store: RunInStore, may_go_live: bool,
                 stepped: bool) -> list[Frame]:
    """Returns the frames that arrived after the exchange went live (the live loop's)."""

    def settled() -> bool:
        return exchange.finished or (may_go_live and exchange.live)  # type: ignore[attr-defined]

    def receive_all(frames: list[Frame]) -> tuple[list[Frame], list[Frame]]:
        out: list[Frame] = []
        for i, frame in enumerate(frames):
            out += exchange.receive(frame)
            if settled():
                return out, frames[i + 1:]
        return out, []

    left: list[Frame] = []
    if stepped:
        exchange.in_steps = True  # type: ignore[attr-defined]  # this loop calls more()
    channel.send(in_store(exchange.start))
    while True:
        if stepped:
            _send_the_rest(channel, exchange, in_store)  # type: ignore[arg-type]
        if settled():
            return left
        frames = channel.receive()
        # One hand-over to the store's thread for all that arrived, not one per frame.
        out, left = in_store(lambda: receive_all(frames))
        channel.send(out)


def _send_the_rest(channel: FrameChannel, exchange: SteppedExchange, in_store: RunInStore) -> None:
    """Work an exchange does in steps (a chunk of whole documents, a batch stored): each
    step's frames go out before the next, so the other side hears from this one while it
    works (its read deadline never fires) and sees its progress."""
    while exchange.has_more:
        channel.send(in_store(exchange.more))


def _live(channel: FrameChannel, session: LiveExchange, in_store: RunInStore, opts: LiveOptions,
          left: list[Frame]) -> None:
    """Full duplex from here: frames are small, so neither side can block the other.

    `channel` holds any part of a frame read already, `left` whole frames read already."""
    last_in = last_out = time.monotonic()
    if opts.on_live is not None:
        opts.on_live(session.report)

    def send(frames) -> None:
        nonlocal last_out
        if frames:
            channel.send(frames)
            last_out = time.monotonic()

    # This process's commits wake the loop at once; their ids tell the session what to push.
    if opts.waker is not None:
        session.wake_on_commit(opts.waker.wake)
    try:
        for frame in left:
            send(in_store(lambda: session.receive(frame)))
            if session.finished:
                return
        while True:
            if opts.stop_event is not None and opts.stop_event.is_set():
                goodbye = in_store(session.close)
                try:
                    send(goodbye)
                except ConnectionLost:
                    pass  # the other side is gone already; leaving is all that was asked
                return
            frames = channel.receive_now(opts.poll_interval, opts.waker)
            if frames is not None:
                last_in = time.monotonic()
                for frame in frames:
                    channel.received(frame)
                    send(in_store(lambda: session.receive(frame)))
                    while session.has_more:
                        send(in_store(session.more))
                    if session.finished:
                        return
                if frames and opts.on_exchange is not None:
                    opts.on_exchange(session.report)
            send(in_store(session.poll_local))
            now = time.monotonic()
            if now - last_out >= opts.keepalive:
                send([session.ping()])
            if now - last_in >= opts.idle_timeout:
                raise ConnectionLost("The other device stopped answering; the live sync ended.")
    finally:
        session.detach()
