"""The sealed container of an encrypted JSON export (store/sealed_export.py).

It opens with its password and nothing else; every damage (a wrong password, a file cut
short anywhere, any byte changed, bytes added, a hostile header) is one sentence and no
plaintext; the password rule refuses what cannot protect a file that leaves the device.
"""

from __future__ import annotations

import struct

import pytest

from store.errors import ExportFailed, ImportFailed
from store.keys import KdfParams
from store.sealed_export import (
    HEADER_BYTES,
    MAGIC,
    MAX_MEMORY_KIB,
    check_password,
    is_sealed,
    read_header,
    seal,
    unseal,
)

PASSWORD = "lantern orchard pebble sixty"
CHEAP = KdfParams(memory_kib=1024, time_cost=1, parallelism=1)
PLAINTEXT = b'{"kind": "notewell-import", "version": 1, "marker": "SEALED-CANARY-41"}\n'


@pytest.fixture(scope="module")
def sealed() -> bytes:
    return seal(PLAINTEXT, PASSWORD, params=CHEAP)


def one_sentence(e: pytest.ExceptionInfo) -> str:
    message = e.value.message
    assert message.endswith("nothing was imported.") and "\n" not in message
    assert PASSWORD not in message and "SEALED-CANARY" not in message
    return message


def test_round_trip_and_layout(sealed):
    assert is_sealed(sealed) and sealed.startswith(MAGIC)
    assert b"SEALED-CANARY" not in sealed and PASSWORD.encode() not in sealed
    assert len(sealed) == HEADER_BYTES + len(PLAINTEXT) + 16
    params, _salt, _nonce, length = read_header(sealed)
    assert params == CHEAP and length == len(PLAINTEXT) + 16
    assert unseal(sealed, PASSWORD) == PLAINTEXT
    # A fresh salt and nonce each time: the same export sealed twice shares no bytes after the header's start.
    again = seal(PLAINTEXT, PASSWORD, params=CHEAP)
    assert again[:20] == sealed[:20] and again[20:48] != sealed[20:48] and again[HEADER_BYTES:] != sealed[HEADER_BYTES:]


def test_default_cost_is_the_vaults(sealed):
    assert read_header(seal(b"{}", PASSWORD))[0] == KdfParams()


def test_wrong_password_is_one_sentence(sealed):
    with pytest.raises(ImportFailed) as e:
        unseal(sealed, PASSWORD + "x")
    assert "password is wrong" in one_sentence(e)


@pytest.mark.parametrize("cut", [0, 7, HEADER_BYTES - 1, HEADER_BYTES, HEADER_BYTES + 5, -16, -1])
def test_cut_short_anywhere(sealed, cut):
    with pytest.raises(ImportFailed) as e:
        unseal(sealed[: cut if cut >= 0 else len(sealed) + cut], PASSWORD)
    message = one_sentence(e)
    assert "cut short" in message or "not an encrypted" in message


def test_every_byte_changed_is_caught(sealed):
    for offset in range(len(sealed)):
        damaged = bytearray(sealed)
        damaged[offset] ^= 0x01
        with pytest.raises(ImportFailed) as e:
            unseal(bytes(damaged), PASSWORD)
        one_sentence(e)


def test_body_damage_is_told_from_a_wrong_password(sealed):
    damaged = bytearray(sealed)
    damaged[HEADER_BYTES + 3] ^= 0x80
    with pytest.raises(ImportFailed) as e:
        unseal(bytes(damaged), PASSWORD)
    assert "altered or damaged" in one_sentence(e)
    with pytest.raises(ImportFailed) as e:
        unseal(sealed + b"\0", PASSWORD)
    assert "bytes after its end" in one_sentence(e)


def _with_cost(sealed: bytes, *, memory: int, passes: int) -> bytes:
    return sealed[:12] + struct.pack(">II", passes, memory) + sealed[20:]


def test_hostile_cost_is_refused_before_any_key_is_derived(sealed):
    for memory, passes in ((MAX_MEMORY_KIB + 1, 1), (8192, 10_000), (0, 1)):
        with pytest.raises(ImportFailed) as e:
            read_header(_with_cost(sealed, memory=memory, passes=passes))
        one_sentence(e)


def test_newer_format_is_named(sealed):
    with pytest.raises(ImportFailed) as e:
        read_header(sealed[:8] + struct.pack(">H", 2) + sealed[10:])
    assert "newer Notewell" in one_sentence(e)


@pytest.mark.parametrize("password", ["", "   ", "short pw", "aaaaaaaaaaaaaaaa", "abababababababab"])
def test_weak_passwords_are_refused(password):
    with pytest.raises(ExportFailed) as e:
        seal(PLAINTEXT, password, params=CHEAP)
    assert e.value.message.endswith("nothing was written.") and "\n" not in e.value.message
    if password.strip():
        assert password not in e.value.message


def test_a_good_password_passes():
    check_password(PASSWORD)
    check_password("Zoë-Łukasz 9 harbour")
