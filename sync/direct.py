"""Direct sync over TLS 1.3: the socket layer around `sync.protocol.SyncSession`.

Trust: both sides present their self-signed device certificate (CERT_REQUIRED both ways).
The trust store of every connection is built from the paired, non-revoked peers read at that
moment, so a device revoked while a server runs is refused on its next connection. After the
handshake the peer's certificate fingerprint is checked again against the peer list: only a
paired, non-revoked device id gets past it, whatever OpenSSL accepted.

    sync_now(record_store, identity, host, port, *, on_progress=None) -> SyncReport
    serve(record_store, identity, host="127.0.0.1", port=0, *, on_progress=None,
          stop_event=None, on_listening=None, on_result=None)
    SyncServer(...).bind() / .address / .serve(stop_event) / .close()

Each connection runs in a thread of its own (a live session may stay for hours). The record
store's SQLite connection belongs to the thread that opened it, so every store call runs in
that thread: by default the thread calling `serve`, which runs them for the connections; with
`run_in_store` (e.g. `lambda fn: executor.submit(fn).result()` for the app's single store
thread) `serve` can run in any thread. Store calls are never concurrent. The outcome of every sync (or its error sentence) is recorded on the
peer for `notewell sync devices`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import secrets
import select
import socket
import ssl
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable

from cryptography.hazmat.primitives import serialization

from store.device_identity import DeviceIdentity, fingerprint
from store.errors import NotewellError, VaultBusy, VaultError
from sync.addresses import DEFAULT_SYNC_PORT
from sync.report import ProgressCallback, SyncReport
from sync.errors import (
    ConnectionLost,
    NotPaired,
    PeerReportedError,
    PeerUnreachable,
    SyncError,
)
from sync.framing import MAX_FRAME, Frame, FrameReader, FrameTap, recv_frames, send_frame, send_frames
from sync.peers import PeerBook
from sync.protocol import SyncSession, error_frame

DEFAULT_PORT = DEFAULT_SYNC_PORT
DEFAULT_TIMEOUT = 30.0
# Live sessions: how often local changes are looked for, when an idle side sends a PING, and
# how long without a byte from the other side ends the session. A look costs one PRAGMA when
# nothing changed; every 20 ms keeps an edit made by another process well inside 50 ms.
LIVE_POLL_INTERVAL = 0.02
LIVE_KEEPALIVE = 15.0
LIVE_IDLE_TIMEOUT = 45.0

ResultCallback = Callable[[SyncReport | None, NotewellError | None], None]
RunInStore = Callable[[Callable[[], Any]], Any]

# Alerts a TLS peer sends when it does not trust our certificate.
_REFUSAL_ALERTS = ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN", "CERTIFICATE_REQUIRED",
                   "ACCESS_DENIED", "HANDSHAKE_FAILURE")

_NOT_TRUSTED_BY_PEER = (
    "The other device refused this device: it is not paired with it, or the pairing was revoked."
)


# The server speaks first once it has accepted our certificate, so a hang-up before its hello
# almost always means it refused us; the message says so without claiming certainty.
_HUNG_UP_BEFORE_HELLO = (
    "The other device refused this device or hung up before the sync began; "
    "check that the two devices are paired and that the pairing was not revoked."
)


def _context(identity: DeviceIdentity, trusted_certs: list[str], *, server: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # devices have no host names; trust is the fingerprint
    ctx.verify_mode = ssl.CERT_REQUIRED
    # The ssl module only loads a key from a file. The file holds the key encrypted under a
    # one-time password and lives for the duration of this call in a private directory.
    password = secrets.token_bytes(32)
    encrypted = identity.private_key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    with tempfile.TemporaryDirectory(prefix="notewell-tls-") as tmp:
        cert_path, key_path = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert_path.write_text(identity.cert_pem, encoding="ascii")
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(encrypted)
        ctx.load_cert_chain(cert_path, key_path, password=password)
    ctx.load_verify_locations(cadata="".join(trusted_certs))
    if server:
        ctx.num_tickets = 0  # no session resumption is used; tickets would only cost bytes
    return ctx


# Building a context costs a few milliseconds (key file, trust store); contexts are reused
# while the identity and the set of trusted certificates stay the same.
_contexts: dict[tuple, ssl.SSLContext] = {}
_contexts_lock = threading.Lock()


def _cached_context(identity: DeviceIdentity, trusted_certs: list[str], *, server: bool) -> ssl.SSLContext:
    key = (server, identity.device_id, hashlib.sha256("".join(trusted_certs).encode("ascii")).digest())
    with _contexts_lock:
        ctx = _contexts.get(key)
    if ctx is None:
        ctx = _context(identity, trusted_certs, server=server)
        with _contexts_lock:
            if len(_contexts) >= 8:
                _contexts.clear()
            _contexts[key] = ctx
    return ctx


def client_context(identity: DeviceIdentity, trusted_certs: list[str]) -> ssl.SSLContext:
    return _cached_context(identity, trusted_certs, server=False)


def server_context(identity: DeviceIdentity, trusted_certs: list[str]) -> ssl.SSLContext:
    return _cached_context(identity, trusted_certs, server=True)


def _trusted_certs(book: PeerBook) -> list[str]:
    certs = book.trusted_certs()
    if not certs:
        raise NotPaired("This device is not paired with any other device yet; pair one first with `notewell sync pair`.")
    return certs


def _check_peer(tls: ssl.SSLSocket, book: PeerBook) -> str:
    """The peer's device id, if it is paired and not revoked (checked after the handshake)."""
    der = tls.getpeercert(binary_form=True)
    if not der:
        raise NotPaired("The other device did not present a certificate; the connection was closed.")
    device_id = fingerprint(der)
    if book.trusted(device_id) is None:
        raise NotPaired("The other device is not paired with this one, or its pairing was revoked.")
    return device_id


