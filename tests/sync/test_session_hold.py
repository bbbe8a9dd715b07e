"""What one direct-sync session holds in memory, and what a long sync says while it works.

Issue 12, finding 6 (the sync-message path): documents that arrive as Automerge sync messages
were held until the end of the session, so a paired device could fill this device's memory by
sending many of them, and a large sync cut short kept nothing. The session now holds at most
its cap (`hold_bytes`): past it, what changed is stored (transactions of bounded size) and let
go, so an interrupted sync resumes without redoing what was stored.

Issue 14: a side that works for long (storing what arrived) tells the waiting side how far it
is (PROGRESS frames), so the waiting side shows progress and its read deadline never fires.

Real vaults and real Automerge documents; the sessions are driven frame by frame here (the
sans-IO session has no sockets), through the wire codec.
"""

from __future__ import annotations

from store.device_identity import load_identity
from sync.framing import Frame, FrameReader, FrameType
from sync.protocol import SyncSession
from tests.sync.test_bounded_entrances import SEED  # with "1": notes of one short section each

# Every note gets a long new section on one side: tens of KB of changes per document (text
# that does not compress away: Automerge deflates its columns).
GROW = """
import hashlib
with record.transaction():
    for row in record.list_notes():
        text = " ".join(hashlib.sha256(f"{row.note_id}-{i}".encode()).hexdigest() for i in range(600))
        record.set_section(row.note_id, "assessment", text)
"""


def _codec(frame: Frame) -> Frame:
    return FrameReader().feed(frame.encode())[0]


def _sessions(va, vb, **server_args) -> tuple[SyncSession, SyncSession]:
    ia, ib = load_identity(va.record.replica), load_identity(vb.record.replica)
    client = SyncSession(va.record.replica, device_id=ia.device_id, device_name="office", role="client",
                         peer_device_id=ib.device_id)
    server = SyncSession(vb.record.replica, device_id=ib.device_id, device_name="home", role="server",
                         peer_device_id=ia.device_id, **server_args)
    return client, server


def _run(client: SyncSession, server: SyncSession, on_server_frame=None) -> None:
    """Both sessions to the end; `on_server_frame(frame)` after each frame the server took."""
    to_server, to_client = list(client.start()), list(server.start())
    while not (client.finished and server.finished):
        assert to_server or to_client, "the conversation stalled"
        batch, to_server = to_server, []
        for f in batch:
            to_client += server.receive(_codec(f))
            if on_server_frame is not None:
                on_server_frame(f)
        batch, to_client = to_client, []
        for f in batch:
            to_server += client.receive(_codec(f))


def _heads(vault) -> dict[str, list[bytes]]:
    return {d: sorted(h) for d, h in vault.record.replica.doc_heads().items()}


def test_sync_messages_are_stored_past_the_cap_and_an_interrupted_sync_resumes(make_vault, in_vault):
    a, b = make_vault("office"), make_vault("home")
    in_vault(a, SEED, "24", "1")
    va, vb = a.open(), b.open()
    try:
        _run(*_sessions(va, vb))  # b holds every document, as a was
        assert _heads(va) == _heads(vb)
    finally:
        va.close()
        vb.close()
    in_vault(a, GROW)  # a is now ~24 KB ahead on each note: they travel as sync messages

    va, vb = a.open(), b.open()
    try:
        cap = 32 * 1024  # about one note's changes
        client, server = _sessions(va, vb, hold_bytes=cap)
        most_held = 0
        sync_bytes = 0
        to_server, to_client = list(client.start()), list(server.start())
        dropped = False
        while not dropped:
            assert to_server or to_client, "the conversation stalled"
            batch, to_server = to_server, []
            # (documents both sides held at the last sync travel as CHANGES, the others as SYNC)
            carrying = sum(len(f.payload) for f in batch if f.type in (FrameType.SYNC, FrameType.CHANGES))
            for f in batch:
                if carrying > 8 * cap and f.type == FrameType.TURN_END:
                    dropped = True  # the turn with the changes: the connection drops before its end
                    break
                to_client += server.receive(_codec(f))
                most_held = max(most_held, server.held_bytes)
                if f.type in (FrameType.SYNC, FrameType.CHANGES):
                    sync_bytes += len(f.payload)
            batch, to_client = to_client, []
            for f in batch:
                to_server += client.receive(_codec(f))
        assert sync_bytes > 8 * cap  # the peer sent far more than the cap
        assert most_held <= cap
        # What went past the cap was stored before the drop, and stays stored.
        ahead = _heads(va)
        stored = {d for d, h in _heads(vb).items() if h == ahead[d]}
        notes = [d for d in ahead if d not in stored]
        assert len(notes) <= 4, len(notes)
    finally:
        va.close()
        vb.close()

    # The next sync resumes: only what was not stored is compared again, and it converges.
    va, vb = a.open(), b.open()
    try:
        client, server = _sessions(va, vb, hold_bytes=cap)
        _run(client, server)
        assert client.report.ok and server.report.ok
        assert server.documents_to_sync == len(notes)
        assert _heads(va) == _heads(vb)
    finally:
        va.close()
        vb.close()


