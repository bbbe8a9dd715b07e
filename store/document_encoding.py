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
import zlib
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


# Small values are most of what columns hold.
_ULEB = [_uleb(i) for i in range(128)]
_SLEB = {i: _sleb(i) for i in range(-64, 64)}


def _u(n: int) -> bytes:
    return _ULEB[n] if 0 <= n < 128 else _uleb(n)


def _s(n: int) -> bytes:
    got = _SLEB.get(n)
    return got if got is not None else _sleb(n)


def _str_value(s: str) -> bytes:
    raw = s.encode("utf-8")
    return _u(len(raw)) + raw


def _rle(runs: list, value_bytes) -> bytes:
    """Runs of (value or None, count) in Automerge's run-length encoding, making exactly the
    choices Automerge's encoder makes (a change's bytes are hashed, so they must match): a
    value repeated is one run, values that differ from their neighbours one literal run, a
    stretch of nulls one null run, and a column of nulls alone nothing at all."""
    merged: list[list] = []
    for value, n in runs:
        if n <= 0:
            continue
        if merged and merged[-1][0] == value and (value is None) == (merged[-1][0] is None):
            merged[-1][1] += n
        else:
            merged.append([value, n])
    if len(merged) == 1 and merged[0][0] is None:
        return b""
    out: list[bytes] = []
    lits: list = []
    for value, n in merged:
        if n == 1 and value is not None:
            lits.append(value)
            continue
        if lits:
            out.append(_s(-len(lits)))
            out.extend(map(value_bytes, lits))
            lits = []
        if value is None:
            out.append(b"\x00" + _u(n))
        else:
            out.append(_s(n) + value_bytes(value))
    if lits:
        out.append(_s(-len(lits)))
        out.extend(map(value_bytes, lits))
    return b"".join(out)


# Notes of one shape have many columns alike (which objects, actions, keys; even the lengths
# of a change's texts repeat): each column's encoding is remembered, in a table cleared when
# it holds 4,000 (about 10 MB in each process; 20,000 took 45 MB and saved no more time).
_ENCODED: dict[tuple, bytes] = {}
_ENCODED_MAX = 4_000


def _cached(runs: list, kind: int, value_bytes) -> bytes:
    key = (kind, *runs)
    got = _ENCODED.get(key)
    if got is None:
        if len(_ENCODED) >= _ENCODED_MAX:
            _ENCODED.clear()
        got = _ENCODED[key] = _rle(runs, value_bytes)
    return got


def _rle_u(runs: list) -> bytes:
    return _cached(runs, 0, _u)


def _rle_s(runs: list) -> bytes:
    return _cached(runs, 1, _s)


def _rle_str(runs: list) -> bytes:
    return _cached(runs, 2, _str_value)


def _booleans(runs: list) -> bytes:
    """Alternating counts, starting with false."""
    out = []
    current, count = False, 0
    for value, n in runs:
        if value == current:
            count += n
        else:
            out.append(_u(count))
            current, count = value, n
    if count:
        out.append(_u(count))
    return b"".join(out)


def _columns(cols: list[tuple[int, bytes]]) -> tuple[bytes, bytes]:
    """(metadata, data) of the non-empty columns, in the order given (by specification)."""
    present = [(spec, data) for spec, data in cols if data]
    meta = _u(len(present)) + b"".join(_u(spec) + _u(len(data)) for spec, data in present)
    return meta, b"".join(data for _spec, data in present)


def _chunk(kind: int, body: bytes) -> tuple[bytes, bytes]:
    """(chunk bytes, hash): the hash is sha256 of the type, length and body; its first four
    bytes are the chunk's checksum."""
    head = bytes((kind,)) + _u(len(body))
    digest = hashlib.sha256(head + body).digest()
    return MAGIC + digest[:4] + head + body, digest


# --- values ------------------------------------------------------------------------------


# The binding's enum members, looked up once (each lookup makes a new object).
_STR_TYPE, _NULL_TYPE, _BOOL_TYPE, _INT_TYPE = ScalarType.Str, ScalarType.Null, ScalarType.Boolean, ScalarType.Int


