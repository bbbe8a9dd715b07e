"""The plausible-date walk (store/models.py `implausible_dates`) spells a field's path only
for a date it finds implausible, and finds exactly what the walk that spelled every visited
path found: same fields, same order, same reasons."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

import pytest
from pydantic import BaseModel

from store import models as M
from store.models import Addendum, NoteFormat, ProgressNote, SessionFacts, Signature

FAR = date(9999, 12, 31)
EARLY = datetime(1700, 1, 1, tzinfo=timezone.utc)


def _reference(model: BaseModel, prefix: str = "") -> list[tuple[str, str]]:
    """The walk as it was before paths were spelled lazily."""
    problems: list[tuple[str, str]] = []
    holders = (date, BaseModel, list, tuple)

    def visit(value: Any, where: str) -> None:
        if isinstance(value, date):
            if not M.plausible_date(value):
                problems.append((where, M.implausible_reason(value)))
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                field = getattr(value, name)
                if isinstance(field, holders):
                    visit(field, f"{where}.{name}" if where else name)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if isinstance(item, holders):
                    visit(item, f"{where}[{i}]")

    visit(model, prefix)
    return problems


def _note() -> ProgressNote:
    return ProgressNote(client_id="client-1", format=NoteFormat.SOAP, facts=SessionFacts(date_of_service=date(2026, 10, 5)))


def _addendum(i: int, at: datetime) -> Addendum:
    return Addendum.model_construct(id=f"a{i}", text="synthetic", reason="synthetic", signer="Dr. Example",
                                    credentials="LCSW", signed_at=at, device_id="d", content_hash="h")


def _cases() -> list[BaseModel]:
    good = datetime(2026, 10, 6, tzinfo=timezone.utc)
    note = _note()
    facts_far = note.facts.model_copy(update={"date_of_service": FAR})
    signature = Signature.model_construct(signer="Dr. Example", credentials="LCSW", signed_at=EARLY, device_id="d",
                                          heads=[], content_hash="h")
    return [
        note,
        note.model_copy(update={"facts": facts_far}),
        note.model_copy(update={"created_at": EARLY, "updated_at": datetime.max.replace(tzinfo=timezone.utc)}),
        note.model_copy(update={"addenda": [_addendum(0, good), _addendum(1, EARLY), _addendum(2, good), _addendum(3, EARLY)]}),
        note.model_copy(update={"signature": signature, "facts": facts_far, "addenda": [_addendum(0, EARLY)]}),
    ]


@pytest.mark.parametrize("prefix", ["", "note"])
def test_the_walk_finds_what_the_spelled_walk_found(prefix):
    for model in _cases():
        assert M.implausible_dates(model, prefix) == _reference(model, prefix)
    assert M.implausible_dates(FAR, "x") == _reference(FAR, "x") != []  # a date alone, too
    assert any(len(M.implausible_dates(m)) >= 2 for m in _cases())


def test_a_path_is_spelled_only_for_a_date_found_implausible(monkeypatch):
    spelled = []
    real = M._spell

    def counting(prefix, where):
        spelled.append(where)
        return real(prefix, where)

    monkeypatch.setattr(M, "_spell", counting)
    for model in _cases():
        spelled.clear()
        found = M.implausible_dates(model)
        assert len(spelled) == len(found)
