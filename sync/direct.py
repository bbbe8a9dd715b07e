"""Direct sync over TLS 1.3: the connections around `sync.protocol.SyncSession`.

This module makes and accepts the connections and decides whom to trust; the conversation
over each runs in the one driver, `sync.driver` (reading with a deadline, frames, live loop).

Trust: both sides present their self-signed device certificate (CERT_REQUIRED both ways).
The trust store of every connection is built from the paired, non-revoked peers read at that
moment (revoked here or by a revocation in the device list), so a device revoked while a
server runs is refused on its next connection. After the handshake the peer's certificate
fingerprint is checked again against the peer list: only a paired, non-revoked device id gets
past it, whatever OpenSSL accepted. A session already open ends when its peer is revoked
(sync/protocol.py checks it as the session runs).

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
import socket
import ssl
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Callable

from cryptography.hazmat.primitives import serialization

from store.device_identity import DeviceIdentity, fingerprint
from store.errors import NotewellError, VaultBusy, VaultError
from sync.addresses import DEFAULT_SYNC_PORT
from sync.report import ProgressCallback, SyncReport
from sync.errors import (
    ConnectionLost,
    NotPaired,
    PeerUnreachable,
    ServerFull,
    SyncError,
)
from sync import driver
from sync.driver import (  # noqa: F401  (Waker and LiveOptions are part of this module's API)
    DEFAULT_TIMEOUT,
    LIVE_IDLE_TIMEOUT,
    LIVE_KEEPALIVE,
    LIVE_POLL_INTERVAL,
    FrameChannel,
    LiveOptions,
    RunInStore,
    Waker,
    call_here,
)
from sync.framing import MAX_FRAME, FrameTap
from sync.limits import Limits
from sync.peers import PeerBook
from sync.protocol import SyncSession
from sync.wire import error_frame

DEFAULT_PORT = DEFAULT_SYNC_PORT

ResultCallback = Callable[[SyncReport | None, NotewellError | None], None]

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
        if book.all():  # paired before, every one of them since revoked (here or elsewhere)
            raise NotPaired("Every device this one was paired with has been revoked; pair a device first with `notewell sync pair`.")
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


def _converse(tls: ssl.SSLSocket, session: SyncSession, max_frame: int, tap: FrameTap | None,
              in_store: RunInStore = call_here, live: LiveOptions | None = None,
              frame_timeout: float | None = None) -> SyncReport:
    """Runs the session through the one driver (sync/driver.py) and says what a failed or
    refused TLS connection means here."""
    try:
        channel = FrameChannel(tls, max_frame, tap, frame_timeout=frame_timeout)
        driver.run(channel, session, in_store=in_store, live=live or LiveOptions(), stepped=True)
    except ssl.SSLError as e:
        if session.role == "client" and not session.started_talking:
            raise NotPaired(_HUNG_UP_BEFORE_HELLO) from None
        raise _map_ssl_error(e) from None
    except ConnectionLost:
        if session.role == "client" and not session.started_talking:
            raise NotPaired(_HUNG_UP_BEFORE_HELLO) from None
        raise
    return session.report


def _try_send_error(tls, exc, max_frame, tap) -> None:
    FrameChannel(tls, max_frame, tap).send_quietly([error_frame(exc)])


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
    in_store: RunInStore = run_in_store or call_here
    limits = Limits.from_env()
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
                hold_bytes=limits.session_hold_bytes,
            ))
            try:
                report = _converse(tls, session, max_frame, frame_tap, in_store, live, limits.frame_timeout)
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
    `run_in_store`, the thread that function hands them to.

    Anyone on the network can connect, so what a client does never stops the server: at most
    `limits.max_connections` connections are held at once (one over the cap is closed at
    once, and the first of a run of refusals is reported through `on_result`), a TLS
    handshake has `limits.handshake_timeout` seconds in all, every frame
    `limits.frame_timeout` from its first byte to its last (sync/limits.py), and a failed
    accept() (no file descriptors left, say) is waited out, not taken as the end."""

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
        limits: Limits | None = None,
    ) -> None:
        self.limits = limits or Limits.from_env()
        self.record_store = record_store
        self._live_timing = dict(poll_interval=poll_interval, keepalive=keepalive, idle_timeout=idle_timeout)
        self.on_live = on_live
        self._run_in_store = run_in_store
        self._in_store: RunInStore = run_in_store or call_here
        self.identity = identity
        self.host, self.port = host, port
        self.on_progress, self.on_result = on_progress, on_result
        self.timeout, self.frame_tap, self.max_frame = timeout, frame_tap, max_frame
        self._listener: socket.socket | None = None
        self._open = 0  # connections being served now (at most limits.max_connections)
        self._open_lock = threading.Lock()

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
        refusing = False  # in a run of refusals (only its first is reported)
        try:
            while not stop.is_set() and (max_connections is None or accepted < max_connections):
                listener = self._listener
                if listener is None:
                    break  # closed
                try:
                    raw, _addr = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    if self._listener is None or listener.fileno() < 0:
                        break  # the listener was closed
                    # No descriptor or buffer left for now (EMFILE, ENFILE, ENOBUFS) or a
                    # connection reset while queued: what clients do never ends the server.
                    stop.wait(0.1)
                    continue
                with self._open_lock:
                    full = self._open >= self.limits.max_connections
                    if not full:
                        self._open += 1
                if full:
                    raw.close()
                    if not refusing and self.on_result is not None:
                        self._report_quietly(in_store, ServerFull(
                            f"Refused connections over the limit of {self.limits.max_connections} at once; "
                            "the syncs already running go on."
                        ))
                    refusing = True
                    continue
                refusing = False
                accepted += 1
                worker = threading.Thread(target=self._connection, args=(raw, stop, in_store),
                                          name="notewell-sync-connection", daemon=True)
                worker.start()
                workers = [w for w in workers if w.is_alive()] + [worker]
        finally:
            for worker in workers:
                worker.join()

    def _report_quietly(self, in_store: RunInStore, error: NotewellError) -> None:
        """Tells `on_result` from the accepting thread; its failure must not end the server."""
        try:
            in_store(lambda: self.on_result(None, error))
        except Exception:
            pass

    def _connection(self, raw: socket.socket, stop: threading.Event, in_store: RunInStore) -> None:
        try:
            report, error = self._handle(raw, stop, in_store)
            if self.on_result is not None:
                in_store(lambda: self.on_result(report, error))  # one at a time, like the store calls
        finally:
            with self._open_lock:
                self._open -= 1

    def _handle(self, raw: socket.socket, stop_event: threading.Event | None = None,
                in_store: RunInStore | None = None) -> tuple[SyncReport | None, NotewellError | None]:
        """Runs in the connection's thread; every store call is handed to the store's thread."""
        in_store = in_store or self._in_store
        book = in_store(lambda: PeerBook(self.record_store))
        peer_id: str | None = None
        with raw:
            # The handshake's timeout is its total (ssl, since Python 3.5), not a wait per byte.
            raw.settimeout(self.limits.handshake_timeout)
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
                except TimeoutError:
                    raise ConnectionLost("A connection did not finish its handshake in time; it was closed.") from None
                except OSError:
                    raise ConnectionLost("A device disconnected during the handshake.") from None
                with tls:
                    tls.settimeout(self.timeout)
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
                        hold_bytes=self.limits.session_hold_bytes,
                    ))
                    live = LiveOptions(stop_event, on_live=self.on_live, **self._live_timing)
                    report = _converse(tls, session, self.max_frame, self.frame_tap, in_store, live,
                                       self.limits.frame_timeout)
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
    limits: Limits | None = None,
) -> None:
    """Serve paired devices until `stop_event` is set (or forever). Blocks the calling thread.
    `limits` default to sync/limits.py's, with the environment's overrides."""
    server = SyncServer(record_store, identity, host, port, on_progress=on_progress,
                        on_result=on_result, timeout=timeout, frame_tap=frame_tap,
                        run_in_store=run_in_store, on_live=on_live, limits=limits)
    address = server.bind()
    if on_listening is not None:
        on_listening(*address)
    server.serve(stop_event, max_connections=max_connections)
