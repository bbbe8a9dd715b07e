"""A new document written straight into Automerge's storage format, for a large import.

Building a note through the Automerge binding costs about 1.4 ms of CPU (each key new to
its map about 16 us, each character of text an operation); an import of 100,000 notes spends
most of its time there. `EncodedDocument` stands in for `automerge.core.Document` while a
new document is written (the same calls: `transaction()`, `put`, `put_object`,
`splice_text`, `insert`, `insert_object`, `get`, `length`, `get_heads`, `save`): it records
the operations the binding would make, in the same order, and encodes them itself:

- each change as the binding encodes it (the same bytes, so the same hash: a signature's
  heads and every later sync name the same changes), and
- the document as `Document.save()` lays it out (the same columns, the same operations in
  the same order), its large columns deflated (by zlib, so those bytes differ from the
  binding's deflate; what they hold does not).

A put of the value a key already holds makes no operation, as in Automerge.

So the stored bytes load (`Document.load`, which checks every change's hash against the
heads the document names) into the very document the binding would have built; saved again
by the binding they are byte for byte its own (tests/store/test_document_encoding.py holds
this to the binding for every kind of note and for generated text). Only what new record
documents need is supported: one actor, changes made in order, values that are strings,
integers, booleans or null, lists and text appended to at their end. Anything else raises
`Unsupported`, and the caller builds that document with the binding instead.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from itertools import chain
from typing import Any

from automerge.core import ROOT, ObjType, ScalarType

MAGIC = bytes.fromhex("856f4a83")
CHUNK_DOCUMENT = 0
CHUNK_CHANGE = 1
# Columns longer than this are deflated in a saved document, as Automerge does.
DEFLATE_MIN_SIZE = 256

# Operation actions.
MAKE_MAP, SET, MAKE_LIST, MAKE_TEXT = 0, 1, 2, 4


def _make(kind: ObjType) -> int:
    # The binding's enums are not hashable.
    if kind == ObjType.Map:
        return MAKE_MAP
    if kind == ObjType.List:
        return MAKE_LIST
    if kind == ObjType.Text:
        return MAKE_TEXT
    raise Unsupported(f"an object of type {kind}")


# Value metadata types (the low four bits; the length in bytes above them).
_NULL, _FALSE, _TRUE, _INT, _STR, _BYTES = 0, 1, 2, 4, 6, 7

# Column specifications: id << 4 | type (group 0, actor 1, integer 2, delta 3, boolean 4,
# string 5, value metadata 6, value 7); bit 3 marks a deflated column.
_DEFLATED = 8
_OBJ_ACTOR, _OBJ_CTR = 0x01, 0x02
_KEY_ACTOR, _KEY_CTR, _KEY_STR = 0x11, 0x13, 0x15
_ID_ACTOR, _ID_CTR = 0x21, 0x23
_INSERT, _ACTION = 0x34, 0x42
_VAL_META, _VAL_RAW = 0x56, 0x57
_PRED_GROUP, _PRED_ACTOR, _PRED_CTR = 0x70, 0x71, 0x73
_SUCC_GROUP, _SUCC_ACTOR, _SUCC_CTR = 0x80, 0x81, 0x83
# A saved document's change columns.
_CH_ACTOR, _CH_SEQ, _CH_MAX_OP, _CH_TIME = 0x01, 0x03, 0x13, 0x23
_CH_DEPS_GROUP, _CH_DEPS_INDEX, _CH_EXTRA_META = 0x40, 0x43, 0x56

_ROOT = 0  # the root map's object id here; every other object is the counter of its make op


class Unsupported(Exception):
    """An operation this encoder does not write; build the document with the binding."""


# --- primitive encodings -----------------------------------------------------------------


def _uleb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _sleb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if (n == 0 and not byte & 0x40) or (n == -1 and byte & 0x40):
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


# Values below 2**14 are nearly all that columns hold (a string's value metadata is its
# length in bytes times 16, so anything from 8 bytes up needs two): looked up, not computed.
_TABLE = 1 << 14
_ULEB = [_uleb(i) for i in range(_TABLE)]
_SLEB = [_sleb(i) for i in range(_TABLE)] + [_sleb(i) for i in range(-_TABLE, 0)]  # indexed by n
# A delta column's cell of one value, (sLEB, 1), made once: equal cells are then the same
# object, which the table of encoded columns (`_column`) compares by identity.
_SLEB_CELL = [(b, 1) for b in _SLEB]  # indexed by n


def _u(n: int) -> bytes:
    return _ULEB[n] if 0 <= n < _TABLE else _uleb(n)


def _s(n: int) -> bytes:
    return _SLEB[n] if -_TABLE <= n < _TABLE else _sleb(n)


def _str_value(s: str) -> bytes:
    raw = s.encode("utf-8")
    return _u(len(raw)) + raw


# Map keys as a column holds them, remembered: a note's keys are mostly the same few dozen
# names (cleared at 4,096, since keys such as goal ids differ from client to client).
_KEYS: dict[str, bytes] = {}


def _key_value(key: str) -> bytes:
    got = _KEYS.get(key)
    if got is None:
        if len(_KEYS) >= 4_096:
            _KEYS.clear()
        got = _KEYS[key] = _str_value(key)
    return got


# Encoded values a column cell holds often.
_U0, _U1, _S0, _S1 = _u(0), _u(1), _s(0), _s(1)
_META_NULL = _u(_NULL)


class _Sentinel:
    """A value no column holds (equal only to itself)."""


_START, _END = _Sentinel(), _Sentinel()
_END_CELL = ((_END, 1),)


def _rle(runs) -> bytes:
    """Runs of (value or None, count >= 1) in Automerge's run-length encoding, making
    exactly the choices Automerge's encoder makes (a change's bytes are hashed, so they must
    match): a value repeated is one run, values that differ from their neighbours one literal
    run, a stretch of nulls one null run, and a column of nulls alone nothing at all.

    Each value arrives already encoded (uLEB, sLEB or a length-prefixed string, as its
    column holds it: equal values have equal bytes), so this only groups and counts. One
    pass, a few steps per run of equal values, not per value: a text's thousands of
    characters arrive as one run and cost what one key does."""
    out: list[bytes] = []
    lits: list[bytes] = []
    current, count = _START, 0
    for value, n in chain(runs, _END_CELL):
        if value == current:
            count += n
            continue
        if count == 1 and current is not None:
            lits.append(current)
        elif count:
            if current is None and value is _END and not out and not lits:
                return b""  # nulls alone
            if lits:
                out.append(_SLEB[-len(lits)] if len(lits) <= _TABLE else _sleb(-len(lits)))
                out += lits
                lits = []
            if count >= _TABLE:
                out.append(b"\x00" + _uleb(count) if current is None else _sleb(count) + current)
            else:
                out.append(b"\x00" + _ULEB[count] if current is None else _SLEB[count] + current)
        current, count = value, n
    if lits:
        out.append(_SLEB[-len(lits)] if len(lits) <= _TABLE else _sleb(-len(lits)))
        out += lits
    return b"".join(out)


# Notes of one shape have many columns alike (which objects, actions, keys; even the lengths
# of a change's texts repeat): each column's encoding is remembered, in a table cleared when
# it holds 4,000 (about 10 MB in each process; 20,000 took 45 MB and saved no more time).
_ENCODED: dict[tuple, bytes] = {}
_ENCODED_MAX = 4_000


def _column(runs: list) -> bytes:
    """A column of encoded cells, run-length encoded (remembered: `_ENCODED`)."""
    key = tuple(runs)
    got = _ENCODED.get(key)
    if got is None:
        if len(_ENCODED) >= _ENCODED_MAX:
            _ENCODED.clear()
        got = _ENCODED[key] = _rle(runs)
    return got


def _booleans(runs: list) -> bytes:
    """Alternating counts, starting with false."""
    out = []
    current, count = False, 0
    for value, n in runs:
        if value == current:
            count += n
        else:
            out.append(_ULEB[count] if count < _TABLE else _uleb(count))
            current, count = value, n
    if count:
        out.append(_ULEB[count] if count < _TABLE else _uleb(count))
    return b"".join(out)


def _columns(cols: list[tuple[int, bytes]]) -> tuple[bytes, bytes]:
    """(metadata, data) of the non-empty columns, in the order given (by specification)."""
    present = [(spec, data) for spec, data in cols if data]
    meta = b"".join([_ULEB[len(present)], *[
        _ULEB[spec] + (_ULEB[len(data)] if len(data) < _TABLE else _uleb(len(data))) for spec, data in present
    ]])
    return meta, b"".join([data for _spec, data in present])


def _chunk(kind: int, body: bytes) -> tuple[bytes, bytes]:
    """(chunk bytes, hash): the hash is sha256 of the type, length and body; its first four
    bytes are the chunk's checksum."""
    head = bytes((kind,)) + _u(len(body))
    digest = hashlib.sha256(head + body).digest()
    return MAGIC + digest[:4] + head + body, digest


