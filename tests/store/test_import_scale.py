"""What keeps a large import's cost linear in its notes (issue 9's 100,000-note target):
the work at its one commit does not grow per note faster than the notes do. Timing belongs
in bench/import_bench.py; these count what the code does instead (SQL statements run at the
commit's signature-state step), on a real vault and the documented example file's notes
copied many times.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from store.importer import apply_import, parse_import
from store.models import NoteStatus
from store.signature_index import SignatureIndex

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_import_workers import NOW, many_notes, new_vault  # noqa: E402,F401


@pytest.fixture
def statements_at_commit(monkeypatch):
    """How many SQL reads each `after_writes` (the signature states of a transaction's
    notes, run before its commit) ran, and how many ids it was given. (Writes are rows of
    one `executemany` each, which the trace counts one by one.)"""
    seen: list[tuple[int, int]] = []
    real = SignatureIndex.after_writes

    def counted(index, written):
        count = [0]
        index._conn.set_trace_callback(lambda sql: count.__setitem__(0, count[0] + sql.lstrip().upper().startswith("SELECT")))
        try:
            real(index, written)
        finally:
            index._conn.set_trace_callback(None)
        seen.append((len(written), count[0]))

    monkeypatch.setattr(SignatureIndex, "after_writes", counted)
    return seen


def test_the_states_of_an_imported_file_cost_a_few_reads_per_hundreds_of_notes(new_vault, statements_at_commit):
    count = 1_200
    vault = new_vault("scale")
    summary = apply_import(vault, parse_import(many_notes(count), now=NOW))
    assert summary.notes == count
    written, statements = max(statements_at_commit)
    assert written >= count
    # One read per few hundred ids (before: two or three per note, 2,400 and more here).
    assert statements <= 30, statements
    # And the states are what they were: signed notes wait for their computation off the
    # first screen (stored in bulk), drafts have none.
    record = vault.record
    rows = record.list_notes()
    statuses = record.replica.signatures.statuses([r.note_id for r in rows])
    for row in rows:
        expected = "unsigned" if row.status == NoteStatus.DRAFT else "pending"
        assert statuses[row.note_id] == expected, row.note_id


def test_the_audit_entries_of_an_import_are_written_in_one_go_and_chain(new_vault):
    count = 600
    vault = new_vault("audited")
    reads: list[str] = []
    conn = vault.record_conn
    conn.set_trace_callback(lambda sql: reads.append(sql) if "FROM audit_log ORDER BY seq DESC" in sql else None)
    try:
        summary = apply_import(vault, parse_import(many_notes(count), now=NOW))
    finally:
        conn.set_trace_callback(None)
    entries = [e for e in vault.audit.entries() if e.event == "import"]
    per_note = [e for e in entries if "note_id" in e.details]
    assert len(per_note) == sum(1 for r in vault.record.list_notes() if r.status != NoteStatus.DRAFT) > 0
    assert len(entries) == len(per_note) + 1 and summary.notes == count
    # The chain continued in memory: one read of the log's end for the whole import
    # (before: one per entry, a read and two writes for each note signed elsewhere).
    assert len(reads) <= 2, len(reads)
    assert vault.audit.verify().ok
