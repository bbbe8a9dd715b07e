"""Small pure pieces of the app: time parsing, passphrase hint, timeline labels, snippets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time

import pytest

from store.models import NoteStatus
from tui.screens.search import snippet_text
from tui.screens.setup import strength_hint
from tui.widgets.facts_form import parse_time
from tui.widgets.timeline import status_labels


@pytest.mark.parametrize("text, expected", [("10:00", time(10)), ("9:05", time(9, 5)), ("1050", time(10, 50)),
                                            ("10.30", time(10, 30)), ("", None)])
def test_parse_time(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["10", "10:5", "25:00", "ten"])
def test_parse_time_refuses(text):
    with pytest.raises(ValueError):
        parse_time(text)


def test_strength_hint():
    assert strength_hint("abc")[1] is False
    assert strength_hint("correct horse battery staple")[0] == "Strong."


@dataclass
class Row:
    status: NoteStatus
    late_entry: bool = False
    signature_conflict: bool = False


def test_status_labels():
    assert status_labels(Row(NoteStatus.DRAFT)) == ["draft"]
    assert status_labels(Row(NoteStatus.SIGNED, late_entry=True)) == ["signed", "late entry"]
    assert status_labels(Row(NoteStatus.SIGNED, signature_conflict=True)) == ["signature conflict"]
    assert status_labels(Row(NoteStatus.ENTERED_IN_ERROR)) == ["entered in error"]


def test_snippet_marks_matches_without_markup():
    text = snippet_text("... felt [tangerine] and [bold] ...")
    assert text.plain == "... felt tangerine and bold ..."
    assert len(text.spans) == 2
