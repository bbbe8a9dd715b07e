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


def test_a_save_fork_at_cannot_make_keeps_every_typed_character_and_says_so(device: Device) -> None:
    a = device.store
    note = _draft(a)
    other = unforkable_history(a, "n1", "data")
    opened_at, shown = a.draft_heads("n1"), a.get_note("n1").sections["data"]  # the editor opens it
    edit_concurrently(a, other, "n1", "data")  # and a sync brings the other device's next edit
    # The reproduction: the library itself panics forking the note at the version shown.
    assert _panics(lambda: a.load_doc("n1").fork_at(opened_at))

    # Meanwhile another device also wrote a plan, which the editor has not shown.
    other = a.load_doc("n1")
    other.set_actor(os.urandom(16))
    splice_section(other, "plan", "Plan written at the office.")
    a.apply_doc("n1", other)

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


def test_a_draft_signed_meanwhile_is_not_written_over(device: Device) -> None:
    from store.errors import SignedNoteLocked
    from test_record import complete_note

    a = device.store
    _draft(a)
    other = unforkable_history(a, "n1", "data")
    opened_at, shown = a.draft_heads("n1"), a.get_note("n1").sections["data"]
    edit_concurrently(a, other, "n1", "data")
    complete = complete_note()
    a.update_facts("n1", complete.facts)
    for key in ("assessment", "plan"):
        a.set_section("n1", key, complete.sections[key])
    a.sign_note("n1")
    before = a.get_note("n1")
    with pytest.raises(SignedNoteLocked):
        a.save_draft("n1", base=opened_at, sections={"data": shown + " typed"})
    assert a.get_note("n1") == before
