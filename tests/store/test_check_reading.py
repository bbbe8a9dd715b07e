"""`notewell check` reads the documents it cannot skip on worker processes too
(store/check_reading.py), and finds exactly what it finds on one core.

Real vaults and real worker processes. The reader's thresholds are lowered so that a vault
of a hundred notes is read in several windows, the last one too small to share out.
"""

from __future__ import annotations

import pytest

from store import check_reading, prepare_pool
from store.models import ClinicianSettings
from store.synthetic import populate
from store.vault import Vault
from tests.store.conftest import FAST_KDF, FEEDER, VAULT_PASSPHRASE

NOTES = 100


@pytest.fixture
def vault(tmp_path, monkeypatch):
    vault, _ = Vault.create(tmp_path / "vault", VAULT_PASSPHRASE, device_name="Check test laptop", kdf=FAST_KDF,
                            settings=ClinicianSettings(clinician_name="Dr. Check Example", credentials="LCSW"))
    populate(vault, clients=4, notes=NOTES, seed=23)
    monkeypatch.setattr(check_reading, "PARALLEL_FROM", 10)
    monkeypatch.setattr(check_reading, "WINDOW", 2 * prepare_pool.MIN_PARALLEL)  # 96: two windows
    try:
        yield vault
    finally:
        vault.close()


def _some_notes(vault, count: int) -> list[str]:
    rows = vault.record_conn.execute("SELECT note_id FROM notes_view ORDER BY note_id").fetchall()
    return [r[0] for r in rows[:: len(rows) // count]][:count]


def _tamper(vault) -> list[str]:
    """Rows that no longer say what their documents say, spread over both windows."""
    first, middle, last = _some_notes(vault, 3)
    conn = vault.record_conn
    conn.execute("UPDATE notes_view SET minutes = coalesce(minutes, 0) + 7 WHERE note_id = ?", (first,))
    conn.execute("DELETE FROM record_fts WHERE doc_id = ?", (middle,))
    conn.execute("UPDATE notes_view SET status = CASE status WHEN 'draft' THEN 'signed' ELSE 'draft' END "
                 "WHERE note_id = ?", (last,))
    return [first, middle, last]


def test_a_check_on_workers_finds_what_one_core_finds_in_the_same_order(vault, answers_by_thread,
                                                                       caller_after_a_worker):
    tampered = _tamper(vault)
    alone = vault.check_report(full=True)
    assert FEEDER not in answers_by_thread  # no worker: this process read every document

    shared = vault.check_report(full=True, workers=True)
    assert answers_by_thread.get(FEEDER, 0) > 0  # a worker read a share of them
    assert shared.problems == alone.problems
    assert shared.documents_read == alone.documents_read > NOTES
    for note_id in tampered:
        assert any(note_id in p for p in shared.problems)


def test_a_check_on_workers_records_what_it_verified_as_one_core_does(vault):
    """The next check skips what a check on workers found in step, and reads what it did not."""
    tampered = _tamper(vault)
    first = vault.check_report(workers=True)
    again = vault.check_report(workers=True)
    assert again.problems == first.problems
    assert again.documents_read == len(tampered)  # only those not in step are read again
    assert again.documents_unchanged == first.documents_read - len(tampered)


def test_a_document_that_does_not_load_fails_as_it_does_on_one_core(vault):
    (note_id,) = _some_notes(vault, 1)
    vault.record_conn.execute("UPDATE documents SET snapshot = x'856f4a83000000' WHERE doc_id = ?", (note_id,))
    vault.record.replica._docs.forget_all()

    def outcome(**kw):
        try:
            return vault.check_report(full=True, **kw).problems
        except Exception as e:  # what one core does with it, the workers must do as well
            return type(e), str(e)

    alone = outcome()
    assert alone == [f"document {note_id} cannot be loaded."]  # reported: the check goes on
    assert outcome(workers=True) == alone


def test_a_check_that_reads_few_documents_starts_no_worker(vault, monkeypatch):
    vault.check_report(workers=True)  # every document read, and recorded as verified
    tampered = _tamper(vault)

    def no_pool(*_args, **_kw):
        raise AssertionError("a worker was started for three documents")

    monkeypatch.setattr(prepare_pool, "PreparePool", no_pool)
    report = vault.check_report(workers=True)
    assert report.documents_read == len(tampered)
    assert all(any(note_id in p for p in report.problems) for note_id in tampered)


def test_the_full_checks_estimate_counts_the_cores_it_reads_on(vault, monkeypatch):
    from store import prepare_pool as pool

    monkeypatch.setattr(pool, "default_workers", lambda caller_helps=True: 0)
    one_core = vault.full_check_estimate().seconds
    monkeypatch.setattr(pool, "default_workers", lambda caller_helps=True: 1)
    two_cores = vault.full_check_estimate().seconds
    assert two_cores < one_core
    assert "documents again" in vault.full_check_estimate().sentence()


def test_a_check_on_workers_computes_many_pending_signature_states_there_too(vault, answers_by_thread,
                                                                            caller_after_a_worker):
    """After a bulk intake many notes' states are pending; a default check computes them
    before it reports, and with workers it shares that out as `check --full` does."""
    vault.check_report()  # every document verified: the next check reads none of them again
    states = "SELECT note_id, heads, status, findings FROM signature_states ORDER BY note_id"
    settled = vault.record_conn.execute(states).fetchall()
    assert FEEDER not in answers_by_thread
    with vault.record.transaction():
        pending = vault.record.replica.signatures.mark_all_pending()
    assert pending > check_reading.PARALLEL_FROM  # lowered to 10 here: signed notes are many more

    report = vault.check_report(workers=True)
    assert report.documents_read == 0
    assert answers_by_thread.get(FEEDER, 0) > 0  # so a worker's answers were states
    assert vault.record.pending_signature_states() == 0
    assert vault.record_conn.execute(states).fetchall() == settled
    assert not [p for p in report.problems if "signature" in p]
