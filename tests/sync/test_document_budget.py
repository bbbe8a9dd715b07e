"""The document budget: a small document whose load expands hugely is refused whole.

A paired device can be hostile (stolen, or running altered code). Here it is device A
running the project's own sync code over its own real vault, except that its intake offers
a planted document: a real progress note whose section holds 1.1 million one-character
insertions, a few kilobytes once saved (runs of the same value, then DEFLATE). Before the
budget, such a document was accepted, stored, relayed to every other device and paid for by
every later load. Now: refused whole, named in the report, never stored, never relayed, and
everything else in the same sync arrives. An honest note with a year of daily edits passes
with room to spare.
"""

from __future__ import annotations

import random
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from automerge.core import Document, Message, SyncState

from store import document_budget
from store import documents as D
from store import synthetic
from store.device_identity import load_identity
from store.errors import DocumentOverBudget
from sync import bundle as fmt
from sync.framing import FrameReader
from sync.protocol import SyncSession
from sync.wire import decode_sync, sync_frame

REPO = Path(__file__).resolve().parents[2]
BOMB_OPS = 1_100_000  # just over the budget's operations; a few KB once saved

# Builds the planted document in a process of its own (the hostile device's memory, not the
# test's): the note in file argv[1] with argv[3] characters inserted into section argv[2].
BUILD = r"""
import sys
from automerge.core import Document, Message, SyncState
from store.synthetic import inflated_note
data = inflated_note(open(sys.argv[1], "rb").read(), sys.argv[2], int(sys.argv[3]))
open(sys.argv[4], "wb").write(data)
print(" ".join(h.hex() for h in Document.load(data).get_heads()))
"""


def _expand(tmp_path: Path, note_bytes: bytes, section: str, chars: int) -> tuple[bytes, list[bytes]]:
    """(saved bytes, heads) of the note with `chars` characters inserted into `section`."""
    src, out = tmp_path / "note.bin", tmp_path / f"expanded-{chars}.bin"
    src.write_bytes(note_bytes)
    done = subprocess.run([sys.executable, "-c", BUILD, str(src), section, str(chars), str(out)],
                          capture_output=True, text=True, timeout=300, check=True, cwd=REPO)
    return out.read_bytes(), [bytes.fromhex(h) for h in done.stdout.split()]


class Device:
    """A real vault (the `make_vault` fixture's) open in this process, with its identity."""

    def __init__(self, ref) -> None:
        self.vault = ref.open()
        self.record = self.vault.record
        self.identity = load_identity(self.record.replica)
        self.name = ref.name

    def session(self, other: "Device", role: str, store=None) -> SyncSession:
        return SyncSession(store or self.record.replica, device_id=self.identity.device_id, device_name=self.name,
                           role=role, peer_device_id=other.identity.device_id)


class Hostile:
    """Device A's real intake, offering `planted` documents as its own: what a device
    running altered code can do. Everything else is A's."""

    def __init__(self, record, planted: dict[str, tuple[bytes, list[bytes]]]) -> None:
        self._record = record
        self._planted = planted

    def __getattr__(self, name):
        return getattr(self._record, name)

    def doc_heads(self):
        heads = dict(self._record.doc_heads())
        heads.update({doc_id: heads_ for doc_id, (_data, heads_) in self._planted.items()})
        return heads

    def stored_doc(self, doc_id):
        if doc_id in self._planted:
            return self._planted[doc_id]
        return self._record.stored_doc(doc_id)

    def load_doc(self, doc_id):
        if doc_id in self._planted:
            return Document.load(self._planted[doc_id][0])
        return self._record.load_doc(doc_id)


def _run_pair(client: SyncSession, server: SyncSession) -> None:
    """Runs both sessions until they are finished (or, when live, through the first exchange)."""
    to_server, to_client = list(client.start()), list(server.start())
    while not ((client.finished or client.live) and (server.finished or server.live)):
        assert to_server or to_client, "the conversation stalled"
        batch, to_server = to_server, []
        for f in batch:
            to_client += server.receive(FrameReader().feed(f.encode())[0])  # through the codec
        batch, to_client = to_client, []
        for f in batch:
            to_server += client.receive(FrameReader().feed(f.encode())[0])


