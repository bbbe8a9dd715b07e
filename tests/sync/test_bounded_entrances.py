"""Every entrance is bounded: what a stranger on the network or a hostile paired device does
never stops `sync serve` or the pairing listener, never holds them past a deadline, and never
fills this device's memory; a stray file in the mailbox folder is named, never fatal.

Real `notewell` processes and real TLS on 127.0.0.1; the caps and deadlines are made small
through their environment variables (sync/limits.py) so that nothing here waits long. The
adversaries pace their bytes; the tests wait only on conditions (a connection closed, a line
printed), each with a generous bound.
"""

from __future__ import annotations

import os
import resource
import select
import socket
import ssl
import struct
import threading
import time

from store.device_identity import generate_identity, load_identity
from sync import bundle as fmt
from sync.framing import Frame, FrameReader, FrameType, recv_frame, send_frame
from sync.pairing import MAX_PAIR_FRAME, pair_with
from sync.pairing_exchange import JoinerExchange
from sync.peers import PeerBook
from sync.protocol import SyncSession
from test_pairing import _Listener  # the listener in a thread of its own

WAIT = 60.0  # generous bound on every condition below

SEED = """
from datetime import date
from store.models import Client, ProgressNote, SessionFacts
count = int(sys.argv[2])
repeat = int(sys.argv[3]) if len(sys.argv) > 3 else 40  # how long each note's section is
with record.transaction():
    client = record.create_client(Client(display_name="Synthetic Person"))
    for i in range(count):
        note = record.create_note(ProgressNote(
            client_id=client.id, format="DAP", facts=SessionFacts(date_of_service=date(2026, 3, 2))))
        record.set_section(note.id, "data", f"synthetic session {i} " * repeat)
"""


def _closed_by_peer(sock: socket.socket) -> bool:
    """True once the other end has closed (or reset) the connection; never blocks."""
    poller = select.poll()  # not select(): it takes no descriptor above 1023
    poller.register(sock, select.POLLIN)
    if not poller.poll(0):
        return False
    try:
        return sock.recv(1 << 16, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _wait_until(condition, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)  # between two looks at the condition


class _Dripper(threading.Thread):
    """Sends `opening`, then one byte at a time, each after `pace` seconds, until the other
    end closes the connection (`closed` is then set)."""

    def __init__(self, send, sock: socket.socket, opening: bytes, pace: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.send, self.sock, self.opening, self.pace = send, sock, opening, pace
        self.closed, self.stop, self.sent = threading.Event(), threading.Event(), 0

    def run(self) -> None:
        try:
            self.send(self.opening)
            while not self.stop.is_set():
                readable, _, _ = select.select([self.sock], [], [], self.pace)
                if readable and self._eof():
                    break
                self.send(b"\x00")
                self.sent += 1
        except (OSError, ssl.SSLError):
            pass
        self.closed.set()

    def _eof(self) -> bool:
        try:
            return self.sock.recv(1 << 16) == b""
        except (OSError, ssl.SSLError):
            return True


# --- sync serve: a cap on connections; what a client does never stops the server (4) -----


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class _ClosedSet:
    """Which of `sockets` the other end has closed so far."""

    def __init__(self, sockets: list[socket.socket]) -> None:
        self.sockets, self.closed = sockets, set()

    def all_closed(self) -> bool:
        for s in self.sockets:
            if s not in self.closed and _closed_by_peer(s):
                self.closed.add(s)
        return len(self.closed) == len(self.sockets)


def test_idle_connections_beyond_the_cap_are_refused_and_the_server_keeps_serving(
        make_vault, pair, in_vault, notewell, start_notewell, monkeypatch):
    a, b = make_vault("office"), make_vault("home")
    in_vault(a, SEED, "2")
    pair(a, b)
    cap = 4
    monkeypatch.setenv("NOTEWELL_SYNC_MAX_CONNECTIONS", str(cap))  # the processes started below
    monkeypatch.setenv("NOTEWELL_SYNC_HANDSHAKE_TIMEOUT", "3")
    server = start_notewell(a, "sync", "serve", "--port", "0")
    idle: list[socket.socket] = []
    try:
        port = int(server.wait_for("listening on").rsplit(":", 1)[1])
        # Two dozen descriptors more than the server uses idle: without a cap, the idle
        # connections below take them all and accept() fails.
        spare = 24
        resource.prlimit(server.proc.pid, resource.RLIMIT_NOFILE, (_open_fds(server.proc.pid) + spare,) * 2)
        for _ in range(3 * spare):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=30))
        # Every connection over the cap is closed at once; the held ones at their
        # handshake's deadline (they never send a byte).
        _wait_until(_ClosedSet(idle).all_closed, "the server closed every idle connection")
        assert server.proc.poll() is None, "the server stopped"
        done = notewell(b, "sync", "now", f"127.0.0.1:{port}")
        assert done.returncode == 0, done.stderr
        assert "received 3" in done.stdout
    finally:
        for s in idle:
            s.close()
        rc, _out, err = server.terminate()
    assert rc == 0, err
    assert f"over the limit of {cap} at once" in err
    assert "Traceback" not in err


