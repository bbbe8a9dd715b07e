"""vault.json: the only plaintext file of a vault. It holds no PHI: format version, vault and
device ids, the device's name, the KDF parameters and salts, and the two wrapped copies of
the master key.

From format 2 on, the file vouches for itself twice (docs/security.md has the table):

- `checksum`: SHA-256 over the canonical encoding of every other field. It needs no key, so
  damage is told apart from a wrong passphrase before any key is derived. Anyone can
  recompute it: it catches accidents, not intent.
- `mac`: HMAC-SHA256 over the canonical encoding of every field but itself and the checksum,
  under a key derived from the master key (`keys.vault_file_key`). Checked after every
  unwrap, and by `check`: a deliberate edit cannot be made to pass it.

Format 3 adds each wrap's own `format`: a passphrase wrap of wrap format 2 names its Argon2id
parameters in its associated data, so the AES-GCM tag vouches for them too. Formats 1 and 2
(every wrap of wrap format 1) are still read; the first unlock with the passphrase re-wraps
the master key under the same key with the parameters bound and writes format 3 (an unlock
with the recovery key writes format 3 with the new passphrase's wrap). Every later format
keeps the checksum field as it is, so an older Notewell can tell a newer file from a damaged
one.

The passphrase wrap never asks for less than `keys.kdf_floor()` (today's defaults): a file
that does is refused as damaged or weakened before any key is derived.

Every write goes through a temporary file that is fsynced and then renamed over (or, for a
new vault, hard-linked into place so an existing vault.json is never replaced), followed by
an fsync of the folder. A crash therefore leaves either the old file or the new one, never a
torn one; a leftover vault.json.tmp is ignored by readers.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import hmac
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from store.audit import canonical
from store.errors import DamagedVault, NewerVaultFormat, NotAVault, VaultError, VaultExists
from store.keys import KdfParams, below_floor
from store.write_access import translate

FILE_NAME = "vault.json"
TMP_NAME = "vault.json.tmp"
FORMAT_MARKER = "notewell-vault"
FORMAT_VERSION = 3
# The first format: no checksum and no MAC. Read, and upgraded at the first unlock.
FIRST_FORMAT = 1
# The version named in a wrap's associated data, written in the wrap as its `format` from
# file format 3 on (absent: 1). It is not the file's format: the recovery wrap stays at 1 (it
# has no parameters to bind, and the recovery key is not at hand to remake it).
WRAP_FORMAT = 1
# A passphrase wrap whose associated data also names its Argon2id parameters.
KDF_BOUND_WRAP_FORMAT = 2
# Far more than any vault.json we write; a bigger file is not ours and is not read whole.
MAX_BYTES = 64 * 1024

PASSPHRASE = "passphrase"
RECOVERY = "recovery"

CHECKSUM_FIELD = "checksum"
MAC_FIELD = "mac"
_CHECKSUM_PREFIX = "sha256:"
_MAC_LABEL = b"notewell vault.json\0"


def wrap_aad(vault_id: str, format_version: int, purpose: str, kdf: KdfParams | None = None) -> bytes:
    """Associated data of a wrap: a wrapped key only opens in its own vault, format and role,
    and from wrap format 2 on only with the Argon2id parameters it was made with."""
    aad = f"{FORMAT_MARKER}\0{format_version}\0{vault_id}\0{purpose}".encode()
    if format_version >= KDF_BOUND_WRAP_FORMAT:
        if kdf is None:
            raise ValueError("this wrap format binds key-derivation parameters")
        aad += b"\0" + canonical(kdf.to_json())
    return aad


def checksum(data: dict) -> str:
    """The unkeyed checksum of every field of `data` but the checksum itself."""
    body = {k: v for k, v in data.items() if k != CHECKSUM_FIELD}
    return _CHECKSUM_PREFIX + hashlib.sha256(canonical(body)).hexdigest()


def mac(data: dict, file_key: bytes | bytearray) -> bytes:
    """The MAC of every field of `data` but the MAC and the checksum."""
    body = {k: v for k, v in data.items() if k not in (CHECKSUM_FIELD, MAC_FIELD)}
    return hmac.new(bytes(file_key), _MAC_LABEL + canonical(body), hashlib.sha256).digest()


@dataclass
class Wrap:
    """One wrapped copy of the master key. `kdf` is None for the recovery wrap (HKDF).
    `format`: the wrap format its associated data names (`wrap_aad`)."""

    salt: bytes
    nonce: bytes
    ciphertext: bytes
    kdf: KdfParams | None = None
    format: int = WRAP_FORMAT

    @property
    def kdf_bound(self) -> bool:
        return self.format >= KDF_BOUND_WRAP_FORMAT


@dataclass
class VaultFile:
    vault_id: str
    device_id: str
    device_name: str
    created_at: str
    passphrase_wrap: Wrap
    recovery_wrap: Wrap
    format_version: int = FORMAT_VERSION
    # As read from disk (format 2 on): the MAC, and the fields it was computed over exactly
    # as they were in the file. Both follow from the fields above, so they are not compared.
    mac: bytes | None = field(default=None, compare=False, repr=False)
    signed_fields: dict | None = field(default=None, compare=False, repr=False)

    @property
    def authenticated(self) -> bool:
        """Whether this format carries a checksum and a MAC (the first one does not)."""
        return self.format_version > FIRST_FORMAT

    def aad(self, purpose: str) -> bytes:
        wrap = self.passphrase_wrap if purpose == PASSPHRASE else self.recovery_wrap
        return wrap_aad(self.vault_id, wrap.format, purpose, wrap.kdf)

    @property
    def outdated(self) -> bool:
        """Whether an unlock with the passphrase has something to upgrade: the file's format,
        or a passphrase wrap that does not bind its parameters yet."""
        return self.format_version < FORMAT_VERSION or not self.passphrase_wrap.kdf_bound

    def fields(self) -> dict:
        """Every field but the MAC and the checksum, in the order they are written."""
        return {
            "format": FORMAT_MARKER,
            "format_version": self.format_version,
            "vault_id": self.vault_id,
            "created_at": self.created_at,
            "device": {"id": self.device_id, "name": self.device_name},
            "passphrase_wrap": _wrap_to_json(self.passphrase_wrap),
            "recovery_wrap": _wrap_to_json(self.recovery_wrap),
        }

    def mac_matches(self, file_key: bytes | bytearray) -> bool:
        """Whether the MAC read from disk vouches for the fields read from disk."""
        if self.mac is None or self.signed_fields is None:
            return False
        return hmac.compare_digest(self.mac, mac(self.signed_fields, file_key))

    def to_bytes(self, file_key: bytes | bytearray | None = None) -> bytes:
        """The file's bytes; from format 2 on `file_key` is needed for the MAC."""
        data = self.fields()
        if self.authenticated:
            if file_key is None:
                raise ValueError("writing this vault.json format needs the vault's file key")
            data[MAC_FIELD] = mac(data, file_key).hex()
            data[CHECKSUM_FIELD] = checksum(data)
        return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def wrap_digest(wrap: Wrap) -> str:
    """A fingerprint of one wrap as written, to recognise it later (SHA-256 hex)."""
    return hashlib.sha256(canonical(_wrap_to_json(wrap))).hexdigest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, *, length: int | None = None) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not base64 text")
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if length is not None and len(raw) != length:
        raise ValueError("wrong length")
    return raw