@pytest.fixture
def devices(make_vault):
    """A (which turns hostile) with clients and draft notes; B and C with a client each of
    their own (ids none of the others has)."""
    made = []
    try:
        for index, name in enumerate(("laptop-a", "desktop-b", "tablet-c")):
            device = Device(make_vault(name))
            made.append(device)
            if index == 0:
                synthetic.populate(device.vault, clients=2, notes=3, seed=7, sign_ratio=0.0)
            else:
                device.record.create_client(synthetic.make_client(random.Random(index), 500 + index))
        yield made
    finally:
        for device in made:
            device.vault.close()


def _new_note_bytes(index: int) -> tuple[str, bytes, str]:
    """(id, saved bytes, first section) of a real progress note none of the devices has."""
    rng = random.Random(index)
    client = synthetic.make_client(rng, index)
    note = synthetic.make_note(rng, client, index, date(2026, 1, 5))
    return note.id, D.new_note_doc(note, D.actor_for("planted")).save(), note.section_keys[0]


def _refusal_named(report, doc_id: str) -> bool:
    return any(doc_id in e and "larger than a record document may be" in e for e in report.errors)


def test_a_bomb_sent_whole_is_refused_by_name_never_stored_never_relayed(devices, tmp_path):
    a, b, c = devices
    bomb_id, note, section = _new_note_bytes(990_001)
    bomb, heads = _expand(tmp_path, note, section, BOMB_OPS)
    assert len(bomb) < 16 * 1024  # a small document...
    honest = set(a.record.replica.doc_heads())
    assert not honest & set(b.record.replica.doc_heads())

    server = b.session(a, "server")
    _run_pair(a.session(b, "client", Hostile(a.record.replica, {bomb_id: (bomb, heads)})), server)

    assert bomb_id not in b.record.replica.doc_heads()  # never stored
    assert _refusal_named(server.report, bomb_id)
    assert honest <= set(b.record.replica.doc_heads())  # nothing else in the same sync lost
    assert b.vault.check() == []

    # B syncs with C: the bomb is not relayed; A's honest documents are.
    _run_pair(b.session(c, "client"), c.session(b, "server"))
    assert bomb_id not in c.record.replica.doc_heads()
    assert honest <= set(c.record.replica.doc_heads())


def test_a_bomb_sent_as_sync_messages_for_a_shared_note_is_refused_and_the_rest_merged(devices, tmp_path):
    a, b, _c = devices
    _run_pair(a.session(b, "client"), b.session(a, "server"))  # shared from here
    shared = sorted(r.note_id for r in a.record.list_notes() if r.status == "draft")
    target, other = shared[0], shared[1]
    note = a.record.get_note(target)
    bomb, heads = _expand(tmp_path, a.record.replica.stored_doc(target)[0], note.section_keys[0], BOMB_OPS)
    # An honest edit on A in the same sync, to another note.
    a.record.set_section(other, a.record.get_note(other).section_keys[0], "An edit that must arrive.")
    before = sorted(b.record.replica.doc_heads()[target])

    server = b.session(a, "server")
    _run_pair(a.session(b, "client", Hostile(a.record.replica, {target: (bomb, heads)})), server)

    assert sorted(b.record.replica.doc_heads()[target]) == before  # nothing of it received
    assert _refusal_named(server.report, target)
    assert sorted(b.record.replica.doc_heads()[other]) == sorted(a.record.replica.doc_heads()[other])
    assert b.record.get_note(other).sections[b.record.get_note(other).section_keys[0]] == "An edit that must arrive."


def test_a_bomb_pushed_in_a_live_session_is_refused_and_the_session_goes_on(devices, tmp_path):
    a, b, _c = devices
    client, server = a.session(b, "client"), b.session(a, "server")
    client.live_requested = True
    _run_pair(client, server)
    assert server.live
    shared = sorted(r.note_id for r in a.record.list_notes())
    target = shared[0]
    bomb, _heads = _expand(tmp_path, a.record.replica.stored_doc(target)[0], a.record.get_note(target).section_keys[0], BOMB_OPS)
    before = sorted(b.record.replica.doc_heads()[target])

    # The hostile side of the live exchange: Automerge's own sync messages for its copy.
    hostile, state = Document.load(bomb), SyncState()
    for _round in range(4):
        message = hostile.generate_sync_message(state)
        if message is None:
            break
        replies = server.receive(sync_frame(target, message.encode()))
        for reply in replies:
            hostile.receive_sync_message(state, Message.decode(decode_sync(reply.payload)[1]))
    assert sorted(b.record.replica.doc_heads()[target]) == before
    assert _refusal_named(server.report, target)
    assert server.live  # the session goes on: an honest edit still arrives
    other = shared[1]
    a.record.set_section(other, a.record.get_note(other).section_keys[0], "A live edit that must arrive.")
    to_server, to_client = client.poll_local(), []
    for _round in range(20):  # a live exchange converges in a few rounds
        to_client = [reply for frame in to_server for reply in server.receive(frame)]
        to_server = [reply for frame in to_client for reply in client.receive(frame)]
        if not to_server:
            break
    assert sorted(b.record.replica.doc_heads()[other]) == sorted(a.record.replica.doc_heads()[other])
    client.close()
    server.close()


