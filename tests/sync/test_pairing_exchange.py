"""The pairing protocol without sockets: two exchanges talk through bytes held in memory.

Every frame an exchange gives is encoded to bytes, carried (or altered, cut, replayed) here,
and cut back into frames by the same reader the driver uses, with pairing's size limit. Both
sides are checked: the listener (shows the code) and the joiner (types it). Nothing is
stored unless the pairing completes, and only then through `commit`.
"""

from __future__ import annotations

import json
import struct

import pytest

from store.device_identity import generate_identity
from sync.errors import (
    ExchangeMisuse,
    FrameTooLarge,
    PairingCodeExpired,
    PairingFailed,
    ProtocolError,
    RemotePairingError,
    WrongPairingCode,
)
from sync.framing import Frame, FrameReader, FrameType
from sync.pairing import MAX_PAIR_FRAME, _store_as_joiner, _store_as_listener
from sync.pairing_exchange import JoinerExchange, ListenerExchange, State, normalise_code
from sync.peers import PeerBook, group_key, set_group_key

CODE = "2468-1357"
WRONG = "1357-2468"


class Wire:
    """One direction of a connection: frames become bytes, and bytes frames again."""

    def __init__(self) -> None:
        self.reader = FrameReader(MAX_PAIR_FRAME)

    def carry(self, frames: list[Frame], alter=lambda data: data) -> list[Frame]:
        data = b"".join(frame.encode(MAX_PAIR_FRAME) for frame in frames)
        return self.reader.feed(alter(data))


class Side:
    """An exchange with what it committed (the record of what it would store)."""

    def __init__(self, exchange_type, identity, code, *, own_key=None, commit=None, **kwargs) -> None:
        self.identity = identity
        self.committed: list = []
        self.exchange = exchange_type(code, identity, own_group_key=own_key, commit=commit or self._commit, **kwargs)

    def _commit(self, paired):
        self.committed.append(paired)
        return ("stored", paired.device_id)


def joiner(code=CODE, identity=None, **kwargs) -> Side:
    return Side(JoinerExchange, identity or generate_identity("home"), code, **kwargs)


def listener(code=CODE, identity=None, *, now=0.0, expires_at=300.0, **kwargs) -> Side:
    return Side(ListenerExchange, identity or generate_identity("office"), code,
                expires_at=expires_at, clock=lambda: now, **kwargs)


def deliver(frames: list[Frame], to: Side, wire: Wire | None = None) -> list[Frame]:
    """Carries `frames` over a fresh wire to `to`; returns its answers."""
    out: list[Frame] = []
    for frame in (wire or Wire()).carry(frames):
        out += to.exchange.receive(frame)
    return out


def run_to_end(j: Side, lst: Side) -> None:
    to_listener, to_joiner = Wire(), Wire()
    assert lst.exchange.start() == []
    frames = j.exchange.start()
    while frames:
        answers = deliver(frames, lst, to_listener)
        frames = deliver(answers, j, to_joiner) if answers else []


def first_messages(j: Side, lst: Side):
    """Runs the exchange up to the joiner's CONFIRM (not yet delivered)."""
    lst.exchange.start()
    listener_pake = deliver(j.exchange.start(), lst)
    confirm = deliver(listener_pake, j)
    return listener_pake, confirm


# --- the whole exchange -------------------------------------------------------------------


def test_two_exchanges_pair_and_each_commits_the_other():
    j, lst = joiner(), listener()
    run_to_end(j, lst)
    assert j.exchange.state == State.PAIRED and lst.exchange.state == State.PAIRED
    assert j.exchange.finished and lst.exchange.finished and lst.exchange.code_used
    [to_j], [to_l] = j.committed, lst.committed
    assert (to_j.device_id, to_j.name, to_j.cert_pem) == (lst.identity.device_id, "office", lst.identity.cert_pem)
    assert (to_l.device_id, to_l.name, to_l.cert_pem) == (j.identity.device_id, "home", j.identity.cert_pem)
    assert to_j.group_key == to_l.group_key and len(to_j.group_key) == 32
    assert j.exchange.result == ("stored", lst.identity.device_id)
    assert j.exchange.farewell() == [] and lst.exchange.farewell() == []