def _scalar(kind: ScalarType, value: Any) -> tuple[int, bytes]:
    """(value metadata, raw bytes) of a scalar."""
    if kind == _STR_TYPE:
        if value.__class__ is str and value.isascii():
            return (len(value) << 4) | _STR, value.encode()
        try:
            raw = value.encode("utf-8")
        except (AttributeError, UnicodeEncodeError):
            raise Unsupported("a string value that is not Unicode characters") from None
        return (len(raw) << 4) | _STR, raw
    if kind == _NULL_TYPE:
        return _NULL, b""
    if kind == _BOOL_TYPE:
        return (_TRUE if value else _FALSE), b""
    if kind == _INT_TYPE:
        if not isinstance(value, int) or isinstance(value, bool) or not -(2**63) <= value < 2**63:
            raise Unsupported("an integer out of range")
        raw = _sleb(value)
        return (len(raw) << 4) | _INT, raw
    raise Unsupported(f"a value of type {kind}")


def _char_metas(text: str) -> list[tuple[int, int]]:
    """Runs of (value metadata, count) of a text's characters, one operation each."""
    if text.isascii():
        return [((1 << 4) | _STR, len(text))]
    runs: list[list[int]] = []
    for ch in text:
        meta = (len(ch.encode("utf-8", "surrogatepass")) << 4) | _STR
        if runs and runs[-1][0] == meta:
            runs[-1][1] += 1
        else:
            runs.append([meta, 1])
    return [(m, n) for m, n in runs]


# --- operations --------------------------------------------------------------------------


class _Op:
    """One operation, or a run of `n` characters inserted one after another (text)."""

    __slots__ = ("id", "obj", "key", "elem", "insert", "action", "metas", "raw", "n", "pred", "succ",
                 "obj_actor", "obj_ctr", "insert_cell", "action_cell")

    def __init__(self, id_: int, obj: int, key: str | None, elem: int, insert: bool, action: int,
                 metas: list[tuple[int, int]], raw: bytes, n: int = 1, pred: int | None = None) -> None:
        self.id = id_
        self.obj = obj
        self.key = key  # a map key, or None for a list element
        self.elem = elem  # for a list element: the element it follows (0: the head)
        self.insert = insert
        self.action = action
        self.metas = metas
        self.raw = raw
        self.n = n
        self.pred = pred  # the op it overwrites, if any
        self.succ: int | None = None
        # What it adds to the columns that read the same in a change and in the document.
        self.obj_actor = (None, n) if obj == _ROOT else (0, n)
        self.obj_ctr = (None, n) if obj == _ROOT else (obj, n)
        self.insert_cell = (insert, n)
        self.action_cell = (action, n)


