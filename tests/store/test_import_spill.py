"""What an import has built waits in an encrypted, unnamed temporary file (store/import_spill.py):
nothing of it is readable on disk, nothing of it is left behind, and a file that changes
under it stops the import with one sentence before anything is written."""

from __future__ import annotations

import os

import pytest

from store.errors import ImportFailed
from store.import_spill import Spill

CANARY = "CANARY-spill-4c1e"


def test_rounds_come_back_in_order_as_often_as_asked() -> None:
    with Spill() as spill:
        rounds = [[("note-1", CANARY, b"\x85\x6f", [b"h" * 32])], [], [("note-2", {"x": 1})]]
        for r in rounds:
            spill.add(r)
        assert len(spill) == 3
        assert list(spill.rounds()) == rounds
        assert list(spill.rounds()) == rounds


def test_the_file_has_no_name_and_holds_only_ciphertext() -> None:
    with Spill() as spill:
        spill.add([CANARY * 100])
        fd = spill._file.fileno()
        assert os.fstat(fd).st_nlink == 0  # in no folder: it ends with the process
        on_disk = os.pread(fd, spill.bytes, 0)
        assert len(on_disk) == spill.bytes
        assert CANARY.encode() not in on_disk


def test_a_file_altered_meanwhile_stops_with_one_sentence() -> None:
    with Spill() as spill:
        spill.add(["first"])
        spill.add(["second"])
        fd = spill._file.fileno()
        last = os.pread(fd, 1, spill.bytes - 1)
        os.pwrite(fd, bytes([last[0] ^ 1]), spill.bytes - 1)
        got = spill.rounds()
        assert next(got) == ["first"]
        with pytest.raises(ImportFailed) as info:
            next(got)
    message = info.value.message
    assert message.endswith("nothing was imported.") and "\n" not in message