def test_the_frames_have_the_documented_layout():
    j, lst = joiner(), listener()
    lst.exchange.start()
    [pake] = j.exchange.start()
    assert pake.type == FrameType.PAKE and pake.payload[0] == 1  # pairing version 1
    [listener_pake] = deliver([pake], lst)
    assert listener_pake.type == FrameType.PAKE and listener_pake.payload[0] == 1
    [confirm] = deliver([listener_pake], j)
    assert confirm.type == FrameType.CONFIRM and len(confirm.payload) == 32  # HMAC-SHA256
    [listener_confirm] = deliver([confirm], lst)
    assert listener_confirm.type == FrameType.CONFIRM and len(listener_confirm.payload) == 32
    [intro] = deliver([listener_confirm], j)
    assert intro.type == FrameType.SEALED and j.identity.cert_pem.encode() not in intro.payload
    [reply] = deliver([intro], lst)
    [ack] = deliver([reply], j)
    assert ack.type == FrameType.SEALED and len(ack.payload) == len(b'{"ok": true}') + 16  # GCM tag
    assert deliver([ack], lst) == [] and lst.exchange.paired


@pytest.mark.parametrize("listener_has, joiner_has", [(True, True), (False, True), (True, False), (False, False)])
def test_group_key_rule(listener_has, joiner_has):
    lkey, jkey = (b"L" * 32 if listener_has else None), (b"J" * 32 if joiner_has else None)
    j, lst = joiner(own_key=jkey), listener(own_key=lkey)
    run_to_end(j, lst)
    [to_j], [to_l] = j.committed, lst.committed
    agreed = to_l.group_key
    assert to_j.group_key == agreed and len(agreed) == 32
    assert agreed == (lkey or jkey or agreed)  # the listener's, else the joiner's, else new
    assert agreed not in (b"L" * 32, b"J" * 32) or listener_has or joiner_has
    assert to_l.store_group_key == (lkey is None)
    assert to_j.store_group_key == (jkey != agreed)
    assert to_j.group_key_replaced == (listener_has and joiner_has)


# --- a wrong code, an expired one ------------------------------------------------------------


def test_a_wrong_code_is_refused_on_both_sides_and_nothing_is_committed():
    j, lst = joiner(code=WRONG), listener()
    _, confirm = first_messages(j, lst)
    with pytest.raises(WrongPairingCode, match="entered a wrong pairing code"):
        deliver(confirm, lst)
    assert lst.exchange.state == State.FAILED and lst.exchange.code_used
    farewell = lst.exchange.farewell()
    assert farewell == [Frame(FrameType.ERROR, b'{"code": "wrong-code"}')]
    assert lst.exchange.farewell() == []  # said once
    with pytest.raises(WrongPairingCode, match="not accepted"):
        deliver(farewell, j)
    assert j.exchange.state == State.FAILED
    assert j.committed == [] and lst.committed == []


def test_an_expired_code_is_refused_when_its_first_message_arrives():
    j, lst = joiner(), listener(now=301.0, expires_at=300.0)
    lst.exchange.start()
    with pytest.raises(PairingCodeExpired, match="after it expired"):
        deliver(j.exchange.start(), lst)
    assert lst.exchange.code_used  # a late try still consumes the code
    with pytest.raises(PairingCodeExpired):
        deliver(lst.exchange.farewell(), j)
    assert j.committed == [] and lst.committed == []


def test_a_mistyped_code_fails_before_anything_is_sent():
    with pytest.raises(PairingFailed, match="8 digits"):
        joiner(code="12-34")
    assert normalise_code("2468 1357") == "24681357"


