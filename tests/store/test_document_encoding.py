"""An imported note's document encoded directly (store/document_encoding.py) is the document
the Automerge binding builds: the same changes with the same hashes (a signature names its
heads; sync names changes by hash), loading as Automerge loads any document (which checks
every change's hash against the heads the document names), reading back as the same note,
and saved again by the binding byte for byte the binding's own save.

Notes come from the import format itself (`_build_note`, the importer's own checks), of every
kind a file can hold: drafts, signed notes with and without addenda, notes entered in error,
sections in any script, empty sections, absent facts."""

from __future__ import annotations

import json
import random
from datetime import date
from pathlib import Path

import pytest
from automerge.core import Document
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from call_counts import python_calls
from store import documents as D
from store.document_encoding import EncodedDocument, Unsupported
from store.importer import _build_note, build_items, read_import
from store.projections import expected_rows
from store.synthetic import make_client, make_note

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "import.json"
NOW_TEXT = "2026-11-20T12:00:00+00:00"
ACTOR = D.actor_for("device-encoding-test")
DEVICE = "device-encoding-test"


def _plan_now():
    from datetime import datetime

    return datetime.fromisoformat(NOW_TEXT)


def _model(item: dict, index: int = 0):
    stages, model = _build_note(index, json.loads(json.dumps(item)), _plan_now())
    assert model is not None and not any(stages), stages
    return model


def assert_same_document(note) -> None:
    made = D.imported_note_doc(note, ACTOR, DEVICE)
    encoded = D.imported_note_doc(note, ACTOR, DEVICE, make=EncodedDocument)
    assert [c.hash for c in made.get_changes([])] == [c.hash for c in encoded.changes]
    assert encoded.get_heads() == made.get_heads()
    saved = made.save()
    loaded = Document.load(encoded.save())
    assert loaded.get_heads() == made.get_heads()
    assert loaded.save() == saved
    assert D.note_from_doc(loaded) == D.note_from_doc(made)
    assert expected_rows(note.id, loaded, 72) == expected_rows(note.id, made, 72)


def _example_notes() -> list[dict]:
    return json.loads(EXAMPLE.read_text(encoding="utf-8"))["progress_notes"]


@pytest.mark.parametrize("index", range(len(_example_notes())))
def test_the_documented_example_notes_encode_as_the_binding_builds_them(index: int) -> None:
    assert_same_document(_model(_example_notes()[index], index))


def test_synthetic_notes_of_every_status_encode_as_the_binding_builds_them() -> None:
    rng = random.Random(5)
    signed = _example_notes()[0]
    for i in range(24):
        client = make_client(rng, i)
        note = make_note(rng, client, i, date(2026, 3, 1 + i), complete=i % 3 != 0)
        item = {
            "id": note.id, "client_id": note.client_id, "format": note.format.value,
            "sections": dict(note.sections), "facts": json.loads(note.facts.model_dump_json()),
        }
        kind = i % 4
        if kind >= 1:
            item["status"] = "signed"
            item["signature"] = dict(signed["signature"])
            item["facts"]["date_of_service"] = "2026-10-01"
        if kind == 2:
            item["addenda"] = [dict(a, id=f"addendum-{i}-{j}") for j, a in enumerate(signed["addenda"] * 2)]
        if kind == 3:
            item["status"] = "entered_in_error"
            item["entered_in_error"] = {"reason": "wrong client", "marked_at": "2026-10-09T10:00:00Z", "marked_by": "Dr. Test"}
        assert_same_document(_model(item, i))


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)


@settings(max_examples=int(__import__("os").environ.get("NOTEWELL_FUZZ_EXAMPLES", "60")), deadline=None,
          derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    subjective=TEXT, assessment=TEXT, plan=TEXT, interventions=st.lists(TEXT.filter(str.strip), max_size=4),
    status=st.sampled_from(["draft", "signed", "entered_in_error"]), addenda=st.integers(0, 3),
    phq9=st.one_of(st.none(), st.integers(0, 27)), actions=TEXT,
)
def test_generated_notes_encode_as_the_binding_builds_them(
    subjective: str, assessment: str, plan: str, interventions: list[str], status: str, addenda: int,
    phq9: int | None, actions: str,
) -> None:
    item = json.loads(json.dumps(_example_notes()[0]))
    item["sections"] = {"subjective": subjective, "objective": "", "assessment": assessment, "plan": plan}
    item["facts"]["interventions"] = interventions
    item["facts"]["risk"]["actions"] = actions
    item["facts"]["phq9"] = phq9
    item["status"] = status
    item["addenda"] = [dict(item["addenda"][0], id=f"addendum-{j}", text=subjective or "x") for j in range(addenda)]
    if status == "draft":
        item.pop("signature")
        item["addenda"] = []
    if status == "entered_in_error":
        item["entered_in_error"] = {"reason": "duplicate", "marked_at": "2026-10-09T10:00:00Z", "marked_by": "Dr. Test"}
    assert_same_document(_model(item))


