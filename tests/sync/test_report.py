"""One sync report for both transports (sync/report.py), with the changed ids and one summary.

Real vaults (SQLCipher files), real Automerge documents, TLS on 127.0.0.1 for direct sync and
a real folder of signed, encrypted bundles for the mailbox. Waits have deadlines; nothing
asserts on how long anything took.
"""

from __future__ import annotations

import queue
import threading

from tests.sync.test_mailbox import _client_with_note, devices  # noqa: F401
from tests.sync.test_mailbox import box  # noqa: F401

WAIT = 60.0


def _sync_directly(client, server) -> tuple:
    """`client` syncs with `server` over TLS; the server serves from its own record connection
    in its own thread (as `sync serve` and the app's listener do). Returns both reports."""
    from sync.direct import serve, sync_now

    ports: queue.Queue[int] = queue.Queue()
    served: queue.Queue = queue.Queue()
    stop = threading.Event()

    def run() -> None:
        record = server.vault.open_record_store()
        try:
            serve(record.replica, server.identity, "127.0.0.1", 0, stop_event=stop, max_connections=1,
                  on_listening=lambda _h, port: ports.put(port), on_result=lambda r, e: served.put((r, e)))
        finally:
            server.vault.close_record_store(record)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        report = sync_now(client.record.replica, client.identity, "127.0.0.1", ports.get(timeout=WAIT))
        server_report, error = served.get(timeout=WAIT)
        assert error is None, error.message
    finally:
        stop.set()
        thread.join(timeout=WAIT)
    return report, server_report


def test_both_transports_return_one_report_type_with_the_ids_they_changed(devices, box):
    from sync.report import SyncReport

    a, b, c = devices  # a and b are paired, b and c; a and c are not
    client, note = _client_with_note(a, "Synthetic text, first version.")

    direct, served = _sync_directly(b, a)
    assert type(direct) is SyncReport and type(served) is SyncReport
    assert direct.ok and direct.bundles is None
    assert (direct.received, direct.changed_ids) == (2, {client.id, note.id})
    assert served.changed_ids == set()  # the server had everything already

    a.record.set_section(note.id, "data", "Synthetic text, second version.")
    written = a.mailbox(box)
    assert type(written) is SyncReport and written.bundles.written and written.sent == 2
    read = b.mailbox(box)
    assert type(read) is SyncReport and read.ok
    assert (read.received, read.changed_ids) == (1, {note.id})
    assert b.record.get_note(note.id).sections["data"] == "Synthetic text, second version."


def test_the_one_summary_renders_both_transports(devices, box):
    a, b, c = devices
    client, note = _client_with_note(a, "Synthetic text.")
    direct, _served = _sync_directly(b, a)
    assert direct.summary() == "received 2, sent 0, merged 0, conflicts 0"

    a.mailbox(box)  # read by b; foreign to c, which never paired with a
    b.mailbox(box)  # b relays what it received in its own bundle
    relayed = c.mailbox(box)
    assert not relayed.ok and relayed.changed_ids == {client.id, note.id}
    lines = relayed.summary().splitlines()
    assert lines[0] == "received 2, sent 2, merged 0, conflicts 0"
    assert lines[1].startswith("bundles: read 2 (applied 1, already applied 0, rejected 1); wrote ")
    [rejected] = relayed.bundles.rejected
    assert lines[2:] == [f"rejected {rejected.file} (foreign): {rejected.message}"]
    assert "not paired" in rejected.message

    again = c.mailbox(box)
    assert again.summary().splitlines()[1] == (
        "bundles: read 2 (applied 0, already applied 1, rejected 1); "
        "wrote none (nothing changed since this device's last bundle)"
    )


def test_a_summary_says_where_conflicts_are_and_what_went_wrong():
    from sync.report import SyncReport

    report = SyncReport(received=3, sent=1, merged=1, conflicts=1, errors=["Document x was refused."])
    assert not report.ok
    assert report.summary() == (
        "received 3, sent 1, merged 1, conflicts 1 (marked on the notes, for you to resolve); "
        "Document x was refused."
    )