# --- truncated, oversized, altered ----------------------------------------------------------


def test_a_truncated_spake2_message_voids_the_code():
    j, lst = joiner(), listener()
    lst.exchange.start()
    [pake] = j.exchange.start()
    with pytest.raises(RemotePairingError, match="malformed pairing message; the code is now void"):
        deliver([Frame(FrameType.PAKE, pake.payload[:12])], lst)
    assert lst.exchange.code_used
    assert lst.exchange.farewell() == [Frame(FrameType.ERROR, b'{"code": "protocol"}')]

    j2, lst2 = joiner(), listener()
    lst2.exchange.start()
    [listener_pake] = deliver(j2.exchange.start(), lst2)
    with pytest.raises(RemotePairingError, match="malformed pairing message; nothing was stored"):
        deliver([Frame(FrameType.PAKE, listener_pake.payload[:12])], j2)
    assert j2.exchange.farewell() == []  # the joiner never answers with an error


# Bytes that are no point on the curve at all: spake2 raises NotOnCurve, a plain Exception.
OFF_CURVE = b"\x02" * 32


def test_a_spake2_message_off_the_curve_is_refused_on_both_sides():
    lst = listener()
    lst.exchange.start()
    with pytest.raises(RemotePairingError, match="malformed pairing message; the code is now void"):
        deliver([Frame(FrameType.PAKE, b"\x01A" + OFF_CURVE)], lst)
    assert lst.exchange.farewell() == [Frame(FrameType.ERROR, b'{"code": "protocol"}')]
    j = joiner()
    j.exchange.start()
    with pytest.raises(RemotePairingError, match="malformed pairing message; nothing was stored"):
        deliver([Frame(FrameType.PAKE, b"\x01B" + OFF_CURVE)], j)


def test_a_frame_cut_off_mid_way_is_not_handed_over():
    j, lst = joiner(), listener()
    lst.exchange.start()
    wire = Wire()
    assert wire.carry(j.exchange.start(), alter=lambda data: data[:-5]) == []
    assert lst.exchange.state == State.AWAIT_PAKE and not lst.exchange.code_used


def test_an_oversized_frame_is_refused_before_its_body_is_read():
    header = struct.pack(">IB", MAX_PAIR_FRAME + 1, FrameType.PAKE)
    with pytest.raises(FrameTooLarge):
        Wire().reader.feed(header)  # the header alone is enough to refuse it
    with pytest.raises(FrameTooLarge):
        Frame(FrameType.PAKE, b"\x01" + b"x" * MAX_PAIR_FRAME).encode(MAX_PAIR_FRAME)


def test_an_oversized_spake2_message_within_the_frame_limit_is_refused():
    j, lst = joiner(), listener()
    lst.exchange.start()
    with pytest.raises(RemotePairingError, match="malformed pairing message"):
        deliver([Frame(FrameType.PAKE, b"\x01" + b"\x42" * 60_000)], lst)
    assert lst.committed == []


def test_a_sealed_message_altered_in_transit_is_refused():
    j, lst = joiner(), listener()
    _, confirm = first_messages(j, lst)
    [intro] = deliver(deliver(confirm, lst), j)
    flipped = bytearray(intro.payload)
    flipped[10] ^= 0x01
    with pytest.raises(RemotePairingError, match="altered in transit"):
        deliver([Frame(FrameType.SEALED, bytes(flipped))], lst)
    assert lst.exchange.farewell() == [Frame(FrameType.ERROR, b'{"code": "protocol"}')]
    assert lst.committed == [] and j.committed == []


def test_another_pairing_version_is_refused():
    j, lst = joiner(), listener()
    lst.exchange.start()
    [pake] = j.exchange.start()
    [listener_pake] = deliver([pake], lst)
    with pytest.raises(ProtocolError, match="another pairing protocol version"):
        deliver([Frame(FrameType.PAKE, b"\x02" + listener_pake.payload[1:])], j)