def _wrap_to_json(wrap: Wrap) -> dict:
    out: dict = {}
    if wrap.format != WRAP_FORMAT:
        out["format"] = wrap.format
    if wrap.kdf is not None:
        out["kdf"] = wrap.kdf.to_json()
    else:
        out["kdf"] = {"algorithm": "hkdf-sha256"}
    out.update(salt=_b64(wrap.salt), nonce=_b64(wrap.nonce), ciphertext=_b64(wrap.ciphertext))
    return out


def _wrap_from_json(data: dict, *, argon2: bool) -> Wrap:
    kdf = KdfParams.from_json(data["kdf"]) if argon2 else None
    if not argon2 and data["kdf"] != {"algorithm": "hkdf-sha256"}:
        raise ValueError("unknown key derivation")
    wrap_format = data.get("format", WRAP_FORMAT)
    known = (WRAP_FORMAT, KDF_BOUND_WRAP_FORMAT) if argon2 else (WRAP_FORMAT,)
    if type(wrap_format) is not int or wrap_format not in known or "format" in data and wrap_format == WRAP_FORMAT:
        raise ValueError("unknown wrap format")
    return Wrap(
        format=wrap_format,
        salt=_unb64(data["salt"], length=16),
        nonce=_unb64(data["nonce"], length=12),
        # 32-byte key plus the 16-byte GCM tag.
        ciphertext=_unb64(data["ciphertext"], length=48),
        kdf=kdf,
    )


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("not text")
    return value


