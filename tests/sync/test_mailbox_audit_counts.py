"""A mailbox sync's audit entry and the paired-device list hold its real counts (issue 16,
finding 13): received, sent, merged and conflicts as the run's one report says them, in the
same words the command line prints and the app shows."""

from __future__ import annotations

from test_mailbox import _client_with_note, box, devices  # noqa: F401  (fixtures)


def _sessions(device) -> list[dict]:
    return [e.details for e in device.vault.audit.entries() if e.event == "sync_session"]


def test_a_mailbox_sessions_audit_entry_holds_its_real_counts(devices, box):  # noqa: F811
    from sync.peers import PeerBook

    a, b, _ = devices
    _, note = _client_with_note(a, "one two three")
    a.mailbox(box)
    b.mailbox(box)
    # Both edit the same note, and B has a note of its own to send.
    a.record.set_section(note.id, "data", "zero one two three")
    b.record.set_section(note.id, "data", "one two three four")
    _client_with_note(b, "only on B")
    a.mailbox(box)
    before = len(_sessions(b))
    report = b.mailbox(box)
    assert report.received == 1 and report.merged == 1 and report.sent >= 3
    (entry,) = _sessions(b)[before:]
    assert entry["transport"] == "mailbox" and entry["device"] == a.identity.short_id
    assert (entry["received"], entry["sent"], entry["merged"], entry["conflicts"]) == (
        report.received, report.sent, report.merged, report.conflicts)
    # The device list keeps the words the command line prints and the app shows.
    peer = PeerBook(b.record.replica).get(a.identity.device_id)
    assert peer.last_sync_summary == report.summary().splitlines()[0]
