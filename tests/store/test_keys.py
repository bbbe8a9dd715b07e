"""Key derivation, wrapping and the recovery key's printed form."""

from __future__ import annotations

import re
import string
import unicodedata

import pytest

from store import keys
from store.errors import WrongRecoveryKey
from store.keys import KdfParams

FAST = KdfParams(memory_kib=8192, time_cost=1, parallelism=1)
SECRET = bytes(range(32))


def test_default_kdf_is_argon2id_64_mib_three_passes():
    params = KdfParams()
    assert (params.memory_kib, params.time_cost, params.parallelism) == (65536, 3, 1)
    assert params.to_json()["algorithm"] == "argon2id"
    assert KdfParams.from_json(params.to_json()) == params


@pytest.mark.parametrize(
    "kwargs",
    [
        {"memory_kib": 4},
        {"memory_kib": 64 * 1024 * 1024},
        {"time_cost": 0},
        {"time_cost": 10_000},
        {"parallelism": 0},
        {"memory_kib": "65536"},
        {"time_cost": True},
    ],
)
def test_kdf_params_out_of_range_are_refused(kwargs):
    with pytest.raises(ValueError):
        KdfParams(**kwargs)


def test_kdf_params_from_json_refuses_other_algorithms():
    data = KdfParams().to_json() | {"algorithm": "scrypt"}
    with pytest.raises(ValueError):
        KdfParams.from_json(data)


def test_passphrase_kek_depends_on_passphrase_and_salt():
    salt = b"s" * 16
    a = keys.passphrase_kek("a passphrase", salt, FAST)
    assert len(a) == 32
    assert keys.passphrase_kek("a passphrase", salt, FAST) == a
    assert keys.passphrase_kek("a passphrasf", salt, FAST) != a
    assert keys.passphrase_kek("a passphrase", b"t" * 16, FAST) != a
    assert keys.passphrase_kek("a passphrase", salt, KdfParams(8192, 2, 1)) != a


def test_passphrase_is_normalised_so_composed_and_decomposed_forms_agree():
    composed = "caf\u00e9 au lait"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    salt = b"s" * 16
    assert keys.passphrase_kek(composed, salt, FAST) == keys.passphrase_kek(decomposed, salt, FAST)


def test_weak_passphrase_counts_characters():
    assert keys.passphrase_is_weak("seven77")
    assert not keys.passphrase_is_weak("eight888")
    # Eight characters, more bytes: still long enough.
    assert not keys.passphrase_is_weak("\u00e9" * 8)


def test_database_keys_are_distinct_per_label_and_stable():
    master = keys.random_key()
    record = keys.database_key(master, keys.RECORD_DB_INFO)
    private = keys.database_key(master, keys.PRIVATE_DB_INFO)
    assert record != private
    assert master not in (record, private)
    assert keys.database_key(master, keys.RECORD_DB_INFO) == record
    assert keys.database_key(keys.random_key(), keys.RECORD_DB_INFO) != record


def test_wrap_round_trip_and_binding():
    kek = keys.random_key()
    secret = keys.random_key()
    nonce, ciphertext = keys.wrap(kek, secret, b"vault-a")
    assert bytes(secret) not in ciphertext
    assert keys.unwrap(kek, nonce, ciphertext, b"vault-a") == secret
    # Another key, other associated data, or a flipped bit: refused, not garbage.
    assert keys.unwrap(keys.random_key(), nonce, ciphertext, b"vault-a") is None
    assert keys.unwrap(kek, nonce, ciphertext, b"vault-b") is None
    flipped = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    assert keys.unwrap(kek, nonce, flipped, b"vault-a") is None


def test_wrap_uses_a_fresh_nonce_each_time():
    kek, secret = keys.random_key(), keys.random_key()
    assert keys.wrap(kek, secret, b"x")[0] != keys.wrap(kek, secret, b"x")[0]


def test_wipe_overwrites_in_place():
    buf = bytearray(b"\x01" * 32)
    keys.wipe(buf)
    assert buf == bytearray(32)
    keys.wipe(None)


# --- recovery key --------------------------------------------------------------------


def test_recovery_key_is_eight_groups_of_base32():
    secret, text = keys.new_recovery_key()
    assert re.fullmatch(r"[A-Z2-7]{7}(-[A-Z2-7]{7}){7}", text)
    assert keys.parse_recovery_key(text) == secret


def test_recovery_key_input_is_forgiving_about_case_spacing_and_dashes():
    text = keys.format_recovery_key(SECRET)
    variants = [
        text.lower(),
        text.replace("-", " "),
        text.replace("-", ""),
        "  " + text.replace("-", " - ") + "\n",
    ]
    for variant in variants:
        assert keys.parse_recovery_key(variant) == bytearray(SECRET)


def test_recovery_key_lookalike_digits_are_read_as_letters():
    text = keys.format_recovery_key(SECRET)
    assert "O" in text or "I" in text or "B" in text
    swapped = text.replace("O", "0").replace("I", "1").replace("B", "8")
    assert keys.parse_recovery_key(swapped) == bytearray(SECRET)


def test_every_single_character_typo_is_caught_by_the_checksum():
    text = keys.format_recovery_key(SECRET)
    alphabet = string.ascii_uppercase + "234567"
    for i, ch in enumerate(text):
        if ch == "-":
            continue
        for other in alphabet:
            if other == ch:
                continue
            typo = text[:i] + other + text[i + 1 :]
            with pytest.raises(WrongRecoveryKey, match="typo"):
                keys.parse_recovery_key(typo)


def test_swapped_neighbours_are_caught():
    text = keys.format_recovery_key(SECRET).replace("-", "")
    for i in range(len(text) - 1):
        if text[i] == text[i + 1]:
            continue
        swapped = text[:i] + text[i + 1] + text[i] + text[i + 2 :]
        with pytest.raises(WrongRecoveryKey):
            keys.parse_recovery_key(swapped)


@pytest.mark.parametrize("bad", ["", "ABC", "A" * 55, "A" * 57])
def test_recovery_key_of_the_wrong_length_says_so(bad):
    with pytest.raises(WrongRecoveryKey, match="56 letters"):
        keys.parse_recovery_key(bad)


def test_recovery_key_with_foreign_characters_says_so():
    text = keys.format_recovery_key(SECRET)
    bad = "9" + text[1:]
    with pytest.raises(WrongRecoveryKey, match="not used in recovery keys"):
        keys.parse_recovery_key(bad)


def test_recovery_key_errors_never_echo_the_input():
    text = keys.format_recovery_key(SECRET)
    typo = ("A" if text[0] != "A" else "B") + text[1:]
    with pytest.raises(WrongRecoveryKey) as info:
        keys.parse_recovery_key(typo)
    assert typo[:7] not in info.value.message
