"""The client's record export (HIPAA right of access: the designated record set).

What goes in: the client's demographics, diagnoses, treatment plan and goals; every progress
note whose date of service is in the range, with its session facts, sections, signature,
late-entry label and addenda (in order); notes entered in error, labelled so; the PHQ-9,
GAD-7 and PCL-5 scores as a table. Drafts only when asked for, and then marked as drafts.
Intake assessments, treatment-plan reviews and discharge summaries are notes too and go in
the same way. At a couples or family session, everyone present but the client appears only
by the initials the clinician chose (`released_to`).

What never goes in: process notes. This module takes a RecordStore (record.db only), never a
Vault, and does not import the private store; tests/test_boundaries.py holds it to that.

Formats: JSON in the `notewell import` format (so an export restores into an empty vault) and
PDF (store/export_pdf.py). With a password, the PDF carries the PDF standard's AES-256
encryption and the JSON goes into the sealed container (store/sealed_export.py). The file is
written atomically, readable by its owner only, and never replaces an existing file unless
asked to. Recording the export in the audit log, with the purpose it was released for, is the
caller's job (it holds the vault): `audit.append(Event.EXPORT, client_id=..., **result.audit_details())`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

from store.errors import ExportFailed, ValidationFailed
from store.models import DEFAULT_REVIEW_INTERVAL_DAYS, Client, ClinicianSettings, NoteStatus, Participant, ProgressNote
from store.outcomes import Outcomes, outcomes_from
from store.projections import is_late_entry
from store.signature_state import SignatureStatus
from store.rights_documents import rights_json
from store.vaultfile import fsync_dir

FORMATS = ("pdf", "json")
# What the audit trail says of an export released without a stated purpose.
PURPOSE_NOT_STATED = "not stated"
MAX_PURPOSE_CHARS = 120


@dataclass(frozen=True)
class ExportedNote:
    """A note as released. For an unresolved signature conflict `note` is the signed
    version (with the current addenda and status): what was signed is the record."""

    note: ProgressNote
    late_entry: bool = False
    signature_conflict: bool = False
    # The verified signature state (store/signature_state.py). A note whose signature fails
    # verification is exported marked as such, never as signed: its `note` has no signature.
    signature_status: str = ""
    findings: tuple[str, ...] = ()

    @property
    def fails_verification(self) -> bool:
        return self.signature_status == "tampered"

    @property
    def legacy_signature(self) -> bool:
        return self.signature_status == "legacy"

    @property
    def draft(self) -> bool:
        return self.note.status == NoteStatus.DRAFT

    @property
    def entered_in_error(self) -> bool:
        return self.note.status == NoteStatus.ENTERED_IN_ERROR


@dataclass(frozen=True)
class RecordExport:
    client: Client
    notes: tuple[ExportedNote, ...]  # oldest first
    outcomes: Outcomes
    settings: ClinicianSettings
    generated_at: datetime
    date_from: date | None = None
    date_to: date | None = None
    include_drafts: bool = False
    # Amendment requests concerning the exported notes (store/client_rights.py): every later
    # export of those notes carries them, with any denial, statement and rebuttal.
    amendments: tuple = ()
    unverified_amendments: frozenset = frozenset()  # their ids whose signatures fail verification here

    @property
    def addenda_count(self) -> int:
        return sum(len(n.note.addenda) for n in self.notes)

    @property
    def drafts_count(self) -> int:
        return sum(1 for n in self.notes if n.draft)

    def period(self) -> str:
        if self.date_from is None and self.date_to is None:
            return "all dates of service"
        start = self.date_from.isoformat() if self.date_from else "the first session"
        end = self.date_to.isoformat() if self.date_to else "the latest session"
        return f"dates of service from {start} to {end}"


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    client_id: str
    notes: int
    addenda: int
    drafts: int
    date_from: date | None
    date_to: date | None
    include_drafts: bool
    sha256: str
    size: int
    encrypted: bool = False
    purpose: str = PURPOSE_NOT_STATED

    def audit_details(self) -> dict:
        """What the audit log keeps about this export: what, why, for whom, which range."""
        return {
            "purpose": self.purpose,
            "encrypted": self.encrypted,
            "format": self.format,
            "file": self.path.name,
            "date_from": self.date_from.isoformat() if self.date_from else None,
            "date_to": self.date_to.isoformat() if self.date_to else None,
            "include_drafts": self.include_drafts,
            "notes": self.notes,
            "addenda": self.addenda,
            "drafts": self.drafts,
            "sha256": self.sha256,
        }


def check_purpose(purpose: str | None) -> str:
    """The recipient purpose as the audit trail keeps it: a short label on one line
    ("client request", "insurer", "continuity of care"), or PURPOSE_NOT_STATED."""
    if purpose is None:
        return PURPOSE_NOT_STATED
    text = " ".join(purpose.split())
    if not text:
        raise ExportFailed(
            "The export's purpose is empty: say who it is for (e.g. client request); nothing was written."
        )
    if len(text) > MAX_PURPOSE_CHARS:
        raise ExportFailed(
            f"The export's purpose is longer than {MAX_PURPOSE_CHARS} characters (a short label is enough); "
            "nothing was written."
        )
    if not text.isprintable():
        raise ExportFailed("The export's purpose holds control characters; nothing was written.")
    return text


def _row_id(row) -> str:
    get = row.get if isinstance(row, dict) else lambda k: getattr(row, k, None)
    return get("note_id") or get("id")


def _released_version(record, note: ProgressNote, state) -> tuple[ProgressNote, bool]:
    if state.status == SignatureStatus.TAMPERED:
        # Never exported as signed: the content as it reads, without a signature.
        return note.model_copy(update={"signature": None, "addenda": list(state.addenda)}), False
    if state.status != SignatureStatus.CONFLICT:
        return note, False
    signed = record.signed_version(note.id)
    if signed is None:
        return note, True
    # What was signed, plus what happened to the note since (addenda, status, resolution).
    return (
        signed.model_copy(
            update={
                "addenda": note.addenda,
                "status": note.status,
                "entered_in_error": note.entered_in_error,
                "resolution": note.resolution,
                "signature": note.signature,
            }
        ),
        True,
    )


def released_to(note: ProgressNote, client_id: str) -> ProgressNote:
    """The note as released to (or about) `client_id`: everyone else present at a couples
    or family session by the initials the clinician chose, never by name or record link."""
    others = [p for p in note.facts.participants if p.client_id != client_id]
    if not others:
        return note
    shown = [p if p.client_id == client_id else Participant(initials=p.initials) for p in note.facts.participants]
    return note.model_copy(update={"facts": note.facts.model_copy(update={"participants": shown})})


def collect(
    record,
    client_id: str,
    *,
    settings: ClinicianSettings | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    include_drafts: bool = False,
    now: datetime | None = None,
) -> RecordExport:
    """Everything the export releases for one client, read from `record` (a RecordStore)."""
    if date_from and date_to and date_from > date_to:
        raise ValidationFailed([("from", "is after the end of the range")])
    settings = settings or ClinicianSettings()
    client = record.get_client(client_id)
    notes: list[ExportedNote] = []
    for row in record.notes_for_client(client_id):
        note = record.get_note(_row_id(row))
        on = note.facts.date_of_service
        if (date_from and on < date_from) or (date_to and on > date_to):
            continue
        if note.status == NoteStatus.DRAFT and not include_drafts:
            continue
        state = record.signature_state(note.id)
        shown, conflict = _released_version(record, note, state)
        shown = released_to(shown, client_id)
        notes.append(
            ExportedNote(
                shown, is_late_entry(note, settings.late_entry_hours), conflict,
                signature_status=state.status.value, findings=state.findings,
            )
        )
    notes.sort(key=lambda n: (n.note.facts.date_of_service, n.note.facts.start_time or datetime.min.time(), n.note.id))
    return RecordExport(
        client=client,
        notes=tuple(notes),
        outcomes=outcomes_from([n.note for n in notes], include_drafts=include_drafts),
        settings=settings,
        generated_at=(now or datetime.now(timezone.utc)).replace(microsecond=0),
        date_from=date_from,
        date_to=date_to,
        include_drafts=include_drafts,
        **_amendments(record, {n.note.id for n in notes}),
    )


def _amendments(record, note_ids: set[str]) -> dict:
    """The amendment requests of the exported notes, and which fail verification here."""
    rights = getattr(record, "rights", None)
    if rights is None:
        return {}
    found = rights.amendments_for_notes(note_ids)
    return {"amendments": tuple(found), "unverified_amendments": frozenset(rights.unverified(found))}


# --- JSON ------------------------------------------------------------------------------


IMPORT_KIND = "notewell-import"
IMPORT_VERSION = 1


def _utc(at: datetime) -> str:
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _client_json(client: Client) -> dict:
    data = client.model_dump(mode="json", exclude={"created_at"})
    data["created_at"] = _utc(client.created_at)
    # The plan's dates appear once set (store/plan_reviews.py); the import reads them back.
    if client.plan_start is None and client.review_interval_days == DEFAULT_REVIEW_INTERVAL_DAYS:
        del data["plan_start"], data["review_interval_days"]
    return data


def _facts_json(note: ProgressNote) -> dict:
    data = note.facts.model_dump(mode="json", exclude={"minutes"})
    # Facts added with the record beyond session notes appear only where a note uses them.
    if data["pcl5"] is None:
        del data["pcl5"]
    if not data["participants"]:
        del data["participants"]
    return data


def _note_json(note: ProgressNote) -> dict:
    data: dict = {
        "id": note.id,
        "client_id": note.client_id,
        "format": note.format.value,
        "status": note.status.value,
        "sections": {key: note.sections.get(key, "") for key in note.section_keys},
        "facts": _facts_json(note),
    }
    if note.signature is not None:
        s = note.signature
        # Heads, content hash and device are recomputed by the store that imports the note.
        data["signature"] = {"signer": s.signer, "credentials": s.credentials, "signed_at": _utc(s.signed_at)}
    if note.addenda:
        data["addenda"] = [
            {
                "id": a.id,
                "text": a.text,
                "reason": a.reason,
                "signer": a.signer,
                "credentials": a.credentials,
                "signed_at": _utc(a.signed_at),
            }
            for a in note.addenda
        ]
    if note.entered_in_error is not None:
        e = note.entered_in_error
        data["entered_in_error"] = {"reason": e.reason, "marked_at": _utc(e.marked_at), "marked_by": e.marked_by}
    data["created_at"] = _utc(note.created_at)
    return data


def _exported_note_json(exported: ExportedNote) -> dict:
    data = _note_json(exported.note)
    if exported.fails_verification:
        # Marked, never signed: the import format has no signature for it, so importing
        # this file refuses the note by name rather than storing it as signed.
        data["signature_verification"] = {"status": "failed", "findings": list(exported.findings)}
    return data


def to_import_document(export: RecordExport) -> dict:
    """The export in the `notewell import` format (docs/import-format.md): one client, its
    progress notes in date order, and never a process note."""
    return {
        "kind": IMPORT_KIND,
        "version": IMPORT_VERSION,
        "clients": [_client_json(export.client)],
        "progress_notes": [_exported_note_json(n) for n in export.notes],
        "process_notes": [],
        **({"client_rights": [_rights_json(r, export) for r in export.amendments]} if export.amendments else {}),
    }


def _rights_json(record, export: RecordExport) -> dict:
    data = rights_json(record)
    if record.id in export.unverified_amendments:
        # Marked, as a note failing verification is: importing the file refuses it by name.
        data["signature_verification"] = "failed"
    return data


def render_json(export: RecordExport) -> bytes:
    return (json.dumps(to_import_document(export), indent=2, ensure_ascii=False, sort_keys=False) + "\n").encode()


# --- writing -----------------------------------------------------------------------------


def _exists(path: Path) -> ExportFailed:
    return ExportFailed(f"{path} already exists; nothing was written (choose to replace it, or use --force).")


def write_temporary(path: Path, data: bytes, *, force: bool = False) -> Path:
    """The first half of an atomic write: `data` in a temporary file beside `path` (a dot
    file, so it never looks like the export), readable by its owner only, on disk (fsynced).
    Follow with `put_in_place`, or `discard`. ExportFailed, and nothing left, if it cannot."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ExportFailed(f"{path} is a folder; give a file name for the export.")
    if not path.parent.is_dir():
        raise ExportFailed(f"The folder {path.parent} does not exist; nothing was written.")
    if os.path.lexists(path) and not force:
        raise _exists(path)
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise ExportFailed(f"Cannot write in {path.parent}: {e.strerror}; nothing was written.") from None
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            # mkstemp makes it 0600 already; said again because it is health information.
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        discard(tmp)
        raise ExportFailed(f"Cannot write {path}: {e.strerror}; nothing was written.") from None
    except BaseException:
        discard(tmp)
        raise
    return tmp


