"""Derived tables of record.db, rebuilt from a document after every local change or merge.

The documents are the truth; these tables exist for lists, the overdue queue and search.
`project` replaces one document's rows; `rebuild_all` recomputes everything;
`projection_mismatches` compares the tables with what the documents say (used by `check`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta, timezone

from automerge.core import Document

from store import document_budget
from store.automerge_guard import panic_or
from store.doc_ids import record_kind
from store.errors import DocumentOverBudget, ForeignDocument
from store.documents import (
    KIND_CLIENT,
    KIND_NOTE,
    client_from_doc,
    client_updated_at,
    content_hash,
    envelopes_parsed_once,
    note_doc_kind,
    note_from_doc,
)
from store.models import (
    PROGRESS_FORMATS,
    Client,
    NoteStatus,
    ProgressNote,
    implausible_dates,
    note_title,
    section_title,
)
from store.overdue import session_end
from store.signature_index import WorkerKeys, prepared_state, trust_of_keys
from store.signature_state import SignatureStatus, signature_state

Loader = Callable[[str], Document | None]
# What a check expects of a stored document: (kind, view row, fts row) as `expected_rows`
# gives them, or None when it cannot be loaded.
Expected = tuple[str | None, tuple | None, tuple | None] | None
ExpectedReader = Callable[[list[str]], Iterator[Expected]]

CLIENT_COLUMNS = (
    "client_id", "display_name", "date_of_birth", "diagnoses", "updated_at",
    "plan_start", "review_interval_days",  # _v5_plans_and_measures
)
NOTE_COLUMNS = (
    "note_id", "client_id", "date_of_service", "start_time", "stop_time", "minutes", "format",
    "cpt_code", "status", "late_entry", "signature_conflict", "signed_at", "phq9", "gad7",
    "addenda_count", "updated_at",
    "pcl5",  # _v5_plans_and_measures
)
FTS_COLUMNS = ("doc_id", "kind", "client_id", "title", "body")


def _v1(conn) -> None:
    conn.execute(
        """CREATE TABLE clients_view(
               client_id TEXT PRIMARY KEY,
               display_name TEXT NOT NULL,
               date_of_birth TEXT,
               diagnoses TEXT NOT NULL,
               updated_at TEXT NOT NULL)"""
    )
    conn.execute("CREATE INDEX clients_view_by_name ON clients_view(display_name COLLATE NOCASE)")
    conn.execute(
        """CREATE TABLE notes_view(
               note_id TEXT PRIMARY KEY,
               client_id TEXT NOT NULL,
               date_of_service TEXT NOT NULL,
               start_time TEXT,
               stop_time TEXT,
               minutes INTEGER,
               format TEXT NOT NULL,
               cpt_code TEXT,
               status TEXT NOT NULL,
               late_entry INTEGER NOT NULL,
               signature_conflict INTEGER NOT NULL,
               signed_at TEXT,
               phq9 INTEGER,
               gad7 INTEGER,
               addenda_count INTEGER NOT NULL,
               updated_at TEXT NOT NULL)"""
    )
    conn.execute("CREATE INDEX notes_view_by_client ON notes_view(client_id, date_of_service)")
    conn.execute("CREATE INDEX notes_view_by_date ON notes_view(date_of_service)")
    conn.execute(
        "CREATE VIRTUAL TABLE record_fts USING fts5("
        "doc_id UNINDEXED, kind UNINDEXED, client_id UNINDEXED, title, body)"
    )
    # FTS5 finds a row fast only by rowid; this keeps each document's rowid so replacing
    # one document's entry on a keystroke does not scan the whole index.
    conn.execute(
        "CREATE TABLE record_fts_rows(doc_id TEXT PRIMARY KEY, fts_rowid INTEGER NOT NULL UNIQUE)"
    )
    # Documents whose index entry is due: the typing path marks a note here instead of
    # re-indexing it on every keystroke (FTS5 writes a new segment per change, about 30
    # pages). The mark commits with the change, so the index is never silently stale:
    # search and check see it and refresh those entries first.
    conn.execute("CREATE TABLE record_fts_pending(doc_id TEXT PRIMARY KEY)")


def _v5_plans_and_measures(conn) -> None:
    # The treatment plan's review schedule (the To do list's plan reviews) and the PCL-5
    # (the outcomes series). No stored document holds either yet, so the defaults are what
    # every existing row would be rebuilt to.
    # A column already there (a record taken back to an earlier version) is left as it is.
    def add(table: str, column: str, declaration: str) -> None:
        if column not in {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    add("clients_view", "plan_start", "TEXT")
    add("clients_view", "review_interval_days", "INTEGER NOT NULL DEFAULT 90")
    add("notes_view", "pcl5", "INTEGER")
    # Intake, review and discharge notes are few among session notes: found by format.
    conn.execute("CREATE INDEX IF NOT EXISTS notes_view_by_format ON notes_view(format)")


# --- derived values ---------------------------------------------------------------------


def is_late_entry(note: ProgressNote, late_entry_hours: int) -> bool:
    """Signed more than `late_entry_hours` after the session ended (local wall-clock time)."""
    if note.signature is None:
        return False
    return signed_late(note.facts.date_of_service, note.facts.stop_time, note.signature.signed_at, late_entry_hours)


def signed_late(on: date, stop: time | None, signed_at: datetime, late_entry_hours: int) -> bool:
    # Without a stop time the session counts as ending at the end of its day.
    ended = session_end(on, stop)
    try:
        ended_at = ended.astimezone()  # naive: the session's local time on this device
    except (OverflowError, ValueError):  # at the very ends of the calendar (an old vault's odd date)
        ended_at = ended.replace(tzinfo=timezone.utc)
    if signed_at.tzinfo is None:
        signed_at = signed_at.replace(tzinfo=timezone.utc)
    return signed_at - ended_at > timedelta(hours=late_entry_hours)


def refresh_late_entries(conn, late_entry_hours: int) -> None:
    """Recomputes notes_view.late_entry from the row itself, after the setting changed."""
    rows = conn.execute(
        "SELECT note_id, date_of_service, stop_time, signed_at, late_entry FROM notes_view "
        "WHERE signed_at IS NOT NULL"
    ).fetchall()
    for note_id, on, stop, signed_at, current in rows:
        late = int(
            signed_late(
                date.fromisoformat(on),
                time.fromisoformat(stop) if stop else None,
                datetime.fromisoformat(signed_at),
                late_entry_hours,
            )
        )
        if late != current:
            conn.execute("UPDATE notes_view SET late_entry = ? WHERE note_id = ?", (late, note_id))


def has_signature_conflict(note: ProgressNote) -> bool:
    return (
        note.status == NoteStatus.SIGNED
        and note.signature is not None
        and content_hash(note) != note.signature.content_hash
    )


def client_row(client: Client, updated_at: str) -> tuple:
    return (
        client.id,
        client.display_name,
        client.date_of_birth.isoformat() if client.date_of_birth else None,
        ", ".join(d.code for d in client.diagnoses),
        updated_at,
        client.plan_start.isoformat() if client.plan_start else None,
        client.review_interval_days,
    )


def client_fts(client: Client) -> tuple:
    parts = [client.display_name]
    parts += [f"{d.code} {d.description}".strip() for d in client.diagnoses]
    parts += [f"{g.description} {g.objective}".strip() for g in client.goals]
    return (client.id, KIND_CLIENT, client.id, client.display_name, "\n".join(parts))


def note_row(note: ProgressNote, late_entry_hours: int, signature_conflict: bool | None = None) -> tuple:
    """The notes_view row. `signature_conflict`: the structural signature state's answer
    (store/signature_state.py) when the caller has the document; else the note alone says."""
    f = note.facts
    if signature_conflict is None:
        signature_conflict = has_signature_conflict(note)
    return (
        note.id,
        note.client_id,
        f.date_of_service.isoformat(),
        f.start_time.isoformat() if f.start_time else None,
        f.stop_time.isoformat() if f.stop_time else None,
        f.minutes,
        note.format.value,
        f.cpt_code,
        note.status.value,
        int(is_late_entry(note, late_entry_hours)),
        int(signature_conflict),
        note.signature.signed_at.isoformat() if note.signature else None,
        f.phq9,
        f.gad7,
        len(note.addenda),
        note.updated_at.isoformat(),
        f.pcl5,
    )


def note_fts(note: ProgressNote) -> tuple:
    kind = "progress note" if note.format in PROGRESS_FORMATS else note_title(note.format).lower()
    title = f"{note.facts.date_of_service.isoformat()} {note.format.value} {kind}"
    parts = [f"{section_title(k)}: {note.sections.get(k, '')}" for k in note.section_keys]
    parts += [f"Addendum: {a.text}" for a in note.addenda]
    parts += note.facts.interventions
    return (note.id, KIND_NOTE, note.client_id, title, "\n".join(parts))


def read_record(doc: Document) -> tuple[str | None, Client | ProgressNote | None]:
    """(kind, model) of a record document; (None, None) for anything else."""
    kind = note_doc_kind(doc)
    if kind == KIND_CLIENT:
        return kind, client_from_doc(doc)
    if kind == KIND_NOTE:
        return kind, note_from_doc(doc)
    return None, None


def rows_of(kind: str | None, model, doc: Document, late_entry_hours: int) -> tuple[tuple | None, tuple | None]:
    """(view row, fts row) of a record read by `read_record`."""
    if kind == KIND_CLIENT:
        return client_row(model, client_updated_at(doc)), client_fts(model)
    if kind == KIND_NOTE:
        # Conflicts and structural findings (no keys at hand here): the list column and the
        # sync counts; every read that shows a note as signed verifies it with keys.
        attention = signature_state(doc, None, note=model).needs_attention
        return note_row(model, late_entry_hours, attention), note_fts(model)
    return None, None


def expected_rows(doc_id: str, doc: Document, late_entry_hours: int) -> tuple[str | None, tuple | None, tuple | None]:
    """(kind, view row, fts row) that the document implies."""
    kind, model = read_record(doc)
    view, fts = rows_of(kind, model, doc, late_entry_hours)
    return kind, view, fts


def expected_rows_of_stored(doc_id: str, data: bytes, late_entry_hours: int) -> Expected:
    """`expected_rows` of a stored document given as its bytes; None when they do not load
    (a check reports that document instead of stopping at it). Pure."""
    doc = panic_or(None, Document.load, data, also=(Exception,))
    return None if doc is None else expected_rows(doc_id, doc, late_entry_hours)


def expected_rows_many(items: list[tuple[str, bytes]], late_entry_hours: int) -> list[Expected]:
    """A worker's part of a check (store/check_reading.py)."""
    return [expected_rows_of_stored(doc_id, data, late_entry_hours) for doc_id, data in items]


