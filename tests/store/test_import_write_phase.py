"""Where an import's write phase spends its work (issue 9): what it does at its one commit,
counted, never timed. bench/import_bench.py times it."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

from sqlcipher3 import dbapi2 as sqlcipher

from store import audit, importer
from store.importer import apply_import, parse_import

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_import_workers import NOW, many_notes, new_vault  # noqa: E402,F401

def test_the_write_phase_checks_and_encodes_one_audit_entry_not_one_per_note(new_vault, monkeypatch):
    """The details of each note's audit entry are made where the note is built (on a worker
    when there is one); the write phase, holding the lock, only chains them."""
    calls = {"in_write": 0, "all": 0}
    writing = [False]
    real_check = audit._check_details

    def counted(details):
        calls["all"] += 1
        calls["in_write"] += writing[0]
        return real_check(details)

    real_audit = importer._audit

    def in_write(*args):
        writing[0] = True
        try:
            return real_audit(*args)
        finally:
            writing[0] = False

    monkeypatch.setattr(audit, "_check_details", counted)
    monkeypatch.setattr(importer, "_audit", in_write)
    vault = new_vault("audit")
    summary = apply_import(vault, parse_import(many_notes(60), now=NOW))
    entries = [e for e in vault.audit.entries() if e.event == audit.Event.IMPORT.value]
    as_given = [e for e in entries if "note_id" in e.details]
    assert summary.signed_notes > 10 and len(as_given) >= summary.signed_notes
    assert calls["in_write"] == 1  # the import's own entry (before: one more per note)
    assert calls["all"] == len(vault.audit.entries())  # each entry checked once, in all
    assert vault.audit.verify().ok


def test_prepared_audit_entries_are_stored_as_the_entries_themselves(tmp_path):
    at = datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)
    signed = datetime(2026, 11, 30, 17, 5, tzinfo=timezone.utc)
    entries = [(audit.Event.IMPORT, None, dict(clients=2, progress_notes=3)),
               (audit.Event.IMPORT, "c1", dict(note_id="n1", status="signed", signed_at=signed)),
               (audit.Event.IMPORT, "c2", dict(note_id="n2", status="entered_in_error", signed_at=None))]
    rows, lasts = [], []
    for name, prepared in (("many", False), ("prepared", True)):
        conn = sqlcipher.connect(str(tmp_path / f"{name}.db"), isolation_level=None)
        log = audit.AuditLog(conn, b"k" * 32)
        if prepared:
            last = log.append_prepared([(e, c, audit.prepared_details(d)) for e, c, d in entries], at=at)
        else:
            last = log.append_many(entries, at=at)
        lasts.append(last)
        rows.append(conn.execute("SELECT * FROM audit_log ORDER BY seq").fetchall()
                    + conn.execute("SELECT * FROM audit_head").fetchall())
        assert log.verify().ok
        conn.close()
    assert rows[0] == rows[1] and len(rows[0]) == 4
    assert lasts[0] == lasts[1]
