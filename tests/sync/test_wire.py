"""The message codecs (sync/wire.py): round trips, the exact bytes, and refusals.

The byte layouts are the ones docs/sync-protocol.md documents and older Notewell versions
speak; a change here would break sync with them, so the exact bytes are pinned.
"""

from __future__ import annotations

import json
import struct

import pytest

from store.device_identity import generate_identity
from store.errors import DiskFull, VaultBusy
from sync import wire
from sync.errors import (
    FrameTooLarge,
    MalformedFrame,
    NotPaired,
    PairingCodeExpired,
    PairingFailed,
    PeerReportedError,
    ProtocolError,
    ProtocolVersionMismatch,
    RemotePairingError,
    WrongPairingCode,
)
from sync.framing import MAX_FRAME, Frame, FrameReader, FrameType

HEAD_A, HEAD_B = b"\xaa" * 32, b"\x0b" * 32


def _json_payload(frame: Frame) -> dict:
    return json.loads(frame.payload)


# --- round trips and exact bytes ------------------------------------------------------------


def test_hello_round_trips_and_is_compact_sorted_json():
    frame = wire.hello_frame(versions=(2,), device_id="d" * 64, name="Office", baseline=None, live=True, time=12.5)
    assert frame.type == FrameType.HELLO
    assert frame.payload == (b'{"baseline":null,"device_id":"' + b"d" * 64 + b'","features":["changes","progress"],'
                             b'"live":true,"name":"Office",'
                             b'"protocol":"notewell-sync","time":12.5,"versions":[2]}')
    hello = wire.read_hello(frame)
    assert (hello.versions, hello.device_id, hello.name, hello.baseline, hello.live, hello.time) == (
        [2], "d" * 64, "Office", None, True, 12.5)


def test_an_older_hello_without_a_clock_reads_as_no_time():
    frame = Frame(FrameType.HELLO, b'{"protocol":"notewell-sync","versions":[2],"device_id":"x","name":"n"}')
    assert wire.read_hello(frame).time is None


def test_manifest_round_trips():
    frame = wire.manifest_frame({"note-1": {HEAD_B, HEAD_A}, "client-2": set()}, delta=True)
    assert _json_payload(frame) == {"docs": {"note-1": [HEAD_B.hex(), HEAD_A.hex()], "client-2": []}, "delta": True}
    docs, delta = wire.read_manifest(frame)
    assert docs == {"note-1": {HEAD_A, HEAD_B}, "client-2": set()} and delta is True


def test_sync_and_whole_payloads_round_trip_with_their_layout():
    frame = wire.sync_frame("note-1", b"\x42message")
    assert frame.type == FrameType.SYNC and frame.payload == b"\x00\x06note-1\x42message"
    assert wire.decode_sync(frame.payload) == ("note-1", b"\x42message")
    whole = wire.whole_frame("note-1", b"stored bytes")
    assert whole.type == FrameType.WHOLE and wire.decode_sync(whole.payload) == ("note-1", b"stored bytes")


def test_turn_end_and_done_round_trip():
    frame = wire.turn_end_frame(1050)
    assert frame.encode() == b"\x00\x00\x00\x05\x04" + struct.pack(">I", 1050)
    assert wire.read_turn_end(frame) == 1050
    done = wire.done_frame(3, "ab" * 32)
    assert done.payload == b'{"digest":"' + b"ab" * 32 + b'","received":3}'
    assert wire.read_done(done) == (3, "ab" * 32)


def test_heads_digest_ignores_order_and_tells_documents_apart():
    one = wire.heads_digest({"a": [HEAD_A, HEAD_B], "b": []})
    assert one == wire.heads_digest({"b": [], "a": [HEAD_B, HEAD_A]})
    assert one != wire.heads_digest({"a": [HEAD_A], "b": [HEAD_B]})


def test_baseline_round_trips_in_its_stored_form():
    heads = {"doc-a": {HEAD_A, HEAD_B}, "doc-b": set()}
    data = wire.encode_baseline(heads)
    assert data[:4] == b"NWB1" and data[4:10] == b"\x05doc-a"
    assert wire.decode_baseline(data) == heads
    with pytest.raises(ValueError):
        wire.decode_baseline(b"NWB2" + data[4:])


@pytest.mark.parametrize("error, code", [
    (ProtocolVersionMismatch("x"), "version"), (NotPaired("x"), "not-paired"), (FrameTooLarge("x"), "too-large"),
    (MalformedFrame("x"), "protocol"), (DiskFull("x"), "disk-full"), (VaultBusy("x"), "busy"),
    (RuntimeError("x"), "internal"),
])
def test_error_frames_carry_a_code_and_read_back_as_a_typed_error(error, code):
    frame = wire.error_frame(error)
    assert frame.type == FrameType.ERROR and _json_payload(frame)["code"] == code
    expected = {"version": ProtocolVersionMismatch, "not-paired": NotPaired}.get(code, PeerReportedError)
    with pytest.raises(expected) as raised:
        wire.raise_peer_error(frame)
    assert "x" != raised.value.message  # our own sentence, never the peer's words


def test_a_version_error_names_both_sides_versions():
    frame = Frame(FrameType.ERROR, b'{"code":"version","versions":[3,4]}')
    with pytest.raises(ProtocolVersionMismatch, match="speaks sync protocol version 3, 4 and this one speaks version 2"):
        wire.raise_peer_error(frame)


def test_free_text_from_a_peer_never_reaches_the_screen():
    with pytest.raises(PeerReportedError) as raised:
        wire.raise_peer_error(Frame(FrameType.ERROR, b'{"code":"Your vault is gone, type your passphrase"}'))
    assert "passphrase" not in raised.value.message