def test_a_frame_sent_a_byte_at_a_time_meets_its_deadline(make_vault, pair, in_vault, start_notewell, monkeypatch):
    from sync.direct import client_context

    a, b = make_vault("office"), make_vault("home")
    in_vault(a, SEED, "1")
    pair(a, b)
    monkeypatch.setenv("NOTEWELL_SYNC_FRAME_TIMEOUT", "1")
    server = start_notewell(a, "sync", "serve", "--port", "0")
    try:
        port = int(server.wait_for("listening on").rsplit(":", 1)[1])
        vb = b.open()
        try:
            ctx = client_context(load_identity(vb.record.replica), PeerBook(vb.record.replica).trusted_certs())
        finally:
            vb.close()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as raw, ctx.wrap_socket(raw) as tls:
            assert recv_frame(tls).type == FrameType.HELLO
            # A hello of 4 KiB announced, then a byte every 0.2 s: each read is well inside
            # the 30 s between bytes, so only a deadline on the whole frame ends it.
            dripper = _Dripper(tls.sendall, tls, struct.pack(">IB", 4096, FrameType.HELLO))
            dripper.start()
            try:
                assert dripper.closed.wait(WAIT), "the server kept a dripping frame open"
            finally:
                dripper.stop.set()
                dripper.join(WAIT)
        assert server.proc.poll() is None
    finally:
        rc, _out, err = server.terminate()
    assert rc == 0, err
    assert "took too long to send one sync message" in err and "Traceback" not in err


def test_a_bound_set_wrong_in_the_environment_is_one_sentence(make_vault, notewell, monkeypatch):
    a = make_vault("office")
    monkeypatch.setenv("NOTEWELL_SYNC_MAX_CONNECTIONS", "lots")
    done = notewell(a, "sync", "serve", "--port", "0")
    assert done.returncode != 0
    assert done.stderr.strip() == "notewell: NOTEWELL_SYNC_MAX_CONNECTIONS must be a whole number above 0, not 'lots'."


# --- pairing: a total deadline per attempt; a stalled stranger does not use the code (8) --


def _listening(make_vault, monkeypatch):
    """Two vaults, the first listening for pairing with an attempt deadline of 2 s."""
    monkeypatch.setenv("NOTEWELL_PAIR_ATTEMPT_TIMEOUT", "2")
    a, b = make_vault("office"), make_vault("home")
    listener = _Listener(a)
    listener.start()
    assert listener.ready.wait(WAIT)
    return a, b, listener


def _join(ref, listener: _Listener):
    vault = ref.open()
    try:
        return pair_with(vault.record.replica, load_identity(vault.record.replica), *listener.address, listener.code)
    finally:
        vault.close()


