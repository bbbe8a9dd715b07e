"""Direct sync: real vaults, real `notewell` processes, TLS 1.3 on 127.0.0.1.

Covers: two paired vaults converge; concurrent offline edits of one note merge; an unpaired
certificate and a revoked device are refused and change nothing; oversized and malformed
frames get a clear refusal; a client killed with SIGKILL mid-sync leaves both vaults intact
and the next sync completes; process notes never cross the wire (captured at the transport
and at the framing layer, also after decompression). Plus the sans-IO session on its own.
"""

from __future__ import annotations

import contextlib

import os
import json
import socket
import struct
import threading
import time

import pytest
from automerge.core import Document

from store.device_identity import load_identity
from tests.leak_scan import leaks
from store.prepare_pool import default_workers
from sync.errors import (
    FrameTooLarge,
    MalformedFrame,
    MalformedSyncMessage,
    ProtocolError,
    ProtocolVersionMismatch,
)
from sync.framing import MAX_FRAME, Frame, FrameReader, FrameType, recv_frame, send_frame
from sync import wire
from sync.peers import PeerBook
from sync.protocol import SyncSession, encode_sync, error_frame

CANARY_PRIVATE_A = "CANARY-7f3a-private-office"
CANARY_PRIVATE_B = "CANARY-7f3a-private-home"
CANARY_RECORD = "CANARY-7f3a-record"
BASE_TEXT = "Baseline synthetic session text."

SEED = """
from datetime import date
from store.models import Client, ProgressNote, SessionFacts
text, count = sys.argv[2], int(sys.argv[3])
with record.transaction():
    client = record.create_client(Client(display_name="Synthetic Person"))
    notes = []
    for i in range(count):
        note = record.create_note(ProgressNote(
            client_id=client.id, format="DAP", facts=SessionFacts(date_of_service=date(2026, 3, 2))))
        record.set_section(note.id, "data", text if i == 0 else f"synthetic session {i} " * 10)
        notes.append(note.id)
print(json.dumps({"client": client.id, "notes": notes}))
"""

EDIT = """
note_id, position, insert = sys.argv[2], int(sys.argv[3]), sys.argv[4]
old = record.get_note(note_id).sections["data"]
record.set_section(note_id, "data", old[:position] + insert + old[position:])
"""

PRIVATE = """
from datetime import date
from store.models import ProcessNote
vault.private.create(ProcessNote(client_id=sys.argv[2], session_date=date(2026, 3, 2), body=sys.argv[3]))
"""

TAP_SERVE = """
from store.device_identity import ensure_identity
from sync.direct import serve
identity = ensure_identity(record.replica, vault.device_name)
frames = open(sys.argv[2], "wb")
def tap(direction, frame):
    frames.write(frame)
    frames.flush()
def result(report, error):
    print("result", report.summary() if report else error.message, flush=True)
serve(record.replica, identity, "127.0.0.1", 0, frame_tap=tap, on_result=result, max_connections=1,
      on_listening=lambda h, p: print(f"listening on {h}:{p}", flush=True))
"""

TAP_SYNC = """
from store.device_identity import ensure_identity
from sync.direct import sync_now
identity = ensure_identity(record.replica, vault.device_name)
frames = open(sys.argv[3], "wb")
def tap(direction, frame):
    frames.write(frame)
    frames.flush()
print(sync_now(record.replica, identity, "127.0.0.1", int(sys.argv[2]), frame_tap=tap).summary())
"""


def _seed(in_vault, ref, text=BASE_TEXT, count=1) -> dict:
    return json.loads(in_vault(ref, SEED, text, str(count)))


def _heads(ref) -> dict[str, list[bytes]]:
    vault = ref.open()
    try:
        return {doc_id: sorted(heads) for doc_id, heads in vault.record.replica.doc_heads().items()}
    finally:
        vault.close()


def _check(ref) -> list[str]:
    vault = ref.open()
    try:
        return vault.check()
    finally:
        vault.close()


def _section(ref, note_id) -> str:
    vault = ref.open()
    try:
        return vault.record.get_note(note_id).sections["data"]
    finally:
        vault.close()