# --- values ------------------------------------------------------------------------------


# The binding's enum members, looked up once (each lookup makes a new object).
_STR_TYPE, _NULL_TYPE, _BOOL_TYPE, _INT_TYPE = ScalarType.Str, ScalarType.Null, ScalarType.Boolean, ScalarType.Int


_META_FALSE, _META_TRUE = _u(_FALSE), _u(_TRUE)


def _scalar(kind: ScalarType, value: Any) -> tuple[bytes, bytes]:
    """(value metadata, encoded as its column holds it; raw bytes) of a scalar."""
    if kind == _STR_TYPE:
        if value.__class__ is str and value.isascii():
            return _u((len(value) << 4) | _STR), value.encode()
        try:
            raw = value.encode("utf-8")
        except (AttributeError, UnicodeEncodeError):
            raise Unsupported("a string value that is not Unicode characters") from None
        return _u((len(raw) << 4) | _STR), raw
    if kind == _NULL_TYPE:
        return _META_NULL, b""
    if kind == _BOOL_TYPE:
        return (_META_TRUE if value else _META_FALSE), b""
    if kind == _INT_TYPE:
        if not isinstance(value, int) or isinstance(value, bool) or not -(2**63) <= value < 2**63:
            raise Unsupported("an integer out of range")
        raw = _sleb(value)
        return _u((len(raw) << 4) | _INT), raw
    raise Unsupported(f"a value of type {kind}")


