"""Where an import's write phase spends its work (issue 9): what it writes at its one
commit, counted (statements, segments), never timed. bench/import_bench.py times it."""

from __future__ import annotations

import random
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlcipher3 import dbapi2 as sqlcipher

from store import audit, importer, projections, replica
from store.importer import apply_import, parse_import

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_import_workers import NOW, many_notes, new_vault  # noqa: E402,F401

WORDS = [f"word{i}" for i in range(5000)]


def _index():
    conn = sqlcipher.connect(":memory:", isolation_level=None)
    projections._v1(conn)  # the record's index, as its schema makes it
    return conn


def _segment_writes(bulk: bool, conn=None) -> tuple[int, int, list]:
    """(writes of the search index's data rows, notes found for one word, its config rows)
    after 8,000 rows of invented text (a few megabytes of terms) inserted in one transaction."""
    conn = conn or _index()
    rng = random.Random(5)
    rows = [(i + 1, f"n{i}", "note", "c1", "title", " ".join(rng.choice(WORDS) for _ in range(100)))
            for i in range(8000)]
    writes = [0]
    conn.set_trace_callback(lambda sql: writes.__setitem__(0, writes[0] + ("'record_fts_data'" in sql)))
    conn.execute("BEGIN IMMEDIATE")
    if bulk:
        with projections.bulk_fts_load(conn):
            conn.executemany("INSERT INTO record_fts(rowid, doc_id, kind, client_id, title, body) VALUES (?,?,?,?,?,?)", rows)
    else:
        conn.executemany("INSERT INTO record_fts(rowid, doc_id, kind, client_id, title, body) VALUES (?,?,?,?,?,?)", rows)
    conn.execute("COMMIT")
    conn.set_trace_callback(None)
    found = conn.execute("SELECT count(*) FROM record_fts WHERE record_fts MATCH 'word17'").fetchone()[0]
    config = conn.execute("SELECT k, v FROM record_fts_config ORDER BY k").fetchall()
    return writes[0], found, config


def test_a_bulk_load_writes_fewer_segments_of_the_search_index_and_finds_the_same():
    plain_writes, plain_found, plain_config = _segment_writes(bulk=False)
    bulk_writes, bulk_found, bulk_config = _segment_writes(bulk=True)
    # Each flush of the pending terms writes a segment, and segments piling up get merged:
    # with the default 1 MiB this load flushes a few times and merges; in bulk, once.
    assert bulk_writes < plain_writes * 0.8, (bulk_writes, plain_writes)
    assert bulk_found == plain_found > 0
    # The setting leaves no row behind: the index's config is as without it.
    assert bulk_config == plain_config


def test_a_bulk_load_rolled_back_leaves_the_index_as_it_was():
    conn = _index()
    conn.execute("BEGIN IMMEDIATE")
    try:
        with projections.bulk_fts_load(conn):
            conn.execute("INSERT INTO record_fts(rowid, doc_id, kind, client_id, title, body) "
                         "VALUES (1, 'n', 'note', 'c', 't', 'word1')")
            raise RuntimeError("the import failed")
    except RuntimeError:
        conn.execute("ROLLBACK")
    assert conn.execute("SELECT count(*) FROM record_fts_config WHERE k = 'hashsize'").fetchone()[0] == 0
    # And the connection's index writes as without the setting from then on.
    assert _segment_writes(bulk=False, conn=conn) == _segment_writes(bulk=False)


def test_an_import_loads_its_documents_into_the_search_index_in_bulk(new_vault):
    vault = new_vault("bulk")
    conn = vault.record._conn
    (before,) = conn.execute("PRAGMA cache_size").fetchone()
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    try:
        apply_import(vault, parse_import(many_notes(40), now=NOW))
    finally:
        conn.set_trace_callback(None)
    inserts = [i for i, sql in enumerate(seen) if sql.startswith("INSERT INTO record_fts(rowid")]
    raised = [i for i, sql in enumerate(seen) if f"'hashsize', {projections.BULK_FTS_HASHSIZE}" in sql]
    restored = [i for i, sql in enumerate(seen) if "'hashsize', 1048576" in sql]
    begin = max(i for i, sql in enumerate(seen) if sql.startswith("BEGIN") and i < inserts[0])
    commit = min(i for i, sql in enumerate(seen) if sql == "COMMIT" and i > inserts[-1])
    # Raised once, inside the import's transaction, before its first insert into the index;
    # put back once, after its last, before the commit.
    assert len(raised) == len(restored) == 1
    assert begin < raised[0] < inserts[0] and inserts[-1] < restored[0] < commit
    assert conn.execute("SELECT count(*) FROM record_fts_config WHERE k = 'hashsize'").fetchone()[0] == 0
    assert vault.record.search("session") is not None
    # SQLite's page cache is raised for the same stretch, and is as it was afterwards.
    cache = [i for i, sql in enumerate(seen) if sql.startswith("PRAGMA cache_size = ")]
    assert len(cache) == 2 and seen[cache[0]] == f"PRAGMA cache_size = -{replica.BULK_CACHE_KIB}"
    assert begin < cache[0] < inserts[0] and inserts[-1] < cache[1] < commit
    assert conn.execute("PRAGMA cache_size").fetchone()[0] == before


def test_the_page_cache_is_put_back_when_an_import_fails_while_writing(new_vault, monkeypatch):
    vault = new_vault("failing")
    conn = vault.record._conn
    (before,) = conn.execute("PRAGMA cache_size").fetchone()

    def refused(*_args, **_kwargs):
        raise sqlcipher.OperationalError("synthetic refusal")

    monkeypatch.setattr(type(vault.record.replica), "insert_prepared", refused)
    with pytest.raises(importer.ImportFailed):
        apply_import(vault, parse_import(many_notes(4), now=NOW))
    assert conn.execute("PRAGMA cache_size").fetchone()[0] == before
    assert conn.execute("SELECT count(*) FROM record_fts_config WHERE k = 'hashsize'").fetchone()[0] == 0
    assert vault.record.list_notes() == []


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