def _map_ssl_error(e: ssl.SSLError) -> SyncError:
    text = f"{e.reason or ''} {e}".upper()
    if any(alert in text for alert in _REFUSAL_ALERTS):
        return NotPaired(_NOT_TRUSTED_BY_PEER)
    return ConnectionLost("The secure connection to the other device failed.")


def _direct(fn):
    return fn()


def _receive_all(session: SyncSession, frames: list[Frame]) -> tuple[list[Frame], list[Frame]]:
    """Frames to send in answer, and those that came after the sync part ended (live frames,
    which the live loop takes)."""
    out: list[Frame] = []
    for i, frame in enumerate(frames):
        out += session.receive(frame)
        if session.finished or session.live:
            return out, frames[i + 1:]
    return out, []


def _converse(tls: ssl.SSLSocket, session: SyncSession, max_frame: int, tap: FrameTap | None,
              in_store: RunInStore = _direct, live: "LiveOptions | None" = None) -> SyncReport:
    reader = FrameReader(max_frame)
    left: list[Frame] = []
    try:
        send_frames(tls, in_store(session.start), max_frame, tap)
        while not session.finished and not session.live:
            frames = recv_frames(tls, reader, tap)
            # One hand-over to the store's thread for all that arrived, not one per frame.
            out, left = in_store(lambda: _receive_all(session, frames))
            send_frames(tls, out, max_frame, tap)
        if session.live:
            _live_loop(tls, session, max_frame, tap, in_store, live or LiveOptions(), reader, left)
    except ssl.SSLError as e:
        if session.role == "client" and not session.started_talking:
            raise NotPaired(_HUNG_UP_BEFORE_HELLO) from None
        raise _map_ssl_error(e) from None
    except ConnectionLost:
        if session.role == "client" and not session.started_talking:
            raise NotPaired(_HUNG_UP_BEFORE_HELLO) from None
        raise
    except PeerReportedError:
        raise  # nothing useful to tell the other side
    except NotewellError as e:
        # Tell the other side why we stop (a code, not text), then close.
        _try_send_error(tls, e, max_frame, tap)
        raise
    return session.report


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


def _read_some(tls: ssl.SSLSocket, timeout: float) -> bytes | None:
    """What has arrived, without waiting: b"" at the end of the stream, None for nothing yet."""
    tls.setblocking(False)
    try:
        return tls.recv(1 << 16)
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
        return None
    except ssl.SSLZeroReturnError:
        return b""
    except ssl.SSLError as e:
        raise _map_ssl_error(e) from None
    except OSError:
        raise ConnectionLost("The connection to the other device was lost.") from None
    finally:
        tls.settimeout(timeout)


