"""Reading a database's write-ahead log (its `-wal` file) without SQLite, to tell a log that
was merely interrupted from a log that is damaged.

Why: when SQLite replays a log it stops at the first frame whose checksum fails and quietly
drops everything after it, committed transactions included; the next checkpoint makes the
loss permanent. Before a vault opens, `read_log` finds out whether that replay would drop a
transaction that was committed and followed by another one, which is damage, and which pages
the replay keeps (so a main file that a checkpoint left half-written is judged together with
its log, as SQLite reads it). It only reads: nothing here writes, locks or creates a file.

The file format (https://www.sqlite.org/fileformat2.html#the_write_ahead_log), as used here:

- A 32-byte header of eight big-endian 32-bit integers: magic number (0x377f0682 or
  0x377f0683), format version (3007000), page size, checkpoint sequence number, salt-1,
  salt-2, checksum-1, checksum-2. The checksum covers the first 24 bytes.
- Then frames, each a 24-byte header and one page: page number, database size in pages after
  this frame for the last frame of a transaction (a commit frame; 0 for every other frame),
  salt-1, salt-2 (copied from the log header), checksum-1, checksum-2. The checksum is
  cumulative: it starts from the previous frame's (the log header's for frame 1) and covers
  the first 8 bytes of this frame's header and its page.
- The checksum reads its input as 32-bit words, big-endian if the magic number's low bit is
  set and little-endian if not, and for each pair of words (x0, x1) does
  s0 += x0 + s1; s1 += x1 + s0, modulo 2**32.
- A frame is valid when its salts equal the header's, its page number is not 0 and its
  checksum matches. Replaying keeps the frames up to the last commit frame before the first
  invalid frame. A header that is not valid (magic, page size, checksum) makes SQLite ignore
  the whole log. A partial frame at the end of the file is ignored.
- When SQLite starts the log over after a checkpoint, it rewrites the header with new salts,
  syncs it, and writes frames from the start, so frames left from an earlier round carry other
  salts. With synchronous=FULL the log is synced at every commit, before the next transaction
  can begin.

What counts as damage: an invalid frame (or an invalid header, which is as if frame 0 were)
from which on the same round of the log (same salts) still holds at least two commit frames,
the invalid frame itself included. Then a transaction that had been committed and synced
(another one came after it) would be dropped. Not damage: a partial
frame at the end; valid frames after the last commit (a transaction that never committed); a
frame whose header was written but not its page when the process died (the frames after it
are from an earlier round); damage inside the last transaction only (a power cut before that
transaction's sync can leave it torn, and SQLite then drops it as it was never confirmed).

Speed: checksums are computed in Python, about 0.1 ms per 4 KiB frame, and only up to the
last commit frame; the connection settings keep the log short (store/database.py).
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, replace
from pathlib import Path

HEADER_SIZE = 32
FRAME_HEADER_SIZE = 24
MAGIC = 0x377F0682  # | 1: checksum words are big-endian
VERSION = 3007000
_M32 = 0xFFFFFFFF
_CHUNK = 1 << 20
# Readings of a log that looks damaged before we stop trying to confirm it (read_log_confirmed).
_ATTEMPTS = 5


@dataclass(frozen=True)
class LogReading:
    """What replaying the log would keep, and whether it would drop committed transactions."""

    kept_frames: int  # frames kept by a replay (SQLite's mxFrame after recovery)
    database_pages: int  # the database's size in pages after the last kept commit; 0 if none
    logged_pages: frozenset[int]  # pages with an image in the kept frames
    damaged: bool
    digest: bytes  # SHA-256 of the file as read, to tell two readings of a changing file apart
    stable: bool = True  # False: the file changed while it was read


def checksum(data: bytes, s0: int, s1: int, big_endian: bool) -> tuple[int, int]:
    """SQLite's log checksum over `data` (a multiple of 8 bytes), continuing from (s0, s1)."""
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    it = iter(words)
    for x0, x1 in zip(it, it):
        s0 = (s0 + x0 + s1) & _M32
        s1 = (s1 + x1 + s0) & _M32
    return s0, s1


def read_log_confirmed(path: Path, page_size: int) -> LogReading | None:
    """`read_log`, with a damaged verdict believed only when two readings in a row agree on a
    file that did not change meanwhile.

    Another process may be writing the log while we read it (the app is open while a command
    opens the vault): a reading torn by its writes can look like damage. A log that keeps
    changing is in use by a live process, whose own index of the log (not a replay of this
    file) is what SQLite will use; it is not called damaged.
    """
    previous = None
    reading = None
    for _ in range(_ATTEMPTS):
        reading = read_log(path, page_size)
        if reading is None or not reading.damaged:
            return reading
        if reading.stable and reading == previous:
            return reading
        previous = reading if reading.stable else None
    assert reading is not None
    return replace(reading, damaged=False)


