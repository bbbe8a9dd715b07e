"""Revocation (issue 12, findings 1-3): `notewell sync forget` really cuts a lost device off.

1. A live session already open with the device ends at once: on the device that revokes it,
   and on a third device that hears of the revocation while the session runs.
2. A mailbox bundle written after the writer knew of the revocation cannot be read by the
   revoked device (a fresh key per bundle, wrapped to each trusted device).
3. The revocation travels: a third device that has heard of it refuses the revoked device's
   connections, bundles and changes, first-hand or relayed; a device that was offline learns
   it from the first bundle that carries it, before it applies anything else.

Real vaults and real `notewell` processes on 127.0.0.1 with TLS, and real bundles in a folder.
Client names are synthetic canaries, never real text.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sync import bundle as fmt

CANARY_AFTER = "Canary Afterrevoke"  # written on the revoked device after its revocation
SECRET_AFTER = "Secret Afterrevoke"  # written by another device after it knew of the revocation

_ADD_CLIENT = """
from store.models import Client
client = record.create_client(Client(display_name=sys.argv[2]))
print(client.id)
"""

_CLIENT_NAMES = """
print(json.dumps(sorted(row.display_name for row in record.list_clients())))
"""


def _add_client(in_vault, ref, name: str) -> str:
    return in_vault(ref, _ADD_CLIENT, name).strip()


def _names(in_vault, ref) -> list[str]:
    return json.loads(in_vault(ref, _CLIENT_NAMES))


def _pair_all(pair, *refs) -> None:
    for i, first in enumerate(refs):
        for second in refs[i + 1:]:
            pair(first, second)


def _sync(notewell, ref, port: int):
    return notewell(ref, "sync", "now", f"127.0.0.1:{port}")


# --- finding 1: open sessions end at once ---------------------------------------------------


def test_forgetting_a_device_ends_its_open_live_session(make_vault, pair, serve, notewell, start_notewell, in_vault):
    office, laptop = make_vault("office"), make_vault("laptop")
    pair(office, laptop)
    _add_client(in_vault, office, "Synthetic Before")
    server, port = serve(office)
    live = start_notewell(laptop, "sync", "now", f"127.0.0.1:{port}", "--live")
    live.wait_for("live with")

    forgot = notewell(office, "sync", "forget", "laptop")
    assert forgot.returncode == 0, forgot.stderr

    # The session ends by itself (before the change, it ran on, both ways, until stopped).
    rc, _out, err = live.finish(timeout=60)
    assert rc != 0 and "revoked" in err
    _add_client(in_vault, laptop, CANARY_AFTER)
    assert CANARY_AFTER not in _names(in_vault, office)
    assert _sync(notewell, laptop, port).returncode != 0
    assert CANARY_AFTER not in _names(in_vault, office)
    server.terminate()


def test_a_device_that_hears_of_a_revocation_ends_its_session_with_the_revoked_device(
        make_vault, pair, serve, notewell, start_notewell, in_vault):
    office, tablet, laptop = make_vault("office"), make_vault("tablet"), make_vault("laptop")
    _pair_all(pair, office, tablet, laptop)
    server, port = serve(tablet)
    live = start_notewell(laptop, "sync", "now", f"127.0.0.1:{port}", "--live")
    live.wait_for("live with")

    assert notewell(office, "sync", "forget", "laptop").returncode == 0
    # The office syncs with the tablet; the revocation reaches the tablet mid-session.
    synced = _sync(notewell, office, port)
    assert synced.returncode == 0, synced.stderr

    rc, _out, err = live.finish(timeout=60)
    assert rc != 0 and "revoked" in err
    listed = notewell(tablet, "sync", "devices")
    assert "laptop" in listed.stdout and "revoked" in listed.stdout
    server.terminate()


# --- finding 2: bundles written after the revocation are unreadable by the revoked device ---


def test_a_bundle_written_after_the_revocation_is_unreadable_by_the_revoked_device(
        make_vault, pair, notewell, in_vault, tmp_path):
    office, tablet, laptop = make_vault("office"), make_vault("tablet"), make_vault("laptop")
    _pair_all(pair, office, tablet, laptop)
    box = tmp_path / "box"
    box.mkdir()
    assert notewell(office, "sync", "forget", "laptop").returncode == 0
    _add_client(in_vault, office, SECRET_AFTER)
    written = notewell(office, "sync", "mailbox", str(box))
    assert written.returncode == 0, written.stderr

    bundles = sorted(box.glob("*.nwb"))
    assert len(bundles) == 1
    data = bundles[0].read_bytes()
    header = fmt.read_header(data)
    # Format 3 names no recipient: one stanza, the tablet's (the laptop's key opens nothing, below).
    assert header.version == 3 and fmt.recipient_count(data, header) == 1

    read = notewell(laptop, "sync", "mailbox", str(box))
    assert "not written for this device" in read.stdout + read.stderr
    assert SECRET_AFTER not in _names(in_vault, laptop)
    assert notewell(tablet, "sync", "mailbox", str(box)).returncode == 0
    assert SECRET_AFTER in _names(in_vault, tablet)

    # Even with the laptop's own keys, nothing in the file opens for it.
    vault = laptop.open()
    try:
        from store.device_identity import load_identity

        me = load_identity(vault.record.replica)
        from sync.peers import group_key

        old_group_key = group_key(vault.record.replica)
    finally:
        vault.close()
    with pytest.raises(fmt.NotForThisDevice):
        fmt.open_payload(data, header, device_id=me.device_id, private_key=me.key_pem.encode(),
                         group_key=old_group_key)


# --- finding 3: the revocation travels, and a third device honours it ------------------------


def test_a_third_device_that_heard_of_the_revocation_refuses_the_revoked_device(
        make_vault, pair, serve, notewell, in_vault, tmp_path):
    office, tablet, laptop = make_vault("office"), make_vault("tablet"), make_vault("laptop")
    _pair_all(pair, office, tablet, laptop)
    box = tmp_path / "box"
    box.mkdir()
    assert notewell(office, "sync", "forget", "laptop").returncode == 0
    server, port = serve(tablet)
    assert _sync(notewell, office, port).returncode == 0  # the tablet hears of it

    _add_client(in_vault, laptop, CANARY_AFTER)
    refused = _sync(notewell, laptop, port)
    assert refused.returncode != 0
    assert CANARY_AFTER not in _names(in_vault, tablet)

    assert notewell(laptop, "sync", "mailbox", str(box)).returncode == 0
    read = notewell(tablet, "sync", "mailbox", str(box))
    assert "(revoked): The bundle comes from device" in read.stdout + read.stderr
    assert CANARY_AFTER not in _names(in_vault, tablet)
    server.terminate()


def test_changes_relayed_by_a_device_that_had_not_heard_are_refused(
        make_vault, pair, serve, notewell, in_vault):
    office, tablet, laptop = make_vault("office"), make_vault("tablet"), make_vault("laptop")
    _pair_all(pair, office, tablet, laptop)
    _add_client(in_vault, laptop, "Synthetic Before")  # the laptop's work from before
    server, port = serve(tablet)
    assert _sync(notewell, laptop, port).returncode == 0
    assert _sync(notewell, office, port).returncode == 0

    assert notewell(office, "sync", "forget", "laptop").returncode == 0
    _add_client(in_vault, laptop, CANARY_AFTER)
    # The tablet has not heard yet: it takes the laptop's new client (nothing can stop that).
    assert _sync(notewell, laptop, port).returncode == 0
    assert CANARY_AFTER in _names(in_vault, tablet)

    # The office syncs with the tablet: it takes nothing the laptop made after the revocation
    # (named in its report), keeps the laptop's earlier work, and the tablet hears of it.
    relayed = _sync(notewell, office, port)
    assert "changes made on a revoked device" in relayed.stdout + relayed.stderr
    names = _names(in_vault, office)
    assert "Synthetic Before" in names and CANARY_AFTER not in names
    assert _sync(notewell, laptop, port).returncode != 0

    # A device set up after the revocation gets the laptop's earlier work, and not the rest.
    desk = make_vault("desk")
    pair(desk, tablet)
    joined = _sync(notewell, desk, port)  # the tablet still holds the canary: refused, and named
    assert "changes made on a revoked device" in joined.stdout + joined.stderr
    names = _names(in_vault, desk)
    assert "Synthetic Before" in names and CANARY_AFTER not in names
    server.terminate()


class _Device:
    """A vault in this process, paired the way pairing leaves vaults (tests/sync/test_mailbox.py)."""

    def __init__(self, folder: Path, name: str) -> None:
        from store.device_identity import ensure_identity
        from store.keys import KdfParams
        from store.vault import Vault

        self.vault, _ = Vault.create(folder, "revocation test passphrase", device_name=name,
                                     kdf=KdfParams(memory_kib=8192, time_cost=1))
        self.record = self.vault.record
        self.identity = ensure_identity(self.record.replica, name)
        self.name = name

    def pair(self, other: "_Device") -> None:
        from sync.peers import PeerBook, ensure_group_key, group_key, set_group_key

        key = group_key(self.record.replica) or group_key(other.record.replica) or ensure_group_key(self.record.replica)
        set_group_key(self.record.replica, key)
        set_group_key(other.record.replica, key)
        PeerBook(self.record.replica).add(other.identity.device_id, other.name, other.identity.cert_pem)
        PeerBook(other.record.replica).add(self.identity.device_id, self.name, self.identity.cert_pem)

    def forget(self, other: "_Device") -> None:
        from sync.peers import PeerBook

        PeerBook(self.record.replica).forget(other.identity.device_id)

    def add_client(self, name: str) -> None:
        from store.models import Client

        self.record.create_client(Client(display_name=name))

    def names(self) -> list[str]:
        return sorted(row.display_name for row in self.record.list_clients())

    def mailbox(self, folder: Path):
        from sync.mailbox import sync_mailbox

        return sync_mailbox(self.record.replica, self.identity, folder)


@pytest.fixture
def trio(tmp_path):
    devices = [_Device(tmp_path / n, n) for n in ("office", "tablet", "laptop")]
    office, tablet, laptop = devices
    office.pair(tablet)
    office.pair(laptop)
    tablet.pair(laptop)
    yield devices
    for d in devices:
        d.vault.close()


@pytest.mark.parametrize("laptop_first", [True, False])
def test_an_offline_device_learns_the_revocation_before_it_applies_any_bundle(trio, tmp_path, laptop_first):
    office, tablet, laptop = trio
    box = tmp_path / "box"
    box.mkdir()
    office.forget(laptop)
    office.add_client("Synthetic Office")
    laptop.add_client(CANARY_AFTER)
    # Whichever bundle lies first in the folder, the tablet (offline meanwhile) reads the
    # office's revocation before it applies anything.
    for device in ((laptop, office) if laptop_first else (office, laptop)):
        device.mailbox(box)
    report = tablet.mailbox(box)
    assert [r.reason for r in report.bundles.rejected] == ["revoked"]
    assert "Synthetic Office" in tablet.names() and CANARY_AFTER not in tablet.names()
    # And the tablet's own bundle is no longer for the laptop.
    written = box / report.bundles.written
    data = written.read_bytes()
    with pytest.raises(fmt.NotForThisDevice):
        fmt.open_payload(data, fmt.read_header(data), device_id=laptop.identity.device_id,
                         private_key=laptop.identity.key_pem.encode())


def test_a_revoked_device_cannot_be_paired_again(trio):
    from sync.errors import RevokedDevice
    from sync.peers import PeerBook

    office, tablet, laptop = trio
    office.forget(laptop)
    with pytest.raises(RevokedDevice):
        PeerBook(office.record.replica).add(laptop.identity.device_id, "laptop again", laptop.identity.cert_pem)


# --- the rules of the device list (store/device_list.py) ------------------------------------


def test_what_a_revoked_device_signs_counts_for_nothing(tmp_path):
    from store.device_identity import generate_identity
    from store.device_list import add_vouch, new_device_list_doc, put_entries, revocation_entry, trust_from

    office, tablet, laptop, thief_new = (generate_identity(n) for n in ("office", "tablet", "laptop", "new"))
    doc = new_device_list_doc(b"\x01" * 16)
    for a, b in ((office, tablet), (tablet, office), (office, laptop), (laptop, office), (tablet, laptop)):
        add_vouch(doc, a, b.cert_pem, b.device_id[:6])
    put_entries(doc, dict([revocation_entry(office, laptop.device_id)]))
    # After its revocation the laptop vouches for a new device, for itself again, and revokes
    # the office and the tablet.
    add_vouch(doc, laptop, thief_new.cert_pem, "new")
    put_entries(doc, dict([revocation_entry(laptop, office.device_id), revocation_entry(laptop, tablet.device_id),
                           revocation_entry(thief_new, office.device_id)]))
    add_vouch(doc, tablet, laptop.cert_pem, "laptop")  # a vouch cannot bring it back either

    # The tablet heard of the office's revocation first and holds the laptop as revoked:
    # nothing the laptop signs counts, and the new device it vouched for is nobody.
    paired = {office.device_id: (office.cert_pem, "office")}
    seen_by_tablet = trust_from(doc, tablet, paired, settled=frozenset({laptop.device_id}))
    assert seen_by_tablet.revoked == {laptop.device_id}
    assert seen_by_tablet.group == {tablet.device_id, office.device_id}
    # Its keys stay known, so signatures it made before still verify.
    assert seen_by_tablet.public_key(laptop.device_id) is not None
    # The office, which revoked it, is never moved by what the laptop signs.
    seen_by_office = trust_from(doc, office, {tablet.device_id: (tablet.cert_pem, "tablet")})
    assert seen_by_office.revoked == {laptop.device_id}
    # A device hearing of both at once cannot tell which came first: both are cut off.
    assert trust_from(doc, tablet, paired).revoked == {laptop.device_id, office.device_id}

    # Two devices revoking each other, seen by a third: both are cut off (the safe side);
    # each of the two still trusts itself.
    doc2 = new_device_list_doc(b"\x02" * 16)
    for a, b in ((office, tablet), (office, laptop), (tablet, laptop)):
        add_vouch(doc2, a, b.cert_pem, "x")
    put_entries(doc2, dict([revocation_entry(office, laptop.device_id), revocation_entry(laptop, office.device_id)]))
    paired = {office.device_id: (office.cert_pem, "o"), laptop.device_id: (laptop.cert_pem, "l")}
    assert trust_from(doc2, tablet, paired).revoked == {office.device_id, laptop.device_id}
    assert trust_from(doc2, office, {laptop.device_id: (laptop.cert_pem, "l")}).revoked == {laptop.device_id}


# --- format 2 on its own ---------------------------------------------------------------------


def test_a_format_2_bundle_opens_only_for_its_recipients_and_any_change_is_refused():
    from automerge.core import ROOT, Document, ScalarType

    from store.device_identity import generate_identity

    sender, reader, other = (generate_identity(n) for n in ("sender", "reader", "other"))
    doc = Document()
    with doc.transaction() as tx:
        tx.put(ROOT, "name", ScalarType.Str, SECRET_AFTER)
    data = fmt.encode_for([("doc-a", doc.save())], sender_id=sender.device_id, seq=3,
                          recipients={reader.device_id: reader.private_key().public_key()},
                          private_key=sender.key_pem.encode())
    assert SECRET_AFTER.encode() not in data
    opened = fmt.decode_for(data, sender_cert=sender.cert_pem, device_id=reader.device_id,
                            private_key=reader.key_pem.encode())
    assert [d for d, _ in opened.entries] == ["doc-a"] and opened.header.seq == 3
    with pytest.raises(fmt.NotForThisDevice):
        fmt.decode_for(data, sender_cert=sender.cert_pem, device_id=other.device_id, private_key=other.key_pem.encode())
    # Another device claiming the reader's id in vain: its key does not open the stanza.
    with pytest.raises(fmt.BundleTampered):
        fmt.decode_for(data, sender_cert=sender.cert_pem, device_id=reader.device_id, private_key=other.key_pem.encode())
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= 0x01
        with pytest.raises(fmt.BundleRejected):
            fmt.decode_for(bytes(damaged), sender_cert=sender.cert_pem, device_id=reader.device_id,
                           private_key=reader.key_pem.encode())
    for n in range(len(data)):
        with pytest.raises(fmt.BundleRejected):
            fmt.decode_for(data[:n], sender_cert=sender.cert_pem, device_id=reader.device_id,
                           private_key=reader.key_pem.encode())


def test_a_device_paired_after_a_bundle_gets_everything_in_the_next(trio, tmp_path):
    office, tablet, laptop = trio
    box = tmp_path / "box"
    box.mkdir()
    office.add_client("Synthetic Early")
    office.mailbox(box)
    desk = _Device(tmp_path / "desk", "desk")
    try:
        office.pair(desk)
        office.add_client("Synthetic Later")
        office.mailbox(box)  # the desk could not open the first bundle: this one holds all
        desk.mailbox(box)
        assert {"Synthetic Early", "Synthetic Later"} <= set(desk.names())
    finally:
        desk.vault.close()


def test_serving_after_every_peer_was_revoked_says_so(make_vault, pair, notewell):
    """Not "not paired yet": the clinician paired a device and then revoked it."""
    office, laptop = make_vault("office"), make_vault("laptop")
    pair(office, laptop)
    assert notewell(office, "sync", "forget", "laptop").returncode == 0
    served = notewell(office, "sync", "serve", "--port", "0")
    assert served.returncode != 0
    assert "revoked" in served.stderr and "not paired with any other device yet" not in served.stderr
    assert "Traceback" not in served.stderr
