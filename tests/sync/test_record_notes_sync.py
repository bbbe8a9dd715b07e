"""Intake, review and discharge notes travel between two real vaults through the mailbox and
merge like progress notes: concurrent typing in one discharge summary keeps both devices'
text; a discharge signed on one device and a new intake started on the other settle the
same way on both; a review signed elsewhere moves the next review date here."""

from __future__ import annotations

import sys
from datetime import date, datetime
from pathlib import Path

import pytest

from store.models import NoteFormat
from store.plan_reviews import plan_reviews_due
from tests.sync.test_mailbox import Device

sys.path.insert(0, str(Path(__file__).parents[1] / "store"))
from test_record_notes import discharge, intake, plan_client, review  # noqa: E402


@pytest.fixture
def pair(tmp_path):
    a, b = Device(tmp_path / "laptop-a", "laptop-a"), Device(tmp_path / "desktop-b", "desktop-b")
    a.pair(b)
    for d in (a, b):
        d.vault.update_settings(clinician_name="Dana Testwell", credentials="LCSW")
    yield a, b
    a.close()
    b.close()


def _exchange(a: Device, b: Device, box: Path) -> None:
    a.mailbox(box)
    b.mailbox(box)
    a.mailbox(box)


def test_record_notes_sync_and_merge_like_progress_notes(pair, tmp_path):
    a, b = pair
    box = tmp_path / "mailbox"
    box.mkdir()
    a.record.create_client(plan_client(plan_start=date(2026, 1, 1)))
    a.record.create_note(intake())
    a.record.sign_note("i1")
    draft = discharge()
    a.record.create_note(draft.model_copy(update={"sections": {**draft.sections, "course_of_treatment": "Twelve sessions."}}))
    _exchange(a, b, box)
    assert b.record.get_note("i1").format == NoteFormat.INTAKE
    assert b.record.signature_state("i1").status.value == "verified"

    # Both devices type into the same discharge summary before they next meet.
    a.record.set_section("d1", "course_of_treatment", "Twelve sessions of CBT.")
    b.record.set_section("d1", "course_of_treatment", "In all: Twelve sessions.")
    _exchange(a, b, box)
    merged = a.record.get_note("d1").sections["course_of_treatment"]
    assert merged == b.record.get_note("d1").sections["course_of_treatment"] == "In all: Twelve sessions of CBT."

    # Signed on one device: the client is discharged on both.
    a.record.sign_note("d1")
    _exchange(a, b, box)
    assert a.record.discharged_clients() == b.record.discharged_clients() == {"c1": date(2026, 6, 1)}

    # A new intake started on the other device brings the client back everywhere.
    b.record.create_note(intake("i2", on=date(2026, 9, 1)))
    _exchange(a, b, box)
    assert a.record.discharged_clients() == b.record.discharged_clients() == {}
    assert a.heads() == b.heads()


def test_a_review_signed_on_one_device_moves_the_next_review_on_the_other(pair, tmp_path):
    a, b = pair
    box = tmp_path / "mailbox"
    box.mkdir()
    a.record.create_client(plan_client(plan_start=date(2026, 1, 1)))
    _exchange(a, b, box)
    at = datetime(2026, 4, 2)
    assert [r.due_on for r in plan_reviews_due(a.record, at)] == [date(2026, 4, 1)]
    b.record.create_note(review(on=date(2026, 3, 30)))
    b.record.sign_note("r1")
    # Meanwhile the interval is changed on the first device: both edits stand after the merge.
    a.record.update_client(a.record.get_client("c1").model_copy(update={"review_interval_days": 60}))
    _exchange(a, b, box)
    for d in (a, b):
        assert d.record.get_client("c1").review_interval_days == 60
        assert plan_reviews_due(d.record, at) == []
        assert [r.due_on for r in plan_reviews_due(d.record, datetime(2026, 5, 29))] == [date(2026, 5, 29)]
