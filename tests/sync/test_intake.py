"""The record's sync intake (store/replica.py): one document-id rule at every entrance, the
declared interface sync/ uses, and a live session that pushes just what a commit changed.

Real vaults (SQLCipher files), real Automerge documents, real `notewell` processes, TLS on
127.0.0.1. Waits poll with a deadline; nothing asserts on how long anything took.
"""

from __future__ import annotations

import json
import subprocess
import threading
from datetime import date

import pytest
from automerge.core import ROOT, Document, ScalarType

from tests.sync.conftest import command
from tests.sync.test_direct_sync import EDIT, _check, _heads, _section, _seed
from tests.sync.test_live_sync import AppLiveSession, _eventually
from tests.sync.test_mailbox import Device, _client_with_note, _encode, _group_key, devices  # noqa: F401
from tests.sync.test_mailbox import box  # noqa: F401

# Ids direct sync has always refused (a space), and ones it took although no other entrance
# makes them (a colon, 65+ characters, a final newline): one rule now refuses all of them.
BAD_IDS = ["synthetic id", "synthetic:id", "s" * 65, "synthetic\n"]


def _renamed(record, doc_id: str, new_id: str) -> Document:
    """A real record document of `record` carrying `new_id` as its id."""
    doc = record.replica.load_doc(doc_id)
    with doc.transaction() as tx:
        tx.put(ROOT, "id", ScalarType.Str, new_id)
    return doc


# --- the store API ------------------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_IDS)
def test_the_store_api_refuses_an_id_sync_would_refuse(devices, bad):
    from store.errors import ValidationFailed
    from store.models import Client, ProgressNote, SessionFacts

    a, _, _ = devices
    before = a.heads()
    with pytest.raises(ValidationFailed) as refused:
        a.record.create_client(Client(id=bad, display_name="Synthetic Person"))
    assert "must be 1-64 letters" in refused.value.message
    client = a.record.create_client(Client(display_name="Synthetic Person"))
    with pytest.raises(ValidationFailed):
        a.record.create_note(ProgressNote(id=bad, client_id=client.id, format="DAP",
                                          facts=SessionFacts(date_of_service=date(2026, 3, 2))))
    assert set(a.heads()) == set(before) | {client.id}


@pytest.mark.parametrize("bad", BAD_IDS)
def test_the_intake_refuses_a_document_under_an_id_against_the_rule(devices, bad):
    from store.errors import ForeignDocument

    a, b, _ = devices
    client, _note = _client_with_note(a, "shared note")
    before = b.heads()
    with pytest.raises(ForeignDocument):
        b.record.replica.apply_doc(bad, _renamed(a.record, client.id, bad))
    applied, refused = b.record.replica.apply_snapshots([(bad, _renamed(a.record, client.id, bad).save())])
    assert applied == {} and list(refused) == [bad]
    assert b.heads() == before


# --- import -------------------------------------------------------------------------------


def test_import_refuses_an_id_with_a_final_newline(make_vault, notewell, tmp_path):
    """The import format's pattern ended in `$`, which also matches before a final newline."""
    from tests.store.test_importer import EXAMPLE

    data = json.loads(EXAMPLE.read_text())
    old = data["clients"][0]["id"]
    text = json.dumps(data).replace(json.dumps(old), json.dumps(old + "\n"))
    path = tmp_path / "import.json"
    path.write_text(text)
    ref = make_vault("office")
    before = _heads(ref)
    done = notewell(ref, "import", str(path))
    assert done.returncode != 0
    assert "must be 1-64 letters" in done.stderr and "Traceback" not in done.stderr
    assert _heads(ref) == before


# --- the one-of-a-kind ids ------------------------------------------------------------------

# The ids of the record's device list and snippets: no client, note or rights record may take
# one, at any entrance (store/doc_id_rule.py SINGLETON_IDS).
SINGLETONS = ["device-list", "snippets"]


def test_the_singleton_ids_are_those_of_the_device_list_and_the_snippets():
    from store.device_list import DEVICE_LIST_ID
    from store.doc_ids import SINGLETON_IDS
    from store.snippets import SNIPPETS_ID

    assert SINGLETON_IDS == {DEVICE_LIST_ID, SNIPPETS_ID} == set(SINGLETONS)


@pytest.mark.parametrize("taken", SINGLETONS)
def test_the_store_api_refuses_a_client_or_note_under_a_singleton_id(devices, taken):
    from store.errors import ValidationFailed
    from store.models import Client, ProgressNote, SessionFacts

    a, _, _ = devices
    client = a.record.create_client(Client(display_name="Synthetic Person"))
    before = a.heads()
    with pytest.raises(ValidationFailed) as refused:
        a.record.create_client(Client(id=taken, display_name="Synthetic Person"))
    assert "device-list" in refused.value.message
    with pytest.raises(ValidationFailed):
        a.record.create_note(ProgressNote(id=taken, client_id=client.id, format="DAP",
                                          facts=SessionFacts(date_of_service=date(2026, 3, 2))))
    assert a.heads() == before


