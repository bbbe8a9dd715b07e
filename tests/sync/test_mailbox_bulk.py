"""The mailbox at scale: bundles carry stored bytes, large imports store in several
transactions, show progress, and resume where they stopped.

Real vaults in this process (tests/sync/test_mailbox.py's devices: A and B paired, C paired
with B only), real bundles in a real folder. `IMPORT_BATCH` is made small so that a few dozen
documents take several transactions, as tens of thousands do with the real size.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import pytest
from automerge.core import ROOT, Document, ScalarType

import sync.mailbox as mailbox
from sync import bundle as fmt
from tests.sync.conftest import _env, command
from tests.sync.test_document_budget import BOMB_OPS, _expand, _new_note_bytes
from tests.sync.test_mailbox import (  # noqa: F401  (fixtures)
    _client_with_note,
    _encode,
    _group_key,
    box,
    devices,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _entries_of(device) -> list[tuple[str, bytes]]:
    return [(d, device.record.replica.stored_doc(d)[0]) for d in sorted(device.record.replica.doc_heads())]


def _decoded(sender, reader, path) -> list[tuple[str, bytes]]:
    """The entries of `sender`'s bundle as `reader`, one of its recipients, opens them."""
    data = path.read_bytes()
    return fmt.decode_for(data, sender_cert=sender.identity.cert_pem, device_id=reader.identity.device_id,
                          private_key=reader.identity.key_pem.encode()).entries


def test_a_bundle_carries_each_document_as_its_stored_bytes(devices, box):
    """Written from the stored bytes (a snapshot and the changes appended since), not from
    each document loaded and saved again."""
    a, b, _ = devices
    for i in range(3):
        _client_with_note(a, f"synthetic note {i}")  # a section typed after the note was made: changes appended
    report = a.mailbox(box)
    entries = dict(_decoded(a, b, box / report.bundles.written))
    assert set(entries) == set(a.record.replica.doc_heads())
    appended = [d for d in entries if entries[d] != a.record.replica.load_doc(d).save()]
    assert appended, "no document here had changes stored after its snapshot"
    for doc_id, data in entries.items():
        assert data == a.record.replica.stored_doc(doc_id)[0]
    got = b.mailbox(box)
    assert got.received == len(entries) and b.heads() == a.heads()


def _batches_of(monkeypatch, size: int) -> None:
    monkeypatch.setattr(mailbox, "IMPORT_BATCH", size, raising=False)


def _with_partial_key(device) -> list[str]:
    rows = device.record.replica._conn.execute(
        "SELECT key FROM local_kv WHERE key LIKE ? AND length(value) > 2", ("sync.mailbox.partial.v1.%",)
    ).fetchall()
    return [r[0] for r in rows]


