"""The encrypted container of a JSON export ("sealed export"), and the password rule for
every encrypted export (PDF and JSON alike).

A JSON export leaves the vault as a file someone carries to another clinician or another
vault. Sealed, it is useless to whoever finds it without the password: `notewell import`
recognises the container by its magic bytes and asks for the password.

Layout (docs/import-format.md, "Encrypted exports"), big-endian:

    offset  size  field
         0     8  magic            89 4E 57 45 58 50 0D 0A  ("\\x89NWEXP\\r\\n")
         8     2  format version   1
        10     1  KDF              1 = Argon2id, version 19
        11     1  parallelism
        12     4  passes (time cost)
        16     4  memory in KiB
        20    16  salt
        36    12  nonce
        48     8  length of the ciphertext that follows (tag included)
        56    16  password check
        72     -  ciphertext: AES-256-GCM of the JSON, associated data = bytes 0-71

The Argon2id output (the vault's own passphrase KDF, store/keys.py) is split with HKDF into
the encryption key and a check key. The password check (HMAC-SHA256 of bytes 0-55 under the
check key, first 16 bytes) tells a wrong password from a damaged body; the declared length
tells a file cut short from an altered one. The whole header is the ciphertext's associated
data, so changing any byte of it is caught too.

Nothing here opens a file or a vault: the callers read and write (store/export.py writes
atomically; the import command reads through store/importer.py's bounded reader).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import unicodedata

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from store import keys
from store.errors import ExportFailed, ImportFailed

MAGIC = b"\x89NWEXP\r\n"
VERSION = 1
KDF_ARGON2ID = 1
_FIXED = struct.Struct(">8sHBBII16s12sQ")  # every header field before the password check
CHECK_BYTES = 16
HEADER_BYTES = _FIXED.size + CHECK_BYTES  # 72
TAG_BYTES = 16

_KEY_INFO = b"notewell sealed export v1 key"
_CHECK_INFO = b"notewell sealed export v1 check"

# A PDF's own key derivation (ISO 32000-2, revision 6) is a few rounds of SHA-2, far cheaper
# to guess against than Argon2id, and an export leaves the device: a longer minimum than the
# vault passphrase's.
MIN_EXPORT_PASSWORD_CHARS = 12

# A file's KDF cost is believed only within these bounds: a hostile file must not make an
# import allocate gigabytes or run for minutes before the password is even checked.
MAX_MEMORY_KIB = 1024 * 1024
MAX_TIME_COST = 16

NOTHING_IMPORTED = "nothing was imported"


def check_password(password: str) -> None:
    """ExportFailed, in one sentence, for a password that cannot protect an export."""
    if not isinstance(password, str) or not password.strip():
        raise ExportFailed("The export password is empty; nothing was written.", title="Password needed")
    if keys.passphrase_is_weak(password, minimum=MIN_EXPORT_PASSWORD_CHARS):
        raise ExportFailed(
            f"The export password is too weak: use at least {MIN_EXPORT_PASSWORD_CHARS} characters "
            "(four unrelated words work well); nothing was written.",
            title="Password too weak",
        )
    if len(set(unicodedata.normalize("NFC", password))) < 4:
        raise ExportFailed(
            "The export password is too weak: it repeats a few characters; nothing was written.",
            title="Password too weak",
        )


def is_sealed(data: bytes) -> bool:
    """Whether `data` starts like a sealed export (the magic alone)."""
    return data[: len(MAGIC)] == MAGIC


def _keys(password: str, salt: bytes, params: keys.KdfParams) -> tuple[bytearray, bytearray]:
    kek = keys.passphrase_kek(password, salt, params)
    try:
        return keys.hkdf(kek, _KEY_INFO), keys.hkdf(kek, _CHECK_INFO)
    finally:
        keys.wipe(kek)


def _check(check_key: bytes | bytearray, fixed: bytes) -> bytes:
    return hmac.new(bytes(check_key), fixed, hashlib.sha256).digest()[:CHECK_BYTES]


def seal(plaintext: bytes, password: str, *, params: keys.KdfParams | None = None) -> bytes:
    """The container holding `plaintext` under `password` (checked with `check_password`)."""
    check_password(password)
    params = params or keys.KdfParams()
    salt = keys.random_salt()
    nonce = os.urandom(keys.NONCE_BYTES)
    length = len(plaintext) + TAG_BYTES
    fixed = _FIXED.pack(
        MAGIC, VERSION, KDF_ARGON2ID, params.parallelism, params.time_cost, params.memory_kib, salt, nonce, length
    )
    key, check_key = _keys(password, salt, params)
    try:
        header = fixed + _check(check_key, fixed)
        return header + AESGCM(bytes(key)).encrypt(nonce, plaintext, header)
    finally:
        keys.wipe(key)
        keys.wipe(check_key)


def _refused(why: str) -> ImportFailed:
    return ImportFailed(f"{why}; {NOTHING_IMPORTED}.")


def read_header(data: bytes) -> tuple[keys.KdfParams, bytes, bytes, int]:
    """(KDF parameters, salt, nonce, declared ciphertext length) of a sealed export, checked
    and bounded without a password; ImportFailed in one sentence otherwise."""
    if len(data) < HEADER_BYTES:
        raise _refused("The encrypted export is cut short (its header is incomplete)")
    magic, version, kdf, lanes, passes, memory, salt, nonce, length = _FIXED.unpack_from(data)
    if magic != MAGIC:
        raise _refused("This is not an encrypted Notewell export")
    if version > VERSION:
        raise _refused(
            f"The encrypted export is format {version}, written by a newer Notewell; this one reads "
            f"format {VERSION} (update Notewell)"
        )
    if version != VERSION or kdf != KDF_ARGON2ID:
        raise _refused("The encrypted export's header is damaged (unknown format or key derivation)")
    if memory > MAX_MEMORY_KIB or passes > MAX_TIME_COST:
        raise _refused("The encrypted export asks for a key derivation far costlier than Notewell writes")
    try:
        params = keys.KdfParams(memory_kib=memory, time_cost=passes, parallelism=lanes)
    except ValueError:
        raise _refused("The encrypted export's header is damaged (its key derivation is out of range)") from None
    return params, salt, nonce, length


def unseal(data: bytes, password: str) -> bytes:
    """The plaintext of a sealed export. ImportFailed, in one sentence, for a wrong password,
    a file cut short, an altered file or an unknown format; never partial plaintext."""
    params, salt, nonce, length = read_header(data)
    body = memoryview(data)[HEADER_BYTES:]
    if len(body) < length:
        raise _refused("The encrypted export is cut short (it is smaller than its header says)")
    if len(body) > length:
        raise _refused("The encrypted export has bytes after its end (it was altered or joined to another file)")
    if length < TAG_BYTES:
        raise _refused("The encrypted export's header is damaged (its length is impossible)")
    header = bytes(data[:HEADER_BYTES])
    key, check_key = _keys(password, salt, params)
    try:
        if not hmac.compare_digest(_check(check_key, header[: _FIXED.size]), header[_FIXED.size :]):
            raise _refused("The password is wrong for this encrypted export (or its header was altered)")
        try:
            return AESGCM(bytes(key)).decrypt(nonce, bytes(body), header)
        except InvalidTag:
            raise _refused(
                "The encrypted export was altered or damaged after it was written (it fails its authentication check)"
            ) from None
    finally:
        keys.wipe(key)
        keys.wipe(check_key)