@pytest.mark.parametrize("has_list", [False, True], ids=["no device list yet", "own device list"])
@pytest.mark.parametrize("taken", SINGLETONS)
def test_the_intake_stores_nothing_but_the_device_list_or_snippets_under_their_ids(devices, taken, has_list):
    """Before, a client document sent under "device-list" read as a client, and a device
    with no device list of its own yet stored it there as one."""
    from store.doc_ids import record_kind
    from store.errors import ForeignDocument

    a, b, _ = devices
    if has_list:
        b.record.replica.list_this_device()  # as a device that has signed has
    client, _note = _client_with_note(a, "shared note")
    posing = _renamed(a.record, client.id, taken)
    assert record_kind(taken, posing) is None
    before = b.heads()
    devices_before = b.record.replica.load_doc("device-list").save() if has_list else None
    with pytest.raises(ForeignDocument):
        b.record.replica.apply_doc(taken, _renamed(a.record, client.id, taken))
    applied, refused = b.record.replica.apply_snapshots([(taken, posing.save())])
    assert applied == {} and list(refused) == [taken]
    assert b.heads() == before
    if has_list:
        assert b.record.replica.load_doc("device-list").save() == devices_before


def test_documents_stored_in_bulk_under_a_singleton_id_must_be_that_document(devices):
    from store.errors import ForeignDocument

    a, _, _ = devices
    client, _note = _client_with_note(a, "shared note")
    posing = _renamed(a.record, client.id, "snippets")
    before = a.heads()
    with pytest.raises(ForeignDocument):
        with a.record.transaction():
            a.record.replica.insert_prepared([("snippets", "client", posing.save(), posing.get_heads())], [])
    assert a.heads() == before


@pytest.mark.parametrize("taken", SINGLETONS)
def test_import_refuses_a_client_under_a_singleton_id(make_vault, notewell, tmp_path, taken):
    """Before, `notewell import` stored the client's document under the device list's id."""
    from tests.store.test_importer import EXAMPLE

    data = json.loads(EXAMPLE.read_text())
    old = data["clients"][0]["id"]
    path = tmp_path / "import.json"
    path.write_text(json.dumps(data).replace(json.dumps(old), json.dumps(taken)))
    ref = make_vault("office")
    before = _heads(ref)
    done = notewell(ref, "import", str(path))
    assert done.returncode != 0
    assert f'clients[0].id: must be 1-64 letters' in done.stderr and "Traceback" not in done.stderr
    assert '"device-list" or "snippets"' in done.stderr
    assert _heads(ref) == before


# --- mailbox bundles ----------------------------------------------------------------------


@pytest.mark.parametrize("new_here", [True, False], ids=["new-here", "merged"])
def test_a_bundle_cannot_store_a_document_under_an_id_direct_sync_refuses(devices, box, new_here):  # noqa: F811
    """Before, the bundle was applied, and every later direct sync of the receiving device
    failed on its document list."""
    from sync import bundle as fmt

    a, b, _ = devices
    client, _note = _client_with_note(a, "shared note")
    bad = "synthetic:id" if new_here else "synthetic id"
    entries = [(d, a.record.replica.load_doc(d).save()) for d in sorted(a.record.replica.doc_heads())]
    entries.append((bad, _renamed(a.record, client.id, bad).save()))
    (box / fmt.file_name(a.identity.device_id, 70)).write_bytes(_encode(a.identity, _group_key(a), entries, seq=70))
    if not new_here:
        # B holds A's documents already: the bad one arrives next to documents it merges.
        b.record.replica.apply_snapshots([(d, a.record.replica.load_doc(d).save()) for d in a.record.replica.doc_heads()])
    before = b.heads()
    report = b.mailbox(box)
    assert [r.reason for r in report.bundles.rejected] == ["malformed"]
    assert bad not in b.record.replica.doc_heads() and b.heads() == before


def _converse(client, server, on_the_way=lambda frame: frame) -> None:
    """The two sessions' frames handed across until both are done; `on_the_way` may alter
    what the client sends (the other device is whoever holds its keys)."""
    client.start()
    to_client, turns = server.start(), 0
    while to_client and turns < 200:
        turns += 1
        to_server = [on_the_way(reply) for frame in to_client for reply in client.receive(frame)]
        to_client = [reply for frame in to_server for reply in server.receive(frame)]

# --- direct sync --------------------------------------------------------------------------


def test_direct_sync_refuses_a_document_list_naming_an_id_against_the_rule(devices):
    """A colon was taken by direct sync alone; now the peer's list is refused as malformed."""
    from sync.errors import MalformedFrame
    from sync.framing import Frame, FrameType
    from sync.protocol import SyncSession

    a, b, _ = devices
    _client_with_note(a, "shared note")
    server = SyncSession(b.record.replica, device_id=b.identity.device_id, device_name="home", role="server",
                         peer_device_id=a.identity.device_id)
    client = SyncSession(a.record.replica, device_id=a.identity.device_id, device_name="office", role="client",
                         peer_device_id=b.identity.device_id)
    def naming_a_bad_id(frame: Frame) -> Frame:
        if frame.type != FrameType.MANIFEST:
            return frame
        payload = json.loads(frame.payload)
        payload["docs"]["synthetic:id"] = []
        return Frame(FrameType.MANIFEST, json.dumps(payload).encode())

    with pytest.raises(MalformedFrame):
        _converse(client, server, naming_a_bad_id)
    assert "synthetic:id" not in b.record.replica.doc_heads()