def _live_loop(tls: ssl.SSLSocket, session: SyncSession, max_frame: int, tap: FrameTap | None,
               in_store: RunInStore, opts: LiveOptions, reader: FrameReader, left: list[Frame]) -> None:
    """Full duplex from here: frames are small, so neither side can block the other.

    `reader` holds any part of a frame read already, `left` whole frames read already."""
    timeout = tls.gettimeout() or DEFAULT_TIMEOUT
    last_in = last_out = time.monotonic()
    if opts.on_live is not None:
        opts.on_live(session.report)

    def send(frames) -> None:
        nonlocal last_out
        if frames:
            send_frames(tls, frames, max_frame, tap)
            last_out = time.monotonic()

    # This process's commits wake the loop at once; their ids tell the session what to push.
    wake = (lambda _ids: opts.waker.wake()) if opts.waker is not None else None
    if wake is not None:
        session.store.add_listener(wake)
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
            if not tls.pending():
                ready, _, _ = select.select([tls] if opts.waker is None else [tls, opts.waker], [], [], opts.poll_interval)
                if opts.waker is not None and opts.waker in ready:
                    opts.waker.drain()
            data = _read_some(tls, timeout)
            if data == b"":
                raise ConnectionLost("The other device closed the connection without ending the live sync.")
            if data:
                last_in = time.monotonic()
                frames = reader.feed(data)
                for frame in frames:
                    if tap is not None:
                        tap("received", frame.encode(max_frame))
                    send(in_store(lambda: session.receive(frame)))
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
        if wake is not None:
            session.store.remove_listener(wake)
        session.detach()


def _try_send_error(tls, exc, max_frame, tap) -> None:
    try:
        send_frame(tls, error_frame(exc), max_frame, tap)
    except (SyncError, OSError):
        pass


def _record(book: PeerBook, device_id: str, report: SyncReport | None, error: NotewellError | None) -> None:
    if error is not None:
        if isinstance(error, VaultBusy):
            return  # noting it would only wait for the same lock again
        # Best effort: a full disk that stopped the sync also stops this note of it, and
        # must not replace the sentence that says why the sync stopped.
        with contextlib.suppress(VaultError):
            book.record_sync(device_id, ok=False, summary=error.message, transport="direct")
    elif report is not None:
        book.record_sync(
            device_id, ok=report.ok, summary=report.summary(), transport="direct",
            received=report.received, sent=report.sent, merged=report.merged, conflicts=report.conflicts,
        )


# --- client ------------------------------------------------------------------------------


def sync_now(
    record_store,
    identity: DeviceIdentity,
    host: str,
    port: int,
    *,
    on_progress: ProgressCallback | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    frame_tap: FrameTap | None = None,
    max_frame: int = MAX_FRAME,
) -> SyncReport:
    """Sync with the paired device serving at host:port. Raises a `SyncError` on failure."""
    return _client(record_store, identity, host, port, on_progress=on_progress, timeout=timeout,
                   frame_tap=frame_tap, max_frame=max_frame)


def live_sync(
    record_store,
    identity: DeviceIdentity,
    host: str,
    port: int,
    *,
    stop_event: threading.Event,
    on_progress: ProgressCallback | None = None,
    on_live: Callable[[SyncReport], None] | None = None,
    on_exchange: Callable[[SyncReport], None] | None = None,
    run_in_store: RunInStore | None = None,
    waker: Waker | None = None,
    poll_interval: float = LIVE_POLL_INTERVAL,
    keepalive: float = LIVE_KEEPALIVE,
    idle_timeout: float = LIVE_IDLE_TIMEOUT,
    timeout: float = DEFAULT_TIMEOUT,
    frame_tap: FrameTap | None = None,
    max_frame: int = MAX_FRAME,
) -> SyncReport:
    """Sync with host:port, then keep the connection open and push local changes both ways
    until `stop_event` is set or the other side ends it. Blocks: run it in a worker thread.

    Every store call goes through `run_in_store` (default: this thread). `on_live(report)`
    is called once the first exchange is done, `on_exchange(report)` after each batch of
    messages from the other side. `waker.wake()` makes it look for local changes at once. Returns the report of the whole session (counts since it
    opened); a lost connection raises `ConnectionLost`.
    """
    opts = LiveOptions(stop_event, poll_interval=poll_interval, keepalive=keepalive,
                       idle_timeout=idle_timeout, on_live=on_live, on_exchange=on_exchange, waker=waker)
    return _client(record_store, identity, host, port, on_progress=on_progress, timeout=timeout,
                   frame_tap=frame_tap, max_frame=max_frame, live=opts, run_in_store=run_in_store)


