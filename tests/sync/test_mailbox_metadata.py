"""What the mailbox folder tells whoever carries it (issue 15, "Metadata"): no device id in
the clear, in any file name or any byte of what this version writes.

A device names itself in the folder by a pseudonym keyed by the sync-group key
(sync/pseudonyms.py); a reader maps it back through its own list of devices. Bundles and
read-marks written by earlier versions (named by the device id) are still read; a pseudonym
that stands for no paired device is refused with one sentence and changes nothing; bundles
named under a group key the writer held before are still read and still recognised as its own.

Real vaults (SQLCipher files, Automerge documents), real pairing and real `notewell` processes
for the exchange; in-process vaults where a file has to be written by hand.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sync import bundle as fmt
from tests.sync.test_mailbox import Device, _client_with_note

DAY = 24 * 3600.0


def _id_pieces(device_id: str) -> tuple[list[bytes], list[bytes]]:
    """Every 8-character window of the id's hex (either case) and every 6-byte window of the
    raw id: no name or byte of the folder may hold one. (Chance of a 6-byte window turning up
    by accident in a few kilobytes of ciphertext: about 1 in 10^9.)"""
    text = [device_id[i:i + 8] for i in range(len(device_id) - 7)]
    raw = bytes.fromhex(device_id)
    return ([t.encode() for t in text] + [t.upper().encode() for t in text],
            [raw[i:i + 6] for i in range(len(raw) - 5)])


def found_ids(folder: Path, device_ids: list[str]) -> list[str]:
    """Every file of `folder` (and below, outside a sync engine's own `.st…` folders) whose
    name or bytes hold a piece of one of `device_ids`."""
    found = []
    files = [p for p in folder.rglob("*") if p.is_file() and not any(part.startswith(".st") for part in p.parts)]
    for path in sorted(files):
        data = path.read_bytes()
        for device_id in device_ids:
            text, raw = _id_pieces(device_id)
            if any(t.decode().lower() in path.name.lower() for t in text):
                found.append(f"{path.name}: name holds part of {device_id[:16]}")
            if any(t in data for t in text) or any(r in data for r in raw):
                found.append(f"{path.name}: bytes hold part of {device_id[:16]}")
    return found


def _prefix(device: Device) -> str:
    """How `device` names its files in the folder (sync/pseudonyms.py)."""
    from sync.mailbox import mailbox_for

    return mailbox_for(device.record.replica, device.identity).name_prefix


def test_a_real_exchange_leaves_no_device_id_in_any_name_or_byte(make_vault, pair, notewell, in_vault, tmp_path):
    a, b = make_vault("office"), make_vault("home")
    pair(a, b)
    box = tmp_path / "box"
    box.mkdir()
    add = """
        from store.models import Client
        record.create_client(Client(display_name=sys.argv[2]))
    """
    in_vault(a, add, "Synthetic Office Person")
    in_vault(b, add, "Synthetic Home Person")
    for ref in (a, b, a, b):
        done = notewell(ref, "sync", "mailbox", str(box))
        assert done.returncode == 0 and done.stderr == "", done.stdout + done.stderr
    names = """
        print(json.dumps(sorted(row.display_name for row in record.list_clients())))
    """
    both = ["Synthetic Home Person", "Synthetic Office Person"]
    assert json.loads(in_vault(a, names)) == both and json.loads(in_vault(b, names)) == both

    files = sorted(p.name for p in box.iterdir())
    assert len([n for n in files if n.endswith(".nwb")]) >= 2, files  # bundles of both devices
    assert len([n for n in files if n.endswith(".nwm")]) == 2, files  # and both read-marks
    assert found_ids(box, [a.device_id, b.device_id]) == []
    # What the folder shows is the same for every file of a device, and says which files are
    # one device's (collection needs that) without saying which device it is.
    prefixes = {n.split("-")[0] for n in files}
    assert len(prefixes) == 2


def test_bundles_and_marks_of_an_earlier_version_are_still_read(tmp_path):
    """A folder a clinician already uses holds bundles and read-marks named by the device id
    (format 2); they are read beside the new ones, and collected when read."""
    from sync.mailbox import mailbox_for
    from sync.mailbox_collect import MARK_ENTRY, Collector, mark_name

    a, b = Device(tmp_path / "a", "office-a"), Device(tmp_path / "b", "home-b")
    try:
        a.pair(b)
        box = tmp_path / "box"
        box.mkdir()
        old_client, _ = _client_with_note(a, "Written by the earlier version.")
        to_b = {b.identity.device_id: fmt.public_key_of(b.identity.key_pem.encode())}
        entries = [(d, a.record.replica.load_doc(d).save()) for d in a.record.replica.doc_heads()]
        old = fmt.encode_for(entries, sender_id=a.identity.device_id, seq=1, recipients=to_b,
                             private_key=a.identity.key_pem.encode())
        old_name = fmt.file_name(a.identity.device_id, 1)
        (box / old_name).write_bytes(old)
        a.record.replica.local_put("sync.mailbox.seq.v1", b"1")
        a.record.replica.local_put("sync.mailbox.written.v1", json.dumps({str(box.resolve()): [1]}).encode())

        new_client, _ = _client_with_note(a, "Written by this version.")
        written = a.mailbox(box).bundles.written
        assert written.startswith(_prefix(a) + "-") and fmt.parse_file_name(written)[1] == 2

        report = b.mailbox(box)
        assert (report.bundles.applied, report.bundles.rejected) == (2, [])
        have = {row.client_id for row in b.record.list_clients()}
        assert {old_client.id, new_client.id} <= have

        # B's read-mark as the earlier version wrote it: named by its id, format 2.
        to_a = {a.identity.device_id: fmt.public_key_of(a.identity.key_pem.encode())}
        claim = json.dumps({"read": {a.identity.device_id: [[1, 2]]}}).encode()
        (box / mark_name(b.identity.device_id)).write_bytes(fmt.encode_for(
            [(MARK_ENTRY, claim)], sender_id=b.identity.device_id, seq=1, recipients=to_a,
            private_key=b.identity.key_pem.encode()))
        removed = Collector(mailbox_for(a.record.replica, a.identity), box, grace_seconds=0).collect()
        assert sorted(removed) == sorted([old_name, written])

        # B's next mark is under its pseudonym, and the one that named it is gone.
        Collector(mailbox_for(b.record.replica, b.identity), box, grace_seconds=0).collect()
        assert not (box / mark_name(b.identity.device_id)).exists()
        assert (box / mark_name(_prefix(b))).exists()
        assert found_ids(box, [a.identity.device_id, b.identity.device_id]) == []
    finally:
        a.close()
        b.close()


def test_a_pseudonym_of_no_paired_device_is_refused_and_changes_nothing(tmp_path):
    from sync.peers import group_key
    from sync.pseudonyms import pseudonym

    a, b, stranger = (Device(tmp_path / n, n) for n in ("office-a", "home-b", "stranger"))
    try:
        a.pair(b)
        box = tmp_path / "box"
        box.mkdir()
        _client_with_note(stranger, "from a device nobody paired")
        entries = [(d, stranger.record.replica.load_doc(d).save()) for d in stranger.record.replica.doc_heads()]
        to_a = {a.identity.device_id: fmt.public_key_of(a.identity.key_pem.encode())}
        # Even knowing the group's key, a device not paired has no name a reader resolves.
        name = pseudonym(group_key(a.record.replica), stranger.identity.device_id)
        data = fmt.encode_named(entries, pseudonym=name, seq=1, recipients=to_a,
                                private_key=stranger.identity.key_pem.encode())
        (box / fmt.file_name(name, 1)).write_bytes(data)
        before = a.heads()
        report = a.mailbox(box)
        (rejected,) = report.bundles.rejected
        assert rejected.reason == "foreign"
        assert rejected.message.count(".") == 1 and rejected.message.endswith("nothing was applied.")
        assert "not paired" in rejected.message
        assert a.heads() == before

        # A paired device's bundle with its pseudonym changed is refused too (the name is signed).
        _client_with_note(b, "from B")
        good = box / b.mailbox(box).bundles.written
        forged = bytearray(good.read_bytes())
        forged[10] ^= 0x01
        good.write_bytes(bytes(forged))
        report = a.mailbox(box)
        assert sorted(r.reason for r in report.bundles.rejected) == ["foreign", "foreign"]
        assert a.heads() == before
    finally:
        for d in (a, b, stranger):
            d.close()


def test_a_revoked_devices_pseudonym_is_refused_as_revoked(tmp_path):
    from sync.peers import PeerBook

    a, b = Device(tmp_path / "a", "office-a"), Device(tmp_path / "b", "home-b")
    try:
        a.pair(b)
        box = tmp_path / "box"
        box.mkdir()
        _client_with_note(b, "from B before its revocation")
        b.mailbox(box)
        PeerBook(a.record.replica).forget(b.identity.device_id)
        before = a.heads()
        report = a.mailbox(box)
        assert [r.reason for r in report.bundles.rejected] == ["revoked"]
        assert a.heads() == before
    finally:
        a.close()
        b.close()


def test_bundles_named_under_a_former_group_key_are_still_read_and_still_own(tmp_path):
    """C, in B's group, joins A's group (as a joiner that had a key adopts the listener's):
    its bundles named under the old key are still read by B, its new ones by B (which never
    held the new key) and A, and C still knows all of them for its own."""
    from sync.peers import PeerBook, ensure_group_key, former_group_keys, group_key, set_group_key

    a, b, c = (Device(tmp_path / n, n) for n in ("office-a", "home-b", "laptop-c"))
    try:
        b.pair(c)
        box = tmp_path / "box"
        box.mkdir()
        first_client, _ = _client_with_note(c, "written in the old group")
        old_prefix = _prefix(c)
        first = c.mailbox(box).bundles.written
        assert first.startswith(old_prefix + "-")

        old_key = group_key(c.record.replica)
        new_key = ensure_group_key(a.record.replica)
        assert new_key != old_key
        set_group_key(c.record.replica, new_key)  # what pairing as a joiner stores
        assert former_group_keys(c.record.replica) == [old_key]
        PeerBook(c.record.replica).add(a.identity.device_id, a.name, a.identity.cert_pem)
        PeerBook(a.record.replica).add(c.identity.device_id, c.name, c.identity.cert_pem)
        assert _prefix(c) != old_prefix

        second_client, _ = _client_with_note(c, "written in the new group")
        report = c.mailbox(box)
        second = report.bundles.written
        assert second.startswith(_prefix(c) + "-") and fmt.parse_file_name(second)[1] == 2
        assert report.bundles.read == 0  # its own bundle under the old name is not read as another's

        got = b.mailbox(box)
        assert (got.bundles.applied, got.bundles.rejected) == (2, [])
        got_b = got.bundles.written
        assert {first_client.id, second_client.id} <= {r.client_id for r in b.record.list_clients()}
        got = a.mailbox(box)
        # The first was written before A was trusted: for B only, and said so; the second is A's
        # too. (B's relaying bundle is foreign to A, which is not paired with it.)
        assert {r.file: r.reason for r in got.bundles.rejected} == {first: "not-a-recipient", got_b: "foreign"}
        assert second_client.id in {r.client_id for r in a.record.list_clients()}
        # C's watcher-side bookkeeping: both files are its own, none lost.
        from sync.mailbox import mailbox_for

        mailbox = mailbox_for(c.record.replica, c.identity)
        assert {fmt.parse_file_name(n)[0] for n in (first, second)} <= set(mailbox.own_prefixes)
        assert found_ids(box, [d.identity.device_id for d in (a, b, c)]) == []
    finally:
        for d in (a, b, c):
            d.close()


def test_the_format_alone_names_no_device(tmp_path):
    """Format 3 on its own: the header's name is the pseudonym, the recipients are not named,
    each opens with its own key and no other."""
    from store.device_identity import generate_identity
    from sync.pseudonyms import pseudonym

    sender, reader, other = (generate_identity(n) for n in ("sender", "reader", "other"))
    key = os.urandom(32)
    name = pseudonym(key, sender.device_id)
    to = {d.device_id: fmt.public_key_of(d.key_pem.encode()) for d in (reader,)}
    data = fmt.encode_named([("doc-a", b"synthetic")], pseudonym=name, seq=4, recipients=to,
                            private_key=sender.key_pem.encode())
    header = fmt.read_header(data)
    assert header.version == fmt.FORMAT_VERSION == 3
    assert header.named == name and header.seq == 4
    fmt.verify(data, header, sender.cert_pem)
    assert fmt.open_payload(data, header, device_id=reader.device_id,
                            private_key=reader.key_pem.encode()) == [("doc-a", b"synthetic")]
    with pytest.raises(fmt.NotForThisDevice):
        fmt.open_payload(data, header, device_id=other.device_id, private_key=other.key_pem.encode())
    for d in (sender, reader):
        text, raw = _id_pieces(d.device_id)
        assert not any(t in data for t in text) and not any(r in data for r in raw)
    # The pseudonym and the unnamed stanzas are signed like the rest: any byte changed before
    # the ciphertext, or a file cut short, is refused before anything is opened.
    for at in range(header.payload_at):
        damaged = bytearray(data)
        damaged[at] ^= 0x01
        with pytest.raises(fmt.BundleRejected):
            fmt.verify(bytes(damaged), fmt.read_header(bytes(damaged)), sender.cert_pem)
    for n in (fmt.HEADER_SIZE - 1, fmt.HEADER_SIZE + 1, header.payload_at + 3, len(data) - 1):
        with pytest.raises(fmt.BundleTruncated):
            fmt.read_header(data[:n])
