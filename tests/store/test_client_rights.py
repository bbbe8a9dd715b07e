"""The client's rights in the store: deadlines at their edges, the accounting of
disclosures (six years, exemptions left out), amendments accepted as signed addenda or
denied with statement and rebuttal, and documents from other devices read as untrusted."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from automerge.core import ROOT, Document, ScalarType

from store import signing
from store.client_rights import accounting_start, due_on, due_request
from store.doc_ids import record_kind
from store.errors import ForeignDocument, SignerUnknown, ValidationFailed
from store.rights_documents import KIND_RIGHTS, RightsKind, payload, read_rights, AccessOpened
from store.vault import KdfParams, Vault
from tests.rights_data import CANARY, CLIENT_ID, SETTINGS, seed

KDF = KdfParams(memory_kib=8192, time_cost=1, parallelism=1)
TODAY = datetime.now(timezone.utc).astimezone().date()


@pytest.fixture
def vault(tmp_path):
    v, _ = Vault.create(tmp_path / "vault", "correct horse battery staple", device_name="test", kdf=KDF,
                        settings=SETTINGS)
    seed(v)
    try:
        yield v
    finally:
        v.close()


def _access(vault, received: date):
    return vault.record.rights.open_access_request(
        CLIENT_ID, received_on=received, requester="Avery Ashdown", form_format="PDF by e-mail")


# --- deadlines ----------------------------------------------------------------------------


def test_access_request_is_due_on_day_30_and_overdue_on_day_31(vault):
    received = TODAY - timedelta(days=100)
    record = _access(vault, received)
    assert due_on(record) == received + timedelta(days=30)
    assert due_request(record, received + timedelta(days=30)).days_left == 0
    assert not due_request(record, received + timedelta(days=30)).overdue
    assert due_request(record, received + timedelta(days=31)).overdue
    assert "due today" in due_request(record, received + timedelta(days=30)).label()
    assert "OVERDUE by 1 day" in due_request(record, received + timedelta(days=31)).label()


def test_one_extension_moves_access_to_day_60_and_is_refused_after_day_30(vault):
    received = TODAY - timedelta(days=100)
    rights = vault.record.rights
    late = _access(vault, received)
    with pytest.raises(ValidationFailed, match="first due day"):
        rights.extend(late.id, "records in storage", on=received + timedelta(days=31))
    record = rights.extend(late.id, "records in storage", on=received + timedelta(days=30))
    assert due_on(record) == received + timedelta(days=60)
    assert not due_request(record, received + timedelta(days=60)).overdue
    assert due_request(record, received + timedelta(days=61)).days_left == -1
    with pytest.raises(ValidationFailed, match="already had its one extension"):
        rights.extend(late.id, "again", on=received + timedelta(days=1))


def test_amendment_is_due_on_day_60_then_90_with_its_extension(vault):
    received = TODAY - timedelta(days=200)
    rights = vault.record.rights
    record = rights.open_amendment_request(CLIENT_ID, received_on=received, requester="Avery Ashdown",
                                           note_ids=["n-r1"], requested_change="The date of the move was May.")
    assert not due_request(record, received + timedelta(days=60)).overdue
    assert due_request(record, received + timedelta(days=61)).overdue
    with pytest.raises(ValidationFailed):
        rights.extend(record.id, "consulting", on=received + timedelta(days=61))
    record = rights.extend(record.id, "consulting", on=received + timedelta(days=60))
    assert not due_request(record, received + timedelta(days=90)).overdue
    assert due_request(record, received + timedelta(days=91)).overdue


def test_open_requests_leave_out_what_was_acted_on(vault):
    rights = vault.record.rights
    a = _access(vault, TODAY - timedelta(days=40))
    b = _access(vault, TODAY - timedelta(days=2))
    assert [d.record_id for d in rights.open_requests(TODAY)] == [a.id, b.id]  # the overdue one first
    rights.fulfil_access(a.id, how="encrypted e-mail", what="full record", format="pdf")
    assert [d.record_id for d in rights.open_requests(TODAY)] == [b.id]
    with pytest.raises(ValidationFailed, match="already been acted on"):
        rights.fulfil_access(a.id, how="mail", what="again", format="pdf")


# --- the accounting of disclosures -----------------------------------------------------------


def test_accounting_covers_six_years_and_leaves_out_exempt_disclosures(vault):
    rights = vault.record.rights
    as_of = TODAY
    start = accounting_start(as_of)
    kept = rights.record_disclosure(CLIENT_ID, disclosed_on=start, recipient="County Court", purpose="subpoena",
                                    what="notes of 2020", basis="court-order")
    rights.record_disclosure(CLIENT_ID, disclosed_on=start - timedelta(days=1), recipient="Old Court",
                             purpose="subpoena", what="notes", basis="court-order")
    for basis in ("treatment", "payment", "operations", "authorized", "client"):
        rights.record_disclosure(CLIENT_ID, disclosed_on=as_of, recipient=f"R {basis}", purpose="p", what="w",
                                 basis=basis)
    health = rights.record_disclosure(CLIENT_ID, disclosed_on=as_of, recipient="State Health Dept",
                                      purpose="reportable condition", what="diagnosis", basis="public-health")
    rights.record_disclosure("c-rights-2", disclosed_on=as_of, recipient="Other client's court", purpose="p",
                             what="w", basis="court-order")
    acc = rights.accounting(CLIENT_ID, as_of)
    assert [r.id for r in acc.listed] == [health.id, kept.id]
    assert acc.exempt == 5 and acc.since == start


def test_accounting_start_on_29_february():
    assert accounting_start(date(2028, 2, 29)) == date(2022, 2, 28)


def test_a_disclosure_in_the_future_or_with_an_unknown_basis_is_refused(vault):
    rights = vault.record.rights
    with pytest.raises(ValidationFailed):
        rights.record_disclosure(CLIENT_ID, disclosed_on=TODAY + timedelta(days=1), recipient="X", purpose="p",
                                 what="w", basis="court-order")
    with pytest.raises(ValidationFailed):
        rights.record_disclosure(CLIENT_ID, disclosed_on=TODAY, recipient="X", purpose="p", what="w", basis="gossip")
    assert rights.all() == []


# --- amendments ----------------------------------------------------------------------------


def test_accepted_amendment_is_a_signed_addendum_on_each_note(vault):
    rights = vault.record.rights
    record = rights.open_amendment_request(CLIENT_ID, received_on=TODAY, requester="Avery Ashdown",
                                           note_ids=["n-r1", "n-r2"], requested_change="AMEND-REQ wording")
    record = rights.accept_amendment(record.id, "AMEND-TEXT the move was in May")
    for note_id in ("n-r1", "n-r2"):
        note = vault.record.get_note(note_id)
        assert note.addenda[-1].text == "AMEND-TEXT the move was in May"
        assert record.data("accepted").addenda[note_id] == note.addenda[-1].id
        assert vault.record.signature_state(note_id).status.value == "verified"
    assert all(rights.verified(record).values())


def test_amendment_of_a_draft_or_of_another_clients_note_is_refused(vault):
    rights = vault.record.rights
    with pytest.raises(ValidationFailed, match="not a progress note of client"):
        rights.open_amendment_request("c-rights-2", received_on=TODAY, requester="B", note_ids=["n-r1"],
                                      requested_change="x")
    record = rights.open_amendment_request(CLIENT_ID, received_on=TODAY, requester="A", note_ids=["n-r3"],
                                           requested_change="x")
    with pytest.raises(Exception, match="not signed"):
        rights.accept_amendment(record.id, "y")
    assert vault.record.rights.get(record.id).events.keys() == {"opened"}


def test_denial_statement_and_rebuttal_in_order(vault):
    rights = vault.record.rights
    record = rights.open_amendment_request(CLIENT_ID, received_on=TODAY, requester="A", note_ids=["n-r1"],
                                           requested_change="remove the diagnosis")
    with pytest.raises(ValidationFailed):
        rights.add_statement(record.id, "too early")
    rights.deny_amendment(record.id, "DENIAL the record is accurate and complete")
    with pytest.raises(ValidationFailed, match="no"):
        rights.add_rebuttal(record.id, "before any statement")
    rights.add_statement(record.id, "STATEMENT I disagree")
    record = rights.add_rebuttal(record.id, "REBUTTAL the diagnosis rests on the assessment")
    assert set(record.events) == {"opened", "denied", "statement", "rebuttal"}
    assert all(rights.verified(record).values())
    with pytest.raises(ValidationFailed):
        rights.accept_amendment(record.id, "too late")


def test_attested_events_need_the_clinicians_name(vault):
    record = _access(vault, TODAY)
    vault.update_settings(clinician_name="")
    with pytest.raises(SignerUnknown):
        vault.record.rights.fulfil_access(record.id, how="mail", what="all", format="pdf")


def test_rights_records_name_no_process_note_text(vault):
    rights = vault.record.rights
    _access(vault, TODAY)
    rights.record_disclosure(CLIENT_ID, disclosed_on=TODAY, recipient="Court", purpose="p", what="w",
                             basis="court-order")
    for doc_id in vault.record.replica.doc_heads():
        assert CANARY.encode() not in vault.record.replica.stored_doc(doc_id)[0]


def test_audit_trail_names_the_event_never_its_text(vault):
    rights = vault.record.rights
    record = rights.open_amendment_request(CLIENT_ID, received_on=TODAY, requester="A", note_ids=["n-r1"],
                                           requested_change="SECRET-CHANGE")
    rights.deny_amendment(record.id, "SECRET-DENIAL")
    entries = [e for e in vault.audit.entries(client_id=CLIENT_ID) if e.label.startswith("client's rights")]
    assert len(entries) == 2
    assert not any("SECRET" in e.summary() for e in entries)


# --- documents from other devices --------------------------------------------------------------


def _forged(vault, data: dict, *, kind=RightsKind.ACCESS, event="opened", doc_id="forged1") -> Document:
    me, key = vault.record._signing_key()
    p = payload(None, record_id=doc_id, client_id=CLIENT_ID, kind=kind, event=event,
                data=AccessOpened(received_on=TODAY, requester="x", form_format="pdf"), by="", credentials="",
                at=datetime.now(timezone.utc), device_id=me.device_id)
    p["data"] = data
    doc = Document()
    with doc.transaction() as tx:
        for k, v in (("type", KIND_RIGHTS), ("id", doc_id), ("client_id", CLIENT_ID), ("record", kind.value)):
            tx.put(ROOT, k, ScalarType.Str, v)
        tx.put(ROOT, "schema", ScalarType.Int, 1)
        tx.put(ROOT, f"event:{event}:{'ab' * 8}", ScalarType.Str, signing.seal(key, p))
    return doc


@pytest.mark.parametrize("data", [
    {"received_on": "2026-01-01", "requester": "x", "form_format": "pdf", "extra": 1},   # unknown field
    {"received_on": "3026-01-01", "requester": "x", "form_format": "pdf"},               # implausible date
    {"received_on": "2026-01-01", "requester": "x" * 201, "form_format": "pdf"},         # too long
    {"received_on": "2026-01-01", "requester": "", "form_format": "pdf"},                # empty
    {"received_on": 5, "requester": "x", "form_format": "pdf"},                          # wrong type
])
def test_a_malformed_rights_document_from_another_device_is_refused(vault, data):
    doc = _forged(vault, data)
    assert record_kind("forged1", doc) is None
    before = vault.record.replica.doc_heads()
    with pytest.raises(ForeignDocument):
        vault.record.replica.apply_doc("forged1", doc)
    assert vault.record.replica.doc_heads() == before


def test_a_well_formed_rights_document_from_another_device_is_stored(vault):
    doc = _forged(vault, {"received_on": TODAY.isoformat(), "requester": "x", "form_format": "pdf"})
    assert record_kind("forged1", doc) == KIND_RIGHTS
    assert record_kind("other-id", doc) is None  # its id must be the one it is stored under
    assert vault.record.replica.apply_doc("forged1", doc)
    assert vault.record.rights.get("forged1").kind == RightsKind.ACCESS


def test_an_event_a_request_kind_cannot_hold_is_refused(vault):
    doc = _forged(vault, {"on": TODAY.isoformat(), "reason": "x"}, event="denied")  # access has no denial
    assert read_rights(doc) is None and record_kind("forged1", doc) is None


def test_an_event_key_without_its_entry_id_is_refused(vault):
    doc = _forged(vault, {"received_on": TODAY.isoformat(), "requester": "x", "form_format": "pdf"})
    with doc.transaction() as tx:
        tx.put(ROOT, "event:extended", ScalarType.Str, "{}")
    assert record_kind("forged1", doc) is None


def test_the_same_step_on_two_devices_keeps_both_and_reports_it(tmp_path):
    """Two vaults hold the same request; each acts on it before they sync (the intake's merge,
    as a sync would run it): nothing is dropped, the earlier decision counts, and the request
    stays in the To do list as a conflict until the clinician has looked."""
    from store.client_rights import due_request

    vaults = []
    for name in ("office", "home"):
        v, _ = Vault.create(tmp_path / name, "correct horse battery staple", device_name=name, kdf=KDF,
                            settings=SETTINGS)
        vaults.append(v)
    office, home = vaults
    try:
        seed(office)
        for doc_id in office.record.replica.doc_heads():  # the record as a first sync brings it
            home.record.replica.apply_doc(doc_id, office.record.replica.load_doc(doc_id))
        request = office.record.rights.open_amendment_request(
            CLIENT_ID, received_on=TODAY, requester="A", note_ids=["n-r1"], requested_change="x")
        home.record.replica.apply_doc(request.id, office.record.replica.load_doc(request.id))
        office.record.rights.deny_amendment(request.id, "DENIED on the office laptop")
        home.record.rights.accept_amendment(request.id, "ACCEPTED at home")
        for a, b in ((office, home), (home, office)):
            for doc_id in a.record.replica.doc_heads():
                b.record.replica.apply_doc(doc_id, a.record.replica.load_doc(doc_id))
        for v in (office, home):
            merged = v.record.rights.get(request.id)
            assert {"accepted", "denied"} <= merged.events.keys()
            assert merged.conflicts() == ["accepted and denied"]
            item = due_request(merged, TODAY)
            assert item is not None and "recorded differently on two devices" in item.label()
            assert [r.record_id for r in v.record.rights.open_requests(TODAY)] == [request.id]
        # Both fulfil the same access request: both fulfilments are kept.
        access = office.record.rights.open_access_request(CLIENT_ID, received_on=TODAY, requester="A",
                                                          form_format="pdf")
        home.record.replica.apply_doc(access.id, office.record.replica.load_doc(access.id))
        office.record.rights.fulfil_access(access.id, how="mail", what="all", format="pdf")
        home.record.rights.fulfil_access(access.id, how="portal", what="all", format="pdf")
        home.record.replica.apply_doc(access.id, office.record.replica.load_doc(access.id))
        merged = home.record.rights.get(access.id)
        assert sorted(e.data.how for e in merged.all_events() if e.name == "fulfilled") == ["mail", "portal"]
        assert merged.conflicts() == ["fulfilled"]
        assert len(home.record.rights.verified(merged)) == 3
    finally:
        for v in vaults:
            v.close()


def test_check_finds_a_vault_with_rights_records_healthy_and_a_rebuild_keeps_them(vault):
    rights = vault.record.rights
    _access(vault, TODAY)
    rights.record_disclosure(CLIENT_ID, disclosed_on=TODAY, recipient="Court", purpose="p", what="w",
                             basis="court-order")
    assert vault.check() == []
    report = vault.check_report(full=True)
    assert report.problems == []
    vault.record.rebuild_projections()
    assert len(rights.all()) == 2 and vault.check() == []


def test_a_record_signed_by_an_untrusted_device_is_shown_and_exported_as_not_verified(vault, tmp_path):
    """Structurally valid, so the intake stores it; but its signature is by a key no trusted
    device holds: it is never shown or exported as attested, and an import refuses it."""
    import json

    from cryptography.hazmat.primitives.asymmetric import ed25519

    from store.export import collect, render_json
    from store.importer import read_import
    from store.errors import ImportFailed
    from store.rights_documents import AmendmentOpened, Denied

    stranger = ed25519.Ed25519PrivateKey.generate()
    doc = Document()
    doc_id = "forged-amend"
    with doc.transaction() as tx:
        for k, v in (("type", KIND_RIGHTS), ("id", doc_id), ("client_id", CLIENT_ID),
                     ("record", RightsKind.AMENDMENT.value)):
            tx.put(ROOT, k, ScalarType.Str, v)
        tx.put(ROOT, "schema", ScalarType.Int, 1)
        for i, (name, data) in enumerate((
            ("opened", AmendmentOpened(received_on=TODAY, requester="x", note_ids=["n-r1"], requested_change="c")),
            ("denied", Denied(on=TODAY, reason="FORGED-DENIAL")),
        )):
            p = payload(None, record_id=doc_id, client_id=CLIENT_ID, kind=RightsKind.AMENDMENT, event=name, data=data,
                        by="Someone", credentials="LCSW", at=datetime.now(timezone.utc), device_id="f" * 64)
            tx.put(ROOT, f"event:{name}:{i:016x}", ScalarType.Str, signing.seal(stranger, p))
    assert vault.record.replica.apply_doc(doc_id, doc)
    rights = vault.record.rights
    assert rights.unverified(rights.all()) == {doc_id}
    export = collect(vault.record, CLIENT_ID, settings=SETTINGS)
    assert export.unverified_amendments == {doc_id}
    data = json.loads(render_json(export))
    assert data["client_rights"][0]["signature_verification"] == "failed"
    with pytest.raises(ImportFailed, match=r"client_rights\[0\]"):
        read_import(render_json(export))
