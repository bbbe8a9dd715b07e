"""Devices whose clocks are wrong (issue 9, finding 8), at the store: one vault 5 days fast,
one 5 days slow, each with the store's injected clock (`Vault.now`), the real record and
documents moved between them with the store's own sync API."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from store.audit import Event
from store.vault import Vault
from tests.store.conftest import FAST_KDF, VAULT_PASSPHRASE
from tests.store.test_record import a_client, complete_note

REAL_NOW = datetime(2026, 3, 9, 15, 0, tzinfo=timezone.utc)
SKEW = timedelta(days=5)


def skewed_vault(path, name: str, offset: timedelta) -> Vault:
    vault, _recovery = Vault.create(path, VAULT_PASSPHRASE, device_name=name, kdf=FAST_KDF)
    vault.now = lambda: REAL_NOW + offset
    vault.update_settings(clinician_name="Dana Hartwell", credentials="PsyD")
    return vault


@pytest.fixture
def fast_and_slow(tmp_path):
    fast = skewed_vault(tmp_path / "fast", "fast laptop", SKEW)
    slow = skewed_vault(tmp_path / "slow", "slow tablet", -SKEW)
    try:
        yield fast, slow
    finally:
        fast.close()
        slow.close()


def copy_record(source: Vault, target: Vault) -> None:
    for doc_id in source.record.replica.doc_heads():
        target.record.replica.apply_doc(doc_id, source.record.replica.load_doc(doc_id))


def signed_on_fast(fast: Vault, slow: Vault) -> str:
    fast.record.create_client(a_client())
    # The session was real-today; the fast device signs it 5 days "later" by its clock.
    note = fast.record.create_note(complete_note(on=date(2026, 3, 9)))
    fast.record.sign_note(note.id)
    copy_record(fast, slow)
    return note.id


def test_an_addendum_is_never_dated_before_the_signature_it_amends(fast_and_slow):
    fast, slow = fast_and_slow
    note_id = signed_on_fast(fast, slow)
    signature = slow.record.get_note(note_id).signature
    assert signature.signed_at == REAL_NOW + SKEW

    amended = slow.record.add_addendum(note_id, "Synthetic correction text.", "Synthetic reason.")
    (addendum,) = amended.addenda
    # The slow clock says 10 days before the signature; the addendum takes the signature's time.
    assert addendum.signed_at == signature.signed_at
    # ... and the vault records that its clock disagreed, with the time it showed.
    entry = [e for e in slow.audit.entries() if e.event == Event.ADDENDUM_ADDED.value][-1]
    assert entry.details["clock_disagreed"] is True
    assert entry.details["device_clock"] == (REAL_NOW - SKEW).isoformat()

    # The addendum is signed over the time it carries, and syncs back intact.
    copy_record(slow, fast)
    assert fast.record.get_note(note_id).addenda == amended.addenda


def test_a_clock_ahead_of_the_signature_keeps_its_own_time(fast_and_slow):
    fast, slow = fast_and_slow
    slow.record.create_client(a_client())
    note = slow.record.create_note(complete_note(on=date(2026, 3, 2)))
    slow.record.sign_note(note.id)
    copy_record(slow, fast)
    amended = fast.record.add_addendum(note.id, "Synthetic correction text.", "Synthetic reason.")
    assert amended.addenda[0].signed_at == REAL_NOW + SKEW
    entry = [e for e in fast.audit.entries() if e.event == Event.ADDENDUM_ADDED.value][-1]
    assert "clock_disagreed" not in entry.details


def test_entered_in_error_is_never_marked_before_the_signature(fast_and_slow):
    fast, slow = fast_and_slow
    note_id = signed_on_fast(fast, slow)
    marked = slow.record.mark_entered_in_error(note_id, "Synthetic wrong chart.")
    assert marked.entered_in_error.marked_at == marked.signature.signed_at