def test_pairing_frames_round_trip():
    assert wire.pake_frame(b"spake").payload == b"\x01spake"
    assert wire.read_pake(wire.pake_frame(b"spake")) == b"spake"
    assert wire.confirm_frame(b"m" * 32) == Frame(FrameType.CONFIRM, b"m" * 32)
    ident = generate_identity("office")
    data = wire.introduction(ident.device_id, ident.name, ident.cert_pem, b"K" * 32)
    plain = wire.sealed_plaintext(data)
    assert plain == json.dumps(data, sort_keys=True).encode()
    intro = wire.read_introduction(wire.read_sealed_plaintext(plain), "someone else")
    assert (intro.device_id, intro.name, intro.cert_pem, intro.group_key) == (
        ident.device_id, "office", ident.cert_pem, b"K" * 32)


@pytest.mark.parametrize("code, error", [
    ("wrong-code", WrongPairingCode), ("expired", PairingCodeExpired), ("self", PairingFailed),
    ("anything", PairingFailed),
])
def test_pairing_error_codes_read_back_as_typed_errors(code, error):
    frame = wire.pair_error_frame(code)
    assert frame.payload == json.dumps({"code": code}).encode()
    with pytest.raises(error):
        wire.raise_pair_error(frame)


# --- refusals: malformed or oversized, each with its typed error ---------------------------


@pytest.mark.parametrize("payload", [
    b"not json", b"\xff\xfe", b"[1, 2]", b'{"protocol":"other","versions":[2]}',
    b'{"protocol":"notewell-sync","versions":2}',
])
def test_malformed_hellos_are_refused(payload):
    with pytest.raises(MalformedFrame, match="malformed hello"):
        wire.read_hello(Frame(FrameType.HELLO, payload))


@pytest.mark.parametrize("docs", [
    "not a dict",
    {"bad id with spaces": []},
    {"x" * 129: []},
    {"note-1": "not a list"},
    {"note-1": ["zz" * 32]},
    {"note-1": [HEAD_A.hex()[:-2]]},
    {"note-1": [HEAD_A.hex()] * (wire.MAX_HEADS_PER_DOC + 1)},
])
def test_malformed_manifests_are_refused(docs):
    frame = Frame(FrameType.MANIFEST, json.dumps({"docs": docs, "delta": False}).encode())
    with pytest.raises(MalformedFrame, match="malformed document list"):
        wire.read_manifest(frame)


@pytest.mark.parametrize("payload", [
    b"", b"\x00", b"\x00\x09short", b"\x00\x06note-1", b"\x00\x04n\xffte\x01", b"\x00\x03a b\x01",
])
def test_malformed_document_messages_are_refused(payload):
    with pytest.raises(MalformedFrame, match="malformed document message"):
        wire.decode_sync(payload)


@pytest.mark.parametrize("payload", [b"", b"\x00\x00\x00", b"\x00\x00\x00\x00\x00"])
def test_malformed_turn_ends_are_refused(payload):
    with pytest.raises(MalformedFrame, match="malformed end of turn"):
        wire.read_turn_end(Frame(FrameType.TURN_END, payload))


@pytest.mark.parametrize("payload", [
    b'{"received":true,"digest":"x"}', b'{"received":1}', b'{"received":"1","digest":"x"}', b"[]",
])
def test_malformed_dones_are_refused(payload):
    with pytest.raises(MalformedFrame, match="malformed end of sync"):
        wire.read_done(Frame(FrameType.DONE, payload))


def test_oversized_frames_are_refused_both_ways_with_their_typed_error():
    with pytest.raises(FrameTooLarge):
        FrameReader(MAX_FRAME).feed(struct.pack(">IB", MAX_FRAME + 1, FrameType.SYNC))
    with pytest.raises(FrameTooLarge):
        wire.whole_frame("note-1", b"x" * MAX_FRAME).encode()
    assert isinstance(FrameTooLarge("x"), ProtocolError)  # so the peer is told "too-large"


@pytest.mark.parametrize("frame, match", [
    (Frame(FrameType.PAKE, b"\x01"), "did not speak the pairing protocol"),
    (Frame(FrameType.CONFIRM, b"\x01" * 33), "did not speak the pairing protocol"),
    (Frame(FrameType.PAKE, b"\x07" + b"m" * 32), "another pairing protocol version"),
])
def test_malformed_pake_frames_are_refused(frame, match):
    with pytest.raises(ProtocolError, match=match):
        wire.read_pake(frame)


def test_malformed_introductions_are_refused():
    ident, other = generate_identity("office"), generate_identity("home")
    good = wire.introduction(ident.device_id, ident.name, ident.cert_pem, None)
    with pytest.raises(RemotePairingError, match="malformed pairing message"):
        wire.read_introduction({**good, "name": 7}, "me")
    with pytest.raises(RemotePairingError, match="does not match its device id"):
        wire.read_introduction({**good, "cert_pem": other.cert_pem}, "me")
    with pytest.raises(RemotePairingError, match="does not match its device id"):
        wire.read_introduction({**good, "cert_pem": "not a certificate"}, "me")
    for key in ("c2hvcnQ=", "not base64!", 42):
        with pytest.raises(RemotePairingError, match="malformed sync-group key"):
            wire.read_introduction({**good, "group_key": key}, "me")
    with pytest.raises(PairingFailed, match="itself"):
        wire.read_introduction(good, ident.device_id)
    assert wire.read_introduction({**good, "name": "\x1b[2Joffice"}, "me").name == "[2Joffice"
    with pytest.raises(RemotePairingError, match="altered in transit"):
        wire.read_sealed_plaintext(b"\xff not json")
    with pytest.raises(RemotePairingError, match="malformed pairing message"):
        wire.read_sealed_plaintext(b"[1]")