# Stretches of characters of one UTF-8 length: 1, 2, 3 and 4 bytes (the surrogates, which
# no text here holds, would take 3).
_SAME_WIDTH = re.compile("[\x00-\x7f]+|[\x80-\u07ff]+|[\u0800-\uffff]+|[\U00010000-\U0010ffff]+")


# The value metadata of one character of 1, 2, 3 or 4 bytes.
_CHAR_META = [_u((width << 4) | _STR) for width in range(5)]
_ASCII_CHAR = _CHAR_META[1]


def _char_metas(text: str) -> list[tuple[bytes, int]]:
    """Runs of (value metadata, count) of a text's characters, one operation each: a run per
    stretch of characters of one UTF-8 length, found by the regular expression engine, so
    a text costs a few steps per change of script, not per character."""
    if text.isascii():
        return [(_ASCII_CHAR, len(text))]
    runs: list[tuple[bytes, int]] = []
    for m in _SAME_WIDTH.finditer(text):
        first = m.group()[0]
        runs.append((_CHAR_META[len(first.encode("utf-8", "surrogatepass"))], m.end() - m.start()))
    return runs


# --- operations --------------------------------------------------------------------------

# An operation is a plain tuple (made once per put, read by the change and by the save; a
# class instance cost a third of recording a note), or a run of `n` characters inserted one
# after another (a text's splice is one operation whatever its length). Its first three
# fields are the document's order: a saved document lists the root map's operations, then
# each object's in the order it was made (object ids grow as they are made), a map's by key
# then id, a sequence's by id (its key is None: appended only, so element order), so the
# sorted operations are the document's operations.
_OBJ_F, _KEY_F, _ID_F = 0, 1, 2  # the object, a map key or None for an element, the op id
_ELEM_F = 3  # for an element: the element it follows (0: the head)
_ACTION_F = 4
_METAS_F = 5  # runs of (value metadata, count)
_RAW_F = 6
_N_F = 7
_PRED_F = 8  # the op it overwrites, if any (only a map's key is overwritten: n == 1)
# What it adds to the columns that read the same in a change and in the document, encoded
# once (`_rle`): object actor, object counter, insert, action and key string cells.
_CELLS_F = 9  # (object actor, object counter, insert, action): made once per object and action
_KEY_STR_F = 10


