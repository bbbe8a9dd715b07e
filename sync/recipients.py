"""A bundle's key, wrapped to each device that may read the bundle (as age does for several
recipients); docs/mailbox-format.md has the layout, docs/security.md the reasoning.

Each device already has an Ed25519 key (its certificate, in the device list). Its X25519 key
for bundles is derived from it the way age's ssh-ed25519 recipients and libsodium's
`crypto_sign_ed25519_pk_to_curve25519` / `_sk_to_curve25519` do: the public key is the
Montgomery form u = (1 + y) / (1 - y) of the Edwards point, the private scalar is the first
half of SHA-512 of the Ed25519 seed (clamped by X25519 itself). So every device that can
verify a device's signatures can also wrap a key to it, nothing new has to be published or
trusted, and revoking the device revokes both uses at once.

A stanza per recipient: its device id, a fresh ephemeral X25519 public key, and the bundle's
256-bit file key sealed with ChaCha20-Poly1305 under HKDF-SHA256(shared secret, salt =
ephemeral public || recipient public). The stanzas are covered by the bundle's signature and
are the associated data of its payload, so none can be added, removed or swapped unseen.

    wrap(file_key, {device_id: ed25519 public key}) -> stanzas (bytes)
    unwrap(stanzas, device_id, ed25519 private key) -> file key, or None if not for this device

Format 3 (`wrap_unnamed`, `unwrap_unnamed`) names no recipient: a stanza is the ephemeral key
and the sealed file key only, in no particular order, and a reader tries each until one
opens with its key (as age does). A group is a handful of devices, so that is a handful of
X25519 operations; a hostile file can hold at most MAX_RECIPIENTS of them. Whoever carries the
folder then learns how many devices a bundle is for, and not which.
"""

from __future__ import annotations

import hashlib
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FILE_KEY_BYTES = 32
ID_BYTES = 32
STANZA = struct.Struct(">32s32s48s")  # recipient device id, ephemeral public key, sealed file key
STANZA_SIZE = STANZA.size  # 112
COUNT = struct.Struct(">H")
MAX_RECIPIENTS = 256  # a sync group is a handful of devices; this bounds what a reader parses
_P = 2**255 - 19
_INFO = b"notewell bundle v2 file key"
UNNAMED_STANZA = struct.Struct(">32s48s")  # ephemeral public key, sealed file key (format 3)
UNNAMED_STANZA_SIZE = UNNAMED_STANZA.size  # 80
_INFO_UNNAMED = b"notewell bundle v3 file key"
_NONCE = bytes(12)  # every wrap key is used once, for one file key


class NotARecipient(Exception):
    """The stanzas hold nothing for this device."""


def x25519_public(public_key: ed25519.Ed25519PublicKey) -> x25519.X25519PublicKey:
    """The X25519 form of a device's Ed25519 public key (birational map, RFC 7748 section 4.1)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    if y >= _P or y == 1:
        raise ValueError("not a usable Ed25519 public key")
    u = (1 + y) * pow(1 - y, _P - 2, _P) % _P
    return x25519.X25519PublicKey.from_public_bytes(u.to_bytes(32, "little"))


def x25519_private(private_key: ed25519.Ed25519PrivateKey) -> x25519.X25519PrivateKey:
    """The X25519 private key matching `x25519_public` of the device's public key."""
    seed = private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return x25519.X25519PrivateKey.from_private_bytes(hashlib.sha512(seed).digest()[:32])


def _wrap_key(shared: bytes, ephemeral: bytes, recipient: bytes, info: bytes = _INFO) -> bytes:
    if shared == bytes(32):
        raise ValueError("low-order point")
    return HKDF(hashes.SHA256(), 32, ephemeral + recipient, info).derive(shared)


