"""Key material of a vault: the passphrase KDF, master-key wrapping, per-database keys and
the recovery key's printed form.

A random 256-bit master key never touches the disk in the clear. It is wrapped with
AES-256-GCM twice: under a key derived from the passphrase with Argon2id, and under a key
derived from the recovery key with HKDF (the recovery key is already 256 random bits, so a
slow KDF would add nothing). The databases are keyed with HKDF outputs of the master key, so
changing the passphrase re-wraps 32 bytes and never re-encrypts a database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import unicodedata
from dataclasses import dataclass

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from store.errors import WrongRecoveryKey

KEY_BYTES = 32
SALT_BYTES = 16
NONCE_BYTES = 12

RECORD_DB_INFO = b"notewell record.db v1"
PRIVATE_DB_INFO = b"notewell private.db v1"
RECOVERY_WRAP_INFO = b"notewell recovery wrap v1"
VAULT_FILE_MAC_INFO = b"notewell vault.json mac v1"
# Backups (store/backup.py): a key of their own from the master key, and from it one key per
# backup file (HKDF with the file's random salt), so no two files share a key.
BACKUP_INFO = b"notewell backup v1"
BACKUP_FILE_INFO = b"notewell backup file v1"

MIN_PASSPHRASE_CHARS = 8


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost. The default costs about 0.15-0.25 s on a laptop (see docs)."""

    memory_kib: int = 65536
    time_cost: int = 3
    parallelism: int = 1

    # Bounds for parameters read from a file: a damaged vault.json must not make the
    # unlock allocate gigabytes or spin for minutes.
    MAX_MEMORY_KIB = 4 * 1024 * 1024
    MAX_TIME_COST = 64
    MAX_PARALLELISM = 16

    def __post_init__(self) -> None:
        for name in ("memory_kib", "time_cost", "parallelism"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer")
        if not 1 <= self.parallelism <= self.MAX_PARALLELISM:
            raise ValueError("parallelism is out of range")
        if not 1 <= self.time_cost <= self.MAX_TIME_COST:
            raise ValueError("time_cost is out of range")
        # Argon2 needs at least 8 KiB per lane.
        if not 8 * self.parallelism <= self.memory_kib <= self.MAX_MEMORY_KIB:
            raise ValueError("memory_kib is out of range")

    def to_json(self) -> dict:
        return {
            "algorithm": "argon2id",
            "version": 19,
            "memory_kib": self.memory_kib,
            "time_cost": self.time_cost,
            "parallelism": self.parallelism,
        }

    @classmethod
    def from_json(cls, data: dict) -> KdfParams:
        """ValueError/KeyError/TypeError on anything we did not write."""
        if data["algorithm"] != "argon2id" or data["version"] != 19:
            raise ValueError("unknown key derivation")
        return cls(
            memory_kib=data["memory_kib"],
            time_cost=data["time_cost"],
            parallelism=data["parallelism"],
        )


# The cheap Argon2id cost of the test suite and the benchmarks (8 MiB, one pass), and the
# variable that lets a process use it. Without it no vault may ask for less than today's
# defaults (`kdf_floor`): a vault.json is a file anyone with the folder can edit, the
# environment of the clinician's own process is not (docs/security.md).
TEST_KDF = KdfParams(memory_kib=8192, time_cost=1, parallelism=1)
TEST_KDF_ENV = "NOTEWELL_TEST_KDF"


def allow_test_kdf() -> None:
    """For the test suite and benchmarks only: this process and those it starts accept
    vaults made with TEST_KDF."""
    os.environ[TEST_KDF_ENV] = "1"


def kdf_floor() -> KdfParams:
    """The least passphrase-wrap cost a vault may have: today's defaults, or TEST_KDF in a
    process started with NOTEWELL_TEST_KDF=1."""
    return TEST_KDF if os.environ.get(TEST_KDF_ENV) == "1" else KdfParams()


def below_floor(params: KdfParams) -> bool:
    """Whether `params` cost less than `kdf_floor()` in memory, passes or lanes."""
    floor = kdf_floor()
    return (
        params.memory_kib < floor.memory_kib
        or params.time_cost < floor.time_cost
        or params.parallelism < floor.parallelism
    )


def normalise_passphrase(passphrase: str) -> bytes:
    # The same passphrase typed on macOS (NFD input) and elsewhere (NFC) must unlock.
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def passphrase_is_weak(passphrase: str, minimum: int = MIN_PASSPHRASE_CHARS) -> bool:
    """Shorter than `minimum` characters (as typed on any platform); exports ask for more."""
    return len(unicodedata.normalize("NFC", passphrase)) < minimum


def random_key() -> bytearray:
    """A fresh 256-bit key in a bytearray, so the holder can overwrite it when done."""
    return bytearray(os.urandom(KEY_BYTES))


def random_salt() -> bytes:
    return os.urandom(SALT_BYTES)


def passphrase_kek(passphrase: str, salt: bytes, params: KdfParams) -> bytearray:
    """The key-encryption key for the passphrase wrap (Argon2id)."""
    return bytearray(
        hash_secret_raw(
            normalise_passphrase(passphrase),
            salt,
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            hash_len=KEY_BYTES,
            type=Type.ID,
        )
    )


def hkdf(key: bytes | bytearray, info: bytes, salt: bytes | None = None) -> bytearray:
    return bytearray(
        HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=info).derive(bytes(key))
    )