def _pair_for_mailbox(*devices: Device) -> None:
    from sync.peers import PeerBook, ensure_group_key, set_group_key

    key = ensure_group_key(devices[0].record.replica)
    for device in devices:
        set_group_key(device.record.replica, key)
        for other in devices:
            if other is not device:
                PeerBook(device.record.replica).add(other.identity.device_id, other.name, other.identity.cert_pem)


def test_a_bundle_holding_a_bomb_is_refused_by_name_and_the_other_bundles_apply(devices, tmp_path):
    from sync.mailbox import sync_mailbox
    from sync.peers import group_key

    a, b, c = devices
    _pair_for_mailbox(a, b)
    _pair_for_mailbox(b, c)
    box = tmp_path / "box"
    box.mkdir()
    honest = set(a.record.replica.doc_heads())
    sync_mailbox(a.record.replica, a.identity, box)  # A's honest bundle, sequence 1

    # Then a bundle signed by A that holds the bomb among honest documents.
    bomb_id, note, section = _new_note_bytes(990_002)
    bomb, _heads = _expand(tmp_path, note, section, BOMB_OPS)
    entries = [(d, a.record.replica.stored_doc(d)[0]) for d in sorted(honest)] + [(bomb_id, bomb)]
    data = fmt.encode(entries, sender_id=a.identity.device_id, seq=2, group_key=group_key(a.record.replica),
                      private_key=a.identity.key_pem.encode())
    (box / fmt.file_name(a.identity.device_id, 2)).write_bytes(data)
    assert len(data) < 64 * 1024

    report = sync_mailbox(b.record.replica, b.identity, box)
    assert [r.reason for r in report.bundles.rejected] == ["over-budget"]
    assert bomb_id in report.bundles.rejected[0].message and "larger than a record document may be" in report.bundles.rejected[0].message
    assert bomb_id not in b.record.replica.doc_heads()
    assert honest <= set(b.record.replica.doc_heads())  # from A's other bundle, applied in the same run
    assert report.bundles.applied == 1

    # The bundle B wrote in that run carries what B holds to C (paired with B only): never the bomb.
    assert report.bundles.written is not None
    report_c = sync_mailbox(c.record.replica, c.identity, box)
    assert report_c.bundles.senders.keys() == {b.identity.device_id}
    assert bomb_id not in c.record.replica.doc_heads()
    assert honest <= set(c.record.replica.doc_heads())


# --- an honest note: a year of daily edits fits with room to spare ----------------------

def test_an_honest_note_with_a_year_of_daily_edits_passes_with_room(devices, make_vault):
    a, b, _c = devices
    note_id = sorted(r.note_id for r in a.record.list_notes() if r.status == "draft")[0]
    doc = a.record.replica.load_doc(note_id)
    start = doc.fork()
    synthetic.a_year_of_daily_edits(doc, a.record.get_note(note_id).section_keys[0])
    data = doc.save()

    budget = document_budget.DEFAULT_BUDGET
    size = document_budget.check(note_id, data, budget)
    assert size.changes == len(doc.get_changes([]))  # the headers tell the truth
    assert size.changes > 365 * 36
    # Room to spare: at least five such years in every measure.
    assert 5 * size.ops <= budget.max_ops
    assert 5 * size.changes <= budget.max_changes
    assert 5 * size.inflated_bytes <= budget.max_inflated_bytes
    assert 5 * size.received_bytes <= budget.max_bytes

    # Received whole, by a device that has none of it.
    applied, refused = b.record.replica.apply_snapshots([(note_id, data)])
    assert refused == {} and sorted(applied[note_id]) == sorted(doc.get_heads())

    # And as sync messages, by a device that holds the note as it was a year ago.
    c = Device(make_vault("year-c"))
    try:
        c.record.replica.apply_snapshots([(note_id, start.save())])
        server = c.session(b, "server")
        _run_pair(b.session(c, "client"), server)
        assert server.report.errors == []
        assert sorted(c.record.replica.doc_heads()[note_id]) == sorted(doc.get_heads())
    finally:
        c.vault.close()