def _op(id_: int, obj: int, key: str | None, elem: int, action: int, metas: list[tuple[bytes, int]], raw: bytes,
        n: int = 1, pred: int | None = None) -> tuple:
    key_str = (_key_value(key), 1) if key is not None else (None, n)
    return (obj, key, id_, elem, action, metas, raw, n, pred, _cells(obj, key is None, action, n), key_str)


# (map, action) -> the `_cells` of a key written in it: the same in every document. Likewise
# a key's key string cell, and the value metadata of one value (an op's runs of metadata).
_MAP_CELLS: dict[tuple[int, int], tuple] = {}
_KEY_CELLS: dict[str, tuple[bytes, int]] = {}
_ONE_META: dict[bytes, tuple[tuple[bytes, int]]] = {}


def _cells(obj: int, insert: bool, action: int, n: int) -> tuple:
    """An op's object actor, object counter, insert and action cells."""
    if obj == _ROOT:
        return (None, n), (None, n), (insert, n), (_u(action), n)
    return (_U0, n), (_u(obj), n), (insert, n), (_u(action), n)


def _element_keys(ops: list[tuple]) -> tuple[list, list]:
    """The key actor and counter columns: null for a map's key; for a list or text element
    the element it follows (the first of a run follows `elem`, each other one the one
    before it: ids op id .. op id + n - 2)."""
    key_actor: list = []
    key_ctr: list = []
    nulls = 0
    key_abs = 0
    for op in ops:
        if op[_KEY_F] is not None:
            nulls += 1
            continue
        if nulls:
            key_actor.append((None, nulls))
            key_ctr.append((None, nulls))
            nulls = 0
        first = op[_ELEM_F]
        key_actor.append((None, 1) if first == 0 else (_U0, 1))
        delta = first - key_abs
        key_ctr.append(_SLEB_CELL[delta] if -_TABLE <= delta < _TABLE else (_sleb(delta), 1))
        key_abs = first
        n = op[_N_F]
        if n > 1:
            id_ = op[_ID_F]
            key_actor.append((_U0, n - 1))
            delta = id_ - key_abs
            key_ctr.append(_SLEB_CELL[delta] if -_TABLE <= delta < _TABLE else (_sleb(delta), 1))
            if n > 2:
                key_ctr.append((_S1, n - 2))
            key_abs = id_ + n - 2
    if nulls:
        key_actor.append((None, nulls))
        key_ctr.append((None, nulls))
    return key_actor, key_ctr


def _id_counters(ops: list[tuple]) -> list:
    """A document's op id column: each op's id as a delta from the last id before it (a
    run's ids follow one another)."""
    out: list = []
    last = 0
    for op in ops:
        id_ = op[_ID_F]
        delta = id_ - last
        out.append(_SLEB_CELL[delta] if -_TABLE <= delta < _TABLE else (_sleb(delta), 1))
        n = op[_N_F]
        if n > 1:
            out.append((_S1, n - 1))
            id_ += n - 1
        last = id_
    return out


