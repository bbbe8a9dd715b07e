"""The budget for a document received from another device, checked before it is loaded.

A few kilobytes of Automerge can declare millions of operations: a column is run-length
encoded (one run says "this value, five million times") and may also be DEFLATE-compressed,
and `Document.load` builds every operation in memory (a 5 KB document once cost 1.37 GB and
4 s). So what another device sends is measured from what its bytes declare, before
Automerge reads them, and refused whole when it is over the budget:

- Read from the headers, in this process, without building anything (`measure`): the bytes
  as received, the bytes after inflating every compressed column or change, the number of
  changes and the number of operations (the rows each column declares: run lengths are
  added, never expanded). Inflating stops at the budget, so a compression bomb costs at most
  the budget's inflated bytes, and every count stops at its limit.
- Loaded under guard (`guarded_load_problem`): a document whose declared size is within the
  budget but large (more than `guard_above_ops` operations, `guard_above_changes` changes or
  `guard_above_inflated` bytes) is first loaded by a separate, isolated interpreter whose
  address space and CPU time are limited (`resource.setrlimit`), so what the headers cannot
  show (how much memory and time those operations really take) is bounded too. Everyday
  documents are far below that line and never pay for a process.

The numbers (`DEFAULT_BUDGET`) and what a real note needs are in docs/security.md ("A
document's budget") and the measured figures in bench/README.md. The format read here is
Automerge's binary format (chunks, column metadata, RLE/delta/boolean encodings): document
chunks, change chunks, compressed change chunks, and the changes a sync message carries.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zlib
from dataclasses import dataclass
from typing import NamedTuple

from store.errors import DocumentOverBudget, ForeignDocument

MAGIC = b"\x85\x6f\x4a\x83"
_DOCUMENT, _CHANGE, _COMPRESSED = 0, 1, 2
# Column types (the low three bits of a column specification); bit 3 says "DEFLATE".
_GROUP, _ACTOR, _INTEGER, _DELTA, _BOOLEAN, _STRING, _VALUE_META, _VALUE = range(8)
_DEFLATE = 0x08
_SYNC_MESSAGE_TYPES = (0x42, 0x43)  # Automerge sync messages, versions 1 and 2
_HASH = 32


@dataclass(frozen=True)
class DocumentBudget:
    """What one document from another device may hold (see docs/security.md for why these)."""

    max_bytes: int = 16 * 1024 * 1024  # as received: one sync frame's worth
    max_inflated_bytes: int = 8 * 1024 * 1024  # with every compressed part inflated
    max_changes: int = 200_000
    max_ops: int = 1_000_000
    # Above any of these the document is first loaded by a guarded process.
    guard_above_ops: int = 200_000
    guard_above_changes: int = 50_000
    guard_above_inflated: int = 4 * 1024 * 1024
    # The guarded load: address space and CPU seconds of that process.
    load_memory_bytes: int = 768 * 1024 * 1024
    load_cpu_seconds: int = 10


DEFAULT_BUDGET = DocumentBudget()


@dataclass(frozen=True)
class DocumentSize:
    """What a document's bytes declare (nothing here was built to find out)."""

    received_bytes: int = 0
    inflated_bytes: int = 0
    changes: int = 0
    ops: int = 0

    def __add__(self, other: "DocumentSize") -> "DocumentSize":
        return DocumentSize(
            self.received_bytes + other.received_bytes, self.inflated_bytes + other.inflated_bytes,
            self.changes + other.changes, self.ops + other.ops,
        )

    def over(self, budget: DocumentBudget) -> str | None:
        """The first measure over the budget, as words for the refusal; None when within."""
        for value, limit, what in (
            (self.received_bytes, budget.max_bytes, "bytes"),
            (self.inflated_bytes, budget.max_inflated_bytes, "bytes once decompressed"),
            (self.changes, budget.max_changes, "changes"),
            (self.ops, budget.max_ops, "operations"),
        ):
            if value > limit:
                return f"more than {limit:,} {what}"
        return None

    def needs_guarded_load(self, budget: DocumentBudget) -> bool:
        return (
            self.ops > budget.guard_above_ops
            or self.changes > budget.guard_above_changes
            or self.inflated_bytes > budget.guard_above_inflated
        )


class _Over(Exception):
    """Internal: a measure went over the budget while reading (stops reading at once); its
    argument says which, as words for the refusal."""


