"""The document budget's header reader (store/document_budget.py `_Reader`) reads a
one-byte number (most column specifications, lengths and counts) inline, and reads every
number as the general LEB128 reader does: same value, same position after it, and unreadable
exactly where that reader says so (past the end of its span included)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from store import document_budget as B


def _general(data: bytes, pos: int, end: int):
    """What `_Reader.uleb` answered before it read one-byte numbers inline."""
    r = B._Reader(data, pos, end)
    try:
        return r._number(B._uleb), r.pos
    except B._Unreadable:
        return "unreadable"


def _inline(data: bytes, pos: int, end: int):
    r = B._Reader(data, pos, end)
    try:
        return r.uleb(), r.pos
    except B._Unreadable:
        return "unreadable"


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=24), st.integers(0, 30), st.integers(0, 30))
def test_every_number_reads_as_the_general_reader_reads_it(data, pos, end):
    end = min(end, len(data))
    assert _inline(data, pos, end) == _general(data, pos, end)


def test_a_one_byte_number_is_read_without_the_general_reader(monkeypatch):
    calls = []
    real = B._Reader._number

    def counting(self, read):
        calls.append(read)
        return real(self, read)

    monkeypatch.setattr(B._Reader, "_number", counting)
    r = B._Reader(bytes([5, 0x7F, 0x85, 0x01]))
    assert (r.uleb(), r.uleb()) == (5, 127)
    assert calls == []
    assert r.uleb() == 133 and len(calls) == 1  # a longer one still goes the general way
    assert r.done()


def _saved_document() -> bytes:
    from automerge.core import ROOT, Document, ObjType, ScalarType

    doc = Document()
    for i in range(3):
        with doc.transaction() as tx:
            tx.put(ROOT, f"field{i}", ScalarType.Str, "value")
            text = tx.put_object(ROOT, f"text{i}", ObjType.Text)
            tx.splice_text(text, 0, 0, "synthetic words " * 20)
    return doc.save()


def test_each_column_is_one_slice_of_the_chunk(monkeypatch):
    """A column's bytes are sliced from its chunk once (`take_bytes`), not taken as a view
    and copied again; the header's other parts are read as before."""
    data = _saved_document()
    expected = B.measure(data)
    columns, views = [], []
    real_rows, real_take = B._column_rows, B._Reader.take

    def rows(col, *args):
        columns.append(type(col))
        return real_rows(col, *args)

    def take(self, n):
        views.append(n)
        return real_take(self, n)

    monkeypatch.setattr(B, "_column_rows", rows)
    monkeypatch.setattr(B._Reader, "take", take)
    assert B.measure(data) == expected
    assert len(columns) >= 10 and set(columns) == {bytes}
    assert len(views) < len(columns)  # magic, checksum, kind, body, actors, heads: not one per column