def _client(record_store, identity, host, port, *, on_progress, timeout, frame_tap, max_frame,
            live: LiveOptions | None = None, run_in_store: RunInStore | None = None) -> SyncReport:
    in_store: RunInStore = run_in_store or _direct
    book = in_store(lambda: PeerBook(record_store))
    ctx = client_context(identity, in_store(lambda: _trusted_certs(book)))
    # The server reads its clock for its hello after this: the start of the bracket in which
    # the two clocks are compared (sync/clock.py).
    opened_at = time.time()
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        raise PeerUnreachable(
            f"Could not reach a device at {host}:{port}; is `notewell sync serve` running there?"
        ) from None
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with raw:
        try:
            tls = ctx.wrap_socket(raw, server_side=False)
        except ssl.SSLCertVerificationError:
            raise NotPaired(
                f"The device at {host}:{port} is not one of this device's paired devices, or it was revoked."
            ) from None
        except ssl.SSLError as e:
            raise _map_ssl_error(e) from None
        except OSError:
            raise ConnectionLost("The connection to the other device was lost during the handshake.") from None
        with tls:
            peer_id = in_store(lambda: _check_peer(tls, book))
            session = in_store(lambda: SyncSession(
                record_store,
                device_id=identity.device_id,
                device_name=identity.name,
                role="client",
                peer_device_id=peer_id,
                on_progress=on_progress,
                live=live is not None,
                opened_at=opened_at,
            ))
            try:
                report = _converse(tls, session, max_frame, frame_tap, in_store, live)
            except NotewellError as e:
                in_store(lambda: _record(book, peer_id, None, e))
                raise
            in_store(lambda: _record(book, peer_id, report, None))
            return report


# --- server ------------------------------------------------------------------------------


