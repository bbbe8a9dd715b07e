"""Where other devices are reached: typed addresses and ports (sync/addresses.py), and the
address each paired device was last reached at, kept with the paired devices (PeerBook)."""

from __future__ import annotations

import json

import pytest

from sync.addresses import DEFAULT_PAIR_PORT, DEFAULT_SYNC_PORT, BadAddress, parse_address, parse_port
from sync.peers import ADDRESSES_KEY, PeerBook

LAPTOP, DESKTOP = "a" * 64, "b" * 64  # device ids (SHA-256 hex)


def test_remembered_addresses_are_kept_in_the_vault(make_vault):
    ref = make_vault("office")
    vault = ref.open()
    try:
        book = PeerBook(vault.record.replica)
        assert book.addresses() == {} and book.last_address() is None
        book.remember_address(LAPTOP, "192.168.1.20:7341")
        book.remember_address(DESKTOP, "desktop.local:7400")
        book.remember_address(LAPTOP, "192.168.1.21:7341")  # the laptop moved
    finally:
        vault.close()

    vault = ref.open()  # read back from record.db, not from memory
    try:
        book = PeerBook(vault.record.replica)
        assert book.addresses() == {LAPTOP: "192.168.1.21:7341", DESKTOP: "desktop.local:7400"}
        assert book.last_address() == "192.168.1.21:7341"
        # Local to this device: no record document was made for them.
        assert set(vault.record.replica.doc_heads()) == set()
    finally:
        vault.close()


def test_addresses_remembered_by_earlier_versions_are_still_found(make_vault):
    vault = make_vault("office").open()
    try:
        # As the Devices screen stored them before they moved to the paired devices.
        earlier = {LAPTOP: "10.0.0.5:7341", "": "10.0.0.5:7341"}
        vault.record.replica.local_put(ADDRESSES_KEY, json.dumps(earlier).encode("utf-8"))
        book = PeerBook(vault.record.replica)
        assert book.addresses() == {LAPTOP: "10.0.0.5:7341"}
        assert book.last_address() == "10.0.0.5:7341"
    finally:
        vault.close()


@pytest.mark.parametrize("stored", [b"{not json", b"\xff\xfe", b"[1, 2]", json.dumps({LAPTOP: 7341}).encode()])
def test_damaged_remembered_addresses_are_forgotten_not_fatal(make_vault, stored):
    vault = make_vault("office").open()
    try:
        vault.record.replica.local_put(ADDRESSES_KEY, stored)
        book = PeerBook(vault.record.replica)
        assert book.addresses() == {} and book.last_address() is None
        book.remember_address(DESKTOP, "desktop.local:7341")  # a convenience: it starts again
        assert book.addresses() == {DESKTOP: "desktop.local:7341"}
    finally:
        vault.close()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("192.168.1.20:7400", ("192.168.1.20", 7400)),
        ("  desktop.local  ", ("desktop.local", DEFAULT_SYNC_PORT)),
        ("[::1]:7400", ("::1", 7400)),
        ("[fe80::1]", ("fe80::1", DEFAULT_SYNC_PORT)),
        ("fe80::1", ("fe80::1", DEFAULT_SYNC_PORT)),
        ("host:65535", ("host", 65535)),
    ],
)
def test_addresses_as_typed(text, expected):
    assert parse_address(text, DEFAULT_SYNC_PORT) == expected


@pytest.mark.parametrize("text", ["", ":7341", "host:", "host:0", "host:65536", "host:http", "[::1", "[::1]7341", "host:-1"])
def test_a_bad_address_is_one_sentence(text):
    with pytest.raises(BadAddress) as raised:
        parse_address(text, DEFAULT_PAIR_PORT)
    assert raised.value.message == f"{text.strip()!r} is not an address; use HOST:PORT."


def test_listening_may_ask_for_any_free_port():
    assert parse_address("0.0.0.0:0", DEFAULT_SYNC_PORT, listening=True) == ("0.0.0.0", 0)
    assert parse_address("[::]", DEFAULT_PAIR_PORT, listening=True) == ("::", DEFAULT_PAIR_PORT)
    with pytest.raises(BadAddress):
        parse_address("0.0.0.0:65536", DEFAULT_SYNC_PORT, listening=True)


@pytest.mark.parametrize("text, port", [("0", 0), ("7341", 7341), ("65535", 65535)])
def test_ports(text, port):
    assert parse_port(text) == port


@pytest.mark.parametrize("text", ["99999", "-5", "http", "", "65536", "7.5"])
def test_a_bad_port_is_one_sentence(text):
    with pytest.raises(BadAddress) as raised:
        parse_port(text)
    assert raised.value.message == f"{text!r} is not a port number (0-65535)."