# Why a document received whole was refused, when it is a record document but not a valid one.
IMPLAUSIBLE_DATES = "implausible dates"


def prepare_whole(doc_id: str, data: bytes, late_entry_hours: int, keys: WorkerKeys | None = None) -> tuple | str | None:
    """For a document received whole: (kind, view row, fts row, heads, signature) when `data`
    loads as a record document whose id is `doc_id`, IMPLAUSIBLE_DATES when it holds a date
    outside the plausible range (store/models.py), `document_budget.Refused` when it is over
    the document budget (then it is never loaded), else None (bytes that are not a document,
    an Automerge panic included).

    `signature`: with `keys` (store/signature_index.py `worker_keys`), a note's signature state
    verified with them, for `SignatureIndex.expect_prepared` (None for an unsigned note);
    "unread" without keys or for a document that is no note.

    Pure (bytes in, rows out), so a worker process can run it too.
    """
    try:  # the document budget first: past it, or unreadable to it, nothing is loaded
        document_budget.check(doc_id, data)
    except DocumentOverBudget as over:
        return document_budget.Refused(over.message)
    except ForeignDocument:
        return None
    # Any failure to read it, a panic included, means "not a record document".
    return panic_or(None, _prepare_whole, doc_id, data, late_entry_hours, keys, also=(Exception,))


