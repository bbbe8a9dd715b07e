"""The audit log: chained, keyed, append-only, and tamper-evident at the first broken entry."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

import pytest
from sqlcipher3 import dbapi2 as sqlcipher

from store.audit import AuditLog, Event, derive_audit_key, failed_unlocks, note_unlock_failure

KEY = derive_audit_key(b"\x01" * 32)
DB_KEY_HEX = (b"\x02" * 32).hex()


def open_db(path):
    conn = sqlcipher.connect(str(path))
    conn.execute("PRAGMA cipher_log_level = NONE")
    conn.execute(f"PRAGMA key = \"x'{DB_KEY_HEX}'\"")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return conn


@pytest.fixture
def db(tmp_path):
    conn = open_db(tmp_path / "record.db")
    yield conn
    conn.close()


def filled(conn, n=5):
    log = AuditLog(conn, KEY)
    log.append(Event.VAULT_CREATED, device="laptop")
    for i in range(n - 1):
        log.append(Event.NOTE_SIGNED, client_id=f"c{i % 2}", note_id=f"n{i}")
    return log


def drop_guards(conn):
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("DROP TRIGGER audit_log_no_delete")
    conn.commit()


def test_chain_verifies_and_survives_reopen(tmp_path):
    conn = open_db(tmp_path / "record.db")
    log = filled(conn, 6)
    assert log.verify().ok and log.verify().entries_checked == 6
    conn.close()
    conn = open_db(tmp_path / "record.db")
    log = AuditLog(conn, KEY)
    entry = log.append(Event.EXPORT, client_id="c0", format="pdf", date_from="2026-01-01")
    assert entry.seq == 7
    result = log.verify()
    assert result.ok and result.first_broken_seq is None
    assert [e.seq for e in log.entries()] == list(range(1, 8))
    assert [e.seq for e in log.entries(client_id="c0")] == [2, 4, 6, 7]
    conn.close()


def test_each_entry_links_to_the_one_before(db):
    log = filled(db, 3)
    entries = log.entries()
    assert entries[0].prev_hash == "0" * 64
    assert entries[1].prev_hash == entries[0].hash
    assert entries[2].prev_hash == entries[1].hash


def test_direct_update_and_delete_are_refused(db):
    log = filled(db, 3)
    with pytest.raises(sqlcipher.DatabaseError):
        db.execute("UPDATE audit_log SET details = '{}' WHERE seq = 2")
    db.rollback()
    with pytest.raises(sqlcipher.DatabaseError):
        db.execute("DELETE FROM audit_log WHERE seq = 3")
    db.rollback()
    assert log.verify().ok


@pytest.mark.parametrize("seq", [1, 3, 5])
def test_edited_details_are_detected_at_that_entry(db, seq):
    log = filled(db, 5)
    drop_guards(db)
    db.execute("UPDATE audit_log SET details = ? WHERE seq = ?", (json.dumps({"note_id": "other"}), seq))
    db.commit()
    result = log.verify()
    assert not result.ok
    assert result.first_broken_seq == seq


@pytest.mark.parametrize("column,value", [("at", "2020-01-01T00:00:00Z"), ("event", "import"), ("client_id", "c9")])
def test_edited_columns_are_detected(db, column, value):
    log = filled(db, 5)
    drop_guards(db)
    db.execute(f"UPDATE audit_log SET {column} = ? WHERE seq = 4", (value,))
    db.commit()
    assert log.verify().first_broken_seq == 4


def test_recomputed_plain_sha256_does_not_pass(db):
    # Someone without the key recomputes the chain with bare sha256: still detected.
    import hashlib

    from store.audit import canonical

    log = filled(db, 4)
    drop_guards(db)
    rows = db.execute("SELECT seq, at, event, client_id, details, prev_hash FROM audit_log ORDER BY seq").fetchall()
    prev = "0" * 64
    for seq, at, event, client_id, details, _ in rows:
        if seq == 2:
            details = json.dumps({"note_id": "forged"})
        body = canonical({"seq": seq, "at": at, "event": event, "client_id": client_id, "details": details})
        digest = hashlib.sha256(prev.encode() + body).hexdigest()
        db.execute(
            "UPDATE audit_log SET details=?, prev_hash=?, hash=? WHERE seq=?", (details, prev, digest, seq)
        )
        prev = digest
    db.commit()
    assert log.verify().first_broken_seq == 1


def test_deleted_middle_entry_is_detected(db):
    log = filled(db, 5)
    drop_guards(db)
    db.execute("DELETE FROM audit_log WHERE seq = 3")
    db.commit()
    result = log.verify()
    assert not result.ok and result.first_broken_seq == 3


def test_deleted_newest_entries_are_detected(db):
    log = filled(db, 5)
    drop_guards(db)
    db.execute("DELETE FROM audit_log WHERE seq >= 4")
    db.commit()
    result = log.verify()
    assert not result.ok and result.first_broken_seq == 4


def test_wrong_key_fails_verification(db):
    filled(db, 2)
    assert AuditLog(db, derive_audit_key(b"\x03" * 32)).verify().first_broken_seq == 1


def test_empty_log_verifies(db):
    assert AuditLog(db, KEY).verify().ok


def test_note_text_is_refused(db):
    log = AuditLog(db, KEY)
    with pytest.raises(ValueError) as e:
        log.append(Event.ADDENDUM_ADDED, client_id="c1", text="CANARY-7f3a")
    assert "CANARY" not in str(e.value)
    with pytest.raises(ValueError):
        log.append(Event.ADDENDUM_ADDED, client_id="c1", label="x" * 500)
    with pytest.raises(ValueError):
        log.append("made_up_event")
    assert log.entries() == []


def test_append_joins_the_callers_transaction(db):
    log = AuditLog(db, KEY)
    db.execute("CREATE TABLE t(x)")
    db.commit()
    db.execute("INSERT INTO t VALUES (1)")
    assert db.in_transaction
    log.append(Event.NOTE_SIGNED, client_id="c1", note_id="n1")
    db.rollback()  # the caller's failure takes the entry with it
    assert log.entries() == [] and log.verify().ok


def test_unlock_failures_written_at_next_unlock(db, tmp_path):
    vault = tmp_path / "vault"
    t1 = datetime(2026, 11, 26, 9, 0, tzinfo=timezone.utc)
    t2 = datetime(2026, 11, 26, 9, 1, tzinfo=timezone.utc)
    note_unlock_failure(vault, t1)
    note_unlock_failure(os.fspath(vault), t2)
    assert failed_unlocks.pending(vault) == 2
    log = AuditLog(db, KEY)
    entry = log.flush_unlock_failures(vault)
    assert entry.event == "unlock_failures"
    assert entry.details == {"count": 2, "times": ["2026-11-26T09:00:00Z", "2026-11-26T09:01:00Z"]}
    assert log.flush_unlock_failures(vault) is None
    assert log.verify().ok


def test_first_use_inside_a_transaction_does_not_commit_it(db):
    db.execute("CREATE TABLE t(x)")
    db.commit()
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO t VALUES (1)")
    log = AuditLog(db, KEY)  # creates its tables here, inside the caller's transaction
    log.append(Event.NOTE_SIGNED, client_id="c1", note_id="n1")
    assert db.in_transaction
    db.rollback()
    assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    log = AuditLog(db, KEY)
    assert log.entries() == [] and log.verify().ok


def test_an_entry_goes_through_the_json_encoder_once(db, monkeypatch):
    """An import appends an entry per note signed elsewhere (60,000 in a file of 100,000
    notes): each entry's details are encoded once, and its row hash is laid out from them
    without a second trip through the encoder (before: two a entry). The chain verifies."""
    import store.audit as audit

    encoded = []
    real = audit.canonical

    def counting(obj):
        encoded.append(obj)
        return real(obj)

    monkeypatch.setattr(audit, "canonical", counting)
    log = AuditLog(db, KEY)
    entries = [(Event.IMPORT, f"c{i}" if i % 3 else None, {"note_id": f"n{i}", "status": "signed"}) for i in range(30)]
    log.append_many(entries)
    assert len(encoded) == 30
    assert log.verify().ok


@pytest.mark.parametrize("client_id", [None, "client-1", 'quote " and \\ back', "é中\U0001f600", "tab\tnew\nline\x01"])
@pytest.mark.parametrize("details", ['{"note_id":"n1"}', '{"text":"é \\" \\\\ \\u0001"}', ""])
def test_a_row_body_is_what_the_canonical_encoding_of_its_fields_is(client_id, details):
    from store.audit import _row_body, canonical

    for seq, at, event in [(1, "2026-01-01T00:00:00Z", "import"), (2**40, "é\u2028", 'ev"ent')]:
        fields = {"seq": seq, "at": at, "event": event, "client_id": client_id, "details": details}
        assert _row_body(seq, at, event, client_id, details) == canonical(fields)
    # Values of other types (a row altered in the file) take the encoder's own way.
    assert _row_body("7", 1.5, None, 3, ["x"]) == canonical(
        {"seq": "7", "at": 1.5, "event": None, "client_id": 3, "details": ["x"]}
    )