def test_what_it_cannot_write_it_refuses_so_the_binding_builds_it() -> None:
    doc = EncodedDocument(ACTOR)
    with pytest.raises(Unsupported):
        with doc.transaction() as tx:
            from automerge.core import ROOT, ObjType

            text = tx.put_object(ROOT, "t", ObjType.Text)
            tx.splice_text(text, 0, 0, "abc")
            tx.splice_text(text, 1, 0, "x")  # not at the end


def test_an_import_stores_the_encoded_documents_and_they_read_as_the_notes_given() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    plan = read_import(text)
    items = [("progress_notes", i, plan.raw("progress_notes", i), None) for i in range(plan.count("progress_notes"))]
    for (section, index, raw, _s), result in zip(items, build_items(items, 72, (DEVICE, plan.now, DEVICE))):
        kind, doc_id, data, heads, view, fts, _extra = result
        doc = Document.load(data)
        assert doc.get_heads() == heads
        assert expected_rows(doc_id, doc, 72) == (kind, view, fts)


def test_a_change_put_after_a_save_is_the_change_the_binding_makes() -> None:
    """`root_puts_change`: what the importing process adds to a document a worker encoded
    and saved (its signed entries) is the binding's own change, hash for hash, and the save
    followed by it loads as the binding's document."""
    from automerge.core import ROOT, ScalarType

    from store.document_encoding import root_puts_change

    for index, item in enumerate(_example_notes()):
        note = _model(item, index)
        encoded = D.imported_note_doc(note, ACTOR, DEVICE, make=EncodedDocument)
        saved, after = encoded.save(), encoded.next_change()
        puts = [(f"signed:{index:02d}{i:02d}", json.dumps({"text": "é\u0915" * i + "plain", "i": i}))
                for i in range(1 + index % 3)]
        chunk, head = root_puts_change(after, puts)
        made = Document.load(saved)
        made.set_actor(ACTOR)
        with made.transaction() as tx:
            for key, value in puts:
                tx.put(ROOT, key, ScalarType.Str, value)
        assert made.get_heads() == [head]
        both = Document.load(saved + chunk)
        assert both.get_heads() == [head]
        assert both.save() == made.save()
        with pytest.raises(Unsupported):
            root_puts_change(after, [("type", "over a key the root holds")])


def test_a_change_laid_out_with_placeholders_and_filled_in_is_the_change_made_with_the_values() -> None:
    """`refilled_change`: values of a known length written over a change laid out with
    placeholders give the change `root_puts_change` makes with those values, hash for hash
    (what the importer's workers lay out and the process with the key fills in)."""
    from store.document_encoding import refilled_change, root_puts_change

    note = _model(_example_notes()[0], 0)
    encoded = D.imported_note_doc(note, ACTOR, DEVICE, make=EncodedDocument)
    saved, after = encoded.save(), encoded.next_change()
    values = ['{"sig":"' + "%064x" % (i * 7919) + '","text":"\u00e9क"}' for i in range(1, 4)]
    blanks = [v[:8] + "0" * 64 + v[72:] for v in values]
    laid, _ = root_puts_change(after, [(f"signed:{i}", b) for i, b in enumerate(blanks)])
    fills, start = [], 0
    for value in values:
        start = laid.index(b'{"sig":"', start)
        fills.append((start + 8, value[8:72].encode()))
        start += 1
    chunk, head = refilled_change(laid, fills)
    assert (chunk, head) == root_puts_change(after, [(f"signed:{i}", v) for i, v in enumerate(values)])
    assert Document.load(saved + chunk).get_heads() == [head]
    with pytest.raises(ValueError):
        refilled_change(laid, [(len(laid) - 2, b"abcd")])
    with pytest.raises(ValueError):
        refilled_change(laid, [(2, b"ab")])