UNREAD = "unread"  # no signature state computed with the rows (see `prepare_whole`)


def _prepare_whole(doc_id: str, data: bytes, late_entry_hours: int, keys: WorkerKeys | None) -> tuple | str | None:
    # The note's reader, the signature check and the signers each read every signed entry:
    # each envelope is parsed once for all of them.
    with envelopes_parsed_once():
        return _prepare_read(doc_id, data, late_entry_hours, keys)


def _prepare_read(doc_id: str, data: bytes, late_entry_hours: int, keys: WorkerKeys | None) -> tuple | str | None:
    doc = Document.load(bytes(data))
    stored_kind = record_kind(doc_id, doc)
    if stored_kind is None:
        return None
    kind, model = read_record(doc)  # (None, None) for the device list: no rows
    if implausible_dates(model):
        return IMPLAUSIBLE_DATES
    if kind != KIND_NOTE or keys is None:
        view, fts = rows_of(kind, model, doc, late_entry_hours)
        return stored_kind, view, fts, doc.get_heads(), UNREAD
    state, signature = prepared_state(doc, model, trust_of_keys(keys))
    # The list column is the structural reading (no keys; what `rows_of` and `check` give).
    # A state with keys that found nothing read every entry as the structural reading does
    # (the keys only add findings), so its status is that reading's; only a tampered one
    # may differ, and is read again without keys.
    if state.status == SignatureStatus.TAMPERED:
        attention = signature_state(doc, None, note=model).needs_attention
    else:
        attention = state.needs_attention
    return stored_kind, note_row(model, late_entry_hours, attention), note_fts(model), doc.get_heads(), signature


