"""`notewell import FILE`: clients, progress notes and process notes from JSON, all or nothing.

The format is documented in docs/import-format.md. Two steps:

- `parse_import(data)` validates the whole file without touching a vault and returns an
  `ImportPlan` of ready models. Every problem names the item and field
  ("clients[1].diagnoses[0].code: is not an ICD-10 code") and never echoes a value from the
  file, except the ids the file gives, which are how the clinician finds the item.
- `apply_import(vault, plan)` checks the plan against the vault (ids already present, clients
  referred to but not in the file), then writes record.db and private.db each inside one
  transaction. The record is committed first, and only after private.db's writes have
  succeeded; private.db is committed last. See the doc for the window this leaves.

Signed notes are imported as signed records of the past: their signer, credentials and
time are kept, the store computes the heads and content hash the signature covers, and the
compliance checker does not gate them (they were signed elsewhere). The summary lists the
signed notes the checker would have flagged, so nothing is waived silently.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from store.compliance import blocking, check_note
from store.errors import ImportFailed, NotewellError, NotFound
from store.models import (
    FORMAT_SECTIONS,
    PlausibleDates,
    Addendum,
    Client,
    Diagnosis,
    EnteredInError,
    NoteFormat,
    NoteStatus,
    ProcessNote,
    ProgressNote,
    SessionFacts,
    Signature,
)

KIND = "notewell-import"
VERSION = 1
# Ids are kept as given, so they must be safe as document ids: no spaces, no slashes.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_ID_RE = re.compile(ID_PATTERN)
# Problems listed in the error message; the rest are counted.
MAX_LISTED = 10
# The largest file one import reads (about 400,000 progress notes); anything larger is
# refused before it is read, so a mistaken argument (/dev/zero, a disk image) cannot exhaust memory.
MAX_FILE_BYTES = 512 * 1024 * 1024
# No number in this format needs more digits; longer ones are refused before Python converts
# them (an integer of thousands of digits costs time, and past 4,300 digits raises).
MAX_NUMBER_DIGITS = 20
_EARLIEST_ZONE = timezone(timedelta(hours=14))


# --- the file's shape ---------------------------------------------------------------------


class _Strict(PlausibleDates):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


def _check_id(v: str) -> str:
    if not _ID_RE.match(v):
        raise ValueError("must be 1-64 letters, digits, dots, dashes or underscores, starting with a letter or digit")
    return v


FileId = Annotated[str, AfterValidator(_check_id)]
# Keys the file gives are named in messages only when they look like field names.
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")


def _key(key: str) -> str:
    return key if _KEY_RE.match(key) else "(a key)"


class FileGoal(_Strict):
    id: FileId
    description: str = Field(min_length=1)
    objective: str = ""
    active: bool = True


class FileClient(_Strict):
    id: FileId
    display_name: str = Field(min_length=1, max_length=200)
    date_of_birth: date | None = None
    identifiers: dict[str, str] = Field(default_factory=dict)
    diagnoses: list[Diagnosis] = Field(default_factory=list)
    goals: list[FileGoal] = Field(default_factory=list)
    created_at: AwareDatetime | None = None


class FileSignature(_Strict):
    signer: str = Field(min_length=1)
    credentials: str = Field(min_length=1)
    signed_at: AwareDatetime


class FileAddendum(_Strict):
    id: FileId | None = None
    text: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    signer: str = Field(min_length=1)
    credentials: str = Field(min_length=1)
    signed_at: AwareDatetime


class FileEnteredInError(_Strict):
    reason: str = Field(min_length=1)
    marked_at: AwareDatetime
    marked_by: str = Field(min_length=1)


class FileProgressNote(_Strict):
    id: FileId
    client_id: FileId
    format: NoteFormat
    status: Literal["draft", "signed", "entered_in_error"] = "draft"
    sections: dict[str, str] = Field(default_factory=dict)
    facts: SessionFacts
    signature: FileSignature | None = None
    addenda: list[FileAddendum] = Field(default_factory=list)
    entered_in_error: FileEnteredInError | None = None
    created_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _shape(self) -> FileProgressNote:
        extra = sorted(_key(k) for k in set(self.sections) - set(FORMAT_SECTIONS[self.format]))
        if extra:
            raise ValueError(f"sections: {', '.join(extra)} is not a section of a {self.format.value} note")
        if self.status == "signed" and self.signature is None:
            raise ValueError("signature: is required for a signed note")
        if self.status == "draft" and self.signature is not None:
            raise ValueError("signature: a draft has no signature (set status to signed)")
        if self.signature is None and self.addenda:
            raise ValueError("addenda: only a signed note has addenda")
        if self.status == "entered_in_error" and self.entered_in_error is None:
            raise ValueError("entered_in_error: is required when the status is entered_in_error")
        if self.status != "entered_in_error" and self.entered_in_error is not None:
            raise ValueError("entered_in_error: is only for a note whose status is entered_in_error")
        return self


class FileProcessNote(_Strict):
    id: FileId
    client_id: FileId
    session_date: date
    body: str = Field(min_length=1)
    created_at: AwareDatetime | None = None


class ImportFile(_Strict):
    kind: Literal["notewell-import"]
    version: int
    clients: list[FileClient] = Field(default_factory=list)
    progress_notes: list[FileProgressNote] = Field(default_factory=list)
    process_notes: list[FileProcessNote] = Field(default_factory=list)


# --- the plan -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientRef:
    """A reference to a client that is not in the file: it must already be in the vault."""

    item: str  # e.g. "progress_notes[2].client_id"
    client_id: str
    goal_ids: tuple[tuple[str, str], ...] = ()  # (item, goal id) the reference rates


@dataclass(frozen=True)
class ImportPlan:
    clients: tuple[Client, ...]
    notes: tuple[ProgressNote, ...]
    process_notes: tuple[ProcessNote, ...]
    # Clients named by notes but not given in the file; apply_import checks the vault.
    vault_refs: tuple[ClientRef, ...] = ()
    # Where each item came from in the file, for error messages: id -> "clients[0]".
    items: dict[str, str] = field(default_factory=dict)

    @property
    def signed_notes(self) -> tuple[ProgressNote, ...]:
        return tuple(n for n in self.notes if n.status == NoteStatus.SIGNED)

    @property
    def notes_as_given(self) -> tuple[ProgressNote, ...]:
        """Notes entered in the state the file gives (signed, entered in error): not drafts."""
        return tuple(n for n in self.notes if n.status != NoteStatus.DRAFT)


@dataclass(frozen=True)
class ImportSummary:
    clients: int
    notes: int
    process_notes: int
    signed_notes: int = 0
    # Ids of imported signed notes the compliance checker would not have let sign here.
    signed_with_gaps: tuple[str, ...] = ()


# --- parsing ------------------------------------------------------------------------------


def _fail(problems: list[str], *, head: str = "") -> ImportFailed:
    listed = problems[:MAX_LISTED]
    more = len(problems) - len(listed)
    text = "; ".join(listed)
    if more:
        text += f"; and {more} more"
    noun = "problem" if len(problems) == 1 else "problems"
    head = head or f"The import file has {len(problems)} {noun}"
    err = ImportFailed(f"{head}: {text}; nothing was imported.")
    err.problems = list(problems)  # type: ignore[attr-defined]
    return err


_FIELD_PREFIX = re.compile(r"^([A-Za-z_][A-Za-z0-9_.\[\]]*): (.+)$", re.S)


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            part = _key(str(part))
            out += f".{part}" if out else part
    return out


def _schema_problems(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors(include_input=False, include_url=False):
        path = _path(tuple(e.get("loc", ())))
        reason = e.get("msg", "is not valid").removeprefix("Value error, ")
        # A model-level check names its own field: "sections: ... is not a section".
        m = _FIELD_PREFIX.match(reason)
        if m:
            path = f"{path}.{m.group(1)}" if path else m.group(1)
            reason = m.group(2)
        reason = reason.replace("Input should", "should", 1)
        if e.get("type") == "extra_forbidden":
            reason = "is not a field of this format (see docs/import-format.md)"
        problems.append(f"{path}: {reason}" if path else reason)
    return problems


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _BadValue(ValueError):
    """A JSON value this format never holds; `what` says which, without the value."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def _whole_number(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise _BadValue(f"a number of more than {MAX_NUMBER_DIGITS} digits")
    return int(text)


