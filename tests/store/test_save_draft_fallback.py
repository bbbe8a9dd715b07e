"""An editor's save that Automerge cannot fork at the version shown (a real MissingOps panic)
keeps every typed character and says the edit was written over the latest version."""

from __future__ import annotations

import os

import pytest

from concurrent_edits import edit_concurrently, unforkable_history
from store.automerge_guard import is_panic
from store.documents import splice_section
from test_record import CANARY, Device, _draft, device  # noqa: F401 (device is a fixture)


def _panics(call) -> bool:
    try:
        call()
    except BaseException as e:  # the raw panic, as the library raises it
        if not is_panic(e):
            raise
        return True
    return False


def _unforkable_note(a):
    """A draft whose version on screen fork_at cannot make, with the other device's next edit
    synced in and a plan written elsewhere that the editor has not shown."""
    note = _draft(a)
    other = unforkable_history(a, "n1", "data")
    opened_at, shown = a.draft_heads("n1"), a.get_note("n1").sections["data"]  # the editor opens it
    edit_concurrently(a, other, "n1", "data")  # and a sync brings the other device's next edit
    # The reproduction: the library itself panics forking the note at the version shown.
    assert _panics(lambda: a.replica.load_doc("n1").fork_at(opened_at))
    other = a.replica.load_doc("n1")
    other.set_actor(os.urandom(16))
    splice_section(other, "plan", "Plan written at the office.")
    a.replica.apply_doc("n1", other)
    return note, opened_at, shown


def test_a_save_fork_at_cannot_make_is_merged_exactly(device: Device) -> None:
    a = device.store
    note, opened_at, shown = _unforkable_note(a)
    typed = shown + f" Then typed on after the sync {CANARY}, every character."
    mine = note.facts.model_copy(update={"phq9": 11})
    saved = a.save_draft("n1", base=opened_at, sections={"data": typed, "plan": ""}, facts=mine,
                         facts_before=note.facts)

    now = a.get_note("n1")
    # The version shown is rebuilt from the note's changes: the edit is made where it was
    # made and merged like any other, so the other device's edit stays too.
    assert not saved.unmerged
    assert now.sections["data"] == "Also from the office. " + typed
    assert now.sections["plan"] == "Plan written at the office."  # not touched by the editor: kept
    assert now.facts.phq9 == 11
    assert saved.merged == now and sorted(saved.heads) == sorted(a.draft_heads("n1"))
    assert device.reopen().get_note("n1") == now
    assert device.store.check() == []


def test_a_save_nothing_can_fork_keeps_every_typed_character_and_says_so(device: Device, monkeypatch) -> None:
    from store import documents

    a = device.store
    note, opened_at, shown = _unforkable_note(a)
    # No real history is known where rebuilding the version from its changes fails after
    # fork_at did; this stands in for one, to prove the last resort keeps the typing.
    def unbuildable(doc, heads):
        raise RuntimeError("cannot rebuild")

    monkeypatch.setattr(documents, "version_from_changes", unbuildable)
    typed = shown + f" Then typed on after the sync {CANARY}, every character."
    mine = note.facts.model_copy(update={"phq9": 11})
    saved = a.save_draft("n1", base=opened_at, sections={"data": typed, "plan": ""}, facts=mine,
                         facts_before=note.facts)

    now = a.get_note("n1")
    assert saved.unmerged
    assert now.sections["data"] == typed  # every typed character, over the latest version
    assert now.sections["plan"] == "Plan written at the office."  # not touched by the editor: kept
    assert now.facts.phq9 == 11
    assert saved.merged == now and sorted(saved.heads) == sorted(a.draft_heads("n1"))
    # The editor's text still stands on the version it showed; typing on keeps working.
    assert sorted(saved.base) == sorted(opened_at)
    saved = a.save_draft("n1", base=saved.base, sections={"data": typed + " More."})
    assert saved.unmerged and a.get_note("n1").sections["data"] == typed + " More."
    # Once the editor shows the note as it now is, its saves are ordinary again.
    saved = a.save_draft("n1", base=saved.heads, sections={"data": typed + " More. Done."})
    assert not saved.unmerged and saved.merged is None
    assert device.reopen().get_note("n1").sections["data"] == typed + " More. Done."
    assert device.store.check() == []


def _signed_meanwhile(a):
    from test_record import complete_note

    _draft(a)
    other = unforkable_history(a, "n1", "data")
    opened_at, shown = a.draft_heads("n1"), a.get_note("n1").sections["data"]
    edit_concurrently(a, other, "n1", "data")
    complete = complete_note()
    a.update_facts("n1", complete.facts)
    for key in ("assessment", "plan"):
        a.set_section("n1", key, complete.sections[key])
    a.sign_note("n1")
    return opened_at, shown


def test_typing_on_a_draft_signed_meanwhile_becomes_a_signature_conflict(device: Device) -> None:
    from store.projections import has_signature_conflict

    a = device.store
    opened_at, shown = _signed_meanwhile(a)
    a.save_draft("n1", base=opened_at, sections={"data": shown + " typed " + CANARY})
    now = a.get_note("n1")
    # As with any note signed elsewhere while open here: the typing is kept, as edits
    # concurrent with the signature, and the clinician resolves the conflict.
    assert has_signature_conflict(now)
    assert now.sections["data"].endswith(" typed " + CANARY)


def test_a_draft_signed_meanwhile_is_not_written_over_by_the_last_resort(device: Device, monkeypatch) -> None:
    from store import documents
    from store.errors import SignedNoteLocked

    a = device.store
    opened_at, shown = _signed_meanwhile(a)
    monkeypatch.setattr(documents, "version_from_changes", lambda doc, heads: 1 / 0)
    before = a.get_note("n1")
    with pytest.raises(SignedNoteLocked):
        a.save_draft("n1", base=opened_at, sections={"data": shown + " typed"})
    assert a.get_note("n1") == before