def put_in_place(tmp: Path, path: Path, *, force: bool = False) -> None:
    """The second half: the temporary file becomes `path` in one step (then the folder is
    fsynced). Without `force` it is linked, which fails if the name appeared meanwhile where
    a rename would overwrite it. ExportFailed, and the temporary file removed, if it cannot."""
    path = Path(path).expanduser()
    try:
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise _exists(path) from None
            os.unlink(tmp)
        fsync_dir(path.parent)
    except OSError as e:
        raise ExportFailed(f"Cannot write {path}: {e.strerror}; nothing was written.") from None
    finally:
        discard(tmp)


def discard(tmp: Path) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


def write_atomically(path: Path, data: bytes, *, force: bool = False) -> None:
    """Write `data` to `path` in one step: a crash leaves the old file or none, never half.

    Refuses an existing file unless `force`. The file is readable by its owner only: it is
    health information.
    """
    put_in_place(write_temporary(path, data, force=force), path, force=force)


def render(export: RecordExport, fmt: str, *, password: str | None = None) -> bytes:
    """The file's bytes; with `password`, encrypted (PDF: the PDF standard's AES-256; JSON:
    the sealed container). The plaintext JSON is never written anywhere."""
    if fmt == "json":
        data = render_json(export)
        if password is None:
            return data
        from store.sealed_export import seal

        return seal(data, password)
    if fmt == "pdf":
        from store.export_pdf import render_pdf

        return render_pdf(export, password=password)
    raise ValidationFailed([("format", f"must be one of {', '.join(FORMATS)}")])