def test_sync_runs_with_the_declared_interface_of_the_real_intake(devices):
    """`RecordReplica` is what sync/ is typed against; the real intake satisfies it and a
    whole sync runs on it (no RecordStore in sight)."""
    from store.replica import RecordReplica, Replica
    from sync.protocol import SyncSession

    a, b, _ = devices
    _client, note = _client_with_note(a, "shared note")
    ra, rb = a.record.replica, b.record.replica
    assert isinstance(ra, Replica) and isinstance(ra, RecordReplica) and isinstance(rb, RecordReplica)
    client = SyncSession(ra, device_id=a.identity.device_id, device_name="office", role="client",
                         peer_device_id=b.identity.device_id)
    server = SyncSession(rb, device_id=b.identity.device_id, device_name="home", role="server",
                         peer_device_id=a.identity.device_id)
    _converse(client, server)
    assert client.finished and server.finished
    assert b.record.get_note(note.id).sections["data"] == "shared note"
    assert server.report.changed_ids == set(a.record.replica.doc_heads())


# --- changed ids reported by commits ------------------------------------------------------


def test_a_commit_reports_exactly_the_ids_it_wrote_and_a_rollback_none(devices):
    from store.models import Client

    a, b, _ = devices
    heard: list[frozenset[str]] = []
    a.record.replica.add_listener(heard.append)
    client, note = _client_with_note(a, "first text")  # three commits: client, note, section
    assert heard == [frozenset({client.id}), frozenset({note.id}), frozenset({note.id})]
    heard.clear()
    with a.record.transaction():
        a.record.set_section(note.id, "data", "second text")
        other = a.record.create_client(Client(display_name="Another Person"))
        a.record.replica.local_put("synthetic.key", b"device-local, not a document")
    assert heard == [frozenset({note.id, other.id})]
    heard.clear()
    with pytest.raises(RuntimeError), a.record.transaction():
        a.record.set_section(note.id, "data", "rolled back")
        raise RuntimeError("roll back")
    a.record.replica.local_put("synthetic.key", b"no document written")
    assert heard == []
    # What another device sends is reported too (the app reloads just that).
    b.record.replica.add_listener(heard.append)
    b.record.replica.apply_snapshots([(client.id, a.record.replica.load_doc(client.id).save())])
    assert heard == [frozenset({client.id})]
    a.record.replica.remove_listener(heard.append)
    a.record.set_section(note.id, "data", "unheard")
    assert heard == [frozenset({client.id})]


# --- a live session pushes what changed ---------------------------------------------------


def _sent_doc_ids(frames: list[bytes]) -> list[str]:
    from sync.framing import FrameReader, FrameType
    from sync.protocol import decode_sync

    reader, out = FrameReader(), []
    for frame in reader.feed(b"".join(frames)):
        if frame.type == FrameType.SYNC:
            out.append(decode_sync(frame.payload)[0])
    return out


def test_a_live_session_pushes_only_the_document_an_edit_changed(make_vault, pair, serve, in_vault):
    a, b = make_vault("office"), make_vault("home")
    notes = _seed(in_vault, a, text="Live base text.", count=6)["notes"]
    pair(a, b)
    server, port = serve(b)
    sent: list[bytes] = []
    lock = threading.Lock()

    def tap(direction: str, frame: bytes) -> None:
        if direction == "sent":
            with lock:
                sent.append(frame)

    with AppLiveSession(a, port, tap=tap) as live:
        _eventually(lambda: len(_heads(b)) == len(_heads(a)), "the first exchange at home")
        with lock:
            first = len(sent)
        # An edit in this process: its commit names the note and wakes the session (the
        # test does not wake it).
        live.in_store(lambda: live.vault.record.set_section(notes[2], "data", "Live base text, typed on."))
        _eventually(lambda: _section(b, notes[2]) == "Live base text, typed on.", "the edit at home")
        with lock:
            pushed = _sent_doc_ids(sent[first:])
        assert pushed and set(pushed) == {notes[2]}
        # An edit by another process is still found (by the change marker and a scan).
        with lock:
            first = len(sent)
        in_vault(a, EDIT, notes[4], "0", "Elsewhere: ")
        _eventually(lambda: _section(b, notes[4]).startswith("Elsewhere: "), "the other process's edit at home")
        with lock:
            pushed = _sent_doc_ids(sent[first:])
        assert pushed and set(pushed) == {notes[4]}
    server.wait_for("synced with office")
    assert _heads(a) == _heads(b) and _check(a) == [] and _check(b) == []