# --- texts as runs -------------------------------------------------------------------------

# Any character a note can hold: every script, two-, three- and four-byte UTF-8, and the
# stretches of one width that the encoder groups into runs.
CHARS = st.characters(blacklist_categories=("Cs",))
PIECE = st.one_of(st.text(CHARS, max_size=40), st.sampled_from(["a", "é", "中", "\U0001f600", "\n"]))


@st.composite
def long_texts(draw) -> str:
    """Empty, short, or hundreds to thousands of characters (a column's bytes cross the
    256 above which a saved document deflates it), in runs of one width or mixed."""
    pieces = draw(st.lists(st.tuples(PIECE, st.integers(1, 120)), max_size=6))
    return "".join(piece * times for piece, times in pieces)


def _both(build) -> tuple[Document, EncodedDocument]:
    made, encoded = Document(actor_id=ACTOR), EncodedDocument(ACTOR)
    for doc in (made, encoded):
        build(doc)
    return made, encoded


def _same(made: Document, encoded: EncodedDocument) -> None:
    assert [c.hash for c in made.get_changes([])] == [c.hash for c in encoded.changes]
    loaded = Document.load(encoded.save())
    assert loaded.get_heads() == made.get_heads()
    assert loaded.save() == made.save()


@settings(max_examples=int(__import__("os").environ.get("NOTEWELL_FUZZ_EXAMPLES", "60")), deadline=None,
          derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(texts=st.lists(long_texts(), min_size=1, max_size=24), extra=st.lists(st.text(CHARS, max_size=30), max_size=3))
def test_texts_of_any_width_and_length_in_many_sections_encode_as_the_binding_builds_them(
    texts: list[str], extra: list[str]
) -> None:
    """Byte for byte the binding's changes and document, whatever the texts: multi-byte and
    astral characters, empty texts, texts long enough to be deflated, many sections, and a
    second change after them."""
    from automerge.core import ROOT, ObjType, ScalarType

    def build(doc) -> None:
        with doc.transaction() as tx:
            sections = tx.put_object(ROOT, "sections", ObjType.Map)
            for i, text in enumerate(texts):
                obj = tx.put_object(sections, f"section-{i:02d}", ObjType.Text)
                if text:
                    tx.splice_text(obj, 0, 0, text)
            tx.put(ROOT, "status", ScalarType.Str, "draft")
        with doc.transaction() as tx:
            tx.put(ROOT, "status", ScalarType.Str, "signed")
            for i, value in enumerate(extra):
                tx.put(ROOT, f"extra-{i}", ScalarType.Str, value)

    _same(*_both(build))


def _calls_while(work) -> int:
    """Python-level calls (functions and builtins) made while `work` runs."""
    return python_calls(work, builtins=True)


def test_a_texts_cost_does_not_grow_with_its_characters() -> None:
    """A splice is one run: one operation record whatever its length, and the same Python
    steps (to within a few) to record, encode and save a text of 20,000 characters as one of
    2,000 with the same stretches of script (the regular expression engine finds the stretches of one
    UTF-8 width). Counted, not timed."""
    from automerge.core import ROOT, ObjType

    def text(k: int) -> str:
        return "plain words " * k + "é" * k + "中文" * k + "\U0001f600" * k + " end"

    def encode(body: str) -> EncodedDocument:
        doc = EncodedDocument(ACTOR)
        with doc.transaction() as tx:
            obj = tx.put_object(ROOT, "body", ObjType.Text)
            tx.splice_text(obj, 0, 0, body)
            tx.splice_text(obj, tx.length(obj), 0, body)
        doc.save()
        return doc

    short, long = text(125), text(1250)
    assert len(long) > 20_000
    encode(short), encode(long)  # compiled patterns, tables of small numbers: made once
    assert len(encode(long).ops) == 3  # the text, and one record per splice
    # Equal but for a few steps: numbers of 2**14 and more (counts, lengths) are encoded by
    # a loop over their digits rather than looked up. One step per character would be 60,000.
    assert _calls_while(lambda: encode(long)) < _calls_while(lambda: encode(short)) + 100
    made = Document(actor_id=ACTOR)
    with made.transaction() as tx:
        obj = tx.put_object(ROOT, "body", ObjType.Text)
        tx.splice_text(obj, 0, 0, long)
        tx.splice_text(obj, tx.length(obj), 0, long)
    _same(made, encode(long))