def _raw(public: x25519.X25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def new_file_key() -> bytes:
    return os.urandom(FILE_KEY_BYTES)


def wrap(file_key: bytes, recipients: dict[str, ed25519.Ed25519PublicKey]) -> bytes:
    """The recipients section: a count, then one stanza per device, ordered by device id."""
    if not 1 <= len(recipients) <= MAX_RECIPIENTS:
        raise ValueError(f"a bundle has 1 to {MAX_RECIPIENTS} recipients")
    parts = [COUNT.pack(len(recipients))]
    for device_id, public_key in sorted(recipients.items()):
        them = _raw(x25519_public(public_key))
        ephemeral = x25519.X25519PrivateKey.generate()
        mine = _raw(ephemeral.public_key())
        key = _wrap_key(ephemeral.exchange(x25519.X25519PublicKey.from_public_bytes(them)), mine, them)
        recipient = bytes.fromhex(device_id)
        sealed = ChaCha20Poly1305(key).encrypt(_NONCE, file_key, recipient)
        parts.append(STANZA.pack(recipient, mine, sealed))
    return b"".join(parts)


def section_length(data: bytes, at: int, stanza_size: int = STANZA_SIZE) -> int | None:
    """The length of the recipients section starting at `at`, or None when cut short or its
    count is out of bounds."""
    if len(data) < at + COUNT.size:
        return None
    (count,) = COUNT.unpack_from(data, at)
    if not 1 <= count <= MAX_RECIPIENTS:
        return None
    return COUNT.size + count * stanza_size


def recipients_of(section: bytes) -> list[str]:
    """The device ids a recipients section names."""
    (count,) = COUNT.unpack_from(section, 0)
    return [STANZA.unpack_from(section, COUNT.size + i * STANZA_SIZE)[0].hex() for i in range(count)]


def unwrap(section: bytes, device_id: str, private_key: ed25519.Ed25519PrivateKey) -> bytes:
    """The file key sealed to `device_id`; NotARecipient when no stanza is for it; ValueError
    when its stanza does not open (altered, or not sealed to this key)."""
    me = bytes.fromhex(device_id)
    (count,) = COUNT.unpack_from(section, 0)
    secret = x25519_private(private_key)
    mine = _raw(secret.public_key())
    for i in range(count):
        recipient, ephemeral, sealed = STANZA.unpack_from(section, COUNT.size + i * STANZA_SIZE)
        if recipient != me:
            continue
        try:
            key = _wrap_key(secret.exchange(x25519.X25519PublicKey.from_public_bytes(ephemeral)), ephemeral, mine)
            return ChaCha20Poly1305(key).decrypt(_NONCE, sealed, recipient)
        except (InvalidTag, ValueError):
            raise ValueError("the stanza does not open") from None
    raise NotARecipient()


# --- format 3: recipients not named ------------------------------------------------------


def wrap_unnamed(file_key: bytes, public_keys: list[ed25519.Ed25519PublicKey]) -> bytes:
    """The recipients section of format 3: a count, then one unnamed stanza per device, in
    the order of their (random) ephemeral keys, which says nothing of who they are for."""
    if not 1 <= len(public_keys) <= MAX_RECIPIENTS:
        raise ValueError(f"a bundle has 1 to {MAX_RECIPIENTS} recipients")
    stanzas = []
    for public_key in public_keys:
        them = _raw(x25519_public(public_key))
        ephemeral = x25519.X25519PrivateKey.generate()
        mine = _raw(ephemeral.public_key())
        key = _wrap_key(ephemeral.exchange(x25519.X25519PublicKey.from_public_bytes(them)), mine, them, _INFO_UNNAMED)
        stanzas.append(UNNAMED_STANZA.pack(mine, ChaCha20Poly1305(key).encrypt(_NONCE, file_key, b"")))
    return COUNT.pack(len(stanzas)) + b"".join(sorted(stanzas))


def unnamed_count(section: bytes) -> int:
    """How many devices a format 3 recipients section is for."""
    return COUNT.unpack_from(section, 0)[0]


def unwrap_unnamed(section: bytes, private_key: ed25519.Ed25519PrivateKey) -> bytes:
    """The file key of the first stanza that opens with this device's key; NotARecipient
    when none does (the bundle is not for this device, or its stanza was altered: the
    signature, checked before, tells those apart)."""
    secret = x25519_private(private_key)
    mine = _raw(secret.public_key())
    for i in range(unnamed_count(section)):
        ephemeral, sealed = UNNAMED_STANZA.unpack_from(section, COUNT.size + i * UNNAMED_STANZA_SIZE)
        try:
            key = _wrap_key(secret.exchange(x25519.X25519PublicKey.from_public_bytes(ephemeral)), ephemeral, mine,
                            _INFO_UNNAMED)
            return ChaCha20Poly1305(key).decrypt(_NONCE, sealed, b"")
        except (InvalidTag, ValueError):
            continue
    raise NotARecipient()
