"""The Python work of writing an imported note's document (store/document_encoding.py),
counted, not timed: an import of 100,000 notes records, encodes and saves 100,000 of them,
and each Python call in that path is paid on every note. The bytes are held to the binding's
by tests/store/test_document_encoding.py; these tests hold the cost."""

from __future__ import annotations

import random
from datetime import date

import store.document_encoding as E
from call_counts import python_calls
from store import documents as D
from store.synthetic import make_client, make_note

ACTOR = D.actor_for("device-encoding-work")


def _notes(count: int = 12) -> list:
    rng = random.Random(3)
    return [make_note(rng, make_client(rng, i), i, date(2026, 3, 1 + i)) for i in range(count)]


def _encoder_calls(work) -> int:
    """Python functions of store/document_encoding.py called while `work` runs."""
    return python_calls(work, in_file=E.__file__)


def test_a_notes_document_is_recorded_encoded_and_saved_in_few_calls_an_operation() -> None:
    """Per map key the binding's `put` is one call here and `_map_op` another: no object is
    made for an operation (a plain tuple), no call for a small number (looked up in a table),
    and the saved document's order is the operations sorted. Before: 625 calls a note of
    these, about 13 an operation; now about 275."""
    notes = _notes()
    for note in notes[:3]:  # the tables of keys and cells every document shares, filled
        D.new_note_doc(note, ACTOR, make=E.EncodedDocument).save()
    ops = sum(len(D.new_note_doc(n, ACTOR, make=E.EncodedDocument).ops) for n in notes)

    def build() -> None:
        for note in notes:
            D.new_note_doc(note, ACTOR, make=E.EncodedDocument).save()

    calls = _encoder_calls(build)
    assert calls < 320 * len(notes), calls / len(notes)
    assert calls < 7 * ops, calls / ops


def test_a_large_column_seen_before_is_not_deflated_again(monkeypatch) -> None:
    """A saved document deflates each column over 256 bytes. Its values are its own, but its
    map keys are mostly those of the notes before it: their deflated bytes are remembered, so
    a note of a shape seen before deflates only its values (before: every large column of
    every note, two a note here)."""
    import zlib

    deflated: list[int] = []

    class CountingZlib:
        DEFLATED = zlib.DEFLATED

        @staticmethod
        def compress(data, *args):
            deflated.append(len(data))
            return zlib.compress(data, *args)

        @staticmethod
        def compressobj(*args):
            deflated.append(-1)
            return zlib.compressobj(*args)

    notes = _notes()
    D.new_note_doc(notes[0], ACTOR, make=E.EncodedDocument).save()  # its shape, seen once
    monkeypatch.setattr(E, "zlib", CountingZlib)
    saved = [D.new_note_doc(notes[0], ACTOR, make=E.EncodedDocument).save() for _ in range(6)]
    assert len(deflated) == 6  # the values' column alone, once a note
    assert len(set(saved)) == 1
    monkeypatch.undo()
    assert saved[0] == D.new_note_doc(notes[0], ACTOR, make=E.EncodedDocument).save()


def test_the_cells_of_a_delta_column_are_made_once_and_compared_by_identity() -> None:
    """A saved document's id column and a sequence's element column hold one cell per
    operation; the table of encoded columns compares each column with the one it remembers
    cell by cell, which for cells made once (one per small delta) is a check of identity, not
    of their bytes (before: a new tuple for every cell of every note)."""
    note = _notes(1)[0]
    first, second = (D.new_note_doc(note, ACTOR, make=E.EncodedDocument) for _ in range(2))
    ids_a = E._id_counters(first._document_order())
    ids_b = E._id_counters(second._document_order())
    assert ids_a == ids_b
    assert all(a is b for a, b in zip(ids_a, ids_b) if a[1] == 1)  # a run's other ids: one cell
    keys_a = E._element_keys(first.ops)[1]
    keys_b = E._element_keys(second.ops)[1]
    assert all(a is b for a, b in zip(keys_a, keys_b) if a[0] is not None and a[1] == 1)
