"""The backup file's container: a plaintext header, then the content in authenticated chunks.

    MAGIC (16 bytes) | version (2 bytes) | header length (4 bytes) | header (JSON)
    chunk 0 | chunk 1 | ... | final chunk

The header holds no PHI: the backup's id and time, the vault's id, the device it was made
on, the salt of this file's key, and vault.json as it was (the wrapped master key a restore
needs; the same file lies in the clear in every vault folder). Everything else is content.

The content is cut into chunks of `chunk_bytes` (the last one shorter, never empty unless the
content is) and each is sealed with AES-256-GCM under the file's own key, HKDF of the vault's
backup key with the header's random salt. Nonce: the chunk's index. Associated data: the
SHA-256 of the header as written, the index and a final-chunk flag. The header announces the
content's length, so a file shorter than that is reported as cut short and a longer one is
refused before any chunk is read; a changed header fails the first chunk; a chunk moved,
dropped or repeated fails at its place; the chunk where the content ends must carry the flag.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from store import keys
from store.errors import BadBackupFile
# vault.json's base64 reader: the header carries the same kinds of fields.
from store.vaultfile import _unb64

MAGIC = b"NOTEWELL BACKUP\n"
FORMAT_VERSION = 1
FORMAT_NAME = "notewell-backup"
CHUNK_BYTES = 1 << 20
TAG_BYTES = 16
SALT_BYTES = 32
# Far more than any header we write (vault.json is at most 64 KiB): a bigger one is not ours.
MAX_HEADER_BYTES = 256 * 1024
_MIN_CHUNK, _MAX_CHUNK = 1 << 12, 1 << 24
_PREFIX = struct.Struct(">HI")
# A bound on what a header may announce (1 TiB), so a forged one cannot promise the impossible.
MAX_CONTENT_BYTES = 1 << 40


@dataclass(frozen=True)
class BackupHeader:
    """What a backup says about itself before any key is known."""

    backup_id: str
    created_at: str  # UTC, ISO 8601
    vault_id: str
    device_id: str
    device_name: str
    salt: bytes
    vault_file: bytes  # vault.json as it was when the backup was made
    chunk_bytes: int = CHUNK_BYTES
    content_bytes: int = 0  # what the chunks hold in all, before sealing
    # The header exactly as it is in the file: its hash is bound into every chunk.
    raw: bytes = b""

    def encode(self) -> bytes:
        body = json.dumps(
            {
                "format": FORMAT_NAME,
                "backup_id": self.backup_id,
                "created_at": self.created_at,
                "vault_id": self.vault_id,
                "device": {"id": self.device_id, "name": self.device_name},
                "salt": base64.b64encode(self.salt).decode("ascii"),
                "chunk_bytes": self.chunk_bytes,
                "content_bytes": self.content_bytes,
                "vault_file": base64.b64encode(self.vault_file).decode("ascii"),
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode("utf-8")
        return MAGIC + _PREFIX.pack(FORMAT_VERSION, len(body)) + body

    @property
    def chunk_count(self) -> int:
        """Chunks in the file: the content cut into full chunks and a last one (never zero)."""
        return max(1, -(-self.content_bytes // self.chunk_bytes))

    @property
    def file_bytes(self) -> int:
        """The size of a complete file with this header."""
        return len(self.raw or self.encode()) + self.content_bytes + self.chunk_count * TAG_BYTES

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.raw or self.encode()).digest()

    def file_key(self, backup_key: bytes | bytearray) -> bytearray:
        return keys.hkdf(backup_key, keys.BACKUP_FILE_INFO, self.salt)


def read_header(f: BinaryIO, name: str) -> BackupHeader:
    """The header at the start of `f` (left positioned at the first chunk). BadBackupFile for
    a file that is not a Notewell backup or whose header is cut short or malformed."""
    foreign = BadBackupFile(f"{name} is not a Notewell backup; nothing was written.")
    if f.read(len(MAGIC)) != MAGIC:
        raise foreign
    prefix = f.read(_PREFIX.size)
    if len(prefix) != _PREFIX.size:
        raise _truncated(name)
    version, length = _PREFIX.unpack(prefix)
    if version != FORMAT_VERSION:
        raise BadBackupFile(
            f"{name} was written by a different version of Notewell (backup format {version}; "
            f"this version reads format {FORMAT_VERSION}); nothing was written."
        )
    if length > MAX_HEADER_BYTES:
        raise foreign
    body = f.read(length)
    if len(body) != length:
        raise _truncated(name)
    try:
        data = json.loads(body.decode("utf-8"))
        if data["format"] != FORMAT_NAME:
            raise ValueError("not ours")
        header = BackupHeader(
            backup_id=_text(data["backup_id"]),
            created_at=_text(data["created_at"]),
            vault_id=_text(data["vault_id"]),
            device_id=_text(data["device"]["id"]),
            device_name=_text(data["device"]["name"]),
            salt=_unb64(data["salt"], length=SALT_BYTES),
            vault_file=_unb64(data["vault_file"]),
            chunk_bytes=data["chunk_bytes"],
            content_bytes=data["content_bytes"],
            raw=MAGIC + prefix + body,
        )
        if not isinstance(header.chunk_bytes, int) or not _MIN_CHUNK <= header.chunk_bytes <= _MAX_CHUNK:
            raise ValueError("chunk size out of range")
        if not isinstance(header.content_bytes, int) or not 0 <= header.content_bytes <= MAX_CONTENT_BYTES:
            raise ValueError("content size out of range")
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, binascii.Error):
        raise _damaged(name) from None
    return header


def _text(value: object) -> str:
    if not isinstance(value, str) or len(value) > 1000:
        raise ValueError("not a short text")
    return value


def _truncated(name: str) -> BadBackupFile:
    return BadBackupFile(f"The backup {name} is incomplete (the file was cut short); nothing was written.")


def _damaged(name: str) -> BadBackupFile:
    return BadBackupFile(
        f"The backup {name} is damaged or was altered (part of it fails its authentication); "
        "nothing was written."
    )


def _nonce(index: int) -> bytes:
    return b"\0\0\0\0" + index.to_bytes(8, "big")


def _aad(digest: bytes, index: int, final: bool) -> bytes:
    return digest + index.to_bytes(8, "big") + (b"\1" if final else b"\0")


class ChunkWriter:
    """Seals content written to it into chunks on `f`. `finish()` writes the final chunk."""

    def __init__(self, f: BinaryIO, header: BackupHeader, backup_key: bytes | bytearray) -> None:
        self._f = f
        self._size = header.chunk_bytes
        self._digest = header.digest
        file_key = header.file_key(backup_key)
        self._aead = AESGCM(bytes(file_key))
        keys.wipe(file_key)
        self._buffer = bytearray()
        self._index = 0
        self._declared = header.content_bytes
        self.content_bytes = 0

    def write(self, data: bytes | memoryview) -> None:
        self._buffer += data
        self.content_bytes += len(data)
        # Keep at least one byte back: the chunk that ends the content carries the flag.
        while len(self._buffer) > self._size:
            self._seal(bytes(self._buffer[: self._size]), final=False)
            del self._buffer[: self._size]

    def finish(self) -> None:
        if self.content_bytes != self._declared:
            raise ValueError("the content written differs from what the header declares")
        self._seal(bytes(self._buffer), final=True)
        self._buffer.clear()

    def _seal(self, chunk: bytes, *, final: bool) -> None:
        index = self._index
        self._f.write(self._aead.encrypt(_nonce(index), chunk, _aad(self._digest, index, final)))
        self._index += 1


def read_chunks(
    f: BinaryIO, header: BackupHeader, backup_key: bytes | bytearray, name: str
) -> Iterator[bytes]:
    """The content of the chunks after the header, each checked before it is yielded.
    BadBackupFile when the file is shorter or longer than its header says, or a chunk fails
    (changed, moved, or not the final one where the content ends)."""
    actual = os.fstat(f.fileno()).st_size
    if actual < header.file_bytes:
        raise _truncated(name)
    if actual > header.file_bytes:
        raise _damaged(name)
    file_key = header.file_key(backup_key)
    aead = AESGCM(bytes(file_key))
    keys.wipe(file_key)
    digest, count = header.digest, header.chunk_count
    for index in range(count):
        final = index == count - 1
        size = header.content_bytes - index * header.chunk_bytes if final else header.chunk_bytes
        sealed = f.read(size + TAG_BYTES)
        if len(sealed) != size + TAG_BYTES:
            raise _truncated(name)  # the file shrank while it was read
        try:
            yield aead.decrypt(_nonce(index), sealed, _aad(digest, index, final))
        except InvalidTag:
            raise _damaged(name) from None
