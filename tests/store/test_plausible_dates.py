"""Dates must be plausible at every entrance (the store API, an import, a document received by
sync), and whatever date an older vault already holds, every view copes with it.

The extreme documents are built with the store's own code on another vault, the way a device
running older code (or a hostile one holding the keys) would make them.
"""

from __future__ import annotations

from datetime import date, datetime, time, timezone

import pytest
from pydantic import ValidationError

from store import documents as D
from store.errors import ForeignDocument, ValidationFailed
from store.models import (
    Client,
    NoteFormat,
    ProcessNote,
    ProgressNote,
    SessionFacts,
)
from store.overdue import overdue, overdue_from_rows, session_end
from store.projections import project, signed_late
from store.vault import KdfParams, Vault

FAST_KDF = KdfParams(memory_kib=8192, time_cost=1, parallelism=1)
PASSPHRASE = "plausible dates passphrase"
FAR = date(9999, 12, 31)
# Read "as stored": the context name the store uses for documents already in a vault.
AS_STORED = {"stored": True}


@pytest.fixture
def vaults(tmp_path):
    a, _ = Vault.create(tmp_path / "a", PASSPHRASE, device_name="a", kdf=FAST_KDF)
    b, _ = Vault.create(tmp_path / "b", PASSPHRASE, device_name="b", kdf=FAST_KDF)
    try:
        for v in (a, b):
            v.record.create_client(Client(id="client-1", display_name="Rowan Testfield"))
        yield a, b
    finally:
        a.close()
        b.close()


def snapshot(vault) -> dict:
    record = vault.record
    return {
        "heads": {k: sorted(v) for k, v in record.replica.doc_heads().items()},
        "notes": [r for r in record.list_notes()],
        "process": vault.private.count(),
    }


def draft(note_id: str = "note-1", on: date = date(2026, 10, 5)) -> ProgressNote:
    return ProgressNote(id=note_id, client_id="client-1", format=NoteFormat.SOAP,
                        facts=SessionFacts(date_of_service=on))


def extreme_doc(vault, note_id: str = "note-far"):
    """A note document dated 9999-12-31, made by the store's document code directly."""
    note = ProgressNote.model_validate(
        {"id": note_id, "client_id": "client-1", "format": "SOAP", "facts": {"date_of_service": FAR.isoformat()}},
        context=AS_STORED,
    )
    return D.new_note_doc(note, D.actor_for(vault.device_id))


def store_as_an_older_vault_would(vault, doc_id: str, doc) -> None:
    """Writes a document the way an older version accepted it: no entrance check."""
    record = vault.record
    with record.transaction():
        record._docs.insert(doc_id, D.note_doc_kind(doc), doc)
        project(record._conn, doc_id, doc)


# --- the store API ---------------------------------------------------------------------------


@pytest.mark.parametrize("on", [FAR, date(1, 1, 1), date(1899, 12, 31)])
def test_the_models_refuse_an_implausible_date_of_service(on):
    with pytest.raises(ValidationError) as info:
        SessionFacts(date_of_service=on)
    assert "date_of_service" in str(info.value) and "plausible date" in str(info.value)


def test_the_store_api_refuses_implausible_dates_however_the_model_was_built(vaults):
    a, _b = vaults
    record = a.record
    record.create_note(draft())
    before = snapshot(a)
    far_facts = SessionFacts(date_of_service=date(2026, 10, 5)).model_copy(update={"date_of_service": FAR})
    with pytest.raises(ValidationFailed):
        record.create_note(draft("note-2").model_copy(update={"facts": far_facts}))
    with pytest.raises(ValidationFailed):
        record.update_facts("note-1", far_facts)
    with pytest.raises(ValidationFailed):
        record.save_draft("note-1", base=None, facts=far_facts)
    client = record.get_client("client-1").model_copy(update={"date_of_birth": date(1, 1, 1)})
    with pytest.raises(ValidationFailed):
        record.update_client(client)
    process = ProcessNote(client_id="client-1", session_date=date(2026, 10, 5), body="Reflection.")
    with pytest.raises(ValidationFailed):
        a.private.create(process.model_copy(update={"session_date": FAR}))
    with pytest.raises(ValidationFailed):
        a.private.create(process.model_copy(update={"created_at": datetime(9999, 12, 31, tzinfo=timezone.utc)}))
    assert snapshot(a) == before
    assert record.get_note("note-1").facts.date_of_service == date(2026, 10, 5)