def _op_columns(ops: list[tuple], total: int, succ: dict[int, int] | None = None) -> list[tuple[int, bytes]]:
    """The operation columns of a change (with pred) or, given `succ` (op id -> the op that
    overwrote it), of a document (with ids and succ); `total`: the operations they hold (a
    run of n characters is n)."""
    document = succ is not None
    if None in [op[_KEY_F] for op in ops]:
        key_actor, key_ctr = _element_keys(ops)
    else:  # map keys only: both columns null throughout, so absent
        key_actor = key_ctr = None
    if document:
        link_of = [succ.get(op[_ID_F]) for op in ops] if succ else None
    else:
        link_of = [op[_PRED_F] for op in ops]
        if link_of.count(None) == len(link_of):
            link_of = None
    links = []
    if link_of is not None:
        # Only a map's key is overwritten, so a linked op is one operation (n == 1).
        group = [(_U0, op[_N_F]) if link is None else (_U1, 1) for op, link in zip(ops, link_of)]
        link_abs = 0
        for link in link_of:
            if link is not None:
                links.append((_s(link - link_abs), 1))
                link_abs = link
    else:
        group = [(_U0, total)]
    # A document names each op's id and the ops that overwrote it; a change, the ops it
    # overwrites (its own ids follow from its first op).
    ids = [(_ID_ACTOR, _column([(_U0, total)])), (_ID_CTR, _column(_id_counters(ops)))] if document else []
    group_spec, actor_spec, ctr_spec = (
        (_SUCC_GROUP, _SUCC_ACTOR, _SUCC_CTR) if document else (_PRED_GROUP, _PRED_ACTOR, _PRED_CTR)
    )
    cells = [op[_CELLS_F] for op in ops]
    obj_actor, obj_ctr, insert, action = zip(*cells)
    cols = [
        (_OBJ_ACTOR, _column(obj_actor)),
        (_OBJ_CTR, _column(obj_ctr)),
        (_KEY_ACTOR, _column(key_actor) if key_actor is not None else b""),
        (_KEY_CTR, _column(key_ctr) if key_ctr is not None else b""),
        (_KEY_STR, _column([op[_KEY_STR_F] for op in ops])),
        *ids,
        (_INSERT, _booleans(insert)),
        (_ACTION, _column(action)),
        (_VAL_META, _rle([m for op in ops for m in op[_METAS_F]])),  # values differ note to note
        (_VAL_RAW, b"".join([op[_RAW_F] for op in ops])),
        (group_spec, _column(group)),
    ]
    if links:
        cols += [(actor_spec, _column([(_U0, len(links))])), (ctr_spec, _column(links))]
    return cols


# --- the document ------------------------------------------------------------------------


class _Change:
    __slots__ = ("seq", "start_op", "max_op", "deps", "hash")

    def __init__(self, seq: int, start_op: int, max_op: int, deps: list[int], hash_: bytes) -> None:
        self.seq, self.start_op, self.max_op, self.deps, self.hash = seq, start_op, max_op, deps, hash_