class Proxy:
    """A TCP relay on 127.0.0.1 that keeps every byte in both directions.

    `pause_after`: stop relaying server-to-client bytes once that many have passed (mid-sync).
    """

    def __init__(self, target_port: int, pause_after: int | None = None) -> None:
        self.target_port, self.pause_after = target_port, pause_after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.c2s, self.s2c = bytearray(), bytearray()
        self.paused, self.released = threading.Event(), threading.Event()
        self.done = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        server = socket.create_connection(("127.0.0.1", self.target_port))
        self._sockets += [client, server]
        pumps = [
            threading.Thread(target=self._pump, args=(client, server, self.c2s, None), daemon=True),
            threading.Thread(target=self._pump, args=(server, client, self.s2c, self.pause_after), daemon=True),
        ]
        for p in pumps:
            p.start()
        for p in pumps:
            p.join()
        self.done.set()

    def _pump(self, src, dst, buf, pause_after) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                break
            if not data:
                break
            buf += data
            try:
                dst.sendall(data)
            except OSError:
                break
            if pause_after is not None and len(buf) >= pause_after:
                self.paused.set()
                self.released.wait()
                break
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.released.set()
        for s in [self.listener, *self._sockets]:
            try:
                s.close()
            except OSError:
                pass


def _contains(data: bytes, needle: str) -> bool:
    return leaks(data, [needle]) == [needle]


# --- through the command line ----------------------------------------------------------


def test_paired_vaults_converge_and_concurrent_edits_merge(make_vault, pair, serve, notewell, in_vault):
    a, b = make_vault("office"), make_vault("home")
    seeded = _seed(in_vault, a)
    note = seeded["notes"][0]
    pair(a, b)
    server, port = serve(a)

    first = notewell(b, "sync", "now", f"127.0.0.1:{port}")
    assert first.returncode == 0, first.stderr
    assert "received 2, sent 0" in first.stdout
    assert _heads(a) == _heads(b) and len(_heads(b)) == 2
    assert _section(b, note) == BASE_TEXT

    # Both edit the same note offline, at opposite ends.
    in_vault(a, EDIT, note, "0", "ALPHA ")
    in_vault(b, EDIT, note, str(len(BASE_TEXT)), " OMEGA")
    assert _heads(a) != _heads(b)
    second = notewell(b, "sync", "now", f"127.0.0.1:{port}")
    assert second.returncode == 0, second.stderr
    assert "merged 1" in second.stdout
    merged = f"ALPHA {BASE_TEXT} OMEGA"
    assert _section(a, note) == merged and _section(b, note) == merged
    assert _heads(a) == _heads(b)

    listed = notewell(b, "sync", "devices")
    assert "office" in listed.stdout and " ok: received" in listed.stdout

    # A third, empty device pairs while the server runs; syncing with it deletes nothing.
    c = make_vault("tablet")
    pair(a, c)
    before = _heads(a)
    third = notewell(c, "sync", "now", f"127.0.0.1:{port}")
    assert third.returncode == 0, third.stderr
    assert _heads(a) == before == _heads(c)

    rc, out, err = server.terminate()
    assert rc == 0 and out.count("synced with") == 3, (out, err)
    assert _check(a) == [] and _check(b) == [] and _check(c) == []


def test_a_first_sync_of_many_notes_is_stored_in_step_both_ways(make_vault, pair, serve, notewell, in_vault):
    """Enough documents that the receiving side reads them with its worker processes (the
    command's `sync now` in one direction, `sync serve` in the other)."""
    a, b, c = make_vault("office"), make_vault("home"), make_vault("spare")
    _seed(in_vault, a, count=120)
    pair(a, b)
    pair(b, c)
    server, port = serve(a)
    first = notewell(b, "sync", "now", f"127.0.0.1:{port}")
    assert first.returncode == 0, first.stderr
    assert "received 121, sent 0" in first.stdout
    server.terminate()

    server, port = serve(c)
    second = notewell(b, "sync", "now", f"127.0.0.1:{port}")
    assert second.returncode == 0, second.stderr
    assert "received 0, sent 121" in second.stdout
    rc, out, err = server.terminate()
    assert rc == 0 and "received 121" in out, (out, err)
    assert _heads(a) == _heads(b) == _heads(c) and len(_heads(c)) == 121
    assert _check(a) == [] and _check(b) == [] and _check(c) == []