def _op_columns(ops: list[_Op], *, document: bool) -> list[tuple[int, bytes]]:
    """The operation columns of a change (with pred) or of a document (with ids and succ)."""
    key_actor: list = []
    key_ctr: list = []
    key_str: list = []
    id_ctr: list = []
    metas: list = []
    group: list = []
    links: list = []  # pred or succ counters
    key_abs = 0
    id_abs = 0
    link_abs = 0
    null_one = (None, 1)
    for op in ops:
        n = op.n
        metas += op.metas
        if op.key is not None:
            key_actor.append(null_one)
            key_ctr.append(null_one)
            key_str.append((op.key, 1))
        else:
            key_str.append((None, n))
            first = op.elem
            key_actor.append(null_one if first == 0 else (0, 1))
            key_ctr.append((first - key_abs, 1))
            key_abs = first
            if n > 1:
                key_actor.append((0, n - 1))
                # Each character follows the one before it: ids op.id .. op.id + n - 2.
                key_ctr.append((op.id - key_abs, 1))
                key_ctr.append((1, n - 2))
                key_abs = op.id + n - 2
        if document:
            id_ctr.append((op.id - id_abs, 1))
            if n > 1:
                id_ctr.append((1, n - 1))
            id_abs = op.id + n - 1
        link = op.succ if document else op.pred
        if link is None:
            group.append((0, n))
        else:
            group.append((1, 1))
            if n > 1:
                group.append((0, n - 1))
            links.append((link - link_abs, 1))
            link_abs = link
    obj_actor = [op.obj_actor for op in ops]
    obj_ctr = [op.obj_ctr for op in ops]
    insert = [op.insert_cell for op in ops]
    action = [op.action_cell for op in ops]
    raws = [op.raw for op in ops]
    # A document names each op's id and the ops that overwrote it; a change, the ops it
    # overwrites (its own ids follow from its first op).
    ids = [(_ID_ACTOR, _rle_u([(0, sum(op.n for op in ops))])), (_ID_CTR, _rle_s(id_ctr))] if document else []
    group_spec, actor_spec, ctr_spec = (
        (_SUCC_GROUP, _SUCC_ACTOR, _SUCC_CTR) if document else (_PRED_GROUP, _PRED_ACTOR, _PRED_CTR)
    )
    cols = [
        (_OBJ_ACTOR, _rle_u(obj_actor)),
        (_OBJ_CTR, _rle_u(obj_ctr)),
        (_KEY_ACTOR, _rle_u(key_actor)),
        (_KEY_CTR, _rle_s(key_ctr)),
        (_KEY_STR, _rle_str(key_str)),
        *ids,
        (_INSERT, _booleans(insert)),
        (_ACTION, _rle_u(action)),
        (_VAL_META, _rle_u(metas)),
        (_VAL_RAW, b"".join(raws)),
        (group_spec, _rle_u(group)),
    ]
    if links:
        cols += [(actor_spec, _rle_u([(0, len(links))])), (ctr_spec, _rle_s(links))]
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
        self.ops: list[_Op] = []
        self.changes: list[_Change] = []
        self.next_op = 1
        # object id -> its kind; maps: key -> the op now at that key; sequences: last element
        self.kinds: dict[int, ObjType] = {_ROOT: ObjType.Map}
        self.keys: dict[int, dict[str, _Op]] = {_ROOT: {}}
        self.items: dict[int, list[int]] = {}  # list/text -> element ids in order

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

    def _map_op(self, obj: Any, prop: Any, action: int, meta: int, raw: bytes) -> _Op:
        keys = self.keys.get(_ROOT if obj == ROOT else obj) if obj.__class__ is not bool else None
        if keys is None or prop.__class__ is not str:
            raise Unsupported("a key of something other than a map this document made")
        current = keys.get(prop)
        if (
            current is not None and action == SET and current.action == SET
            and current.raw == raw and current.metas[0][0] == meta
        ):
            return current  # Automerge makes no operation that puts the value already there
        if not prop.isascii():
            try:
                prop.encode("utf-8")
            except UnicodeEncodeError:
                raise Unsupported("a key that is not Unicode characters") from None
        op = _Op(self.next_op, _ROOT if obj == ROOT else obj, prop, 0, False, action, [(meta, 1)], raw,
                 pred=current.id if current is not None else None)
        if current is not None:
            current.succ = op.id
        keys[prop] = op
        self.next_op += 1
        self.ops.append(op)
        return op

    def _append(self, obj: Any, index: int, action: int, metas: list, raw: bytes, n: int) -> _Op:
        target = self._obj(obj)
        items = self.items.get(target)
        if items is None or not isinstance(index, int) or index != len(items):
            raise Unsupported("an insertion anywhere but at the end of a list or text")
        op = _Op(self.next_op, target, None, items[-1] if items else 0, True, action, metas, raw, n=n)
        items.extend(range(op.id, op.id + n))
        self.next_op += n
        self.ops.append(op)
        return op

    def _made(self, op: _Op, kind: ObjType) -> int:
        self.kinds[op.id] = kind
        if kind == ObjType.Map:
            self.keys[op.id] = {}
        else:
            self.items[op.id] = []
        return op.id

    def _commit(self, start: int) -> None:
        ops = self.ops[start:]
        if not ops:
            return  # an empty transaction makes no change
        deps = [len(self.changes) - 1] if self.changes else []
        start_op = ops[0].id
        _bytes, digest = _change_chunk(
            self.actor, len(self.changes) + 1, start_op, [self.changes[d].hash for d in deps], ops
        )
        self.changes.append(_Change(len(self.changes) + 1, start_op, self.next_op - 1, deps, digest))

    def next_change(self) -> NextChange:
        """Where the document's next change would start: enough for `root_puts_change` to
        write it elsewhere, once this document is saved and gone."""
        return (self.actor, len(self.changes) + 1, self.next_op, tuple(self.get_heads()), frozenset(self.keys[_ROOT]))

    # -- the saved document --

    def _document_order(self) -> list[_Op]:
        """Operations as a saved document lists them: the root map, then each object in the
        order it was made; a map's by key, then id; a sequence's in element order."""
        by_obj: dict[int, list[_Op]] = {}
        for op in self.ops:
            by_obj.setdefault(op.obj, []).append(op)
        out: list[_Op] = []
        for obj in sorted(by_obj):
            ops = by_obj[obj]
            if self.kinds[obj] == ObjType.Map:
                ops.sort(key=lambda o: (o.key, o.id))
            out.extend(ops)  # sequences: appended only, so already in element order
        return out

    def save(self) -> bytes:
        changes = self.changes
        ops_meta, ops_data = _columns(_compress(_op_columns(self._document_order(), document=True)))
        deps_index: list = []
        index_abs = 0
        for c in changes:
            for d in c.deps:
                deps_index.append((d - index_abs, 1))
                index_abs = d
        seq_runs, max_runs = [], []
        prev_seq = prev_max = 0
        for c in changes:
            seq_runs.append((c.seq - prev_seq, 1))
            max_runs.append((c.max_op - prev_max, 1))
            prev_seq, prev_max = c.seq, c.max_op
        change_cols = [
            (_CH_ACTOR, _rle_u([(0, len(changes))])),
            (_CH_SEQ, _rle_s(seq_runs)),
            (_CH_MAX_OP, _rle_s(max_runs)),
            (_CH_TIME, _rle_s([(0, len(changes))])),
            (_CH_DEPS_GROUP, _rle_u([(len(c.deps), 1) for c in changes])),
            (_CH_DEPS_INDEX, _rle_s(deps_index)),
            (_CH_EXTRA_META, _rle_u([(_BYTES, len(changes))])),  # no extra bytes
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


def _change_chunk(actor: bytes, seq: int, start_op: int, deps: list[bytes], ops: list[_Op]) -> tuple[bytes, bytes]:
    """(chunk bytes, hash) of one change, laid out as the binding lays it out."""
    meta, data = _columns(_op_columns(ops, document=False))
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
    ops: list[_Op] = []
    seen: set[str] = set()
    for i, (key, value) in enumerate(puts):
        if key.__class__ is not str or key in root_keys or key in seen:
            raise Unsupported("a put over a key the root already holds")
        seen.add(key)
        meta, raw = _scalar(_STR_TYPE, value)
        ops.append(_Op(start_op + i, _ROOT, key, 0, False, SET, [(meta, 1)], raw))
    if not ops:
        raise Unsupported("an empty change")
    return _change_chunk(actor, seq, start_op, list(heads), ops)


def _compress(cols: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    out = []
    for spec, data in cols:
        if len(data) > DEFLATE_MIN_SIZE:
            squeezer = zlib.compressobj(6, zlib.DEFLATED, -15)
            out.append((spec | _DEFLATED, squeezer.compress(data) + squeezer.flush()))
        else:
            out.append((spec, data))
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
        meta, raw = _scalar(kind, value)
        self.doc._map_op(obj, prop, SET, meta, raw)

    def put_object(self, obj: Any, prop: Any, kind: ObjType) -> int:
        op = self.doc._map_op(obj, prop, _make(kind), _NULL, b"")
        return self.doc._made(op, kind)

    def insert(self, obj: Any, index: int, kind: ScalarType, value: Any) -> None:
        if self.doc.kinds.get(obj) != ObjType.List:
            raise Unsupported("an insertion into something other than a list")
        meta, raw = _scalar(kind, value)
        self.doc._append(obj, index, SET, [(meta, 1)], raw, 1)

    def insert_object(self, obj: Any, index: int, kind: ObjType) -> int:
        if self.doc.kinds.get(obj) != ObjType.List:
            raise Unsupported("an insertion into something other than a list")
        op = self.doc._append(obj, index, _make(kind), [(_NULL, 1)], b"", 1)
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
        if op.action != SET:
            return self.doc.kinds[op.id], op.id
        raise Unsupported("a read of a scalar")

    def length(self, obj: Any) -> int:
        items = self.doc.items.get(self.doc._obj(obj))
        if items is None:
            raise Unsupported("the length of something other than a list or text")
        return len(items)