def prepare_whole_many(items: list[tuple[str, bytes]], late_entry_hours: int,
                       keys: WorkerKeys | None = None) -> list[tuple | None]:
    return [prepare_whole(doc_id, data, late_entry_hours, keys) for doc_id, data in items]


def expected_fts(doc_id: str, doc: Document) -> tuple | None:
    kind = note_doc_kind(doc)
    if kind == KIND_CLIENT:
        fts = client_fts(client_from_doc(doc))
    elif kind == KIND_NOTE:
        fts = note_fts(note_from_doc(doc))
    else:
        return None
    return (doc_id, *fts[1:])


# --- writing ----------------------------------------------------------------------------


def _replace_view(conn, table: str, key: str, columns: tuple[str, ...], row: tuple | None, doc_id: str) -> None:
    current = conn.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE {key} = ?", (doc_id,)).fetchone()
    if row is not None and current is not None and tuple(current) == row:
        return  # unchanged: no page written (most keystrokes change nothing here)
    if current is not None:
        conn.execute(f"DELETE FROM {table} WHERE {key} = ?", (doc_id,))
    if row is not None:
        conn.execute(f"INSERT INTO {table} VALUES ({','.join('?' * len(columns))})", row)


def _replace_fts(conn, doc_id: str, fts: tuple | None) -> None:
    conn.execute("DELETE FROM record_fts_pending WHERE doc_id = ?", (doc_id,))
    found = conn.execute("SELECT fts_rowid FROM record_fts_rows WHERE doc_id = ?", (doc_id,)).fetchone()
    rowid = found[0] if found else None
    if rowid is not None:
        current = conn.execute(f"SELECT {', '.join(FTS_COLUMNS)} FROM record_fts WHERE rowid = ?", (rowid,)).fetchone()
        if fts is not None and current is not None and tuple(current) == fts:
            return
        conn.execute("DELETE FROM record_fts WHERE rowid = ?", (rowid,))
    if fts is None:
        if rowid is not None:
            conn.execute("DELETE FROM record_fts_rows WHERE doc_id = ?", (doc_id,))
        return
    if rowid is None:
        cur = conn.execute("INSERT INTO record_fts(doc_id, kind, client_id, title, body) VALUES (?,?,?,?,?)", fts)
        conn.execute("INSERT INTO record_fts_rows(doc_id, fts_rowid) VALUES (?,?)", (doc_id, cur.lastrowid))
    else:
        conn.execute(
            "INSERT INTO record_fts(rowid, doc_id, kind, client_id, title, body) VALUES (?,?,?,?,?,?)",
            (rowid, *fts),
        )