class EncodedDocument:
    """A new document, written as the binding would write it; see the module docstring."""

    def __init__(self, actor: bytes) -> None:
        self.actor = bytes(actor)
        self.ops: list[tuple] = []  # see `_op`
        self.succ: dict[int, int] = {}  # op id -> the op that overwrote it
        self.changes: list[_Change] = []
        self.next_op = 1
        # object id -> its kind; maps: key -> the op now at that key; sequences: last element
        self.kinds: dict[int, ObjType] = {_ROOT: ObjType.Map}
        self.keys: dict[int, dict[str, tuple]] = {_ROOT: {}}
        # list/text -> [its length, its last element's id (0: none)]: appended to only, so
        # that is all an append needs, however long a text is
        self.items: dict[int, list[int]] = {}

    def transaction(self) -> "_Transaction":
        return _Transaction(self)

    def get_heads(self) -> list[bytes]:
        return [self.changes[-1].hash] if self.changes else []

    # -- writing, for _Transaction --

    def _obj(self, obj: Any) -> int:
        if obj == ROOT:
            return _ROOT
        if isinstance(obj, int) and obj in self.kinds:
            return obj
        raise Unsupported("an object this document did not make")

    def _map_op(self, obj: Any, prop: Any, action: int, meta: bytes, raw: bytes) -> tuple:
        if obj.__class__ is int:
            keys = self.keys.get(obj)
        else:
            keys = self.keys.get(_ROOT) if obj == ROOT else None
            obj = _ROOT
        if keys is None or prop.__class__ is not str:
            raise Unsupported("a key of something other than a map this document made")
        current = keys.get(prop)
        if (
            current is not None and action == SET and current[_ACTION_F] == SET
            and current[_RAW_F] == raw and current[_METAS_F][0][0] == meta
        ):
            return current  # Automerge makes no operation that puts the value already there
        key_cell = _KEY_CELLS.get(prop)
        if key_cell is None:
            if not prop.isascii():
                try:
                    prop.encode("utf-8")
                except UnicodeEncodeError:
                    raise Unsupported("a key that is not Unicode characters") from None
            if len(_KEY_CELLS) >= 4_096:
                _KEY_CELLS.clear()
            key_cell = _KEY_CELLS[prop] = (_key_value(prop), 1)
        cells = _MAP_CELLS.get((obj, action))
        if cells is None:
            if len(_MAP_CELLS) >= 4_096:
                _MAP_CELLS.clear()
            cells = _MAP_CELLS[(obj, action)] = _cells(obj, False, action, 1)
        metas = _ONE_META.get(meta)
        if metas is None:
            if len(_ONE_META) >= 4_096:
                _ONE_META.clear()
            metas = _ONE_META[meta] = ((meta, 1),)
        id_ = self.next_op
        if current is None:
            op = (obj, prop, id_, 0, action, metas, raw, 1, None, cells, key_cell)
        else:
            op = (obj, prop, id_, 0, action, metas, raw, 1, current[_ID_F], cells, key_cell)
            self.succ[current[_ID_F]] = id_
        keys[prop] = op
        self.next_op = id_ + 1
        self.ops.append(op)
        return op

    def _append(self, obj: Any, index: int, action: int, metas: list, raw: bytes, n: int) -> tuple:
        target = self._obj(obj)
        items = self.items.get(target)
        if items is None or not isinstance(index, int) or index != items[0]:
            raise Unsupported("an insertion anywhere but at the end of a list or text")
        op = _op(self.next_op, target, None, items[1], action, metas, raw, n)
        items[0] += n
        items[1] = self.next_op + n - 1
        self.next_op += n
        self.ops.append(op)
        return op

    def _made(self, op: tuple, kind: ObjType) -> int:
        id_ = op[_ID_F]
        self.kinds[id_] = kind
        if kind == ObjType.Map:
            self.keys[id_] = {}
        else:
            self.items[id_] = [0, 0]
        return id_

    def _commit(self, start: int) -> None:
        ops = self.ops[start:]
        if not ops:
            return  # an empty transaction makes no change
        deps = [len(self.changes) - 1] if self.changes else []
        start_op = ops[0][_ID_F]
        _bytes, digest = _change_chunk(
            self.actor, len(self.changes) + 1, start_op, [self.changes[d].hash for d in deps], ops
        )
        self.changes.append(_Change(len(self.changes) + 1, start_op, self.next_op - 1, deps, digest))

    def next_change(self) -> NextChange:
        """Where the document's next change would start: enough for `root_puts_change` to
        write it elsewhere, once this document is saved and gone."""
        return (self.actor, len(self.changes) + 1, self.next_op, tuple(self.get_heads()), frozenset(self.keys[_ROOT]))

    # -- the saved document --

    def _document_order(self) -> list[tuple]:
        """Operations as a saved document lists them: the root map, then each object in the
        order it was made; a map's by key, then id; a sequence's in element order (see `_op`)."""
        return sorted(self.ops)

    def save(self) -> bytes:
        changes = self.changes
        ops_meta, ops_data = _columns(_compress(_op_columns(self._document_order(), self.next_op - 1, self.succ)))
        deps_index: list = []
        index_abs = 0
        for c in changes:
            for d in c.deps:
                deps_index.append((_s(d - index_abs), 1))
                index_abs = d
        seq_runs, max_runs = [], []
        prev_seq = prev_max = 0
        for c in changes:
            seq_runs.append((_s(c.seq - prev_seq), 1))
            max_runs.append((_s(c.max_op - prev_max), 1))
            prev_seq, prev_max = c.seq, c.max_op
        change_cols = [
            (_CH_ACTOR, _column([(_U0, len(changes))])),
            (_CH_SEQ, _column(seq_runs)),
            (_CH_MAX_OP, _column(max_runs)),
            (_CH_TIME, _column([(_S0, len(changes))])),
            (_CH_DEPS_GROUP, _column([(_u(len(c.deps)), 1) for c in changes])),
            (_CH_DEPS_INDEX, _column(deps_index)),
            (_CH_EXTRA_META, _column([(_u(_BYTES), len(changes))])),  # no extra bytes
        ]
        ch_meta, ch_data = _columns(_compress(change_cols))
        heads = [changes[-1].hash] if changes else []
        body = b"".join((
            _u(1), _u(len(self.actor)), self.actor,
            _u(len(heads)), *heads,
            ch_meta, ops_meta, ch_data, ops_data,
            *(_u(len(changes) - 1) for _ in heads),  # the index of each head's change
        ))
        data, _digest = _chunk(CHUNK_DOCUMENT, body)
        return data