def recovery_kek(recovery: bytes | bytearray, salt: bytes) -> bytearray:
    return hkdf(recovery, RECOVERY_WRAP_INFO, salt)


def database_key(master: bytes | bytearray, info: bytes) -> bytearray:
    """The raw SQLCipher key of one database; distinct labels give unrelated keys."""
    return hkdf(master, info)


def vault_file_key(master: bytes | bytearray) -> bytearray:
    """The key of vault.json's MAC: only someone holding the master key can vouch for it."""
    return hkdf(master, VAULT_FILE_MAC_INFO)


def backup_key(master: bytes | bytearray) -> bytearray:
    """The root key of the vault's backups; each file's key is derived from it with its salt."""
    return hkdf(master, BACKUP_INFO)


def wrap(kek: bytes | bytearray, secret: bytes | bytearray, aad: bytes) -> tuple[bytes, bytes]:
    """(nonce, ciphertext) of `secret` under `kek`; `aad` binds it to its vault and purpose."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(bytes(kek)).encrypt(nonce, bytes(secret), aad)


def unwrap(kek: bytes | bytearray, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytearray | None:
    """The secret, or None when the key (or anything bound by `aad`) does not match."""
    try:
        return bytearray(AESGCM(bytes(kek)).decrypt(nonce, ciphertext, aad))
    except InvalidTag:
        return None


def wipe(buf: bytearray | None) -> None:
    """Overwrite key material we hold. Copies made by libraries are out of our reach."""
    if buf is not None:
        for i in range(len(buf)):
            buf[i] = 0


# --- the recovery key as printed -------------------------------------------------------
#
# 32 random bytes plus a 3-byte checksum are 280 bits: exactly 56 base32 characters, shown
# as 8 groups of 7. The checksum turns a typo into "check what you typed" instead of the
# same message as a wrong key.

RECOVERY_GROUPS = 8
RECOVERY_GROUP_LEN = 7
_CHECKSUM_BYTES = 3
_CHECKSUM_LABEL = b"notewell recovery key v1"
# Characters outside the base32 alphabet that people write for ones inside it.
_LOOKALIKES = str.maketrans({"0": "O", "1": "I", "8": "B"})


def _checksum(secret: bytes) -> bytes:
    return hashlib.sha256(_CHECKSUM_LABEL + secret).digest()[:_CHECKSUM_BYTES]


def format_recovery_key(secret: bytes | bytearray) -> str:
    if len(secret) != KEY_BYTES:
        raise ValueError("a recovery key is 32 bytes")
    text = base64.b32encode(bytes(secret) + _checksum(bytes(secret))).decode("ascii")
    n = RECOVERY_GROUP_LEN
    return "-".join(text[i : i + n] for i in range(0, len(text), n))


def parse_recovery_key(text: str) -> bytearray:
    """The 32 bytes of a typed recovery key; WrongRecoveryKey saying what is wrong with it."""
    cleaned = "".join(ch for ch in text.upper() if ch not in " -\t\r\n").translate(_LOOKALIKES)
    expected = RECOVERY_GROUPS * RECOVERY_GROUP_LEN
    if len(cleaned) != expected:
        raise WrongRecoveryKey(
            f"A recovery key has {expected} letters and digits in {RECOVERY_GROUPS} groups; "
            f"this one has {len(cleaned)}."
        )
    try:
        raw = base64.b32decode(cleaned)
    except ValueError:
        raise WrongRecoveryKey(
            "The recovery key contains a character that is not used in recovery keys "
            "(only A-Z and 2-7)."
        ) from None
    secret, check = raw[:KEY_BYTES], raw[KEY_BYTES:]
    if not hmac.compare_digest(check, _checksum(secret)):
        raise WrongRecoveryKey("The recovery key has a typo: its checksum does not match.")
    return bytearray(secret)


def new_recovery_key() -> tuple[bytearray, str]:
    """(secret, printed form)."""
    secret = random_key()
    return secret, format_recovery_key(secret)