def project(conn, doc_id: str, doc: Document, *, late_entry_hours: int = 72, defer_fts: bool = False) -> None:
    """Replaces the rows of one document (inside the caller's transaction).

    defer_fts marks the index entry as due instead of rewriting it (the typing path).
    """
    kind, view, fts = expected_rows(doc_id, doc, late_entry_hours)
    _replace_view(conn, "clients_view", "client_id", CLIENT_COLUMNS, view if kind == KIND_CLIENT else None, doc_id)
    _replace_view(conn, "notes_view", "note_id", NOTE_COLUMNS, view if kind == KIND_NOTE else None, doc_id)
    # The index is keyed by the document id we store it under, whatever the doc claims.
    fts = None if fts is None else (doc_id, *fts[1:])
    if defer_fts and fts is not None:
        conn.execute("INSERT OR IGNORE INTO record_fts_pending(doc_id) VALUES (?)", (doc_id,))
    else:
        _replace_fts(conn, doc_id, fts)


# The search index's in-memory table of pending terms while one transaction loads many
# documents (an import). FTS5 writes it out as a new segment whenever it passes `hashsize`
# (1 MiB by default) and merges segments as they pile up, so a bulk load of 100,000 notes
# wrote a few hundred small segments and merged each term list about four times over.
# A larger table means fewer segments written and merged (bench/README.md, "Import,
# eleventh pass"), for its size in memory at the import's peak.
BULK_FTS_HASHSIZE = 8 * 2**20
_FTS_DEFAULT_HASHSIZE = 2**20  # FTS5's own default, what an unset 'hashsize' means


@contextmanager
def bulk_fts_load(conn) -> Iterator[None]:
    """Within it (inside the caller's transaction), the search index keeps up to
    BULK_FTS_HASHSIZE of pending terms before it writes a segment. FTS5 keeps the setting
    in its config table: it is put back to the default at the end, and its row removed, so
    the stored rows are as they were without it (the index's segments are fewer and
    larger; a search finds the same)."""
    _set_fts_option(conn, "hashsize", BULK_FTS_HASHSIZE)
    # Not put back when the body raises: the caller's transaction then rolls back, and the
    # setting with it (no statement here to hide the error that rolls it back).
    yield
    _set_fts_option(conn, "hashsize", _FTS_DEFAULT_HASHSIZE)
    conn.execute("DELETE FROM record_fts_config WHERE k = 'hashsize'")


def _set_fts_option(conn, name: str, value: int) -> None:
    conn.execute("INSERT INTO record_fts(record_fts, rank) VALUES (?, ?)", (name, value))