# --- the guarded load: what headers cannot show -----------------------------------------


def test_a_large_document_is_loaded_first_by_a_limited_process(tmp_path):
    """Within the counts but large: loaded by an isolated interpreter with limited memory and
    CPU time before this process loads it. The same document passes the default budget and
    is refused by one whose guarded load has too little memory."""
    note_id, note, section = _new_note_bytes(990_003)
    data, _heads = _expand(tmp_path, note, section, 600_000)
    size = document_budget.check(note_id, data)
    assert size.needs_guarded_load(document_budget.DEFAULT_BUDGET)

    tight = document_budget.DocumentBudget(load_memory_bytes=48 * 1024 * 1024)
    with pytest.raises(DocumentOverBudget, match=f"Document {note_id} is larger than .* needed more than 48 MB"):
        document_budget.check(note_id, data, tight)


def test_the_guarded_load_sees_neither_the_current_folder_nor_the_environment(tmp_path, monkeypatch):
    """A `automerge` package planted in the current folder, and a secret in the environment,
    never reach the guarded interpreter (it loads the installed Automerge, and reads nothing
    of ours but the document)."""
    planted = tmp_path / "automerge"
    planted.mkdir()
    (planted / "__init__.py").write_text("raise SystemExit(9)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("NOTEWELL_PASSPHRASE", "CANARY-budget-secret")
    _note_id, note, _section = _new_note_bytes(990_004)
    assert document_budget.guarded_load_problem(note) is None
    assert document_budget.guarded_load_problem(b"\x85\x6f\x4a\x83 not automerge") == "it could not be read"


# --- the header reader on its own ------------------------------------------------------


def test_a_run_declaring_a_trillion_rows_is_refused_from_a_dozen_bytes():
    crafted = synthetic.crafted_chunk([((1 << 4) | 2, b"\x80\xa0\xa5\xb7\xa3\x1d" + b"\x01")])  # 10**12 times 1
    assert len(crafted) < 32
    assert document_budget.measure(crafted) is None
    with pytest.raises(DocumentOverBudget, match="Document crafted is larger than .*more than 1,000,000 operations"):
        document_budget.check("crafted", crafted)


def test_a_compressed_column_is_inflated_no_further_than_the_budget():
    import zlib

    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = deflater.compress(b"\0" * (24 * 1024 * 1024)) + deflater.flush()
    crafted = synthetic.crafted_chunk([((1 << 4) | 0x08 | 7, zeros)])  # a DEFLATE value column
    assert len(crafted) < 64 * 1024
    with pytest.raises(DocumentOverBudget, match="bytes once decompressed"):
        document_budget.check("crafted", crafted)


@pytest.mark.parametrize("damage", ["truncated", "not a chunk", "unknown chunk type"])
def test_bytes_that_do_not_follow_the_format_are_not_a_document(damage):
    from store.errors import ForeignDocument

    _id, note, _section = _new_note_bytes(990_005)
    data = {"truncated": note[:-7], "not a chunk": b"just some bytes",
            "unknown chunk type": note[:8] + b"\x09" + note[9:]}[damage]
    with pytest.raises(ForeignDocument, match="is not a readable Automerge document") as refused:
        document_budget.check("damaged", data)
    assert not isinstance(refused.value, DocumentOverBudget)


def test_changes_and_sync_messages_are_counted_like_documents():
    from automerge.core import SyncState

    _id, note, section = _new_note_bytes(990_006)
    doc = Document.load(note)
    synthetic.a_year_of_daily_edits(doc, section, days=3, saves=4)
    changes = doc.get_changes([])
    whole = document_budget.measure(doc.save())
    as_changes = document_budget.measure(b"".join(c.bytes for c in changes))
    assert whole.changes == as_changes.changes == len(changes)
    # A change lists a deletion as an operation; a saved document keeps it as a mark on the
    # deleted character (3 days, 5 characters replaced each).
    assert as_changes.ops == whole.ops + 3 * 5
    ours = Document()
    reply = ours.generate_sync_message(SyncState())
    state = SyncState()
    doc.receive_sync_message(state, reply)
    message = doc.generate_sync_message(state)
    counted = document_budget.check_sync_message("n", message.encode())
    assert counted.changes == len(changes) and counted.ops in (whole.ops, as_changes.ops)