def _decimal(text: str) -> float:
    if len(text) > 2 * MAX_NUMBER_DIGITS:
        raise _BadValue(f"a number of more than {MAX_NUMBER_DIGITS} digits")
    return float(text)


def _constant(name: str) -> float:
    raise _BadValue(f"{name}, which is not a JSON number")


# A lone surrogate can reach a string only through a \uD800-\uDFFF escape (UTF-8 cannot
# encode one); a pair of them is an ordinary character such as an emoji, which json joins.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return _LONE_SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


_DECODER = json.JSONDecoder(
    object_pairs_hook=_no_duplicate_keys, parse_int=_whole_number, parse_float=_decimal, parse_constant=_constant
)


def read_import_file(path: str | os.PathLike) -> bytes:
    """The bytes of an import file: a regular file of at most MAX_FILE_BYTES, or ImportFailed.

    Opened without blocking (a FIFO with no writer would otherwise wait forever) and checked
    with fstat on the open descriptor before anything is read; at most the limit plus one
    byte is read, so a file that grows meanwhile cannot exceed it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise ImportFailed(f"Cannot read {path}: {e.strerror}; nothing was imported.") from None
    too_large = ImportFailed(
        f"{path} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB, the most one import reads; "
        "split it into smaller files; nothing was imported."
    )
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImportFailed(
                f"{path} is not a regular file (it is a folder, device or pipe); give the import file itself; "
                "nothing was imported."
            )
        if info.st_size > MAX_FILE_BYTES:
            raise too_large
        with open(fd, "rb", closefd=False) as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise ImportFailed(f"Cannot read {path}: {e.strerror}; nothing was imported.") from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise too_large
    return data


def _load_json(data: bytes) -> Any:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportFailed("The import file is not UTF-8 text; nothing was imported.") from None
    try:
        value = _DECODER.decode(text)
    except _BadValue as e:
        raise ImportFailed(f"The import file holds {e.what}; nothing was imported.") from None
    except _DuplicateKey as e:
        name = f'the key "{e.key}"' if _KEY_RE.match(e.key) else "a key"
        raise ImportFailed(f"The import file gives {name} twice in one object; nothing was imported.") from None
    except RecursionError:
        raise ImportFailed("The import file nests objects too deeply; nothing was imported.") from None
    except json.JSONDecodeError as e:
        # e.msg is the parser's reason ("Expecting ',' delimiter"), never file content.
        raise ImportFailed(
            f"The import file is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); "
            "nothing was imported."
        ) from None
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise ImportFailed(
            "The import file holds text with a lone surrogate escape (\\uD800-\\uDFFF not in a pair), "
            "which is not a character; nothing was imported."
        )
    return value


def _check_header(raw: Any) -> None:
    if not isinstance(raw, dict):
        raise _fail(["the file must hold one JSON object"])
    if raw.get("kind") != KIND:
        raise _fail([f'kind: must be "{KIND}" (is this a Notewell import file?)'])
    version = raw.get("version")
    if version is None:
        raise _fail([f"version: is required; this Notewell reads version {VERSION}"])
    if not isinstance(version, int) or isinstance(version, bool):
        raise _fail(["version: must be a whole number"])
    if version > VERSION:
        raise _fail(
            [f"version: the file is format version {version}; this Notewell reads version {VERSION} (update Notewell)"]
        )
    if version != VERSION:
        raise _fail([f"version: {version} is not a format version Notewell knows; use version {VERSION}"])


def _client(fc: FileClient) -> Client:
    data = fc.model_dump(exclude_none=True)
    if fc.created_at is not None:
        data["created_at"] = _utc(fc.created_at)
    return Client.model_validate(data)


def _utc(at: datetime) -> datetime:
    # One spelling of each instant: signature and addendum hashes cover the time as text.
    return at.astimezone(timezone.utc)


def _draft(fn: FileProgressNote) -> ProgressNote:
    data: dict[str, Any] = {
        "id": fn.id,
        "client_id": fn.client_id,
        "format": fn.format,
        "sections": dict(fn.sections),
        "facts": fn.facts,
    }
    if fn.created_at is not None:
        data["created_at"] = data["updated_at"] = _utc(fn.created_at)
    return ProgressNote.model_validate(data)


def _note(fn: FileProgressNote) -> ProgressNote:
    note = _draft(fn)
    if fn.status == "draft":
        return note
    sig = fn.signature
    # Heads, content hash and device are the store's to fill in when it writes the note.
    signature = None
    if sig is not None:
        signature = Signature(
            signer=sig.signer,
            credentials=sig.credentials,
            signed_at=_utc(sig.signed_at),
            device_id="",
            heads=[],
            content_hash="",
        )
    addenda = [
        Addendum(
            **({"id": a.id} if a.id else {}),
            text=a.text,
            reason=a.reason,
            signer=a.signer,
            credentials=a.credentials,
            signed_at=_utc(a.signed_at),
            device_id="",
            content_hash="",
        )
        for a in fn.addenda
    ]
    eie = None
    if fn.entered_in_error is not None:
        eie = EnteredInError(
            **fn.entered_in_error.model_dump(exclude={"marked_at"}),
            marked_at=_utc(fn.entered_in_error.marked_at),
        )
    times = [_utc(t.signed_at) for t in ([sig] if sig else []) + list(fn.addenda)]
    times += [eie.marked_at] if eie else []
    return note.model_copy(
        update={
            "status": NoteStatus(fn.status),
            "signature": signature,
            "addenda": addenda,
            "entered_in_error": eie,
            "updated_at": max(times + [note.updated_at]),
        }
    )


def _process_note(fp: FileProcessNote) -> ProcessNote:
    data = fp.model_dump(exclude_none=True)
    if fp.created_at is not None:
        data["created_at"] = data["updated_at"] = _utc(fp.created_at)
    return ProcessNote.model_validate(data)


def _cross_problems(f: ImportFile, now: datetime) -> tuple[list[str], list[ClientRef], dict[str, str]]:
    problems: list[str] = []
    items: dict[str, str] = {}

    def claim(item: str, id_: str) -> None:
        if id_ in items:
            problems.append(f"{item}.id: {id_} is used twice in the file (also {items[id_]})")
        else:
            items[id_] = item

    goals_of: dict[str, set[str]] = {}
    for i, c in enumerate(f.clients):
        claim(f"clients[{i}]", c.id)
        goals_of.setdefault(c.id, {g.id for g in c.goals})
    for i, n in enumerate(f.progress_notes):
        claim(f"progress_notes[{i}]", n.id)
    for i, p in enumerate(f.process_notes):
        claim(f"process_notes[{i}]", p.id)

    refs: dict[str, list] = {}  # client id not in the file -> [first item, [(item, goal id)]]
    for i, n in enumerate(f.progress_notes):
        item = f"progress_notes[{i}]"
        rated = [(f"{item}.facts.goals_addressed[{j}].goal_id", g.goal_id) for j, g in enumerate(n.facts.goals_addressed)]
        if n.client_id in goals_of:
            for where, goal_id in rated:
                if goal_id not in goals_of[n.client_id]:
                    problems.append(f"{where}: names no goal of client {n.client_id}")
        else:
            ref = refs.setdefault(n.client_id, [f"{item}.client_id", []])
            ref[1].extend(rated)
        if n.signature is not None:
            sig = n.signature
            if sig.signed_at > now:
                problems.append(f"{item}.signature.signed_at: is in the future")
            # The date of service is a local date: a signature is early only if it is
            # before that date everywhere, i.e. in the earliest time zone (UTC+14).
            if sig.signed_at.astimezone(_EARLIEST_ZONE).date() < n.facts.date_of_service:
                problems.append(f"{item}.signature.signed_at: is before the date of service")
            for j, a in enumerate(n.addenda):
                if a.signed_at < sig.signed_at:
                    problems.append(f"{item}.addenda[{j}].signed_at: is before the note's signature")
                elif a.signed_at > now:
                    problems.append(f"{item}.addenda[{j}].signed_at: is in the future")
                if a.id is not None:
                    claim(f"{item}.addenda[{j}]", a.id)
        if n.entered_in_error is not None:
            marked = n.entered_in_error.marked_at
            if marked > now:
                problems.append(f"{item}.entered_in_error.marked_at: is in the future")
            elif n.signature is not None and marked < n.signature.signed_at:
                problems.append(f"{item}.entered_in_error.marked_at: is before the note's signature")
    for i, p in enumerate(f.process_notes):
        if p.client_id not in goals_of:
            refs.setdefault(p.client_id, [f"process_notes[{i}].client_id", []])
    vault_refs = [ClientRef(item, cid, tuple(goals)) for cid, (item, goals) in refs.items()]
    return problems, vault_refs, items


def parse_import(data: bytes, *, now: datetime | None = None) -> ImportPlan:
    """Validate a whole import file; raise ImportFailed listing every problem, or return the plan.

    `now` (default: the current time) is what "in the future" is measured against.
    """
    raw = _load_json(data)
    _check_header(raw)
    try:
        f = ImportFile.model_validate(raw)
    except ValidationError as e:
        raise _fail(_schema_problems(e)) from None

    problems, vault_refs, items = _cross_problems(f, now or datetime.now(timezone.utc))
    if problems:
        raise _fail(problems)

    built: list[str] = []
    clients, notes, process_notes = [], [], []
    # The file models check what the store models check; this catches any rule they add.
    for kind, source, make, out in (
        ("clients", f.clients, _client, clients),
        ("progress_notes", f.progress_notes, _note, notes),
        ("process_notes", f.process_notes, _process_note, process_notes),
    ):
        for i, obj in enumerate(source):
            try:
                out.append(make(obj))
            except ValidationError as e:
                built.extend(f"{kind}[{i}].{p}" for p in _schema_problems(e))
    if built:
        raise _fail(built)
    return ImportPlan(tuple(clients), tuple(notes), tuple(process_notes), tuple(vault_refs), items)


# --- applying -----------------------------------------------------------------------------


def _exists(getter: Callable[[str], Any], id_: str) -> bool:
    try:
        getter(id_)
    except NotFound:
        return False
    return True


def _check_against_vault(vault: Any, plan: ImportPlan) -> list[str]:
    record, private = vault.record, vault.private
    problems: list[str] = []
    for c in plan.clients:
        if _exists(record.get_client, c.id) or _exists(record.get_note, c.id):
            problems.append(f"{plan.items[c.id]}.id: {c.id} already exists in the vault")
    for n in plan.notes:
        if _exists(record.get_note, n.id) or _exists(record.get_client, n.id):
            problems.append(f"{plan.items[n.id]}.id: {n.id} already exists in the vault")
    for p in plan.process_notes:
        if _exists(private.get, p.id):
            problems.append(f"{plan.items[p.id]}.id: {p.id} already exists in the vault")
    for ref in plan.vault_refs:
        try:
            client = record.get_client(ref.client_id)
        except NotFound:
            problems.append(f"{ref.item}: names no client in this file or in the vault")
            continue
        goals = {g.id for g in client.goals}
        problems.extend(
            f"{where}: names no goal of client {ref.client_id}" for where, gid in ref.goal_ids if gid not in goals
        )
    return problems


def _capabilities(vault: Any, plan: ImportPlan) -> None:
    missing = [
        name
        for name, needed in (
            ("record.transaction", True),
            ("private.transaction", bool(plan.process_notes)),
            ("record.import_note", bool(plan.notes_as_given)),
        )
        if needed and not hasattr(getattr(vault, name.split(".")[0]), name.split(".")[1])
    ]
    if missing:
        raise ImportFailed(
            "This version of the vault cannot import atomically (" + ", ".join(missing) + "); nothing was imported."
        )


def _database_errors() -> tuple[type[BaseException], ...]:
    try:
        from sqlcipher3 import dbapi2
    except ImportError:  # pragma: no cover - sqlcipher3 is a pinned dependency
        return ()
    return (dbapi2.Error,)


def apply_import(
    vault: Any, plan: ImportPlan, *, progress: Callable[[int, int], None] | None = None
) -> ImportSummary:
    """Write `plan` into `vault`, all or nothing; `progress(done, total)` after each item.

    Raises ImportFailed naming the item when an id is already in the vault, a client a note
    refers to is in neither the file nor the vault, or a write fails; then nothing changed.
    """
    _capabilities(vault, plan)
    record, private = vault.record, vault.private
    # Reached before any transaction opens: creating the log's tables commits.
    log = getattr(vault, "audit", None)
    total = len(plan.clients) + len(plan.notes) + len(plan.process_notes)
    done = 0
    current = "the vault"
    record_committed = False
    db_errors = _database_errors()

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    try:
        # private.db's transaction encloses record.db's: record commits first, and only
        # once every private write has succeeded; private commits last.
        with private.transaction():
            with record.transaction():
                problems = _check_against_vault(vault, plan)
                if problems:
                    raise _fail(problems, head="The import file conflicts with the vault")
                for client in plan.clients:
                    current = plan.items[client.id]
                    record.create_client(client)
                    tick()
                for note in plan.notes:
                    current = plan.items[note.id]
                    if note.status == NoteStatus.DRAFT:
                        record.create_note(note)
                    else:
                        record.import_note(note)
                    tick()
                for pnote in plan.process_notes:
                    current = plan.items[pnote.id]
                    private.create(pnote.model_copy(update={"device_id": vault.device_id}))
                    tick()
                if log is not None:
                    current = "the audit log"
                    _audit(log, plan)
            record_committed = True
    except ImportFailed:
        if record_committed:
            raise _partial() from None
        raise
    except NotewellError as e:
        if record_committed:
            raise _partial() from None
        raise ImportFailed(f"Importing {current} failed ({e.message}); nothing was imported.") from None
    except db_errors as e:
        if record_committed:
            raise _partial() from None
        raise ImportFailed(
            f"Importing {current} failed: the database refused the write ({_db_reason(e)}); nothing was imported."
        ) from None

    gaps = tuple(n.id for n in plan.signed_notes if blocking(check_note(n, _client_for(plan, record, n.client_id))))
    return ImportSummary(
        clients=len(plan.clients),
        notes=len(plan.notes),
        process_notes=len(plan.process_notes),
        signed_notes=len(plan.signed_notes),
        signed_with_gaps=gaps,
    )


def _partial() -> ImportFailed:
    return ImportFailed(
        "The clients and progress notes were imported, but saving the process notes failed; "
        "import a file holding only the process notes again."
    )


def _db_reason(e: BaseException) -> str:
    # SQLite's reasons ("database or disk is full") name no values; keep only the first line.
    name = getattr(e, "sqlite_errorname", None)
    return name or str(e).splitlines()[0][:80] or type(e).__name__


def _client_for(plan: ImportPlan, record: Any, client_id: str) -> Client | None:
    for c in plan.clients:
        if c.id == client_id:
            return c
    try:
        return record.get_client(client_id)
    except NotFound:
        return None


def _audit(log: Any, plan: ImportPlan) -> None:
    """Audit entries for the import, in record.db's open transaction (so they roll back too).

    One entry for the import as a whole and one per note entered as given (signed or
    entered in error), since those were signed elsewhere, without this vault's checklist.
    """
    from store.audit import Event

    log.append(
        Event.IMPORT,
        clients=len(plan.clients),
        progress_notes=len(plan.notes),
        signed_notes=len(plan.signed_notes),
        process_notes=len(plan.process_notes),
    )
    for note in plan.notes_as_given:
        log.append(
            Event.IMPORT,
            client_id=note.client_id,
            note_id=note.id,
            status=note.status.value,
            signed_at=note.signature.signed_at if note.signature else None,
        )