def parse(raw: bytes) -> VaultFile:
    """NotAVault for a file that is not ours, DamagedVault for ours but unreadable or damaged,
    NewerVaultFormat for one written by a newer version. Needs no key."""
    damaged = "The vault's vault.json is damaged"
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise DamagedVault(f"{damaged} (it is not readable JSON).") from None
    if not isinstance(data, dict):
        raise NotAVault("This folder's vault.json does not belong to a Notewell vault.")
    has_checksum = CHECKSUM_FIELD in data
    # A damaged marker in a file that carries our checksum is damage, not a stranger's file.
    if data.get("format") != FORMAT_MARKER and not (has_checksum and "passphrase_wrap" in data):
        raise NotAVault("This folder's vault.json does not belong to a Notewell vault.")
    # The checksum first, before any field is believed (the version included).
    if has_checksum and not (
        isinstance(data[CHECKSUM_FIELD], str)
        and hmac.compare_digest(data[CHECKSUM_FIELD].encode("utf-8"), checksum(data).encode("ascii"))
    ):
        raise DamagedVault(f"{damaged} (its checksum does not match its contents).")
    if data.get("format") != FORMAT_MARKER:
        raise NotAVault("This folder's vault.json does not belong to a Notewell vault.")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < FIRST_FORMAT:
        raise DamagedVault(f"{damaged} (its format version is missing).")
    if version > FORMAT_VERSION:
        raise NewerVaultFormat(
            f"This vault was written by a newer Notewell (format {version}); "
            f"this version reads format {FORMAT_VERSION}. Update Notewell to open it."
        )
    if version > FIRST_FORMAT and not has_checksum:
        raise DamagedVault(f"{damaged} (its checksum is missing).")
    try:
        device = data["device"]
        vault_file = VaultFile(
            format_version=version,
            vault_id=_text(data["vault_id"]),
            created_at=_text(data["created_at"]),
            device_id=_text(device["id"]),
            device_name=_text(device["name"]),
            passphrase_wrap=_wrap_from_json(data["passphrase_wrap"], argon2=True),
            recovery_wrap=_wrap_from_json(data["recovery_wrap"], argon2=False),
        )
        if vault_file.authenticated:
            vault_file.mac = _unhex(data[MAC_FIELD], length=32)
            vault_file.signed_fields = data
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise DamagedVault(f"{damaged} (a field is missing or malformed).") from None
    assert vault_file.passphrase_wrap.kdf is not None
    if below_floor(vault_file.passphrase_wrap.kdf):
        raise DamagedVault(
            "The vault's vault.json asks for a cheaper passphrase key derivation than Notewell "
            "accepts (it is damaged, or was altered to make the passphrase easier to guess)."
        )
    return vault_file


def _unhex(text: object, *, length: int) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not hex text")
    raw = bytes.fromhex(text)
    if len(raw) != length:
        raise ValueError("wrong length")
    return raw