def read_log(path: Path, page_size: int) -> LogReading | None:
    """The log at `path` as a replay would see it; None when there is no log to replay (no
    file, or one shorter than its header). `page_size` is the database's page size, used to
    find the frames when the header is unreadable."""
    try:
        with open(path, "rb", buffering=0) as f:
            before = _identity(os.fstat(f.fileno()))
            reading = _read(f, before[1], page_size)
            after = _identity(os.fstat(f.fileno()))
    except FileNotFoundError:
        return None  # folded in and removed by a process that just closed the database
    if reading is not None and before != after:
        reading = replace(reading, stable=False)  # never believed on its own
    return reading


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_size, st.st_mtime_ns


@dataclass
class _Header:
    valid: bool  # a replay reads the log at all
    version: int
    big_endian: bool
    page_size: int
    salt: bytes
    checksum: tuple[int, int]


def _parse_header(raw: bytes, fallback_page_size: int) -> _Header:
    magic, version, page_size, _seq = struct.unpack(">4I", raw[:16])
    big_endian = bool(magic & 1)
    sane_size = 512 <= page_size <= 65536 and page_size & (page_size - 1) == 0
    stored = struct.unpack(">2I", raw[24:32])
    valid = magic & ~1 == MAGIC and sane_size and checksum(raw[:24], 0, 0, big_endian) == stored
    return _Header(
        valid=valid,
        version=version,
        big_endian=big_endian,
        page_size=page_size if sane_size else fallback_page_size,
        salt=raw[16:24],
        checksum=stored,
    )


def _read(f, size: int, fallback_page_size: int) -> LogReading | None:
    if size < HEADER_SIZE:
        return None
    digest = hashlib.sha256()
    raw_header = f.read(HEADER_SIZE)
    if len(raw_header) < HEADER_SIZE:
        return None
    digest.update(raw_header)
    header = _parse_header(raw_header, fallback_page_size)
    frame_size = FRAME_HEADER_SIZE + header.page_size

    # First pass: every frame's header (and the digest of the whole file).
    frames: list[tuple[int, int, bytes]] = []  # (page number, commit size, salt)
    buf = b""
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            break
        digest.update(chunk)
        buf += chunk
        whole = len(buf) // frame_size * frame_size
        for at in range(0, whole, frame_size):
            page, commit = struct.unpack_from(">2I", buf, at)
            frames.append((page, commit, buf[at + 8 : at + 16]))
        buf = buf[whole:]  # a partial frame waits for the next chunk, or is ignored at the end

    salts = {header.salt}
    if not header.valid and frames:
        # SQLite ignores a log whose header is unreadable. Its first frame carries the
        # round's salts in case the header's own were hit.
        salts.add(frames[0][2])
    commits = [i for i, (page, commit, salt) in enumerate(frames, 1) if page and commit and salt in salts]
    if not header.valid:
        return LogReading(0, 0, frozenset(), len(commits) >= 2, digest.digest())
    if header.version != VERSION:
        # A log format this SQLite does not know: it refuses to open the database at all,
        # which the opening reports; a replay drops nothing.
        return LogReading(0, 0, frozenset(), False, digest.digest())

    # Second pass: the checksum chain, up to the last commit frame of this round (frames after
    # it are a transaction that never committed: a replay drops them whatever they hold).
    kept, database_pages, logged = 0, 0, set()
    first_bad = None
    s0, s1 = header.checksum
    pending: set[int] = set()
    f.seek(HEADER_SIZE)
    last = commits[-1] if commits else 0
    for i in range(1, last + 1):
        frame = f.read(frame_size)
        page, commit, salt = frames[i - 1]
        valid = len(frame) == frame_size and page != 0 and salt == header.salt
        if valid:
            s0, s1 = checksum(frame[:8], s0, s1, header.big_endian)
            s0, s1 = checksum(frame[FRAME_HEADER_SIZE:], s0, s1, header.big_endian)
            valid = (s0, s1) == struct.unpack_from(">2I", frame, 16) and frame[:16] == _frame_head(frames[i - 1])
        if not valid:
            first_bad = i
            break
        pending.add(page)
        if commit:
            kept, database_pages = i, commit
            logged |= pending
            pending = set()
    damaged = first_bad is not None and sum(1 for c in commits if c >= first_bad) >= 2
    return LogReading(kept, database_pages, frozenset(logged), damaged, digest.digest())


def _frame_head(frame: tuple[int, int, bytes]) -> bytes:
    """The first 16 bytes of a frame header as the first pass read them: a frame that changed
    between the two passes is not judged on a mix of both."""
    page, commit, salt = frame
    return struct.pack(">2I", page, commit) + salt