def test_an_unpaired_certificate_is_refused(make_vault, pair, serve, notewell, in_vault):
    a, b, c = make_vault("office"), make_vault("home"), make_vault("stranger")
    _seed(in_vault, a)
    _seed(in_vault, c, text="Stranger synthetic text.")
    pair(a, b)
    # The stranger knows the office's certificate, but the office never paired with it.
    va = a.open()
    try:
        office = load_identity(va.record.replica)
    finally:
        va.close()
    vc = c.open()
    try:
        PeerBook(vc.record.replica).add(office.device_id, office.name, office.cert_pem)
    finally:
        vc.close()
    heads_a, heads_c = _heads(a), _heads(c)
    server, port = serve(a)

    refused = notewell(c, "sync", "now", f"127.0.0.1:{port}")
    assert refused.returncode != 0
    assert "refused this device" in refused.stderr and "Traceback" not in refused.stderr
    assert _heads(a) == heads_a and _heads(c) == heads_c

    lonely = make_vault("lonely")
    alone = notewell(lonely, "sync", "now", f"127.0.0.1:{port}")
    assert alone.returncode != 0 and "not paired with any other device" in alone.stderr

    rc, _out, err = server.terminate()
    assert "Refused a device that is not paired" in err


def test_a_revoked_device_is_refused(make_vault, pair, serve, notewell, in_vault):
    a, b = make_vault("office"), make_vault("home")
    _seed(in_vault, a)
    pair(a, b)
    server, port = serve(a)
    assert notewell(b, "sync", "now", f"127.0.0.1:{port}").returncode == 0

    forgot = notewell(a, "sync", "forget", b.device_id[:10])
    assert forgot.returncode == 0, forgot.stderr
    _seed(in_vault, b, text="Written after revocation.")
    heads_a = _heads(a)
    refused = notewell(b, "sync", "now", f"127.0.0.1:{port}")
    assert refused.returncode != 0 and "refused this device" in refused.stderr
    assert _heads(a) == heads_a

    # The revoked device is refused as a server too.
    server.terminate()
    served_by_b, port_b = serve(b)
    back = notewell(a, "sync", "now", f"127.0.0.1:{port_b}")
    assert back.returncode != 0 and _heads(a) == heads_a


def test_oversized_and_malformed_frames_are_refused(make_vault, pair, serve, notewell, in_vault):
    from sync.direct import client_context

    a, b = make_vault("office"), make_vault("home")
    _seed(in_vault, a)
    pair(a, b)
    heads_a = _heads(a)
    server, port = serve(a)

    bad_inputs = {
        "too-large": struct.pack(">IB", MAX_FRAME + 1, FrameType.HELLO),
        "unknown type": struct.pack(">IB", 1, 0x42),
        "empty frame": struct.pack(">IB", 0, FrameType.HELLO),
        "bad hello": Frame(FrameType.HELLO, b"{not json").encode(),
        "skipped hello": Frame(FrameType.MANIFEST, b'{"docs": {}}').encode(),
    }
    vb = b.open()
    try:
        identity = load_identity(vb.record.replica)
        ctx = client_context(identity, PeerBook(vb.record.replica).trusted_certs())
        answers = {}
        for name, data in bad_inputs.items():
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with ctx.wrap_socket(raw) as tls:
                    assert recv_frame(tls).type == FrameType.HELLO  # the server speaks first
                    tls.sendall(data)
                    reply = recv_frame(tls)
                    answers[name] = json.loads(reply.payload)["code"] if reply.type == FrameType.ERROR else None
                    assert tls.recv(1) == b""  # and then the server closes the connection
    finally:
        vb.close()
    assert answers == {
        "too-large": "too-large", "unknown type": "protocol", "empty frame": "protocol",
        "bad hello": "protocol", "skipped hello": "protocol",
    }
    assert _heads(a) == heads_a

    # The server survived all of it and still syncs.
    ok = notewell(b, "sync", "now", f"127.0.0.1:{port}")
    assert ok.returncode == 0, ok.stderr
    rc, _out, err = server.terminate()
    assert "over the limit" in err and "malformed" in err and "Traceback" not in err


