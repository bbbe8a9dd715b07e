"""An imported note is checked once, fully, by the file's models (store/importer.py, the
file model): its store model is then made from what they checked, not checked a second time
(a second check cost about a tenth of building a note). Counted, not timed: each model's
validation runs its `_plausible_dates` validator exactly once (store/models.py)."""

from __future__ import annotations

import copy
import json
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

from store import importer
from store.importer import build_items, parse_import
from store.models import Addendum, EnteredInError, ProgressNote, Signature

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "import.json"
NOW = datetime(2026, 11, 27, tzinfo=timezone.utc)
DEVICE = "d" * 32


def _example_with_every_kind_of_note() -> dict:
    data = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    notes = data["progress_notes"]
    signed = next(n for n in notes if n.get("status") == "signed" and n.get("addenda"))
    marked = copy.deepcopy(signed)
    marked["id"] = "markedinerror0001"
    for k, a in enumerate(marked["addenda"]):
        a["id"] = f"markedaddendum{k:04d}"
    marked["status"] = "entered_in_error"
    marked["entered_in_error"] = {"reason": "Wrong client chosen", "marked_by": signed["signature"]["signer"],
                                  "marked_at": signed["signature"]["signed_at"]}
    notes.append(marked)
    return data


def _validations(items: list[tuple]) -> tuple[Counter, list[tuple]]:
    """Model validations (by class name) while `items` are built, and what they built."""
    seen: Counter = Counter()
    hook = importer.PlausibleDates._plausible_dates.__code__

    def profile(frame, event, arg):
        if event == "call" and frame.f_code is hook:
            seen[type(frame.f_locals["self"]).__name__] += 1

    sys.setprofile(profile)
    try:
        out = build_items(items, 48, (DEVICE, NOW, DEVICE))
    finally:
        sys.setprofile(None)
    return seen, out


def test_each_imported_note_is_validated_once_by_the_file_model_and_not_again():
    plan = parse_import(json.dumps(_example_with_every_kind_of_note()).encode(), now=NOW)
    n = plan.count("progress_notes")
    items = [("progress_notes", i, plan.raw("progress_notes", i), None) for i in range(n)]
    seen, out = _validations(items)
    assert all(r[0] != "bad" for r in out)
    assert seen["FileProgressNote"] == n
    # The file model checked every field the store model holds; nothing is checked twice.
    for store_model in (ProgressNote, Signature, Addendum, EnteredInError):
        assert seen[store_model.__name__] == 0, store_model.__name__


def test_the_store_model_made_without_a_second_check_is_the_one_a_check_makes():
    """What the file model's note becomes is what validating it as a store model makes,
    field for field (ids, filled-in sections, times in UTC, signature, addenda, mark)."""
    plan = parse_import(json.dumps(_example_with_every_kind_of_note()).encode(), now=NOW)
    for i in range(plan.count("progress_notes")):
        fn = importer.FileProgressNote.model_validate(importer._DECODER.decode(plan.raw("progress_notes", i)))
        made = importer._note(fn)
        checked = ProgressNote.model_validate(made.model_dump())
        assert made.model_dump() == checked.model_dump()
        assert list(made.sections) == list(checked.sections)
        if fn.created_at is not None:
            assert made.created_at == fn.created_at and made.created_at.tzinfo == timezone.utc


# The rules the store's note models check, each also checked by the file's models
# (FileProgressNote and the models it holds). The import makes store models without checking
# them again, so a rule added to a store model must be added to the file's too: this list
# fails until it has been.
_STORE_RULES = {
    "ProgressNote": ({"_fill_sections", "_sections_match_format", "_plausible_dates"}, set()),
    "Signature": ({"_plausible_dates"}, set()),
    "Addendum": ({"_plausible_dates"}, {"text", "reason"}),
    "EnteredInError": ({"_plausible_dates"}, {"reason"}),
}


@pytest.mark.parametrize("model", [ProgressNote, Signature, Addendum, EnteredInError])
def test_the_store_note_models_check_nothing_the_file_models_do_not(model):
    validators, constrained = _STORE_RULES[model.__name__]
    decorators = model.__pydantic_decorators__
    names = set()
    for kind in ("validators", "field_validators", "root_validators", "model_validators"):
        names |= set(getattr(decorators, kind))
    assert names == validators
    assert {name for name, f in model.model_fields.items() if f.metadata} == constrained


def test_a_clients_plan_is_made_once_for_all_its_signed_notes_across_rounds(monkeypatch):
    """The compliance check of a signed note reads its client's plan. In a file whose notes
    take their clients in turn, each round of building meets a client once: a plan made per
    round was made again for nearly every signed note, at about the cost of the rest of its
    check (pydantic filling in default factories)."""
    plan = parse_import(json.dumps(_example_with_every_kind_of_note()).encode(), now=NOW)
    signed = [i for i in range(plan.count("progress_notes"))
              if json.loads(plan.raw("progress_notes", i)).get("status") == "signed"]
    assert signed
    client_of = {c["id"]: c for c in json.loads(EXAMPLE.read_text(encoding="utf-8"))["clients"]}
    made: Counter = Counter()
    construct = importer.Client.model_construct.__func__

    def counted(cls, *args, **kwargs):
        made[kwargs.get("id")] += 1
        return construct(cls, *args, **kwargs)

    monkeypatch.setattr(importer.Client, "model_construct", classmethod(counted))
    monkeypatch.setattr(importer, "_PLANS", {}, raising=False)
    summaries = {}
    for cid, raw in client_of.items():
        summaries[cid] = importer._summary(importer.Client.model_validate(
            {k: v for k, v in raw.items() if k in importer.Client.model_fields}))
    made.clear()
    rounds = 3
    for _ in range(rounds):  # the same notes in three rounds, as three chunks of a file would be
        items = [("progress_notes", i, plan.raw("progress_notes", i),
                  summaries[json.loads(plan.raw("progress_notes", i))["client_id"]]) for i in signed]
        out = build_items(items, 48, (DEVICE, NOW, DEVICE))
        assert all(r[0] != "bad" for r in out)
    clients = {json.loads(plan.raw("progress_notes", i))["client_id"] for i in signed}
    assert made == Counter({cid: 1 for cid in clients})
