"""Process notes: private.db, the clinician's own reflections.

Rows, not documents: there is nothing to merge because they never leave this device. This
module is the only code that touches private.db's tables; sync and export never import it
(tests/test_boundaries.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from store.database import WriteTransactions, migrate
from store.errors import NotFound, ValidationFailed
from store.fts import fts_query, snippet_sql
from store.models import STORED, ProcessNote, implausible_reason, plausible_date, require_plausible, utcnow


def _v1(conn) -> None:
    conn.execute(
        """CREATE TABLE process_notes(
               id TEXT PRIMARY KEY,
               client_id TEXT NOT NULL,
               session_date TEXT NOT NULL,
               body TEXT NOT NULL,
               created_at TEXT NOT NULL,
               updated_at TEXT NOT NULL,
               device_id TEXT NOT NULL)"""
    )
    conn.execute("CREATE INDEX process_notes_by_client ON process_notes(client_id, session_date)")
    conn.execute("CREATE VIRTUAL TABLE process_fts USING fts5(note_id UNINDEXED, body)")


MIGRATIONS = [_v1]


@dataclass(frozen=True)
class PrivateHit:
    note_id: str
    client_id: str
    session_date: date
    snippet: str
    label: str = "private - this device only"


class PrivateStore:
    def __init__(self, conn, *, device_id: str) -> None:
        self._conn = conn
        self._device_id = device_id
        self._tx = WriteTransactions(conn)
        migrate(conn, MIGRATIONS)

    # --- transactions -----------------------------------------------------------

    def transaction(self) -> WriteTransactions:
        """One write transaction; nested uses join the outer one. Rolls back on error."""
        return self._tx

    # --- process notes ----------------------------------------------------------

    def create(self, note: ProcessNote) -> ProcessNote:
        note = note.model_copy(update={"device_id": note.device_id or self._device_id})
        require_plausible(note)
        with self.transaction():
            if self._row(note.id) is not None:
                raise ValidationFailed([("id", "a process note with this id already exists")])
            self._conn.execute(
                "INSERT INTO process_notes VALUES (?,?,?,?,?,?,?)",
                (
                    note.id,
                    note.client_id,
                    note.session_date.isoformat(),
                    note.body,
                    note.created_at.isoformat(),
                    note.updated_at.isoformat(),
                    note.device_id,
                ),
            )
            self._conn.execute("INSERT INTO process_fts(note_id, body) VALUES (?,?)", (note.id, note.body))
        return note

    def update_body(self, note_id: str, body: str) -> ProcessNote:
        now = utcnow().isoformat()
        with self.transaction():
            if self._row(note_id) is None:
                raise NotFound(f"There is no process note {note_id}.")
            self._conn.execute(
                "UPDATE process_notes SET body = ?, updated_at = ? WHERE id = ?", (body, now, note_id)
            )
            self._conn.execute("DELETE FROM process_fts WHERE note_id = ?", (note_id,))
            self._conn.execute("INSERT INTO process_fts(note_id, body) VALUES (?,?)", (note_id, body))
        return self.get(note_id)

    def update_date(self, note_id: str, session_date: date) -> ProcessNote:
        if not plausible_date(session_date):
            raise ValidationFailed([("session_date", implausible_reason(session_date))])
        with self.transaction():
            if self._row(note_id) is None:
                raise NotFound(f"There is no process note {note_id}.")
            self._conn.execute(
                "UPDATE process_notes SET session_date = ?, updated_at = ? WHERE id = ?",
                (session_date.isoformat(), utcnow().isoformat(), note_id),
            )
        return self.get(note_id)

    def get(self, note_id: str) -> ProcessNote:
        row = self._row(note_id)
        if row is None:
            raise NotFound(f"There is no process note {note_id}.")
        return self._model(row)

    def for_client(self, client_id: str) -> list[ProcessNote]:
        rows = self._conn.execute(
            "SELECT * FROM process_notes WHERE client_id = ? ORDER BY session_date DESC, created_at DESC",
            (client_id,),
        ).fetchall()
        return [self._model(r) for r in rows]

    def session_dates(self) -> list[tuple[str, date]]:
        """(client id, session date) of every process note: sessions the overdue queue knows of."""
        rows = self._conn.execute("SELECT DISTINCT client_id, session_date FROM process_notes").fetchall()
        return [(c, date.fromisoformat(d)) for c, d in rows]

    def ids(self) -> set[str]:
        """Every process note's id (one read: an import checks a whole file's ids at once)."""
        return {r[0] for r in self._conn.execute("SELECT id FROM process_notes")}

    def count(self) -> int:
        return self._conn.execute("SELECT count(*) FROM process_notes").fetchone()[0]

    def search(self, query: str, limit: int = 50) -> list[PrivateHit]:
        match = fts_query(query)
        if match is None:
            return []
        rows = self._conn.execute(
            f"""SELECT p.id, p.client_id, p.session_date, {snippet_sql('process_fts', 1)}
                  FROM process_fts JOIN process_notes p ON p.id = process_fts.note_id
                 WHERE process_fts MATCH ? ORDER BY p.session_date DESC LIMIT ?""",
            (match, limit),
        ).fetchall()
        return [PrivateHit(r[0], r[1], date.fromisoformat(r[2]), r[3]) for r in rows]

    def check(self) -> list[str]:
        """The full-text index holds exactly one entry per note, with the note's text."""
        problems = []
        n_notes = self.count()
        n_index = self._conn.execute("SELECT count(*) FROM process_fts").fetchone()[0]
        if n_notes != n_index:
            problems.append(
                f"private.db: the search index has {n_index} entries for {n_notes} process notes."
            )
        stale = self._conn.execute(
            """SELECT count(*) FROM process_notes p LEFT JOIN process_fts f ON f.note_id = p.id
                WHERE f.body IS NULL OR f.body != p.body"""
        ).fetchone()[0]
        if stale:
            problems.append(f"private.db: {stale} process notes are out of step with the search index.")
        return problems

    # --- rows -------------------------------------------------------------------

    def _row(self, note_id: str):
        return self._conn.execute(
            "SELECT id, client_id, session_date, body, created_at, updated_at, device_id "
            "FROM process_notes WHERE id = ?",
            (note_id,),
        ).fetchone()

    @staticmethod
    def _model(row) -> ProcessNote:
        # As stored: an old vault may hold a date outside today's plausible range.
        return ProcessNote.model_validate(
            {
                "id": row[0],
                "client_id": row[1],
                "session_date": row[2],
                "body": row[3],
                "created_at": datetime.fromisoformat(row[4]),
                "updated_at": datetime.fromisoformat(row[5]),
                "device_id": row[6],
            },
            context=STORED,
        )
