"""A document both devices held at the end of their last sync travels as the changes made
since (CHANGES frames; issue 14): a peer one edit behind on a note edited thousands of times
costs what the same edit costs on a note written in one go. Real vaults, real Automerge
documents, direct sync over TLS on 127.0.0.1."""

from __future__ import annotations

import queue
import random
import threading
from datetime import date

from store.synthetic import make_client, make_note
from sync import wire
from sync.direct import serve, sync_now
from sync.framing import HEADER, FrameType

from test_convergence import Device  # noqa: E402
from test_signature_findings import two  # noqa: E402,F401  (two paired vaults)

EDITS = 2000
DOCUMENT_FRAMES = ("SYNC", "CHANGES")


def direct_counted(client: Device, server: Device) -> tuple[dict[str, int], object]:
    """A direct sync, client to server: (frame bytes by type, both directions; the report)."""
    ports: queue.Queue[int] = queue.Queue()
    stop = threading.Event()
    by_type: dict[str, int] = {}

    def tap(_direction: str, frame: bytes) -> None:
        name = FrameType(frame[HEADER.size - 1]).name
        by_type[name] = by_type.get(name, 0) + len(frame)

    served = server.submit(lambda: serve(server.record.replica, server.identity, "127.0.0.1", 0, stop_event=stop,
                                         on_listening=lambda _h, p: ports.put(p), max_connections=1))
    try:
        port = ports.get(timeout=30)
        report = client.call(lambda: sync_now(client.record.replica, client.identity, "127.0.0.1", port,
                                              frame_tap=tap))
    finally:
        stop.set()
        served.result(timeout=60)
    return by_type, report


def notes(device: Device, edits: int) -> tuple[str, str]:
    """(a note written by `edits` one-character edits, the control: the same text in one)."""

    def run():
        rng = random.Random(14)
        record = device.record
        client = record.create_client(make_client(rng, 0))
        long_note = record.create_note(make_note(rng, client, 1, date(2026, 3, 2), complete=False))
        made = make_note(rng, client, 1, date(2026, 3, 3), complete=False)
        control = record.create_note(made.model_copy(update={"id": made.id + "-control"}))
        key = record.get_note(long_note.id).section_keys[0]
        text = record.get_note(long_note.id).sections[key]
        with record.transaction():
            for _ in range(edits):
                text += "x"
                record.set_section(long_note.id, key, text)
        record.set_section(control.id, key, text)
        return long_note.id, control.id

    return device.call(run)


def append(device: Device, note_id: str, text: str) -> None:
    def run():
        note = device.record.get_note(note_id)
        key = note.section_keys[0]
        device.record.set_section(note_id, key, note.sections[key] + text)

    device.call(run)


def section(device: Device, note_id: str) -> str:
    note = device.call(lambda: device.record.get_note(note_id))
    return note.sections[note.section_keys[0]]


def heads(device: Device, note_id: str) -> list[bytes]:
    return device.call(lambda: sorted(device.record.replica.doc_heads_of(note_id)))


def document_bytes(by_type: dict[str, int]) -> int:
    return sum(by_type.get(t, 0) for t in DOCUMENT_FRAMES)


def synced_twice(a: Device, b: Device) -> None:
    """The first sync brings everything; the second leaves both sides the same baseline."""
    for _ in range(2):
        _by_type, report = direct_counted(a, b)
        assert report.ok, report.summary()


def test_a_peer_one_edit_behind_a_long_history_costs_what_the_control_costs(two):
    a, b = two
    long_id, control_id = notes(a, EDITS)
    synced_twice(a, b)
    costs = {}
    for name, note_id in (("long", long_id), ("control", control_id)):
        append(a, note_id, "y")
        by_type, report = direct_counted(a, b)
        assert report.ok, report.summary()
        assert section(b, note_id) == section(a, note_id) and heads(b, note_id) == heads(a, note_id)
        costs[name] = document_bytes(by_type)
    # Before: a fresh Automerge sync state per connection, whose first message lists every
    # change the note ever had (about 6 KB for 2,000 edits, against 0.5 KB for the control).
    assert costs["long"] <= 2 * costs["control"], costs


def test_edits_on_both_sides_since_the_last_sync_meet_in_one_sync(two):
    a, b = two
    long_id, _control = notes(a, 50)
    synced_twice(a, b)
    append(a, long_id, " CANARY-A")
    append(b, long_id, " CANARY-B")
    by_type, report = direct_counted(a, b)
    assert report.ok, report.summary()
    assert "CHANGES" in by_type and "SYNC" not in by_type
    assert heads(a, long_id) == heads(b, long_id) and len(heads(a, long_id)) == 2
    assert section(a, long_id) == section(b, long_id)
    assert "CANARY-A" in section(a, long_id) and "CANARY-B" in section(a, long_id)
    # And the next sync finds nothing to do.
    by_type, report = direct_counted(b, a)
    assert report.ok and document_bytes(by_type) == 0


def test_the_server_ahead_sends_its_changes_to_the_client(two):
    a, b = two
    long_id, _control = notes(a, 50)
    synced_twice(a, b)
    append(b, long_id, " CANARY-SERVER")
    by_type, report = direct_counted(a, b)
    assert report.ok, report.summary()
    assert by_type.get("CHANGES", 0) > 0 and "SYNC" not in by_type
    assert "CANARY-SERVER" in section(a, long_id) and heads(a, long_id) == heads(b, long_id)


def test_without_the_feature_the_documents_meet_through_automerge_sync(two, monkeypatch):
    """A peer whose hello does not list `changes` (an older device) is spoken to as before."""
    a, b = two
    long_id, _control = notes(a, 50)
    synced_twice(a, b)
    monkeypatch.setattr(wire, "FEATURES", ("progress",))
    append(a, long_id, " CANARY-A")
    append(b, long_id, " CANARY-B")
    by_type, report = direct_counted(a, b)
    assert report.ok, report.summary()
    assert "CHANGES" not in by_type and by_type.get("SYNC", 0) > 0
    assert heads(a, long_id) == heads(b, long_id)
    assert "CANARY-A" in section(b, long_id) and "CANARY-B" in section(a, long_id)
