"""Snippets travel with the record (store/snippets.py): added on one device, they reach the
others through a mailbox folder, merge with the phrases added there, and a snippets document
from another device that breaks the rules (too many, too long, a bad trigger, another key) is
refused whole, changing nothing. Real vaults, real Automerge documents, real bundles."""

from __future__ import annotations

import pytest
from automerge.core import ROOT, ScalarType

from tests.sync.test_mailbox import box, devices  # noqa: F401

MSE = "Client was alert and oriented x3, affect congruent with mood."
SAFETY = "Reviewed the safety plan; client named two coping steps and one contact."


def test_snippets_reach_every_device_and_merge(devices, box):  # noqa: F811
    a, b, c = devices
    a.record.save_snippet("mse", MSE)
    b.record.save_snippet("safety", SAFETY)
    for device in (a, b, c, a, b, c):
        device.mailbox(box)
    for device in (a, b, c):
        assert device.record.snippets() == {"mse": MSE, "safety": SAFETY}
    b.record.delete_snippet("mse")
    for device in (b, a, c):
        device.mailbox(box)
    assert a.record.snippets() == c.record.snippets() == {"safety": SAFETY}


def _doctored(device, change) -> object:
    """The device's snippets document with `change(tx)` applied, as a hostile device sends it."""
    from store.snippets import SNIPPETS_ID

    doc = device.record.replica.load_doc(SNIPPETS_ID)
    with doc.transaction() as tx:
        change(tx)
    return doc


BAD = {
    "too many": lambda tx: [tx.put(ROOT, f"snippet:s{i}", ScalarType.Str, "x") for i in range(201)],
    "too long": lambda tx: tx.put(ROOT, "snippet:long", ScalarType.Str, "y" * 2001),
    "bad trigger": lambda tx: tx.put(ROOT, "snippet:Has Space", ScalarType.Str, "z"),
    "control character": lambda tx: tx.put(ROOT, "snippet:esc", ScalarType.Str, "a\x1b[2Jb"),
    "another key": lambda tx: tx.put(ROOT, "client_name", ScalarType.Str, "Synthetic Person"),
    "not a string": lambda tx: tx.put(ROOT, "snippet:n", ScalarType.Int, 3),
}


@pytest.mark.parametrize("how", sorted(BAD))
def test_a_snippets_document_against_the_rules_is_refused_whole(devices, how):  # noqa: F811
    from store.errors import ForeignDocument
    from store.snippets import SNIPPETS_ID

    a, b, c = devices
    a.record.save_snippet("mse", MSE)
    b.record.save_snippet("safety", SAFETY)
    before, c_before = b.heads(), c.heads()
    bad = _doctored(a, BAD[how])
    with pytest.raises(ForeignDocument):
        b.record.replica.apply_doc(SNIPPETS_ID, bad)  # merged with ours, then checked
    applied, refused = b.record.replica.apply_snapshots([(SNIPPETS_ID, bad.save())])
    assert applied == {} and list(refused) == [SNIPPETS_ID]
    assert b.heads() == before and b.record.snippets() == {"safety": SAFETY}
    # A device with no snippets yet refuses it too (nothing of its own to merge with).
    with pytest.raises(ForeignDocument):
        c.record.replica.apply_doc(SNIPPETS_ID, bad)
    assert c.heads() == c_before and c.record.snippets() == {}


def test_the_store_refuses_a_bad_snippet_with_one_sentence(devices):  # noqa: F811
    from store.errors import ValidationFailed

    a, _, _ = devices
    for trigger, text in (("Bad Trigger", "x"), ("ok", ""), ("ok", "w" * 2001), ("ok", "a\x07b")):
        with pytest.raises(ValidationFailed) as refused:
            a.record.save_snippet(trigger, text)
        assert "\n" not in refused.value.message
    assert a.record.snippets() == {}
    a.record.save_snippet("a", "first")
    a.record.save_snippet("b", "second")
    with pytest.raises(ValidationFailed):
        a.record.save_snippet("b", "renamed onto another", replaces="a")
    a.record.save_snippet("c", "first again", replaces="a")
    assert a.record.snippets() == {"b": "second", "c": "first again"}


def test_a_vault_with_snippets_checks_clean_and_rebuilds(devices, box):  # noqa: F811
    """The snippets document has no list or search rows (like the device list): the record's
    checks find nothing wrong with it, and rebuilding the projections keeps it."""
    a, b, _ = devices
    a.record.save_snippet("mse", MSE)
    a.mailbox(box)
    b.mailbox(box)
    for device in (a, b):
        assert device.record.check() == []
        assert device.record.check_documents(full=True)[0] == []
        device.record.rebuild_projections()
        assert device.record.snippets() == {"mse": MSE}