def _children(pid: int) -> list[int]:
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(c) for c in f.read().split()]
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for a parent that is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_client_killed_mid_sync_leaves_both_vaults_intact(make_vault, pair, serve, notewell, in_vault, start_notewell):
    a, b = make_vault("office"), make_vault("home")
    _seed(in_vault, a, count=300)
    pair(a, b)
    server, port = serve(a)
    proxy = Proxy(port, pause_after=40_000)
    try:
        client = start_notewell(b, "sync", "now", f"127.0.0.1:{proxy.port}")
        assert proxy.paused.wait(60), "the sync never got going"
        assert client.proc.poll() is None  # still mid-sync, waiting for the rest
        workers = _children(client.proc.pid)  # its worker processes (store/prepare_pool.py)
        assert workers or default_workers() == 0
        client.kill()  # SIGKILL
    finally:
        proxy.close()
    # Its workers see their input close and end too: nothing is left running.
    deadline = time.monotonic() + 20
    while any(os.path.exists(f"/proc/{pid}") and _running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(os.path.exists(f"/proc/{pid}") and _running(pid) for pid in workers)
    assert _check(a) == [] and _check(b) == []

    again = notewell(b, "sync", "now", f"127.0.0.1:{port}")
    assert again.returncode == 0, again.stderr
    assert _heads(a) == _heads(b) and len(_heads(b)) == 301
    assert _check(a) == [] and _check(b) == []
    rc, out, _err = server.terminate()
    assert "synced with home" in out


def test_process_notes_never_cross_the_wire(make_vault, pair, in_vault, start_in_vault, tmp_path):
    a, b = make_vault("office"), make_vault("home")
    seeded_a = _seed(in_vault, a, text=f"Record text {CANARY_RECORD} for the auditor.")
    seeded_b = _seed(in_vault, b, text="Home synthetic session.")
    in_vault(a, PRIVATE, seeded_a["client"], f"Private reflection {CANARY_PRIVATE_A}.")
    in_vault(b, PRIVATE, seeded_b["client"], f"Private reflection {CANARY_PRIVATE_B}.")
    pair(a, b)

    frames_a, frames_b = tmp_path / "frames-a", tmp_path / "frames-b"
    server = start_in_vault(a, TAP_SERVE, str(frames_a))
    port = int(server.wait_for("listening on").rsplit(":", 1)[1])
    proxy = Proxy(port)
    try:
        client_out = in_vault(b, TAP_SYNC, str(proxy.port), str(frames_b))
        rc, server_out, server_err = server.finish()
        assert proxy.done.wait(30)
    finally:
        proxy.close()
    assert rc == 0, server_err
    assert "received 2" in client_out and "result received 2" in server_out
    assert _section(b, seeded_a["notes"][0]) == f"Record text {CANARY_RECORD} for the auditor."

    wire = {"client->server": bytes(proxy.c2s), "server->client": bytes(proxy.s2c)}
    plain = {"frames at office": frames_a.read_bytes(), "frames at home": frames_b.read_bytes()}
    logs = {"output": (client_out + server_out + server_err).encode()}
    assert all(wire.values()) and all(plain.values())
    for label, data in {**wire, **plain, **logs}.items():
        for canary in (CANARY_PRIVATE_A, CANARY_PRIVATE_B):
            assert not _contains(data, canary), f"{canary} leaked in {label}"
    # The captures are real: the record note is in the plaintext frames, and TLS hides it.
    assert _contains(plain["frames at office"], CANARY_RECORD)
    assert _contains(plain["frames at home"], CANARY_RECORD)
    assert not any(_contains(data, CANARY_RECORD) for data in wire.values())


def test_serving_from_another_thread_than_the_one_owning_the_store(make_vault, pair, in_vault):
    # The app keeps its vault on one worker thread; the accept loop runs elsewhere and hands
    # each connection to that thread.
    from concurrent.futures import ThreadPoolExecutor

    from sync.direct import SyncServer, sync_now

    a, b = make_vault("office"), make_vault("home")
    _seed(in_vault, a)
    pair(a, b)
    store_thread = ThreadPoolExecutor(max_workers=1)
    va = store_thread.submit(a.open).result()
    intake = store_thread.submit(lambda: va.record.replica).result()
    identity = store_thread.submit(load_identity, intake).result()
    server = SyncServer(intake, identity, "127.0.0.1", 0, run_in_store=lambda fn: store_thread.submit(fn).result())
    port = server.bind()[1]
    stop = threading.Event()
    loop = threading.Thread(target=server.serve, args=(stop,), daemon=True)
    loop.start()
    vb = b.open()
    try:
        report = sync_now(vb.record.replica, load_identity(vb.record.replica), "127.0.0.1", port)
        assert report.ok and report.received == 2
    finally:
        vb.close()
        stop.set()
        loop.join(30)
        store_thread.submit(va.close).result()
        store_thread.shutdown()
    assert _heads(a) == _heads(b)


# --- the sans-IO session on its own (two real vaults, no sockets) -----------------------


def _run_pair(client: SyncSession, server: SyncSession) -> list[Frame]:
    """Runs both sessions to the end; returns every frame, in order."""
    to_server, to_client = list(client.start()), list(server.start())
    seen: list[Frame] = []
    while not (client.finished and server.finished):
        assert to_server or to_client, "the conversation stalled"
        batch, to_server = to_server, []
        for f in batch:
            seen.append(f)
            to_client += server.receive(FrameReader().feed(f.encode())[0])  # through the codec
        batch, to_client = to_client, []
        for f in batch:
            seen.append(f)
            to_server += client.receive(f)
    return seen


def _manifest_sizes(frames: list[Frame]) -> list[int]:
    return [len(json.loads(f.payload)["docs"]) for f in frames if f.type == FrameType.MANIFEST]


@pytest.fixture
def two_open(make_vault, in_vault):
    a, b = make_vault("office"), make_vault("home")
    _seed(in_vault, a, count=3)
    _seed(in_vault, b, text="Home only.")
    va, vb = a.open(), b.open()
    try:
        yield va, vb, load_identity(va.record.replica), load_identity(vb.record.replica)
    finally:
        va.close()
        vb.close()


def _sessions(va, vb, ia, ib, **server_kwargs):
    client = SyncSession(va.record.replica, device_id=ia.device_id, device_name="office", role="client", peer_device_id=ib.device_id)
    server = SyncSession(vb.record.replica, device_id=ib.device_id, device_name="home", role="server",
                         peer_device_id=ia.device_id, **server_kwargs)
    return client, server


def test_sessions_converge_without_sockets(two_open):
    va, vb, ia, ib = two_open
    progress = []
    client, server = _sessions(va, vb, ia, ib, on_progress=lambda d, t: progress.append((d, t)))
    _run_pair(client, server)
    assert va.record.replica.doc_heads().keys() == vb.record.replica.doc_heads().keys()
    assert {k: sorted(v) for k, v in va.record.replica.doc_heads().items()} == {k: sorted(v) for k, v in vb.record.replica.doc_heads().items()}
    assert (client.report.received, client.report.sent) == (2, 4)
    assert (server.report.received, server.report.sent) == (4, 2)
    assert client.report.ok and server.report.ok
    assert progress[-1] == (6, 6)

    # Nothing left to say: a second session exchanges no documents.
    client, server = _sessions(va, vb, ia, ib)
    _run_pair(client, server)
    assert client.report.received == client.report.sent == 0


def _same(va, vb) -> bool:
    return {k: sorted(v) for k, v in va.record.replica.doc_heads().items()} == {k: sorted(v) for k, v in vb.record.replica.doc_heads().items()}


def test_later_syncs_list_only_what_changed(two_open):
    from sync.protocol import BASELINE_PREFIX

    va, vb, ia, ib = two_open
    assert _manifest_sizes(_run_pair(*_sessions(va, vb, ia, ib))) == [4, 2]  # first: everything
    assert _same(va, vb)
    assert va.record.replica.local_get(BASELINE_PREFIX + ib.device_id) is not None

    note = next(n.note_id for n in va.record.list_notes())
    va.record.set_section(note, "data", "Edited on the office device.")
    frames = _run_pair(*_sessions(va, vb, ia, ib))
    assert _manifest_sizes(frames) == [1, 0]  # only the edited note
    assert _same(va, vb) and vb.record.get_note(note).sections["data"] == "Edited on the office device."

    # Both edit, then sync: still only that note, and it merges.
    va.record.set_section(note, "data", "ALPHA Edited on the office device.")
    vb.record.set_section(note, "data", "Edited on the office device. OMEGA")
    client, server = _sessions(va, vb, ia, ib)
    assert _manifest_sizes(_run_pair(client, server)) == [1, 1]
    assert client.report.merged == 1 and _same(va, vb)
    assert va.record.get_note(note).sections["data"] == "ALPHA Edited on the office device. OMEGA"

    # If one side lost its baseline (restored from a backup, say), the next sync lists everything.
    vb.record.replica.local_put(BASELINE_PREFIX + ia.device_id, b"{}")
    va.record.set_section(note, "data", "After the restore.")
    assert _manifest_sizes(_run_pair(*_sessions(va, vb, ia, ib))) == [6, 6]
    assert _same(va, vb)
    assert _manifest_sizes(_run_pair(*_sessions(va, vb, ia, ib))) == [0, 0]


def test_mismatched_versions_are_refused_clearly(two_open):
    va, vb, ia, ib = two_open
    client, server = _sessions(va, vb, ia, ib, versions=(3,))
    client.start()
    hello = server.start()[0]
    with pytest.raises(ProtocolVersionMismatch) as refused:
        client.receive(hello)
    # What the client sends back makes the server say the same, with both versions.
    with pytest.raises(ProtocolVersionMismatch, match="version 3.*version 2|version 2.*version 3") as told:
        server.receive(error_frame(refused.value))
    assert "update Notewell" in told.value.message


def _to_turns(va, vb, ia, ib):
    client, server = _sessions(va, vb, ia, ib)
    assert client.start() == []
    hello_and_manifest = client.receive(server.start()[0])
    assert server.receive(hello_and_manifest[0]) == []
    out = server.receive(hello_and_manifest[1])  # the server's manifest
    first_turn = client.receive(out[0])
    return client, server, first_turn


@pytest.mark.parametrize("frame_type", [FrameType.SYNC, FrameType.CHANGES])
def test_garbage_document_data_is_a_typed_error(two_open, frame_type, monkeypatch):
    va, vb, ia, ib = two_open
    _run_pair(*_sessions(va, vb, ia, ib))  # shared from here, so the next sync sends what changed
    if frame_type == FrameType.SYNC:  # a peer without the `changes` feature: sync messages
        monkeypatch.setattr(wire, "FEATURES", ("progress",))
    doc_id = next(r.note_id for r in va.record.list_notes())
    va.record.set_section(doc_id, "data", "Edited after the first sync.")
    before = dict(vb.record.replica.doc_heads())
    client, server, first_turn = _to_turns(va, vb, ia, ib)
    with pytest.raises(MalformedSyncMessage):
        server.receive(Frame(frame_type, encode_sync(doc_id, b"\x42\xff\x00garbage")))
    assert dict(vb.record.replica.doc_heads()) == before


def test_changes_for_a_document_outside_them_or_twice_are_refused(two_open):
    va, vb, ia, ib = two_open
    _run_pair(*_sessions(va, vb, ia, ib))
    doc_id = next(r.note_id for r in va.record.list_notes())
    va.record.set_section(doc_id, "data", "Edited after the first sync.")
    client, server, first_turn = _to_turns(va, vb, ia, ib)
    sent = [f for f in first_turn if f.type == FrameType.CHANGES]
    assert len(sent) == 1
    with pytest.raises(ProtocolError):
        server.receive(Frame(FrameType.CHANGES, encode_sync("not-in-this-sync", sent[0].payload[2 + len(doc_id):])))
    client, server, first_turn = _to_turns(va, vb, ia, ib)
    sent = [f for f in first_turn if f.type == FrameType.CHANGES]
    server.receive(sent[0])
    with pytest.raises(ProtocolError):
        server.receive(sent[0])


def test_data_for_a_document_outside_the_sync_is_refused(two_open):
    va, vb, ia, ib = two_open
    client, server, first_turn = _to_turns(va, vb, ia, ib)
    message = Document().generate_sync_message(__import__("automerge.core", fromlist=["SyncState"]).SyncState())
    with pytest.raises(ProtocolError):
        server.receive(Frame(FrameType.SYNC, encode_sync("not-in-this-sync", message.encode())))


def test_a_turn_whose_count_does_not_match_is_refused(two_open):
    va, vb, ia, ib = two_open
    client, server, first_turn = _to_turns(va, vb, ia, ib)
    with pytest.raises(ProtocolError):
        server.receive(first_turn[-1])  # TURN_END claiming messages that never came


class _ForeignPeer:
    """The other device's side of a session: a record document plus one that is not one.

    Only the peer is simulated; the vault under test is real.
    """

    def __init__(self, docs: dict[str, Document], raw: dict[str, bytes] | None = None) -> None:
        self.docs = docs
        self.raw = raw or {}  # bytes sent for a whole document instead of its save()

    def doc_heads(self):
        return {doc_id: doc.get_heads() for doc_id, doc in self.docs.items()}

    def share_vouches(self):
        pass  # a peer that vouches for nobody

    def device_trust(self):
        from store.device_list import DeviceTrust

        return DeviceTrust("", {})  # and knows of no revocation

    def revoke(self, device_id):
        pass

    def load_doc(self, doc_id):
        return self.docs[doc_id].fork()

    def apply_snapshots(self, items, *, batch=None, on_batch=None):
        return {}, {}

    def stored_doc(self, doc_id):
        doc = self.docs[doc_id]
        return self.raw.get(doc_id) or doc.save(), doc.get_heads()

    def apply_doc(self, doc_id, doc):
        return False

    # The rest of the intake interface (store.replica.RecordReplica): a peer that keeps nothing.
    audit = prepare_pool = None

    def transaction(self):
        return contextlib.nullcontext()

    def local_get(self, key):
        return None

    def local_put(self, key, value):
        pass

    def count_conflicts(self, doc_ids):
        return 0


def test_a_foreign_document_is_refused_and_the_rest_applied(two_open):
    from automerge.core import ROOT, ScalarType

    va, vb, ia, ib = two_open
    record_id = next(iter(set(va.record.replica.doc_heads()) - set(vb.record.replica.doc_heads())))
    junk = Document()
    with junk.transaction() as tx:
        tx.put(ROOT, "anything", ScalarType.Str, "not a record document")
    peer = _ForeignPeer({record_id: va.record.replica.load_doc(record_id), "junk-doc": junk})
    client = SyncSession(peer, device_id=ia.device_id, device_name="office", role="client", peer_device_id=ib.device_id)
    server = SyncSession(vb.record.replica, device_id=ib.device_id, device_name="home", role="server", peer_device_id=ia.device_id)
    _run_pair(client, server)
    assert record_id in vb.record.replica.doc_heads() and "junk-doc" not in vb.record.replica.doc_heads()
    assert server.report.received == 1
    assert any("junk-doc" in e for e in server.report.errors)
    assert not client.report.ok  # the digests differ: the peer is told to sync again


def test_garbage_sent_as_a_whole_document_is_refused_and_the_rest_applied(two_open):
    va, vb, ia, ib = two_open
    ids = sorted(set(va.record.replica.doc_heads()) - set(vb.record.replica.doc_heads()))
    good, bad = ids[0], ids[1]
    before = dict(vb.record.replica.doc_heads())
    peer = _ForeignPeer({d: va.record.replica.load_doc(d) for d in (good, bad)}, raw={bad: b"\x85\x6f\x4a\x83garbage"})
    client = SyncSession(peer, device_id=ia.device_id, device_name="office", role="client", peer_device_id=ib.device_id)
    server = SyncSession(vb.record.replica, device_id=ib.device_id, device_name="home", role="server", peer_device_id=ia.device_id)
    _run_pair(client, server)
    after = vb.record.replica.doc_heads()
    assert good in after and bad not in after
    assert set(after) == set(before) | {good}
    assert server.report.received == 1 and any(bad in e for e in server.report.errors)
    assert vb.record.check() == []


def test_frame_reader_refuses_oversize_before_buffering():
    reader = FrameReader(max_size=1024)
    with pytest.raises(FrameTooLarge):
        reader.feed(struct.pack(">IB", 1025, FrameType.SYNC))
    with pytest.raises(MalformedFrame):
        FrameReader().feed(struct.pack(">IB", 1, 0x42))
    frames = FrameReader().feed(Frame(FrameType.DONE, b"{}").encode() + Frame(FrameType.TURN_END, b"\0\0\0\0").encode()[:3])
    assert frames == [Frame(FrameType.DONE, b"{}")]


def test_oversized_outgoing_frames_are_refused():
    with pytest.raises(FrameTooLarge):
        Frame(FrameType.SYNC, b"x" * 2048).encode(max_size=1024)
    left, right = socket.socketpair()
    with left, right:
        send_frame(left, Frame(FrameType.SYNC, b"x" * 2048))
        with pytest.raises(FrameTooLarge):
            recv_frame(right, max_size=1024)


def test_baseline_encoding_round_trips_and_refuses_damage():
    from sync.protocol import decode_baseline, encode_baseline

    heads = {"doc-a": {b"\x01" * 32, b"\x02" * 32}, "doc-b": {b"\x03" * 32}}
    data = encode_baseline(heads)
    assert decode_baseline(data) == heads
    for cut in (3, len(data) - 1, len(data) - 33):
        with pytest.raises(ValueError):
            decode_baseline(data[:cut])


def test_whole_documents_are_stored_with_their_rows_and_merged_when_already_there(two_open):
    va, vb, ia, ib = two_open
    ids = sorted(set(va.record.replica.doc_heads()) - set(vb.record.replica.doc_heads()))
    items = [(d, va.record.replica.stored_doc(d)[0]) for d in ids]
    applied, refused = vb.record.replica.apply_snapshots(items)
    assert refused == {} and set(applied) == set(ids)
    assert all(sorted(applied[d]) == sorted(va.record.replica.doc_heads()[d]) for d in ids)
    assert vb.record.check() == []  # the bulk rows are what `project` would have written
    note = next(r.note_id for r in va.record.list_notes())
    assert vb.record.search("synthetic") and vb.record.get_note(note) == va.record.get_note(note)

    # Sent whole again after a local edit: merged, never replaced.
    vb.record.set_section(note, "data", vb.record.get_note(note).sections["data"] + " Home addition.")
    applied, refused = vb.record.replica.apply_snapshots(items)
    assert refused == {} and vb.record.get_note(note).sections["data"].endswith(" Home addition.")
    assert vb.record.check() == []


def test_a_garbage_whole_document_is_refused_and_the_rest_stored(two_open):
    va, vb, ia, ib = two_open
    ids = sorted(set(va.record.replica.doc_heads()) - set(vb.record.replica.doc_heads()))
    items = [(d, va.record.replica.stored_doc(d)[0]) for d in ids] + [("junk-doc", b"\x85\x6f\x4a\x83garbage")]
    applied, refused = vb.record.replica.apply_snapshots(items)
    assert set(applied) == set(ids) and set(refused) == {"junk-doc"}
    assert all(sorted(applied[d]) == sorted(va.record.replica.doc_heads()[d]) for d in ids)
    assert "junk-doc" not in vb.record.replica.doc_heads() and vb.record.check() == []