@pytest.mark.parametrize("bad", ["over budget", "not a record document", "another document's id"])
def test_a_bad_document_after_several_batches_is_refused_whole_and_never_relayed(devices, box, tmp_path,
                                                                                    monkeypatch, bad):
    """Every new document is checked before the first transaction stores any: a bad one at
    the end of a bundle that takes several transactions leaves nothing stored, nothing
    marked half done, and nothing for B to relay to C."""
    a, b, c = devices
    _batches_of(monkeypatch, 5)
    for i in range(12):
        _client_with_note(a, f"new on A {i}")
    entries = _entries_of(a)
    if bad == "over budget":
        bad_id, note, section = _new_note_bytes(990_101)
        bomb, _heads = _expand(tmp_path, note, section, BOMB_OPS)
        entries.append((bad_id, bomb))
        reason = "over-budget"
    elif bad == "not a record document":
        stranger = Document()
        with stranger.transaction() as tx:
            tx.put(ROOT, "anything", ScalarType.Str, "not a record document")
        entries.append(("zz-new-doc-stranger", stranger.save()))
        reason = "malformed"
    else:
        # The stored bytes of one of A's notes under an id none of the devices has.
        entries.append(("zz-claimed-elsewhere", entries[-1][1]))
        reason = "malformed"
    (box / fmt.file_name(a.identity.device_id, 40)).write_bytes(_encode(a.identity, _group_key(a), entries, seq=40))
    before_b, before_c = b.heads(), c.heads()
    progress: list[tuple[int, int]] = []
    from sync.mailbox import sync_mailbox

    report = sync_mailbox(b.record.replica, b.identity, box, on_progress=lambda d, t: progress.append((d, t)))
    assert [r.reason for r in report.bundles.rejected] == [reason]
    assert b.heads() == before_b
    assert _with_partial_key(b) == []
    assert report.sent == 0 and report.bundles.written is None  # nothing new here: nothing relayed
    assert all(done <= total // 2 for done, total in progress)  # checked, never stored
    c.mailbox(box)
    assert c.heads() == before_c
    assert b.record.check() == []


class Interrupt(Exception):
    """What the app's cancel does: raised from the progress callback."""


def test_an_interrupted_import_resumes_without_applying_anything_twice(devices, box, monkeypatch):
    a, b, _ = devices
    _batches_of(monkeypatch, 4)
    for i in range(10):
        _client_with_note(a, f"synthetic note {i}")
    a.mailbox(box)
    total = len(a.record.replica.doc_heads())
    from sync.mailbox import sync_mailbox

    def stop_after_two_batches(done: int, to_do: int) -> None:
        if done >= to_do // 2 + 8:  # the checking half, then two transactions of 4
            raise Interrupt()

    written: list[frozenset[str]] = []
    b.record.replica.add_listener(written.append)
    with pytest.raises(Interrupt):
        sync_mailbox(b.record.replica, b.identity, box, on_progress=stop_after_two_batches)
    first = set().union(*written)
    assert 0 < len(first) < total  # stopped part way: some stored, not all
    assert set(b.record.replica.doc_heads()) == first
    assert _with_partial_key(b) != []
    assert b.record.check() == []

    written.clear()
    report = b.mailbox(box)
    assert report.bundles.rejected == [] and report.bundles.applied == 1
    assert report.received == total - len(first)  # the rest, and only the rest
    assert not set().union(*written) & first  # nothing of the first part written again
    assert not first & report.changed_ids
    assert b.heads() == a.heads()
    assert _with_partial_key(b) == []
    assert b.record.check() == []
    again = b.mailbox(box)
    assert again.bundles.already_applied == 1 and again.received == 0


def test_a_bundle_partly_stored_then_replaced_by_other_contents_is_refused(devices, box, monkeypatch):
    """A half-imported (sender, sequence number) presented again with other bytes is a reuse
    of the number, as for a bundle applied whole."""
    a, b, _ = devices
    _batches_of(monkeypatch, 3)
    for i in range(6):
        _client_with_note(a, f"synthetic note {i}")
    report_a = a.mailbox(box)
    from sync.mailbox import sync_mailbox

    def stop(done: int, to_do: int) -> None:
        if done > to_do // 2:
            raise Interrupt()

    with pytest.raises(Interrupt):
        sync_mailbox(b.record.replica, b.identity, box, on_progress=stop)
    stored = b.heads()
    path = box / report_a.bundles.written
    path.write_bytes(_encode(a.identity, _group_key(a), _entries_of(a)[:4], seq=fmt.parse_file_name(path.name)[1]))
    report = b.mailbox(box)
    assert [r.reason for r in report.bundles.rejected] == ["replayed"]
    assert b.heads() == stored


def test_the_command_shows_progress_on_a_terminal(make_vault, pair, notewell, in_vault, tmp_path):
    a, b = make_vault("laptop"), make_vault("desktop")
    pair(a, b)
    folder = tmp_path / "box"
    folder.mkdir()
    in_vault(a, """
        from store.synthetic import populate
        vault.update_settings(clinician_name="Dr. Synthetic", credentials="PhD")
        populate(vault, clients=3, notes=30, seed=3)
    """)
    assert notewell(a, "sync", "mailbox", str(folder)).returncode == 0
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.run(
            command(b, "sync", "mailbox", str(folder)), cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=terminal, stdin=subprocess.DEVNULL, timeout=300,
        )
        os.close(terminal)
        terminal = -1
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal's other end is closed: all of it was read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    assert proc.returncode == 0, shown.decode(errors="replace")
    count = json.loads(in_vault(b, "print(json.dumps(len(record.replica.doc_heads())))"))
    assert f"importing a bundle of {count} new documents: 100%".encode() in shown
    assert b"Traceback" not in shown


def test_a_document_sent_before_and_edited_since_travels_compact(devices, box):
    """The everyday bundle: a note the recipients already have, edited once more, is saved
    compact, not sent as stored bytes that carry every change appended since the last
    compaction (which made a one-character edit's bundle several times larger)."""
    a, b, _ = devices
    _, note = _client_with_note(a, "synthetic first words")
    a.mailbox(box)
    b.mailbox(box)
    for i in range(6):
        a.record.set_section(note.id, "data", f"synthetic first words, edit {i}")
    report = a.mailbox(box)
    entries = dict(_decoded(a, b, box / report.bundles.written))
    assert set(entries) == {note.id}
    stored = a.record.replica.stored_doc(note.id)[0]
    assert entries[note.id] == a.record.replica.load_doc(note.id).save()
    assert len(entries[note.id]) < len(stored)
    b.mailbox(box)
    assert b.heads() == a.heads()