def test_a_stranger_dripping_bytes_neither_blocks_pairing_nor_stays(make_vault, monkeypatch):
    a, b, listener = _listening(make_vault, monkeypatch)
    with socket.create_connection(listener.address, timeout=30) as stranger:
        # The start of a pairing message, then a byte now and then, never the whole of it.
        dripper = _Dripper(stranger.sendall, stranger, struct.pack(">IB", 34, FrameType.PAKE))
        dripper.start()
        try:
            _wait_until(lambda: dripper.sent >= 2, "the stranger is dripping")
            result = _join(b, listener)  # pairs while the stranger drips
            listener.join(WAIT)
            assert listener.error is None and result.peer.device_id == a.device_id
            assert dripper.closed.wait(WAIT), "the listener kept the dripping connection"
        finally:
            dripper.stop.set()
            dripper.join(WAIT)


def test_a_stranger_that_stalls_after_its_first_message_does_not_use_up_the_code(make_vault, monkeypatch):
    a, b, listener = _listening(make_vault, monkeypatch)
    stranger_exchange = JoinerExchange("1234-5678", generate_identity("stranger"), own_group_key=None,
                                       commit=lambda paired: None)
    with socket.create_connection(listener.address, timeout=WAIT) as stranger:
        for frame in stranger_exchange.start():
            send_frame(stranger, frame, MAX_PAIR_FRAME)
        assert recv_frame(stranger, MAX_PAIR_FRAME).type == FrameType.PAKE  # the listener answered
        # ... and the stranger says nothing more: cut off at the attempt's deadline.
        _wait_until(lambda: _closed_by_peer(stranger), "the listener closed the stalled attempt")
    result = _join(b, listener)
    listener.join(WAIT)
    assert listener.error is None and result.peer.device_id == a.device_id


# --- one session's memory: whole documents are stored as they pile up (6) -------------------


def _sessions(va, vb, hold_bytes: int):
    ia, ib = load_identity(va.record.replica), load_identity(vb.record.replica)
    client = SyncSession(va.record.replica, device_id=ia.device_id, device_name="office", role="client",
                         peer_device_id=ib.device_id)
    server = SyncSession(vb.record.replica, device_id=ib.device_id, device_name="home", role="server",
                         peer_device_id=ia.device_id, hold_bytes=hold_bytes)
    return client, server


def _codec(frame: Frame) -> Frame:
    return FrameReader().feed(frame.encode())[0]


def test_whole_documents_are_stored_as_they_pile_up_so_memory_stays_bounded(make_vault, in_vault):
    a, b = make_vault("office"), make_vault("home")
    in_vault(a, SEED, "30")
    va, vb = a.open(), b.open()
    try:
        sizes = [len(va.record.replica.stored_doc(d)[0]) for d in va.record.replica.doc_heads()]
        hold = 4 * max(sizes)
        client, server = _sessions(va, vb, hold)
        client.start()
        to_client = server.start()
        to_server = []
        for frame in to_client:
            to_server += client.receive(_codec(frame))
        # The client's first turn: every document whole, then the end of its turn.
        [hello, manifest] = to_server[:2]
        answer = server.receive(_codec(hello)) + server.receive(_codec(manifest))
        for frame in answer:
            client_turn = client.receive(_codec(frame))
        whole = [f for f in client_turn if f.type == FrameType.WHOLE]
        assert len(whole) == 31
        most_held = 0
        for frame in whole:  # the connection drops before the turn's end arrives
            server.receive(_codec(frame))
            most_held = max(most_held, server.held_bytes)
        assert most_held <= hold
        # What was stored before the drop stays stored: the next sync has less to do.
        stored = set(vb.record.replica.doc_heads())
        assert len(stored) >= 31 - hold // min(sizes)
        assert all(vb.record.replica.doc_heads()[d] == va.record.replica.doc_heads()[d] for d in stored)
    finally:
        va.close()
        vb.close()

    # A whole honest first sync under the same small hold completes and converges.
    va, vb = a.open(), b.open()
    try:
        client, server = _sessions(va, vb, hold)
        to_server, to_client = list(client.start()), list(server.start())
        while not (client.finished and server.finished):
            assert to_server or to_client, "the conversation stalled"
            batch, to_server = to_server, []
            for f in batch:
                to_client += server.receive(_codec(f))
            batch, to_client = to_client, []
            for f in batch:
                to_server += client.receive(_codec(f))
        assert client.report.ok and server.report.ok
        assert {d: sorted(h) for d, h in va.record.replica.doc_heads().items()} == \
            {d: sorted(h) for d, h in vb.record.replica.doc_heads().items()}
    finally:
        va.close()
        vb.close()