@dataclass
class PreparedExport:
    """An export written to its temporary file and not yet released under its name: the
    caller records it (the audit entry, committed) and only then calls `release`, so an
    export never exists under its name without its record, even if the program is killed."""

    result: ExportResult
    tmp: Path
    force: bool

    def release(self) -> ExportResult:
        put_in_place(self.tmp, self.result.path, force=self.force)
        return self.result

    def discard(self) -> None:
        discard(self.tmp)


def prepare_export(
    record,
    client_id: str,
    out: Path,
    *,
    fmt: str = "pdf",
    settings: ClinicianSettings | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    include_drafts: bool = False,
    force: bool = False,
    now: datetime | None = None,
    password: str | None = None,
    purpose: str | None = None,
) -> PreparedExport:
    """Collect and render one client's record export and write it to a temporary file.

    `password`: encrypt the file (a weak one is refused before anything is read or
    written). `purpose`: who the export is for, kept in the audit details."""
    if fmt not in FORMATS:
        raise ValidationFailed([("format", f"must be one of {', '.join(FORMATS)}")])
    purpose = check_purpose(purpose)
    if password is not None:
        from store.sealed_export import check_password

        check_password(password)
    out = Path(out).expanduser()
    if os.path.lexists(out) and not force:
        raise _exists(out)
    export = collect(
        record,
        client_id,
        settings=settings,
        date_from=date_from,
        date_to=date_to,
        include_drafts=include_drafts,
        now=now,
    )
    data = render(export, fmt, password=password)
    tmp = write_temporary(out, data, force=force)
    result = ExportResult(
        path=out,
        format=fmt,
        client_id=client_id,
        notes=len(export.notes),
        addenda=export.addenda_count,
        drafts=export.drafts_count,
        date_from=date_from,
        date_to=date_to,
        include_drafts=include_drafts,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        encrypted=password is not None,
        purpose=purpose,
    )
    return PreparedExport(result, tmp, force)


def export_record(record, client_id: str, out: Path, **options) -> ExportResult:
    """Collect, render and write one client's record export; returns what was written.
    `options` are those of `prepare_export`. It writes no audit entry: the command line and
    the app call prepare_export and release the file once its entry is committed."""
    return prepare_export(record, client_id, out, **options).release()