def read(folder: Path) -> VaultFile:
    """Read and parse `folder`/vault.json without changing anything on disk."""
    if not folder.is_dir():
        why = "it is a file, not a folder" if folder.exists() else "the folder does not exist"
        raise NotAVault(f"There is no vault at {folder} ({why}).")
    path = folder / FILE_NAME
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise NotAVault(f"There is no vault at {folder} (it has no vault.json).") from None
    except IsADirectoryError:
        raise NotAVault(f"There is no vault at {folder} (vault.json is not a file).") from None
    except OSError as e:
        raise VaultError(f"Cannot read the vault's vault.json: {e.strerror}.") from None
    if len(raw) > MAX_BYTES:
        raise NotAVault("This folder's vault.json does not belong to a Notewell vault.")
    return parse(raw)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    fd = os.open(folder, flags)
    try:
        os.fsync(fd)
    except OSError as e:
        # Some filesystems (network mounts) cannot fsync a directory; the rename still stands.
        if e.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _write_tmp(folder: Path, data: bytes) -> Path:
    tmp = folder / TMP_NAME
    # A leftover from an interrupted write is stale by definition: it was never renamed.
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def _write_failed(folder: Path, e: OSError) -> VaultError:
    try:
        (folder / TMP_NAME).unlink(missing_ok=True)
    except OSError:
        pass
    return translate(e) or VaultError(f"Cannot write the vault's vault.json ({e.strerror}); nothing was changed.")


def write_new(folder: Path, vault_file: VaultFile, file_key: bytes | bytearray | None = None) -> None:
    """Write vault.json for a new vault; VaultExists (and nothing changed) if one is there."""
    try:
        tmp = _write_tmp(folder, vault_file.to_bytes(file_key))
    except OSError as e:
        raise _write_failed(folder, e) from None
    final = folder / FILE_NAME
    try:
        os.link(tmp, final)
    except FileExistsError:
        tmp.unlink(missing_ok=True)
        raise VaultExists(f"A vault already exists at {folder}; nothing was overwritten.") from None
    except OSError:
        # Filesystems without hard links (FAT on a USB stick): check, then rename.
        if os.path.lexists(final):
            tmp.unlink(missing_ok=True)
            raise VaultExists(
                f"A vault already exists at {folder}; nothing was overwritten."
            ) from None
        os.replace(tmp, final)
    else:
        tmp.unlink()
    fsync_dir(folder)


def replace(folder: Path, vault_file: VaultFile, file_key: bytes | bytearray | None = None) -> None:
    """Atomically replace vault.json: afterwards it is wholly the old or wholly the new."""
    put_in_place(folder, prepare(folder, vault_file, file_key))


def prepare(folder: Path, vault_file: VaultFile, file_key: bytes | bytearray | None = None) -> Path:
    """The first half of `replace`: the new file written and fsynced beside the old one.
    VaultError, and nothing changed, if it cannot be written (a full disk, a read-only
    folder). Follow with `put_in_place`, or `discard`."""
    data = vault_file.to_bytes(file_key)
    try:
        return _write_tmp(folder, data)
    except OSError as e:
        raise _write_failed(folder, e) from None


def put_in_place(folder: Path, tmp: Path) -> None:
    """The second half of `replace`: the rename. VaultError (and the old file untouched)
    if it fails; returning means every reader now gets the new one."""
    try:
        os.replace(tmp, folder / FILE_NAME)
    except OSError as e:
        raise _write_failed(folder, e) from None
    try:
        fsync_dir(folder)
    except OSError:
        # The rename has happened and is what every reader sees; only a power cut before
        # the folder reaches the disk could bring the old file (as valid as ever) back.
        pass


def discard(tmp: Path) -> None:
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        pass


def remove_stale_tmp(folder: Path) -> None:
    (folder / TMP_NAME).unlink(missing_ok=True)