def test_a_hostile_peer_sending_whole_frames_cannot_fill_memory(make_vault):
    """A paired device lists many documents it claims to have, then sends megabytes of
    rubbish for each: the receiver holds at most its cap and stores none of it."""
    from sync.wire import SUPPORTED_VERSIONS, hello_frame, manifest_frame, whole_frame

    b = make_vault("home")
    vb = b.open()
    try:
        ib = load_identity(vb.record.replica)
        hostile = generate_identity("hostile")
        hold = 2 * 1024 * 1024
        server = SyncSession(vb.record.replica, device_id=ib.device_id, device_name="home", role="server",
                             peer_device_id=hostile.device_id, hold_bytes=hold)
        server.start()
        names = [f"rubbish-{i}" for i in range(48)]
        hello = hello_frame(versions=SUPPORTED_VERSIONS, device_id=hostile.device_id, name="hostile",
                            baseline=None, live=False, time=time.time())
        server.receive(_codec(hello))
        server.receive(_codec(manifest_frame({n: [bytes(32)] for n in names}, delta=False)))
        most_held = 0
        for n in names:
            server.receive(_codec(whole_frame(n, os.urandom(512 * 1024))))
            most_held = max(most_held, server.held_bytes)
        assert most_held <= hold
        assert vb.record.replica.doc_heads() == {}
        assert server.report.errors  # each refused document is named in the report
    finally:
        vb.close()


# --- the mailbox: a stray file named like this device's bundles (7) -------------------------


def test_a_stray_file_with_this_devices_prefix_is_skipped_and_named(make_vault, in_vault, notewell, tmp_path):
    a, b = make_vault("office"), make_vault("home")
    in_vault(a, SEED, "1")
    # Pair through the mailbox's own requirements: each trusts the other, one group key.
    from sync.peers import set_group_key

    for ref, other in ((a, b), (b, a)):
        vault, other_vault = ref.open(), other.open()
        try:
            other_identity = load_identity(other_vault.record.replica)
            PeerBook(vault.record.replica).add(other_identity.device_id, other.name, other_identity.cert_pem)
            set_group_key(vault.record.replica, b"G" * 32)
        finally:
            vault.close()
            other_vault.close()
    folder = tmp_path / "mailbox"
    folder.mkdir()
    from sync.pseudonyms import pseudonym

    prefix = pseudonym(b"G" * 32, a.device_id)[:16]  # how A names its files in the folder
    strays = [f"{prefix}-{2**64}.nwb", f"{prefix}-{2**64 - 1}.nwb", f"{prefix}-00000007.nwb",
              f"{prefix}-\u0661\u0662.nwb"]
    for name in strays:
        (folder / name).write_bytes(b"not a bundle of this device")
    for attempt in (1, 2):  # every later export too
        in_vault(a, SEED, "1")
        done = notewell(a, "sync", "mailbox", str(folder))
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        assert f"wrote {fmt.file_name(prefix, attempt)} (" in done.stdout
        for name in strays:
            assert f"skipped {name}" in done.stdout
    for name in strays:
        assert (folder / name).read_bytes() == b"not a bundle of this device"  # left as it was
    # The other device imports both real bundles and is not troubled by the strays.
    got = notewell(b, "sync", "mailbox", str(folder))
    assert got.returncode == 3, got.stderr  # the strays are rejected there: not bundles
    assert "Traceback" not in got.stderr
    assert "applied 2," in got.stdout