def test_a_peer_that_sends_many_sync_messages_never_makes_the_session_hold_more_than_its_cap(make_vault, in_vault):
    """Many documents held at once (not only many bytes) are let go of past the cap too."""
    import sync.protocol as protocol

    a, b = make_vault("office"), make_vault("home")
    in_vault(a, SEED, "40", "1")
    va, vb = a.open(), b.open()
    try:
        _run(*_sessions(va, vb))
    finally:
        va.close()
        vb.close()
    in_vault(a, GROW)
    va, vb = a.open(), b.open()
    before = protocol.MAX_HELD_DOCS
    protocol.MAX_HELD_DOCS = 8
    try:
        client, server = _sessions(va, vb)
        most_docs = 0

        def watch(_frame: Frame) -> None:
            nonlocal most_docs
            most_docs = max(most_docs, server.held_documents)

        _run(client, server, watch)
        assert client.report.ok and server.report.ok
        assert most_docs <= 8
        assert _heads(va) == _heads(vb)
        assert server.report.received == 40
    finally:
        protocol.MAX_HELD_DOCS = before
        va.close()
        vb.close()


def test_the_receiver_says_how_far_it_is_while_it_stores_and_the_sender_shows_it(make_vault, in_vault):
    a, b = make_vault("office"), make_vault("home")
    in_vault(a, SEED, "30", "1")  # 31 documents, all new to b: they travel whole
    va, vb = a.open(), b.open()
    try:
        shown: list[tuple[int, int]] = []
        ia, ib = load_identity(va.record.replica), load_identity(vb.record.replica)
        client = SyncSession(va.record.replica, device_id=ia.device_id, device_name="office", role="client",
                             peer_device_id=ib.device_id, on_progress=lambda d, t: shown.append((d, t)))
        server = SyncSession(vb.record.replica, device_id=ib.device_id, device_name="home", role="server",
                             peer_device_id=ia.device_id, store_every=8)
        progress_before_turn_end = 0
        stored_when_progress: list[int] = []

        def watch(frame: Frame) -> None:
            nonlocal progress_before_turn_end
            if frame.type == FrameType.TURN_END:
                progress_before_turn_end = -1  # counting only during the sender's first turn
            elif frame.type == FrameType.WHOLE and progress_before_turn_end >= 0:
                stored_when_progress.append(len(vb.record.replica.doc_heads()))

        to_server, to_client = list(client.start()), list(server.start())
        progress_frames = []
        while not (client.finished and server.finished):
            assert to_server or to_client, "the conversation stalled"
            batch, to_server = to_server, []
            for f in batch:
                out = server.receive(_codec(f))
                watch(f)
                progress_frames += [p for p in out if p.type == FrameType.PROGRESS and progress_before_turn_end >= 0]
                to_client += out
            batch, to_client = to_client, []
            for f in batch:
                to_server += client.receive(_codec(f))
        assert client.report.ok and server.report.ok
        # The receiver stored while the documents arrived and said so before the turn ended ...
        assert len(progress_frames) >= 3
        assert max(stored_when_progress) >= 24
        # ... and the sender showed the receiver's progress, rising, up to every document.
        done = [d for d, _t in shown]
        assert done == sorted(done) and shown[-1] == (31, 31)
        assert any(0 < d < 31 for d in done)
        assert _heads(va) == _heads(vb)
    finally:
        va.close()
        vb.close()