def _change_chunk(actor: bytes, seq: int, start_op: int, deps: list[bytes], ops: list[tuple]) -> tuple[bytes, bytes]:
    """(chunk bytes, hash) of one change, laid out as the binding lays it out."""
    last = ops[-1]
    meta, data = _columns(_op_columns(ops, last[_ID_F] + last[_N_F] - start_op))  # ids consecutive
    body = b"".join((
        _u(len(deps)), *deps,
        _u(len(actor)), actor,
        _u(seq), _u(start_op), _s(0),  # seq, first op, time
        _u(0), _u(0),  # no message, no other actors
        meta, data,
    ))
    return _chunk(CHUNK_CHANGE, body)


# (actor, seq, first op, heads, root keys) of a saved document's next change: a plain tuple,
# so it travels between processes as it is.
NextChange = tuple[bytes, int, int, tuple[bytes, ...], frozenset]


def root_puts_change(after: NextChange, puts: list[tuple[str, str]]) -> tuple[bytes, bytes]:
    """(chunk bytes, hash) of the change that puts each (key, string) at the root of the
    document `after` describes, by its actor, as the binding makes it (keys new to the root,
    in the order given). Appended to that document's saved bytes it loads as the document
    with the change (a save followed by changes, as record.db stores documents).

    The importer's parent process uses it to add the signed entries it seals (the key
    stays there) to a document a worker process encoded and saved."""
    actor, seq, start_op, heads, root_keys = after
    ops: list[tuple] = []
    seen: set[str] = set()
    for i, (key, value) in enumerate(puts):
        if key.__class__ is not str or key in root_keys or key in seen:
            raise Unsupported("a put over a key the root already holds")
        seen.add(key)
        meta, raw = _scalar(_STR_TYPE, value)
        ops.append(_op(start_op + i, _ROOT, key, 0, SET, [(meta, 1)], raw))
    if not ops:
        raise Unsupported("an empty change")
    return _change_chunk(actor, seq, start_op, list(heads), ops)


# The magic bytes and the checksum: what a chunk's hash does not cover.
_HEADER_END = len(MAGIC) + 4


def refilled_change(chunk: bytes, fills: list[tuple[int, bytes]]) -> tuple[bytes, bytes]:
    """(chunk bytes, hash) of a change chunk with each (offset, bytes) written over bytes of
    the same length in its body, its checksum and hash made again. A change lays its values
    out uncompressed, so a value of known length can be laid out before it is known: the
    importer's workers lay out the signed entries with placeholders where the signatures go,
    and the process that holds the key only signs and fills them in."""
    buf = bytearray(chunk)
    for at, data in fills:
        if at < _HEADER_END or at + len(data) > len(buf):
            raise ValueError("a fill outside the change")
        buf[at:at + len(data)] = data
    digest = hashlib.sha256(memoryview(buf)[_HEADER_END:]).digest()
    buf[len(MAGIC):_HEADER_END] = digest[:4]
    return bytes(buf), digest