# --- out of order, replayed ------------------------------------------------------------------


def test_a_first_message_that_is_not_spake2_leaves_the_code_unused():
    j, lst = joiner(), listener()
    lst.exchange.start()
    with pytest.raises(ProtocolError, match="did not speak the pairing protocol"):
        deliver([Frame(FrameType.CONFIRM, b"\0" * 32)], lst)
    assert not lst.exchange.code_used  # a stray connection does not burn the code
    assert lst.exchange.farewell() == [Frame(FrameType.ERROR, b'{"code": "protocol"}')]


def test_messages_out_of_order_are_the_other_sides_fault():
    # The listener gets an introduction where the key confirmation belongs: a wrong code.
    j, lst = joiner(), listener()
    lst.exchange.start()
    deliver(j.exchange.start(), lst)
    with pytest.raises(WrongPairingCode):
        deliver([Frame(FrameType.SEALED, b"\0" * 40)], lst)
    # The joiner gets a confirmation where the listener's SPAKE2 message belongs.
    j2 = joiner()
    j2.exchange.start()
    with pytest.raises(ProtocolError, match="did not speak the pairing protocol"):
        deliver([Frame(FrameType.CONFIRM, b"\0" * 32)], j2)
    # The joiner gets a SPAKE2 message where the listener's confirmation belongs.
    j3, lst3 = joiner(), listener()
    listener_pake, _ = first_messages(j3, lst3)
    with pytest.raises(RemotePairingError, match="could not prove it knows the code"):
        deliver(listener_pake, j3)
    # An ERROR before the key is confirmed proves nothing to the listener: a wrong code.
    j4, lst4 = joiner(), listener()
    _, _ = first_messages(j4, lst4)
    with pytest.raises(WrongPairingCode):
        deliver([Frame(FrameType.ERROR, b'{"code": "expired"}')], lst4)
    assert not any(s.committed for s in (j, lst, j2, j3, lst3, j4, lst4))


def test_a_replayed_confirmation_is_refused_by_the_listener():
    j, lst = joiner(), listener()
    _, confirm = first_messages(j, lst)
    deliver(confirm, lst)
    with pytest.raises(RemotePairingError, match="broke off the pairing"):
        deliver(confirm, lst)  # the same CONFIRM again, where the introduction belongs
    assert lst.exchange.farewell() == [Frame(FrameType.ERROR, b'{"code": "protocol"}')]
    assert lst.committed == []


def test_a_replayed_confirmation_is_refused_by_the_joiner():
    j, lst = joiner(), listener()
    _, confirm = first_messages(j, lst)
    listener_confirm = deliver(confirm, lst)
    deliver(listener_confirm, j)
    with pytest.raises(RemotePairingError, match="broke off the pairing"):
        deliver(listener_confirm, j)  # where the listener's introduction belongs
    assert j.committed == []


def test_a_replayed_introduction_does_not_count_as_the_acknowledgement():
    j, lst = joiner(), listener()
    _, confirm = first_messages(j, lst)
    [intro] = deliver(deliver(confirm, lst), j)
    deliver([intro], lst)
    with pytest.raises(RemotePairingError, match="altered in transit"):
        deliver([intro], lst)  # the nonce counter has moved on
    assert lst.committed == []


def test_a_device_cannot_pair_with_itself():
    same = generate_identity("office")
    j, lst = joiner(identity=same), listener(identity=same)
    _, confirm = first_messages(j, lst)
    [intro] = deliver(deliver(confirm, lst), j)
    with pytest.raises(PairingFailed, match="itself"):
        deliver([intro], lst)
    farewell = lst.exchange.farewell()
    assert farewell == [Frame(FrameType.ERROR, b'{"code": "self"}')]
    with pytest.raises(PairingFailed, match="itself"):
        deliver(farewell, j)