class _Unreadable(Exception):
    """Internal: the bytes do not follow the format."""


class _Reader:
    def __init__(self, data: bytes | memoryview, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def done(self) -> bool:
        return self.pos >= self.end

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > self.end:
            raise _Unreadable
        out = memoryview(self.data)[self.pos:self.pos + n]
        self.pos += n
        return out

    def take_bytes(self, n: int) -> bytes:
        """`take`, as bytes: one slice when the data is bytes (a column's, read by `_rows`)."""
        if n < 0 or self.pos + n > self.end:
            raise _Unreadable
        out = bytes(self.data[self.pos:self.pos + n])  # bytes(b) of bytes is b itself
        self.pos += n
        return out

    def uleb(self) -> int:
        pos = self.pos
        if pos < self.end:  # a one-byte number (most lengths and counts), read inline
            byte = self.data[pos]
            if byte < 0x80:
                self.pos = pos + 1
                return byte
        return self._number(_uleb)

    def sleb(self) -> int:
        return self._number(_sleb)

    def _number(self, read) -> int:
        try:
            value, pos = read(self.data, self.pos)
        except IndexError:
            raise _Unreadable from None
        if pos > self.end:
            raise _Unreadable
        self.pos = pos
        return value

    def prefixed(self) -> memoryview:
        return self.take(self.uleb())


class _Meter:
    """Running totals of one measurement, stopped at the budget."""

    def __init__(self, budget: DocumentBudget, start: DocumentSize) -> None:
        self.budget = budget
        self.inflated = start.inflated_bytes
        self.changes = start.changes
        self.ops = start.ops
        # Strings written out one by one (map keys), read a step each: a tenth of the
        # operations in all, per measurement.
        self.string_room = max(budget.max_ops, budget.max_changes) // 10

    def add_inflated(self, n: int) -> None:
        self.inflated += n
        if self.inflated > self.budget.max_inflated_bytes:
            raise _Over(f"more than {self.budget.max_inflated_bytes:,} bytes once decompressed")

    def add_rows(self, changes: int, ops: int) -> None:
        self.changes += changes
        self.ops += ops
        if self.changes > self.budget.max_changes:
            raise _Over(f"more than {self.budget.max_changes:,} changes")
        if self.ops > self.budget.max_ops:
            raise _Over(f"more than {self.budget.max_ops:,} operations")

    def inflate(self, compressed: memoryview) -> bytes:
        """DEFLATE data inflated, never past what the budget has left."""
        room = self.budget.max_inflated_bytes - self.inflated
        inflater = zlib.decompressobj(-15)
        try:
            out = inflater.decompress(compressed, min(room + 1, sys.maxsize))
        except zlib.error:
            raise _Unreadable from None
        if len(out) > room:
            self.add_inflated(len(out))  # raises
        if not inflater.eof:
            raise _Unreadable
        self.add_inflated(len(out))
        return out


_HIGH = bytes(range(0x80, 0x100))  # bytes that continue an LEB128 number
_LONGER = re.compile(rb"[\x80-\xff]+[\x00-\x7f]")  # an LEB128 number of more than one byte


def _uleb(col: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it) of the unsigned LEB128 number at `pos`."""
    byte = col[pos]  # IndexError past the end: the caller turns it into _Unreadable
    if byte < 0x80:
        return byte, pos + 1
    result, shift = byte & 0x7F, 7
    while True:
        pos += 1
        byte = col[pos]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos + 1
        shift += 7
        if shift > 63:
            raise _Unreadable


def _sleb(col: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it) of the signed LEB128 number at `pos`."""
    byte = col[pos]
    if byte < 0x80:
        return (byte - 0x80 if byte & 0x40 else byte), pos + 1
    result, shift = byte & 0x7F, 7
    while True:
        pos += 1
        byte = col[pos]
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return (result - (1 << shift) if byte & 0x40 else result), pos + 1
        if shift > 63:
            raise _Unreadable


def _skip_lebs(col: bytes, pos: int, count: int) -> int:
    """The position after `count` LEB128 numbers from `pos`, found by counting the bytes
    that end a number (C speed: a literal run of a million values is not a million steps)."""
    end, ended = pos, 0
    while ended < count:
        step = count - ended  # at most this many numbers can end in the next `step` bytes
        if end + step > len(col):
            raise _Unreadable
        piece = col[end:end + step]
        found = len(piece.translate(None, _HIGH))
        if not found and len(col[max(pos, end + step - 10):end + step].translate(None, _HIGH)) == 0 \
                and end + step - pos >= 10:
            raise _Unreadable  # ten bytes without an end: no LEB128 number of 64 bits is that long
        ended += found
        end += step
    return end


def _column_rows(col: bytes, col_type: int, limit: int, string_room: int) -> tuple[int, int, int]:
    """(rows the column declares, and for a group column the sum of its values: the rows of
    the columns it groups), without expanding any run; stops once either passes `limit`
    (the caller refuses then); and the strings it writes out one by one, of which it may
    hold `string_room`."""
    if col_type == _VALUE:
        return 0, 0, 0
    try:
        return _rows(col, col_type, limit, string_room)
    except IndexError:
        raise _Unreadable from None


def _sum_lebs(span: bytes, limit: int) -> int:
    """The sum of the LEB128 numbers that make up `span`, at C speed for one-byte numbers;
    stops adding once past `limit`. Each longer number is at least 128 (an overlong one is
    refused, as Automerge refuses it), so few are ever read one by one."""
    if len(span.translate(None, _HIGH)) == len(span):
        return sum(span)  # one-byte numbers only (the usual case): each is its own value
    total = sum(_LONGER.sub(b"", span))  # the one-byte numbers
    for match in _LONGER.finditer(span):
        if total > limit:
            break
        token = match.group()
        if token[-1] == 0:
            raise _Unreadable
        total += _uleb(token, 0)[0]
    return total


def _rows(col: bytes, col_type: int, limit: int, string_room: int) -> tuple[int, int, int]:
    size = len(col)
    pos = rows = total = 0
    if col_type == _BOOLEAN:  # run lengths, alternately false and true
        return _sum_lebs(col, limit), 0, 0
    string = col_type == _STRING
    group = col_type == _GROUP
    written = 0
    while pos < size and rows <= limit and total <= limit:
        byte = col[pos]  # (one-byte numbers, the usual case, are read inline: this loop is hot)
        if byte < 0x80:
            count, pos = (byte - 0x80 if byte & 0x40 else byte), pos + 1
        else:
            count, pos = _sleb(col, pos)
        if count > 0:  # one value repeated `count` times
            byte = col[pos]
            if byte < 0x80:
                value, pos = byte, pos + 1
            else:
                value, pos = _uleb(col, pos)
            if string:
                pos += value
            elif group:
                total += count * value
            rows += count
        elif count < 0:  # `-count` values, each written out
            rows -= count
            if rows > limit:
                break
            if string:
                # Strings written out one by one are map keys (a note has a few dozen): a
                # tenth of the operations is room enough, and bounds this loop.
                written += -count
                if written > string_room:
                    raise _Over(f"more than {limit // 10:,} map keys")
                left = -count
                while left:
                    byte = col[pos]
                    if byte < 0x80:
                        pos += 1 + byte
                    else:
                        length, pos = _uleb(col, pos)
                        pos += length
                    left -= 1
            elif count > -32 and not group:  # a short run: quicker read than counted
                for _ in range(-count):
                    byte = col[pos]
                    pos = pos + 1 if byte < 0x80 else _uleb(col, pos)[1]
            else:
                end = _skip_lebs(col, pos, -count)
                if group:
                    total += _sum_lebs(col[pos:end], limit - total)
                pos = end
        else:  # a run of nulls
            value, pos = _uleb(col, pos)
            rows += value
    if pos > size:
        raise _Unreadable
    return rows, total, written


def _columns(r: _Reader) -> list[tuple[int, int]]:
    count = r.uleb()
    if count > r.end - r.pos:  # each column needs at least two bytes of metadata
        raise _Unreadable
    return [(r.uleb(), r.uleb()) for _ in range(count)]


def _measure_columns(r: _Reader, specs: list[tuple[int, int]], meter: _Meter, what: str) -> int:
    """Reads the columns' data; returns the most rows any of them declares (`what`: their
    rows are operations or changes, and are held to that limit)."""
    limit = meter.budget.max_ops if what == "operations" else meter.budget.max_changes
    rows = 0
    for spec, length in specs:
        raw = r.take_bytes(length)
        if spec & _DEFLATE:
            raw = meter.inflate(raw)
        else:
            meter.add_inflated(length)
        col_rows, col_total, written = _column_rows(raw, spec & 0x07, limit, meter.string_room)
        meter.string_room -= written
        rows = max(rows, col_rows, col_total)
        if rows > limit:
            raise _Over(f"more than {limit:,} {what}")
    return rows


def _document_chunk(r: _Reader, meter: _Meter) -> None:
    for _ in range(r.uleb()):  # actors
        r.prefixed()
    r.take(r.uleb() * _HASH)  # heads
    change_specs = _columns(r)
    op_specs = _columns(r)
    changes = _measure_columns(r, change_specs, meter, "changes")
    meter.add_rows(changes, 0)
    ops = _measure_columns(r, op_specs, meter, "operations")
    meter.add_rows(0, ops)


def _change_chunk(r: _Reader, meter: _Meter) -> None:
    r.take(r.uleb() * _HASH)  # dependencies
    r.prefixed()  # actor
    r.uleb()  # sequence number
    r.uleb()  # first operation's counter
    r.sleb()  # time
    r.prefixed()  # message
    for _ in range(r.uleb()):  # other actors
        r.prefixed()
    ops = _measure_columns(r, _columns(r), meter, "operations")
    meter.add_rows(1, ops)


def _chunks(data: bytes | memoryview, meter: _Meter) -> None:
    r = _Reader(data)
    if r.done():
        raise _Unreadable
    while not r.done():
        if bytes(r.take(4)) != MAGIC:
            raise _Unreadable
        r.take(4)  # checksum (Automerge checks it when it loads)
        kind = r.take(1)[0]
        length = r.uleb()
        body = r.take(length)
        # (As bytes: a column is then one slice of it, not a view copied.)
        if kind == _DOCUMENT:
            _document_chunk(_Reader(bytes(body)), meter)
        elif kind == _CHANGE:
            _change_chunk(_Reader(bytes(body)), meter)
        elif kind == _COMPRESSED:
            _change_chunk(_Reader(meter.inflate(body)), meter)
        else:
            raise _Unreadable  # no other chunk is written by the pinned Automerge


def _measure(data: bytes | memoryview, budget: DocumentBudget, start: DocumentSize) -> DocumentSize:
    """`measure`, raising _Over (why) or _Unreadable."""
    received = start.received_bytes + len(data)
    if received > budget.max_bytes:
        raise _Over(f"more than {budget.max_bytes:,} bytes")
    meter = _Meter(budget, start)
    _chunks(data, meter)
    return DocumentSize(received, meter.inflated, meter.changes, meter.ops)


def measure(data: bytes, budget: DocumentBudget = DEFAULT_BUDGET,
            start: DocumentSize = DocumentSize()) -> DocumentSize | None:
    """What `data` (chunks, as `Document.load` takes them) declares, added to `start`; None
    when that is over `budget` (reading stops there). Raises ValueError for bytes that do not
    follow the format."""
    try:
        return _measure(data, budget, start)
    except _Over:
        return None
    except _Unreadable:
        raise ValueError("not an Automerge document") from None


# Our own documents are counted, never refused (the limits are only far out of reach).
_UNLIMITED = DocumentBudget(max_bytes=sys.maxsize, max_inflated_bytes=sys.maxsize, max_changes=sys.maxsize,
                            max_ops=sys.maxsize)


def declared_size(data: bytes) -> DocumentSize:
    """What a document of ours declares, to count what another device adds to it (a
    document of ours that cannot be read counts as nothing: loading it will say so)."""
    try:
        return _measure(data, _UNLIMITED, DocumentSize())
    except (_Over, _Unreadable):
        return DocumentSize()


def sync_message_changes(message: bytes) -> list[memoryview]:
    """The changes (chunks) an Automerge sync message carries; ValueError if it is not one."""
    r = _Reader(message)
    try:
        if r.take(1)[0] not in _SYNC_MESSAGE_TYPES:
            raise _Unreadable
        r.take(r.uleb() * _HASH)  # heads
        r.take(r.uleb() * _HASH)  # need
        for _ in range(r.uleb()):  # have: last sync heads and a bloom filter each
            r.take(r.uleb() * _HASH)
            r.prefixed()
        count = r.uleb()
        if count > r.end - r.pos:
            raise _Unreadable
        return [r.prefixed() for _ in range(count)]  # (what follows: capabilities, not data)
    except _Unreadable:
        raise ValueError("not an Automerge sync message") from None


def _measure_sync_message(message: bytes, budget: DocumentBudget, start: DocumentSize) -> DocumentSize:
    size = start
    try:
        changes = sync_message_changes(message)
    except ValueError:
        raise _Unreadable from None
    for change in changes:
        size = _measure(change, budget, size)
    return size


# --- the guarded load ----------------------------------------------------------------------

# Run by `python -I -c`: no current folder or user site on its path, no environment of ours
# (no NOTEWELL_* secret). It limits its CPU time first, its address space once Automerge is
# imported and the document read (so those fit), then loads it and says "ok".
_GUARD_PROGRAM = """
import resource, sys
memory, cpu = int(sys.argv[1]), int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
from automerge.core import Document
data = sys.stdin.buffer.read()
resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
try:
    Document.load(data)
except MemoryError:
    sys.exit(4)
except BaseException:
    sys.exit(3)
sys.stdout.write("ok")
"""
_UNREADABLE_EXIT = 3


def guarded_load_problem(data: bytes, budget: DocumentBudget = DEFAULT_BUDGET) -> str | None:
    """Loads `data` in a separate interpreter limited to the budget's memory and CPU time;
    None when it loaded within them, else what went wrong, as words for the refusal."""
    try:
        proc = subprocess.run(
            [sys.executable, "-I", "-c", _GUARD_PROGRAM, str(budget.load_memory_bytes), str(budget.load_cpu_seconds)],
            input=bytes(data), capture_output=True, env={"PATH": os.defpath}, cwd="/",
            timeout=budget.load_cpu_seconds * 3 + 10,  # CPU time is the limit; this covers a stalled process
        )
    except subprocess.TimeoutExpired:
        return f"loading it took longer than {budget.load_cpu_seconds} seconds"
    except OSError:  # no interpreter to start (an embedded one): a large document is not loaded unguarded
        return "no guarded process could be started to load it"
    if proc.returncode == 0 and proc.stdout == b"ok":
        return None
    if proc.returncode == _UNREADABLE_EXIT:
        return "it could not be read"
    # Killed for CPU time (SIGXCPU), or out of address space (a MemoryError, or Rust's abort).
    return (f"loading it needed more than {budget.load_memory_bytes // (1024 * 1024)} MB "
            f"or {budget.load_cpu_seconds} seconds")


def check(doc_id: str, data: bytes, budget: DocumentBudget = DEFAULT_BUDGET,
          start: DocumentSize = DocumentSize()) -> DocumentSize:
    """The budget for a whole document from another device (`start`: what is already counted,
    such as our own copy it will be loaded with). Returns its size; DocumentOverBudget naming
    the document when it is over, ForeignDocument when its bytes are not a document."""
    try:
        size = _measure(data, budget, start)
    except _Over as over:
        raise over_budget(doc_id, str(over)) from None
    except _Unreadable:
        raise ForeignDocument(f"Document {doc_id} is not a readable Automerge document; nothing was changed.") from None
    if size.needs_guarded_load(budget):
        problem = guarded_load_problem(data, budget)
        if problem is not None:
            raise over_budget(doc_id, problem)
    return size


class Refused(NamedTuple):
    """A document over the budget, as a worker process reports it (store/prepare_pool.py):
    the sentence of its DocumentOverBudget."""

    message: str


def check_sync_message(doc_id: str, message: bytes, budget: DocumentBudget = DEFAULT_BUDGET,
                       start: DocumentSize = DocumentSize()) -> DocumentSize:
    """The budget for what a sync message brings to a document, added to `start` (our copy
    and what earlier messages brought). Returns the new total; DocumentOverBudget when over."""
    try:
        return _measure_sync_message(message, budget, start)
    except _Over as over:
        raise over_budget(doc_id, str(over)) from None
    except _Unreadable:
        raise ForeignDocument(f"The changes for document {doc_id} are not readable; nothing was changed.") from None


def over_budget(doc_id: str, why: str) -> DocumentOverBudget:
    return DocumentOverBudget(
        f"Document {doc_id} is larger than a record document may be ({why}); it was refused and nothing was changed."
    )