def test_plausible_dates_still_pass(vaults):
    a, _b = vaults
    a.record.create_note(draft("note-old", date(1990, 1, 2)))
    a.record.create_note(draft("note-ahead", date.today().replace(day=1)))
    assert a.record.get_note("note-old").facts.date_of_service == date(1990, 1, 2)


# --- documents received by sync --------------------------------------------------------------


def test_a_new_document_with_an_implausible_date_is_refused(vaults):
    a, b = vaults
    doc = extreme_doc(b)
    before = snapshot(a)
    with pytest.raises(ForeignDocument) as info:
        a.record.replica.apply_doc("note-far", doc)
    assert "plausible" in info.value.message and "nothing was changed" in info.value.message
    assert snapshot(a) == before


def test_a_whole_document_with_an_implausible_date_is_refused_in_bulk(vaults):
    a, b = vaults
    b.record.create_note(draft("note-ok"))
    good, _heads = b.record.replica.stored_doc("note-ok")
    bad = extreme_doc(b).save()
    applied, refused = a.record.replica.apply_snapshots([("note-far", bad), ("note-ok", good)])
    assert set(applied) == {"note-ok"}
    assert set(refused) == {"note-far"} and "plausible" in refused["note-far"].message
    assert "note-far" not in a.record.replica.doc_heads()


def test_an_edit_to_an_implausible_date_is_refused_and_the_note_kept(vaults):
    a, b = vaults
    a.record.create_note(draft("note-1"))
    b.record.replica.apply_doc("note-1", a.record.replica.load_doc("note-1"))
    theirs = b.record.replica.load_doc("note-1")
    far = SessionFacts(date_of_service=date(2026, 10, 5)).model_copy(update={"date_of_service": FAR})
    assert D.apply_facts(theirs, far)
    before = snapshot(a)
    with pytest.raises(ForeignDocument):
        a.record.replica.apply_doc("note-1", theirs)
    assert snapshot(a) == before
    # Through the bundle path (raw changes) too.
    changes = [c.bytes for c in theirs.get_changes(a.record.replica.doc_heads()["note-1"])]
    with pytest.raises(ForeignDocument):
        a.record.replica.apply_changes("note-1", changes)
    assert snapshot(a) == before


# --- whatever an older vault holds, every view copes ----------------------------------------


def test_an_older_vault_with_an_extreme_date_still_reads_and_merges(vaults):
    a, b = vaults
    store_as_an_older_vault_would(a, "note-far", extreme_doc(a))
    record = a.record
    assert record.get_note("note-far").facts.date_of_service == FAR
    assert any(r.note_id == "note-far" for r in record.list_notes())
    assert overdue(record, datetime.now(timezone.utc)) is not None
    assert record.check() == []
    # A plausible edit from another device (which holds the same old note) still merges into it.
    store_as_an_older_vault_would(b, "note-far", record.replica.load_doc("note-far"))
    theirs = b.record.replica.load_doc("note-far")
    D.splice_section(theirs, "plan", "Meet next week.")
    assert record.replica.apply_doc("note-far", theirs)
    assert record.get_note("note-far").sections["plan"] == "Meet next week."


@pytest.mark.parametrize("on", [date.max, date.min, FAR, date(1, 1, 1)])
@pytest.mark.parametrize("stop", [None, time(23, 59)])
def test_overdue_and_late_entry_arithmetic_never_overflow(on, stop):
    now = datetime.now(timezone.utc)
    assert isinstance(session_end(on, stop), datetime)
    rows = [{"note_id": "n", "client_id": "c", "status": "draft", "date_of_service": on.isoformat(),
             "stop_time": stop.isoformat() if stop else None}]
    overdue_from_rows(rows, {"c": "Rowan"}, now, extra_session_dates=[("c", on)])
    for signed_at in (now, datetime(1, 1, 2, tzinfo=timezone.utc), datetime(9999, 12, 30, tzinfo=timezone.utc)):
        assert signed_late(on, stop, signed_at, 72) in (True, False)