def test_a_listener_that_withholds_the_group_key_is_refused():
    j, lst = joiner(), listener()
    _, confirm = first_messages(j, lst)
    deliver(deliver(confirm, lst), j)
    sealer = lst.exchange._outbound  # the listener's own sealed channel, to forge its reply
    intro = {"device_id": lst.identity.device_id, "name": "office", "cert_pem": lst.identity.cert_pem,
             "group_key": None}
    with pytest.raises(RemotePairingError, match="no sync-group key"):
        deliver([sealer.seal(intro)], j)
    assert j.committed == []


# --- local misuse is told apart from the other side's faults ---------------------------------


def test_local_misuse_is_its_own_error():
    j, lst = joiner(), listener()
    with pytest.raises(ExchangeMisuse, match="before the start"):
        j.exchange.receive(Frame(FrameType.PAKE, b"\x01" + b"x" * 32))
    j.exchange.start()
    with pytest.raises(ExchangeMisuse, match="started twice"):
        j.exchange.start()
    run_to_end(joiner(), lst)
    with pytest.raises(ExchangeMisuse, match="after the end"):
        lst.exchange.receive(Frame(FrameType.SEALED, b"x"))
    failed = listener()
    failed.exchange.start()
    with pytest.raises(ProtocolError):
        failed.exchange.receive(Frame(FrameType.SEALED, b"x"))
    with pytest.raises(ExchangeMisuse):
        failed.exchange.receive(Frame(FrameType.PAKE, b"\x01x"))
    assert not issubclass(ExchangeMisuse, (ProtocolError, PairingFailed))


def test_errors_from_commit_leave_the_exchange_failed_without_a_farewell():
    from store.errors import VaultBusy

    def busy(_paired):
        raise VaultBusy("The vault is busy.")

    j, lst = joiner(commit=busy), listener()
    with pytest.raises(VaultBusy):
        run_to_end(j, lst)
    assert j.exchange.state == State.FAILED and j.exchange.farewell() == []
    assert lst.exchange.state == State.AWAIT_ACK and lst.committed == []


# --- real vaults, still without sockets --------------------------------------------------------


def test_in_memory_pairing_stores_each_device_in_real_vaults(make_vault):
    from store.device_identity import load_identity

    a, b = make_vault("office"), make_vault("home")
    va, vb = a.open(), b.open()
    try:
        set_group_key(vb.record.replica, b"J" * 32)
        lst = ListenerExchange(CODE, load_identity(va.record.replica), own_group_key=group_key(va.record.replica),
                               commit=_store_as_listener(va.record.replica), expires_at=300.0, clock=lambda: 0.0)
        j = JoinerExchange(CODE, load_identity(vb.record.replica), own_group_key=group_key(vb.record.replica),
                           commit=_store_as_joiner(vb.record.replica))
        to_listener, to_joiner = Wire(), Wire()
        lst.start()
        frames = j.start()
        while frames:
            answers = [f for frame in to_listener.carry(frames) for f in lst.receive(frame)]
            frames = [f for frame in to_joiner.carry(answers) for f in j.receive(frame)] if answers else []
        assert lst.result.peer.device_id == b.device_id and j.result.peer.device_id == a.device_id
        assert j.result.group_key_replaced is False
        assert [p.device_id for p in PeerBook(va.record.replica).all()] == [b.device_id]
        assert [p.device_id for p in PeerBook(vb.record.replica).all()] == [a.device_id]
        assert group_key(va.record.replica) == group_key(vb.record.replica) == b"J" * 32  # the joiner's, as the listener had none
    finally:
        va.close()
        vb.close()


def test_error_codes_on_the_wire_are_plain_json():
    j, lst = joiner(code=WRONG), listener()
    _, confirm = first_messages(j, lst)
    with pytest.raises(WrongPairingCode):
        deliver(confirm, lst)
    [error] = lst.exchange.farewell()
    assert json.loads(error.payload) == {"code": "wrong-code"}