def project_new(conn, rows: list[tuple[str, str, tuple, tuple]]) -> None:
    """Rows of documents that had none, in bulk: (doc_id, kind, view row, fts row) as
    `expected_rows` gives them (inside the caller's transaction).

    For a sync that brings many new documents: one statement per table instead of one
    lookup and insert per document. A document that already has rows fails the insert
    (primary key), which rolls the caller's transaction back.
    """
    if not rows:
        return
    clients = [view for _d, kind, view, _f in rows if kind == KIND_CLIENT]
    notes = [view for _d, kind, view, _f in rows if kind == KIND_NOTE]
    if clients:
        conn.executemany(f"INSERT INTO clients_view VALUES ({','.join('?' * len(CLIENT_COLUMNS))})", clients)
    if notes:
        conn.executemany(f"INSERT INTO notes_view VALUES ({','.join('?' * len(NOTE_COLUMNS))})", notes)
    base = conn.execute("SELECT coalesce(max(rowid), 0) FROM record_fts").fetchone()[0]
    indexed = [r for r in rows if r[3] is not None]  # the device list has no rows
    fts = [(base + i + 1, doc_id, *f[1:]) for i, (doc_id, _k, _v, f) in enumerate(indexed)]
    conn.executemany("INSERT INTO record_fts(rowid, doc_id, kind, client_id, title, body) VALUES (?,?,?,?,?,?)", fts)
    conn.executemany("INSERT INTO record_fts_rows(doc_id, fts_rowid) VALUES (?,?)", [(r[1], r[0]) for r in fts])


def project_section_edit(conn, doc_id: str, updated_at: str) -> None:
    """The typing path's projection of a section splice on a draft.

    Of a draft's notes_view row only updated_at depends on its section text (status,
    signature and addenda are untouched by a splice), and the search entry is marked as
    due; so the whole note need not be read back on every keystroke. The property test
    holds this to what `project` would write.
    """
    conn.execute("UPDATE notes_view SET updated_at = ? WHERE note_id = ?", (updated_at, doc_id))
    conn.execute("INSERT OR IGNORE INTO record_fts_pending(doc_id) VALUES (?)", (doc_id,))


def pending_fts(conn) -> list[str]:
    return [r[0] for r in conn.execute("SELECT doc_id FROM record_fts_pending ORDER BY doc_id")]


def refresh_pending_fts(conn, load: Loader) -> int:
    """Re-indexes the documents marked as due (inside the caller's transaction)."""
    due = pending_fts(conn)
    for doc_id in due:
        doc = load(doc_id)
        _replace_fts(conn, doc_id, expected_fts(doc_id, doc) if doc is not None else None)
    return len(due)


def rebuild_all(conn, load: Loader, *, late_entry_hours: int = 72) -> None:
    conn.execute("DELETE FROM clients_view")
    conn.execute("DELETE FROM notes_view")
    conn.execute("DELETE FROM record_fts")
    conn.execute("DELETE FROM record_fts_rows")
    conn.execute("DELETE FROM record_fts_pending")
    for (doc_id,) in conn.execute("SELECT doc_id FROM documents ORDER BY doc_id").fetchall():
        doc = load(doc_id)
        if doc is not None:
            project(conn, doc_id, doc, late_entry_hours=late_entry_hours)


# --- checking ---------------------------------------------------------------------------


