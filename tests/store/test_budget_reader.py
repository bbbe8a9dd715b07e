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