# Deflated columns remembered by their bytes: a saved document's large columns other than
# its values (the keys of a note's maps, above all) are mostly those of the documents before
# it, and deflating one cost as much as its values'. Cleared at `_ENCODED_MAX`.
_DEFLATED_COLUMNS: dict[bytes, bytes] = {}


def _deflate(data: bytes) -> bytes:
    return zlib.compress(data, 6, -15)  # raw deflate, as compressobj(6, DEFLATED, -15) writes it


def _compress(cols: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    out = []
    for spec, data in cols:
        if len(data) <= DEFLATE_MIN_SIZE:
            out.append((spec, data))
        elif spec == _VAL_RAW:  # a note's own values: never seen before
            out.append((spec | _DEFLATED, _deflate(data)))
        else:
            squeezed = _DEFLATED_COLUMNS.get(data)
            if squeezed is None:
                if len(_DEFLATED_COLUMNS) >= _ENCODED_MAX:
                    _DEFLATED_COLUMNS.clear()
                squeezed = _DEFLATED_COLUMNS[data] = _deflate(data)
            out.append((spec | _DEFLATED, squeezed))
    return out


class _Transaction:
    """The calls of the binding's Transaction that new record documents make."""

    def __init__(self, doc: EncodedDocument) -> None:
        self.doc = doc
        self.start = len(doc.ops)

    def __enter__(self) -> "_Transaction":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.doc._commit(self.start)
        else:
            raise Unsupported("a transaction that failed part-way") from exc

    def put(self, obj: Any, prop: Any, kind: ScalarType, value: Any) -> None:
        if value.__class__ is str and value.isascii() and kind == _STR_TYPE:  # most puts: `_scalar` inline
            size = (len(value) << 4) | _STR
            self.doc._map_op(obj, prop, SET, _ULEB[size] if size < _TABLE else _uleb(size), value.encode())
            return
        meta, raw = _scalar(kind, value)
        self.doc._map_op(obj, prop, SET, meta, raw)

    def put_object(self, obj: Any, prop: Any, kind: ObjType) -> int:
        op = self.doc._map_op(obj, prop, _make(kind), _META_NULL, b"")
        return self.doc._made(op, kind)

    def insert(self, obj: Any, index: int, kind: ScalarType, value: Any) -> None:
        if self.doc.kinds.get(obj) != ObjType.List:
            raise Unsupported("an insertion into something other than a list")
        meta, raw = _scalar(kind, value)
        self.doc._append(obj, index, SET, [(meta, 1)], raw, 1)

    def insert_object(self, obj: Any, index: int, kind: ObjType) -> int:
        if self.doc.kinds.get(obj) != ObjType.List:
            raise Unsupported("an insertion into something other than a list")
        op = self.doc._append(obj, index, _make(kind), [(_META_NULL, 1)], b"", 1)
        return self.doc._made(op, kind)

    def splice_text(self, obj: Any, index: int, delete: int, text: str) -> None:
        if self.doc.kinds.get(obj) != ObjType.Text or delete:
            raise Unsupported("a splice that deletes, or not into text")
        if not text:
            return
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError:
            raise Unsupported("text that is not Unicode characters") from None
        self.doc._append(obj, index, SET, _char_metas(text), raw, len(text))

    def get(self, obj: Any, prop: Any) -> tuple[Any, Any] | None:
        target = self.doc._obj(obj)
        op = self.doc.keys.get(target, {}).get(prop) if isinstance(prop, str) else None
        if op is None:
            if target not in self.doc.keys:
                raise Unsupported("a read of something other than a map")
            return None
        if op[_ACTION_F] != SET:
            return self.doc.kinds[op[_ID_F]], op[_ID_F]
        raise Unsupported("a read of a scalar")

    def length(self, obj: Any) -> int:
        items = self.doc.items.get(self.doc._obj(obj))
        if items is None:
            raise Unsupported("the length of something other than a list or text")
        return items[0]