def projection_mismatches(
    conn,
    read_many: ExpectedReader,
    *,
    unchanged: Callable[[str, tuple | None, tuple | None], bool] | None = None,
    matched: Callable[[str, tuple | None, tuple | None], None] | None = None,
) -> list[str]:
    """Every way the derived tables differ from the documents; [] when in step.

    `unchanged(doc_id, view row, fts row)`, when given, may answer that a document and its
    rows are exactly as when they last matched (store/check_record.py): that document is not
    loaded again. `matched` hears of each document found in step after loading it.
    `read_many(doc ids)` reads the documents to compare: their `expected_rows` in order, or
    None for one that cannot be loaded (store/check_reading.py, which can share them out).
    Messages name document ids and columns, never their content.
    """
    problems: list[str] = []
    clients = {r[0]: tuple(r) for r in conn.execute(f"SELECT {', '.join(CLIENT_COLUMNS)} FROM clients_view")}
    notes = {r[0]: tuple(r) for r in conn.execute(f"SELECT {', '.join(NOTE_COLUMNS)} FROM notes_view")}
    fts = {r[0]: tuple(r) for r in conn.execute(f"SELECT {', '.join(FTS_COLUMNS)} FROM record_fts")}
    fts_count = conn.execute("SELECT count(*) FROM record_fts").fetchone()[0]
    if fts_count != len(fts):
        problems.append(f"record_fts holds {fts_count} entries for {len(fts)} documents.")
    rowmap = dict(conn.execute("SELECT doc_id, fts_rowid FROM record_fts_rows").fetchall())
    fts_by_rowid = {r[0]: r[1] for r in conn.execute("SELECT rowid, doc_id FROM record_fts")}
    # An entry marked as due may lag its document until the next search refreshes it.
    pending = set(pending_fts(conn))

    kinds = dict(conn.execute("SELECT doc_id, kind FROM documents ORDER BY doc_id").fetchall())
    # First the documents found unchanged since the last check (nothing loaded), then the
    # others read in one go, so that a reader can share them out; problems keep id order.
    by_doc: dict[str, list[str]] = {}
    to_read: list[str] = []
    for doc_id, stored_kind in kinds.items():
        if unchanged is not None and doc_id not in pending:
            rows = clients if stored_kind == KIND_CLIENT else notes if stored_kind == KIND_NOTE else None
            actual_view = rows.get(doc_id) if rows is not None else None
            if unchanged(doc_id, actual_view, fts.get(doc_id)):
                if rows is not None:
                    rows.pop(doc_id, None)
                    fts.pop(doc_id, None)
                    if fts_by_rowid.get(rowmap.get(doc_id)) != doc_id:
                        by_doc[doc_id] = [f"record_fts_rows points document {doc_id} at the wrong index entry."]
                continue
        to_read.append(doc_id)
    for doc_id, expected in zip(to_read, read_many(to_read), strict=True):
        found = by_doc[doc_id] = []
        if expected is None:
            found.append(f"document {doc_id} cannot be loaded.")
            for rows in (clients, notes, fts):  # its rows are not orphans: that one line says it
                rows.pop(doc_id, None)
            pending.discard(doc_id)
            continue
        kind, view, fts_row = expected
        if kind is None:
            if matched is not None:
                matched(doc_id, None, None)
            continue
        table, actual = ("clients_view", clients.pop(doc_id, None)) if kind == KIND_CLIENT else ("notes_view", notes.pop(doc_id, None))
        columns = CLIENT_COLUMNS if kind == KIND_CLIENT else NOTE_COLUMNS
        if actual is None:
            found.append(f"{table} has no row for document {doc_id}.")
        elif actual != view:
            differ = [c for c, a, b in zip(columns, actual, view) if a != b]
            found.append(f"{table} row of document {doc_id} differs in: {', '.join(differ)}.")
        expected_fts = (doc_id, *fts_row[1:])
        actual_fts = fts.pop(doc_id, None)
        if doc_id in pending:
            pending.discard(doc_id)
            if actual_fts is not None and fts_by_rowid.get(rowmap.get(doc_id)) != doc_id:
                found.append(f"record_fts_rows points document {doc_id} at the wrong index entry.")
            continue
        if actual_fts is None:
            found.append(f"record_fts has no entry for document {doc_id}.")
        elif actual_fts != expected_fts:
            differ = [c for c, a, b in zip(FTS_COLUMNS, actual_fts, expected_fts) if a != b]
            found.append(f"record_fts entry of document {doc_id} differs in: {', '.join(differ)}.")
        if fts_by_rowid.get(rowmap.get(doc_id)) != doc_id:
            found.append(f"record_fts_rows points document {doc_id} at the wrong index entry.")
        if matched is not None and not found:
            matched(doc_id, actual, actual_fts)
    problems += [p for doc_id in kinds for p in by_doc.get(doc_id, ())]
    for doc_id in clients:
        problems.append(f"clients_view has a row for {doc_id}, which is no client document.")
    for doc_id in notes:
        problems.append(f"notes_view has a row for {doc_id}, which is no note document.")
    for doc_id in fts:
        problems.append(f"record_fts has an entry for {doc_id}, which is no record document.")
    for doc_id in pending:
        problems.append(f"record_fts_pending names {doc_id}, which is no record document.")
    return problems
