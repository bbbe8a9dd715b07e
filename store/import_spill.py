"""Where a large import keeps what it has built until it writes it: an unnamed temporary file,
encrypted under a key that exists only in this process's memory.

An import checks and builds every item before it writes anything (store/importer.py), so a
bad item anywhere leaves the vault as it was and the write lock is held only for the writing.
For 100,000 notes what it builds (documents and list and search rows) comes to a few hundred
megabytes; held in memory, even compressed, it was a quarter of the import's peak. Here each
round of results is pickled, sealed with AES-256-GCM (a fresh random key per import, a counter
as nonce, the round's number as associated data, so rounds cannot be swapped or replayed) and
appended to a file that has no name (`tempfile.TemporaryFile`: on Linux opened with O_TMPFILE,
elsewhere unlinked at once), so it disappears when the import ends or is killed, and what it
held on disk is ciphertext under a key nobody kept. Reading a round back checks its tag.

    with Spill() as spill:
        spill.add([...])
        for round in spill.rounds(): ...
"""

from __future__ import annotations

import os
import pickle
import struct
import tempfile
from collections.abc import Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from store.errors import ImportFailed

_LENGTH = struct.Struct(">Q")


class Spill:
    """Rounds of results, appended and read back in order; see the module docstring."""

    def __init__(self) -> None:
        self._key = AESGCM(AESGCM.generate_key(bit_length=256))
        try:
            self._file = tempfile.TemporaryFile(prefix="notewell-import-")
        except OSError as e:
            raise _unwritable(e) from None
        self._count = 0
        self.bytes = 0  # how much is on disk

    def __enter__(self) -> "Spill":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self._count

    def add(self, results: list) -> None:
        data = pickle.dumps(results, protocol=pickle.HIGHEST_PROTOCOL)
        sealed = self._key.encrypt(self._nonce(self._count), data, self._aad(self._count))
        try:
            self._file.seek(0, os.SEEK_END)
            self._file.write(_LENGTH.pack(len(sealed)) + sealed)
            self._file.flush()  # a full disk says so now, not when the rounds are read back
        except OSError as e:
            raise _unwritable(e) from None
        self._count += 1
        self.bytes += _LENGTH.size + len(sealed)

    def rounds(self) -> Iterator[list]:
        """Each round as added, in order; ImportFailed if the file cannot be read back as it
        was written (altered meanwhile, or a failing disk)."""
        try:
            self._file.flush()
            self._file.seek(0)
        except OSError as e:
            raise _unwritable(e) from None
        for index in range(self._count):
            try:
                (length,) = _LENGTH.unpack(self._file.read(_LENGTH.size))
                data = self._key.decrypt(self._nonce(index), self._file.read(length), self._aad(index))
            except (OSError, struct.error, InvalidTag):
                raise ImportFailed(
                    "What the import built changed in its temporary file before it was written "
                    "(a failing disk?); nothing was imported."
                ) from None
            yield pickle.loads(data)  # sealed by this process a moment ago: its own pickle

    def close(self) -> None:
        self._file.close()

    @staticmethod
    def _nonce(index: int) -> bytes:
        return index.to_bytes(12, "big")

    @staticmethod
    def _aad(index: int) -> bytes:
        return b"notewell import round " + str(index).encode()


def _unwritable(e: OSError) -> ImportFailed:
    reason = e.strerror or type(e).__name__
    return ImportFailed(
        f"The import could not keep what it built in a temporary file ({reason}; it needs free space in "
        f"{tempfile.gettempdir()} about twice the size of the import file); nothing was imported."
    )