class SyncServer:
    """Accepts paired devices; each connection runs in a thread of its own, so a live client
    does not keep the others waiting. Every store call runs in the store's thread: the one
    that calls `serve` (it runs them while the connections need it), or, with
    `run_in_store`, the thread that function hands them to."""

    def __init__(
        self,
        record_store,
        identity: DeviceIdentity,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        on_progress: ProgressCallback | None = None,
        on_result: ResultCallback | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        frame_tap: FrameTap | None = None,
        max_frame: int = MAX_FRAME,
        run_in_store: RunInStore | None = None,
        poll_interval: float = LIVE_POLL_INTERVAL,
        keepalive: float = LIVE_KEEPALIVE,
        idle_timeout: float = LIVE_IDLE_TIMEOUT,
        on_live: Callable[[SyncReport], None] | None = None,
    ) -> None:
        self.record_store = record_store
        self._live_timing = dict(poll_interval=poll_interval, keepalive=keepalive, idle_timeout=idle_timeout)
        self.on_live = on_live
        self._run_in_store = run_in_store
        self._in_store: RunInStore = run_in_store or _direct
        self.identity = identity
        self.host, self.port = host, port
        self.on_progress, self.on_result = on_progress, on_result
        self.timeout, self.frame_tap, self.max_frame = timeout, frame_tap, max_frame
        self._listener: socket.socket | None = None

    def bind(self) -> tuple[str, int]:
        """Open the listening socket; returns the actual address (port 0 picks a free one)."""
        self._in_store(lambda: _trusted_certs(PeerBook(self.record_store)))  # nobody to trust: refuse
        try:
            listener = socket.create_server((self.host, self.port), reuse_port=False)
        except OSError as e:
            raise PeerUnreachable(f"Cannot listen on {self.host}:{self.port}: {e.strerror or 'address unavailable'}.") from None
        listener.settimeout(0.2)  # wake up to notice stop_event
        self._listener = listener
        return self.address

    @property
    def address(self) -> tuple[str, int]:
        assert self._listener is not None, "bind() first"
        host, port = self._listener.getsockname()[:2]
        return host, port

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def serve(self, stop_event: threading.Event | None = None, *, max_connections: int | None = None) -> None:
        """Serves until `stop_event` is set (live sessions then get a BYE) or, with
        `max_connections`, until that many connections have been handled."""
        if self._listener is None:
            self.bind()
        stop = stop_event or threading.Event()
        calls: queue.Queue = queue.Queue()
        owner = threading.get_ident()

        def in_this_thread(fn):
            if threading.get_ident() == owner:
                return fn()
            done: Future = Future()
            calls.put((fn, done))
            return done.result()

        in_store = self._run_in_store or in_this_thread
        acceptor = threading.Thread(target=self._accept_loop, args=(stop, in_store, max_connections),
                                    name="notewell-sync-accept", daemon=True)
        acceptor.start()
        interrupted = None
        try:
            # Run the connections' store calls here until every connection has ended.
            while acceptor.is_alive() or not calls.empty():
                try:
                    fn, done = calls.get(timeout=0.05)
                except queue.Empty:
                    continue
                except KeyboardInterrupt as e:  # let the connections say goodbye first
                    interrupted = e
                    stop.set()
                    continue
                try:
                    done.set_result(fn())
                except BaseException as e:  # handed back to the connection's thread
                    done.set_exception(e)
        finally:
            self.close()
        if interrupted is not None:
            raise interrupted

    def _accept_loop(self, stop: threading.Event, in_store: RunInStore, max_connections: int | None) -> None:
        workers: list[threading.Thread] = []
        accepted = 0
        try:
            while not stop.is_set() and (max_connections is None or accepted < max_connections):
                try:
                    raw, _addr = self._listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    break  # the listener was closed
                accepted += 1
                worker = threading.Thread(target=self._connection, args=(raw, stop, in_store),
                                          name="notewell-sync-connection", daemon=True)
                worker.start()
                workers = [w for w in workers if w.is_alive()] + [worker]
        finally:
            for worker in workers:
                worker.join()

    def _connection(self, raw: socket.socket, stop: threading.Event, in_store: RunInStore) -> None:
        report, error = self._handle(raw, stop, in_store)
        if self.on_result is not None:
            in_store(lambda: self.on_result(report, error))  # one at a time, like the store calls

    def _handle(self, raw: socket.socket, stop_event: threading.Event | None = None,
                in_store: RunInStore | None = None) -> tuple[SyncReport | None, NotewellError | None]:
        """Runs in the connection's thread; every store call is handed to the store's thread."""
        in_store = in_store or self._in_store
        book = in_store(lambda: PeerBook(self.record_store))
        peer_id: str | None = None
        with raw:
            raw.settimeout(self.timeout)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                # With nobody left to trust (all revoked), trust only our own certificate, which
                # no other device can present: the handshake then refuses it with a clear alert.
                ctx = server_context(self.identity, in_store(book.trusted_certs) or [self.identity.cert_pem])
                try:
                    tls = ctx.wrap_socket(raw, server_side=True)
                except ssl.SSLCertVerificationError:
                    raise NotPaired("Refused a device that is not paired with this one (or was revoked).") from None
                except ssl.SSLError as e:
                    raise _map_ssl_error(e) from None
                except OSError:
                    raise ConnectionLost("A device disconnected during the handshake.") from None
                with tls:
                    try:
                        peer_id = in_store(lambda: _check_peer(tls, book))
                    except NotPaired as e:
                        _try_send_error(tls, e, self.max_frame, self.frame_tap)
                        raise
                    session = in_store(lambda: SyncSession(
                        self.record_store,
                        device_id=self.identity.device_id,
                        device_name=self.identity.name,
                        role="server",
                        peer_device_id=peer_id,
                        on_progress=self.on_progress,
                    ))
                    live = LiveOptions(stop_event, on_live=self.on_live, **self._live_timing)
                    report = _converse(tls, session, self.max_frame, self.frame_tap, in_store, live)
            except NotewellError as e:
                if peer_id is not None:
                    in_store(lambda: _record(book, peer_id, None, e))
                return None, e
            except Exception as e:  # a bug must not take the server down; no data in the sentence
                error = SyncError(f"The sync stopped on an internal error ({type(e).__name__}); nothing acknowledged was lost.")
                if peer_id is not None:
                    in_store(lambda: _record(book, peer_id, None, error))
                return None, error
        in_store(lambda: _record(book, peer_id, report, None))
        return report, None


def serve(
    record_store,
    identity: DeviceIdentity,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    on_progress: ProgressCallback | None = None,
    stop_event: threading.Event | None = None,
    on_listening: Callable[[str, int], None] | None = None,
    on_result: ResultCallback | None = None,
    frame_tap: FrameTap | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_connections: int | None = None,
    run_in_store: RunInStore | None = None,
    on_live: Callable[[SyncReport], None] | None = None,
) -> None:
    """Serve paired devices until `stop_event` is set (or forever). Blocks the calling thread."""
    server = SyncServer(record_store, identity, host, port, on_progress=on_progress,
                        on_result=on_result, timeout=timeout, frame_tap=frame_tap,
                        run_in_store=run_in_store, on_live=on_live)
    address = server.bind()
    if on_listening is not None:
        on_listening(*address)
    server.serve(stop_event, max_connections=max_connections)
