"""`notewell import FILE`: clients, progress notes and process notes from JSON, all or nothing.

The format is documented in docs/import-format.md. The steps:

- `read_import_file(path)` reads a regular file within MAX_FILE_BYTES (never a device or a
  pipe). `read_import(data)` reads its layout, header and ids; `parse_import(data)` also
  checks every item. Either returns an `ImportPlan`: the text and where each item lies, not
  models, so a large file is held once. Every problem names the item and field
  ("clients[1].diagnoses[0].code: is not an ICD-10 code") and never echoes a value from the
  file, except the ids the file gives, which are how the clinician finds the item.
- `apply_import(vault, plan)` checks the ids against the vault first (a repeat is refused at
  once), then checks and builds every item into its documents and rows with nothing written
  (`build_items`, on worker processes when the record has a prepare pool), and only then
  writes record.db and private.db each inside one transaction. The record is committed
  first, and only after private.db's writes have succeeded; private.db is committed last.
  See the doc for the window this leaves.

Signed notes are imported as signed records of the past: their signer, credentials and
time are kept, the store computes the heads and content hash the signature covers, and the
compliance checker does not gate them (they were signed elsewhere). The summary lists the
signed notes the checker would have flagged, so nothing is waived silently.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import stat
import sys
from array import array
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from store import documents as D
from store.audit import prepared_details
from store.compliance import blocking, check_note
from store.document_encoding import EncodedDocument, Unsupported, refilled_change, root_puts_change
from store.import_spill import Spill
from store.errors import DiskFull, ImportFailed, NotewellError, NotFound, VaultBusy
from store.projections import expected_rows, note_fts, note_row
from store.signing import entry_key, reissue_payloads, unsigned_envelope
from store.doc_ids import DOC_ID_PATTERN, ITEM_ID_RULE, is_item_id
from store.rights_documents import FileRightsRecord
from store.models import (
    DEFAULT_REVIEW_INTERVAL_DAYS,
    FORMAT_SECTIONS,
    PlausibleDates,
    Addendum,
    Client,
    Diagnosis,
    EnteredInError,
    Goal,
    NoteFormat,
    NoteStatus,
    ProcessNote,
    ProgressNote,
    SessionFacts,
    Signature,
    new_id,
    utcnow,
)

KIND = "notewell-import"
VERSION = 1
# Ids are kept as given, so they follow the record's one document-id rule (store/doc_ids.py).
ID_PATTERN = DOC_ID_PATTERN
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
    if not is_item_id(v):
        raise ValueError(ITEM_ID_RULE)
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
    plan_start: date | None = None
    review_interval_days: int = Field(default=DEFAULT_REVIEW_INTERVAL_DAYS, ge=1, le=366)


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
    # Amendment requests and the rest of the client's rights records (store/rights_documents.py).
    client_rights: list[FileRightsRecord] = Field(default_factory=list, max_length=10_000)


# --- the plan -----------------------------------------------------------------------------

SECTIONS = ("clients", "progress_notes", "process_notes")


@dataclass(frozen=True)
class ClientRef:
    """A reference to a client that is not in the file: it must already be in the vault."""

    item: str  # e.g. "progress_notes[2].client_id"
    client_id: str
    goal_ids: tuple[tuple[str, str], ...] = ()  # (item, goal id) the reference rates


class Spans:
    """Where each item of a section lies in the file's text: (start, end) by index. Two arrays
    of integers, not a tuple per item (a 100,000-note file's spans took 12 MB that way, held
    for the whole import)."""

    __slots__ = ("_starts", "_ends")

    def __init__(self) -> None:
        self._starts, self._ends = array("q"), array("q")

    def append(self, start: int, end: int) -> None:
        self._starts.append(start)
        self._ends.append(end)

    def __len__(self) -> int:
        return len(self._starts)

    def __getitem__(self, index: int) -> tuple[int, int]:
        return self._starts[index], self._ends[index]


@dataclass
class ImportPlan:
    """An import file read into where each item lies, not into models: a file of 100,000
    notes is then held once, as its text, and each item is read when it is checked or
    written. `validated`: every item has been checked (parse_import); otherwise apply_import
    checks each one as it builds it, and imports nothing if any fails.

    `clients`, `notes` and `process_notes` build the models on first use (for small files
    and tests; the import itself never needs them all at once)."""

    text: str
    spans: dict[str, Spans]
    # Where each item came from in the file, for error messages: id -> "clients[0]".
    items: dict[str, str]
    # Clients named by notes but not given in the file; apply_import checks the vault.
    vault_refs: tuple[ClientRef, ...]
    client_spans: dict[str, tuple[int, int]]  # client id -> where it lies in the file
    now: datetime
    note_clients: list[Any] = field(default_factory=list)  # each note's client_id as given
    validated: bool = False
    _models: dict[str, tuple] = field(default_factory=dict, repr=False)
    rights: tuple = ()  # the file's client_rights, each read into its record (store/rights_documents.py)

    def count(self, section: str) -> int:
        return len(self.spans.get(section, ()))

    @property
    def total(self) -> int:
        return sum(self.count(s) for s in SECTIONS)

    def raw(self, section: str, index: int) -> str:
        start, end = self.spans[section][index]
        return self.text[start:end]

    def _built(self, section: str) -> tuple:
        if section not in self._models:
            make = {"clients": _build_client, "progress_notes": _build_note, "process_notes": _build_process_note}[section]
            out = []
            for i in range(self.count(section)):
                stages, model = make(i, _DECODER.decode(self.raw(section, i)), self.now)
                _raise_first(*stages)
                out.append(model)
            self._models[section] = tuple(out)
        return self._models[section]

    @property
    def clients(self) -> tuple[Client, ...]:
        return self._built("clients")

    @property
    def notes(self) -> tuple[ProgressNote, ...]:
        return self._built("progress_notes")

    @property
    def process_notes(self) -> tuple[ProcessNote, ...]:
        return self._built("process_notes")

    @property
    def signed_notes(self) -> tuple[ProgressNote, ...]:
        return tuple(n for n in self.notes if n.status == NoteStatus.SIGNED)

    @property
    def notes_as_given(self) -> tuple[ProgressNote, ...]:
        """Notes entered in the state the file gives (signed, entered in error): not drafts."""
        return tuple(n for n in self.notes if n.status != NoteStatus.DRAFT)


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


def _schema_problems(err: ValidationError, prefix: tuple[Any, ...] = ()) -> list[str]:
    problems = []
    for e in err.errors(include_input=False, include_url=False):
        path = _path(prefix + tuple(e.get("loc", ())))
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


# A note is checked once, fully, by the file's models (FileProgressNote and the models it
# holds: every field, bound and rule the store's note models have, and more); its store model
# is then made from what they checked, without checking it a second time (a tenth of building
# a note). tests/store/test_import_checked_once.py pins the store models' rules, so a rule
# added to them fails there until the file's models check it too.


def _draft(fn: FileProgressNote) -> ProgressNote:
    # Every section of the format, empty where the file has none (as `ProgressNote` fills them).
    sections = dict(fn.sections)
    for key in FORMAT_SECTIONS[fn.format]:
        sections.setdefault(key, "")
    data: dict[str, Any] = {
        "id": fn.id,
        "client_id": fn.client_id,
        "format": fn.format,
        "sections": sections,
        "facts": fn.facts,
    }
    if fn.created_at is not None:
        data["created_at"] = data["updated_at"] = _utc(fn.created_at)
    # Every field given: pydantic's filling in of a default inspects its factory each time
    # (a third of a millisecond). These are the model's defaults.
    defaults = {"status": NoteStatus.DRAFT, "signature": None, "addenda": [], "entered_in_error": None,
                "resolution": None, "created_at": utcnow(), "updated_at": utcnow()}
    return ProgressNote.model_construct(_fields_set=set(data), **{**defaults, **data})


def _note(fn: FileProgressNote) -> ProgressNote:
    note = _draft(fn)
    if fn.status == "draft":
        return note
    sig = fn.signature
    # Heads, content hash and device are the store's to fill in when it writes the note.
    signature = None
    if sig is not None:
        signature = Signature.model_construct(
            signer=sig.signer,
            credentials=sig.credentials,
            signed_at=_utc(sig.signed_at),
            device_id="",
            heads=[],
            content_hash="",
        )
    addenda = [
        Addendum.model_construct(
            id=a.id or new_id(),
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
        eie = EnteredInError.model_construct(
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


# --- reading the file item by item ---------------------------------------------------------

_WS = re.compile(r"[ \t\n\r]*")


class _Shape(Exception):
    """The text is not an object of lists in the expected layout: read it whole instead."""


@contextmanager
def _json_errors() -> Iterator[None]:
    """Turns the decoder's refusals into one sentence each, never quoting the file."""
    try:
        yield
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


_SURROGATE_PROBLEM = (
    "The import file holds text with a lone surrogate escape (\\uD800-\\uDFFF not in a pair), "
    "which is not a character; nothing was imported."
)


def _decode_text(data: bytes | str) -> str:
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportFailed("The import file is not UTF-8 text; nothing was imported.") from None


def _load_json(data: bytes | str) -> Any:
    text = _decode_text(data)
    with _json_errors():
        value = _DECODER.decode(text)
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise ImportFailed(_SURROGATE_PROBLEM)
    return value


# The first reading only needs ids and references: the plain decoder reads about twice as
# fast. What it lets through (a key given twice inside an item, NaN, a long number) the
# checking decoder refuses when each item is checked; what it refuses, the checking decoder
# reads again to say precisely.
_PLAIN = json.JSONDecoder()


def _walk(
    text: str, on_item: Callable[[str, int, Any], None], decoder: json.JSONDecoder = _DECODER
) -> tuple[dict[str, Any], dict[str, Spans]]:
    """Reads the top-level object: its plain values, and for each list section where each item
    lies, handing each decoded item to `on_item` (and keeping none of them). _Shape when the
    text is laid out otherwise; the decoder's own errors pass through."""
    top: dict[str, Any] = {}
    spans: dict[str, Spans] = {}
    seen: set[str] = set()
    decode = decoder.raw_decode
    ws = _WS.match
    try:
        pos = ws(text, 0).end()
        if text[pos] != "{":
            raise _Shape
        pos = ws(text, pos + 1).end()
        if text[pos] == "}":
            pos += 1
        else:
            while True:
                if text[pos] != '"':
                    raise _Shape
                key, pos = decode(text, pos)
                if key in seen:
                    raise _DuplicateKey(key)
                seen.add(key)
                pos = ws(text, pos).end()
                if text[pos] != ":":
                    raise _Shape
                pos = ws(text, pos + 1).end()
                if key in SECTIONS and text[pos] == "[":
                    found = Spans()
                    pos = ws(text, pos + 1).end()
                    if text[pos] == "]":
                        pos += 1
                    else:
                        while True:
                            value, end = decode(text, pos)
                            on_item(key, len(found), value)
                            found.append(pos, end)
                            pos = ws(text, end).end()
                            if text[pos] == ",":
                                pos = ws(text, pos + 1).end()
                            elif text[pos] == "]":
                                pos += 1
                                break
                            else:
                                raise _Shape
                    spans[key] = found
                else:
                    top[key], pos = decode(text, pos)
                pos = ws(text, pos).end()
                if text[pos] == ",":
                    pos = ws(text, pos + 1).end()
                elif text[pos] == "}":
                    pos += 1
                    break
                else:
                    raise _Shape
        if ws(text, pos).end() != len(text):
            raise _Shape
    except IndexError:
        raise _Shape from None
    return top, spans


@dataclass
class _Scan:
    """What the first reading gathers from the items as given (ids, references), typed or not."""

    surrogates: bool
    ids: dict[str, list[tuple[str, Any]]] = field(default_factory=lambda: {s: [] for s in SECTIONS + ("addenda",)})
    goals_of: dict[str, set[str]] = field(default_factory=dict)
    client_spans: dict[str, int] = field(default_factory=dict)
    note_refs: list[tuple[int, Any, list[tuple[str, Any]]]] = field(default_factory=list)
    process_refs: list[tuple[int, Any]] = field(default_factory=list)
    note_clients: list[Any] = field(default_factory=list)
    lone_surrogate: bool = False

    def item(self, section: str, index: int, value: Any) -> None:
        if self.surrogates and not self.lone_surrogate and _has_lone_surrogate(value):
            self.lone_surrogate = True
        if section == "progress_notes":
            cid = value.get("client_id") if isinstance(value, dict) else None
            # Held for the whole import, one per note: a client's id once, not once a note.
            self.note_clients.append(sys.intern(cid) if isinstance(cid, str) else cid)
        if not isinstance(value, dict):
            return
        where = f"{section}[{index}]"
        self.ids[section].append((where, value.get("id")))
        if section == "clients":
            goals = value.get("goals")
            cid = value.get("id")
            if isinstance(cid, str) and cid not in self.goals_of:
                self.client_spans[cid] = index
                self.goals_of[cid] = {
                    g["id"] for g in goals if isinstance(g, dict) and isinstance(g.get("id"), str)
                } if isinstance(goals, list) else set()
        elif section == "progress_notes":
            facts = value.get("facts")
            rated = facts.get("goals_addressed") if isinstance(facts, dict) else None
            goals = [
                (f"{where}.facts.goals_addressed[{j}].goal_id", g.get("goal_id"))
                for j, g in enumerate(rated if isinstance(rated, list) else [])
                if isinstance(g, dict) and isinstance(g.get("goal_id"), str)
            ]
            self.note_refs.append((index, value.get("client_id"), goals))
            addenda = value.get("addenda")
            for j, a in enumerate(addenda if isinstance(addenda, list) else []):
                if isinstance(a, dict) and a.get("id") is not None:
                    self.ids["addenda"].append((f"{where}.addenda[{j}]", a.get("id")))
        else:
            self.process_refs.append((index, value.get("client_id")))

    def problems_and_refs(self) -> tuple[list[str], list[ClientRef], dict[str, str]]:
        problems: list[str] = []
        items: dict[str, str] = {}
        for section in SECTIONS + ("addenda",):
            for where, id_ in self.ids[section]:
                if not isinstance(id_, str):
                    continue  # the schema check names it
                if id_ in items:
                    problems.append(f"{where}.id: {id_} is used twice in the file (also {items[id_]})")
                else:
                    items[id_] = where
        refs: dict[str, list] = {}  # client id not in the file -> [first item, [(item, goal id)]]
        for index, cid, rated in self.note_refs:
            if not isinstance(cid, str):
                continue
            if cid in self.goals_of:
                problems.extend(
                    f"{where}: names no goal of client {cid}" for where, gid in rated if gid not in self.goals_of[cid]
                )
            else:
                ref = refs.setdefault(cid, [f"progress_notes[{index}].client_id", []])
                ref[1].extend(rated)
        for index, cid in self.process_refs:
            if isinstance(cid, str) and cid not in self.goals_of:
                refs.setdefault(cid, [f"process_notes[{index}].client_id", []])
        return problems, [ClientRef(item, cid, tuple(goals)) for cid, (item, goals) in refs.items()], items


def scan_import(data: bytes | str, *, now: datetime | None = None) -> tuple[ImportPlan, list[str]]:
    """Reads the file's layout, header and ids without checking its items: (plan, problems
    found among the ids: duplicates, goals a note rates that its client lacks). ImportFailed
    for what makes the file unreadable (not JSON, wrong kind or version, odd top-level fields)."""
    text = _decode_text(data)
    surrogates = _SURROGATE_ESCAPE.search(text) is not None
    scan = _Scan(surrogates=surrogates)
    with _json_errors():
        try:
            try:
                top, spans = _walk(text, scan.item, _PLAIN)
            except (ValueError, RecursionError):
                scan = _Scan(surrogates=surrogates)
                top, spans = _walk(text, scan.item)  # raises what the plain reading met, precisely
        except _Shape:
            # Not laid out as an object of lists: read it whole for the precise complaint,
            # and if it is a valid object after all, walk its canonical spelling.
            whole = _load_json(text)
            _check_header(whole)
            text = json.dumps(whole)
            scan = _Scan(surrogates=_SURROGATE_ESCAPE.search(text) is not None)
            top, spans = _walk(text, scan.item)
    if scan.lone_surrogate or (scan.surrogates and _has_lone_surrogate(top)):
        raise ImportFailed(_SURROGATE_PROBLEM)
    _check_header(top)
    try:
        header = ImportFile.model_validate({**top, **{section: [] for section in spans}})
    except ValidationError as e:
        raise _fail(_schema_problems(e)) from None
    rights = []
    for i, file_record in enumerate(header.client_rights):
        try:
            rights.append(file_record.to_record())
        except ValueError as e:
            raise _fail([f"client_rights[{i}].{e}"]) from None
    problems, refs, items = scan.problems_and_refs()
    client_spans = {cid: spans["clients"][i] for cid, i in scan.client_spans.items()}
    plan = ImportPlan(
        text=text,
        spans={section: spans.get(section, Spans()) for section in SECTIONS},
        items=items,
        vault_refs=tuple(refs),
        client_spans=client_spans,
        now=now or datetime.now(timezone.utc),
        note_clients=scan.note_clients,
        rights=tuple(rights),
    )
    return plan, problems


def read_import(data: bytes | str, *, now: datetime | None = None) -> ImportPlan:
    """`scan_import`, refusing a file whose ids already disagree: what the command line reads
    before it unlocks the vault. Each item is checked while `apply_import` builds it."""
    plan, problems = scan_import(data, now=now)
    if problems:
        raise _fail(problems)
    return plan


# --- checking one item ----------------------------------------------------------------------


Stages = tuple[list[str], list[str], list[str]]  # schema problems, cross-field problems, store-model problems


def _validated(cls: type, raw: Any, where: tuple[str, int]) -> tuple[list[str], Any]:
    try:
        return [], cls.model_validate(raw)
    except ValidationError as e:
        return _schema_problems(e, where), None


def _converted(make: Callable[[Any], Any], obj: Any, where: str) -> tuple[list[str], Any]:
    # The file models check what the store models check; this catches any rule they add
    # (a note's store model is made unchecked: see `_draft`).
    try:
        return [], make(obj)
    except ValidationError as e:
        return [f"{where}.{p}" for p in _schema_problems(e)], None


def _build_client(index: int, raw: Any, now: datetime) -> tuple[Stages, Client | None]:
    schema, fc = _validated(FileClient, raw, ("clients", index))
    if fc is None:
        return (schema, [], []), None
    built, client = _converted(_client, fc, f"clients[{index}]")
    return ([], [], built), client


def _build_process_note(index: int, raw: Any, now: datetime) -> tuple[Stages, ProcessNote | None]:
    schema, fp = _validated(FileProcessNote, raw, ("process_notes", index))
    if fp is None:
        return (schema, [], []), None
    built, note = _converted(_process_note, fp, f"process_notes[{index}]")
    return ([], [], built), note


def _build_note(index: int, raw: Any, now: datetime) -> tuple[Stages, ProgressNote | None]:
    schema, fn = _validated(FileProgressNote, raw, ("progress_notes", index))
    if fn is None:
        return (schema, [], []), None
    cross = _note_problems(fn, f"progress_notes[{index}]")
    built, note = _converted(_note, fn, f"progress_notes[{index}]")
    return ([], cross, built), note


def _note_problems(n: FileProgressNote, item: str) -> list[str]:
    """The checks of one note that compare its fields with each other."""
    problems: list[str] = []
    # Times too far ahead are refused by the models (store/models.py, plausible dates), with
    # a year's room for a device whose clock was ahead (docs/import-format.md, "Times from
    # devices with wrong clocks"); an addendum or a mark written on another device
    # than the signature can be dated before it (that device's clock was behind), so their
    # order is not checked.
    if n.signature is not None:
        # The date of service is a local date: a signature is early only if it is
        # before that date everywhere, i.e. in the earliest time zone (UTC+14). The
        # signing device's own clock passed the date of service (the checklist refuses to
        # sign a note dated in the future), so a wrong clock cannot produce this.
        if n.signature.signed_at.astimezone(_EARLIEST_ZONE).date() < n.facts.date_of_service:
            problems.append(f"{item}.signature.signed_at: is before the date of service")
    return problems


_BUILDERS = {"clients": _build_client, "progress_notes": _build_note, "process_notes": _build_process_note}


def _raise_first(schema: list[str], cross: list[str], built: list[str]) -> None:
    """Problems of the file's shape first; comparisons between fields only once every field
    reads; the store's own rules last (as a clinician would fix them, in that order)."""
    for problems in (schema, cross, built):
        if problems:
            raise _fail(problems)


def parse_import(data: bytes | str, *, now: datetime | None = None) -> ImportPlan:
    """Validate a whole import file; raise ImportFailed listing every problem, or return the plan.

    `now` (default: the current time) is the import's own time (what it records as imported).
    """
    plan, scan_problems = scan_import(data, now=now)
    schema: list[str] = []
    cross: list[str] = []
    built: list[str] = []
    for section in SECTIONS:
        make = _BUILDERS[section]
        for i in range(plan.count(section)):
            (s, c, b), _model = make(i, _DECODER.decode(plan.raw(section, i)), plan.now)
            schema += s
            cross += c
            built += b
    _raise_first(schema, scan_problems + cross, built)
    plan.validated = True
    return plan


# --- building documents (here, or in a worker process) ---------------------------------------


# Plans made in this process (a worker's lasts the import), by summary: in a file whose notes
# take their clients in turn, a round meets each client once, so a plan made per round was
# made again for nearly every signed note. Bounded: a summary is small, but a file may hold
# any number of clients.
_PLANS: dict[tuple, Client] = {}
_PLANS_HELD = 4096
# A plan's own time: the checker reads only its id, diagnosis codes and goals.
_PLAN_MADE = datetime(2000, 1, 1, tzinfo=timezone.utc)


def _plan_of(summary: tuple[str, tuple[str, ...], tuple[tuple[str, bool], ...]] | None) -> Client | None:
    """A client as far as the compliance checker reads it: id, diagnosis codes, goals."""
    if summary is None:
        return None
    plan = _PLANS.get(summary)
    if plan is None:
        cid, codes, goals = summary
        # Every field given: pydantic inspects a default factory's signature each time it
        # fills one in (about 0.3 ms a client, as much as the rest of a note's check).
        plan = Client.model_construct(
            id=cid, display_name="", date_of_birth=None, identifiers={},
            diagnoses=[Diagnosis.model_construct(code=c, description="") for c in codes],
            goals=[Goal.model_construct(id=g, description="", objective="", active=a) for g, a in goals],
            created_at=_PLAN_MADE, plan_start=None, review_interval_days=DEFAULT_REVIEW_INTERVAL_DAYS,
        )
        if len(_PLANS) >= _PLANS_HELD:
            _PLANS.clear()
        _PLANS[summary] = plan
    return plan


def _summary(client: Client) -> tuple[str, tuple[str, ...], tuple[tuple[str, bool], ...]]:
    return client.id, tuple(d.code for d in client.diagnoses), tuple((g.id, g.active) for g in client.goals)


def _note_document(model: ProgressNote, actor: bytes, device_id: str, known_hash: str | None, as_given: bool) -> Any:
    """The note's new document: encoded directly into Automerge's format when the note reads
    back as given (store/document_encoding.py: the same operations, changes and hashes the
    binding makes, without its cost of 15-20 us a new key), else built through the binding."""
    if as_given:
        try:
            return D.imported_note_doc(model, actor, device_id, known_hash, make=EncodedDocument)
        except Unsupported:
            pass
    return D.imported_note_doc(model, actor, device_id, known_hash)


def build_items(items: list[tuple], late_hours: int, context: tuple[str, datetime]) -> list[tuple]:
    """Clients and progress notes of an import file, each checked and built into its document
    and rows: ("bad", stages) or (kind, doc_id, bytes, heads, view row, fts row, extra).

    Items are (section, index, JSON text, client summary or None); `context` is (this
    device's id, now, the device id its signed entries name: `RecordStore.import_signer`).
    Pure (text in, rows out), so worker processes run it too (store/prepare_pool.py); process
    notes never come here. A note signed elsewhere carries in `extra` what is to be sealed
    by this device's key, which only the calling process holds (`_to_seal`)."""
    device_id, now, signer = context
    actor = D.actor_for(device_id)
    out: list[tuple] = []
    for section, index, raw, client_summary in items:
        stages, model = _BUILDERS[section](index, _DECODER.decode(raw), now)
        if model is None or any(stages):
            out.append(("bad", stages))
            continue
        if section == "clients":
            doc = D.new_client_doc(model, actor)
            extra: Any = _summary(model)
            as_given = False
        else:
            as_given = D.reads_back_as_given(model)
            # What a signature made here covers, hashed once for the document and its rows.
            known_hash = D.content_hash(model) if as_given and model.signature is not None else None
            doc = _note_document(model, actor, device_id, known_hash, as_given)
            # The checker only reads the plan: one per client serves every note (`_plan_of`).
            gaps = model.status == NoteStatus.SIGNED and bool(blocking(check_note(model, _plan_of(client_summary))))
            signed_at = model.signature.signed_at if model.signature is not None else None
            # A note entered as given gets an audit entry (`_audit`); its details are made
            # here, on the worker, so the write phase (the lock held, the worker idle) only
            # chains them.
            audit = None if model.status == NoteStatus.DRAFT else prepared_details(
                dict(note_id=model.id, status=model.status.value, signed_at=signed_at)
            )
            extra = (model.client_id, model.status.value, audit, gaps, _to_seal(model, doc, signer))
        if section == "progress_notes" and as_given:
            # The rows of the note as given are the rows of its document (saves reading it
            # back: a third of the work). A signature made here covers exactly this content.
            final = model
            if model.signature is not None:
                final = model.model_copy(
                    update={"signature": model.signature.model_copy(update={"content_hash": known_hash})}
                )
            kind = D.KIND_NOTE
            # Nor need its signature's state be read from the document for the list's
            # conflict column: the document holds no signed entry yet (they are sealed
            # later), and the one signature it names covers exactly this content, so it
            # reads as no conflict and no finding (`vault.check` compares these rows with
            # the ones the stored document implies).
            view, fts = note_row(final, late_hours, False), note_fts(final)
        else:
            kind, view, fts = expected_rows(model.id, doc, late_hours)
        out.append((kind, model.id, doc.save(), doc.get_heads(), view, fts, extra))
    return out


# `_to_seal` when the calling process re-issues the note's signature itself (its document was
# built through the binding: `RecordStore.reissue_imported` reads it back).
RESEAL = "reseal"


def _to_seal(model: ProgressNote, doc: Any, signer: str) -> Any:
    """What the calling process seals and adds to a note signed elsewhere: None when the note
    has no signature; for a document encoded here, whose content is the note's as given,
    (the change that puts its signed entries, laid out with zeros where the signatures go;
    [(bytes to sign, where the signature's hex goes in the change)]); RESEAL otherwise. The
    payloads are those `RecordStore.reissue_imported` makes for the same document
    (signing.reissue_payloads), so the calling process only signs, fills in and hashes:
    laying the envelopes and the change out took half its time per signed note."""
    if model.signature is None:
        return None
    if not isinstance(doc, EncodedDocument):
        return RESEAL
    laid = [
        (entry_key(entry_id), unsigned_envelope(payload))
        for entry_id, payload in reissue_payloads(model, model.signature, model.addenda, device_id=signer)
    ]
    chunk, _head = root_puts_change(doc.next_change(), [(key, envelope.decode()) for key, (_d, envelope, _a) in laid])
    signs, start = [], 0
    for _key, (data, envelope, at) in laid:
        # A change holds its values in order and uncompressed: each envelope is found whole.
        start = chunk.index(envelope, start)
        signs.append((data, start + at))
        start += len(envelope)
    return chunk, signs


# --- applying -----------------------------------------------------------------------------

# Items per round of building: small enough that a round's results are a few megabytes.
BUILD_BATCH = 512
# Items handed to the workers at once: six rounds, so they can be up to five rounds ahead of
# the sealing and writing. (Eight rounds of 1,024 held up to 20 MB more of built rounds: 401 MB
# at 100,000 notes.)
BUILD_WINDOW = 6 * BUILD_BATCH
# With worker processes, the write phase begins when this share of the notes is left to build:
# this process then writes (alone, as SQLite writes) while the workers build the rest, instead
# of the workers idling through a write phase at the end (a fifth of a 100,000-note import).
# The writing takes about a fifth of the time building takes on one core, so the lock is held
# about as long as before, only earlier.
WRITE_OVERLAP = 0.25


@dataclass(frozen=True)
class ImportSummary:
    clients: int
    notes: int
    process_notes: int
    signed_notes: int = 0
    # Ids of imported signed notes the compliance checker would not have let sign here.
    signed_with_gaps: tuple[str, ...] = ()
    rights_records: int = 0  # the file's client_rights (store/rights_documents.py)


def _check_against_vault(vault: Any, plan: ImportPlan, *, private: bool) -> tuple[list[str], dict[str, Client]]:
    """Ids already in the vault (one read of each database's ids, so a repeated import of a
    large file is refused at once) and references to clients the vault must hold.

    With private=False only record.db is read: a bad file is then refused before private.db
    is first touched (the first use of a private store since the vault was made writes to
    it), so its files stay byte for byte as they were."""
    record = vault.record
    in_record = set(record.replica.doc_heads())
    in_private = vault.private.ids() if private else set()
    problems: list[str] = []
    for id_, where in plan.items.items():
        section = where.split("[", 1)[0]
        if ".addenda[" in where or (section == "process_notes" and not private):
            continue
        if id_ in (in_private if section == "process_notes" else in_record):
            problems.append(f"{where}.id: {id_} already exists in the vault")
    clients: dict[str, Client] = {}
    for ref in plan.vault_refs:
        try:
            client = record.get_client(ref.client_id)
        except NotFound:
            problems.append(f"{ref.item}: names no client in this file or in the vault")
            continue
        clients[client.id] = client
        goals = {g.id for g in client.goals}
        problems.extend(
            f"{where}: names no goal of client {ref.client_id}" for where, gid in ref.goal_ids if gid not in goals
        )
    return problems, clients


def check_vault_ids(vault: Any, plan: ImportPlan) -> dict[str, Client]:
    """ImportFailed naming every id of the file already in the vault and every client or goal
    the file refers to that the vault lacks; otherwise the vault's clients the file refers to.
    A repeated import is refused here, before anything is built (apply_import starts with it)."""
    problems, vault_clients = _check_against_vault(vault, plan, private=False)
    if problems:
        problems, _clients = _check_against_vault(vault, plan, private=True)
        raise _fail(problems, head="The import file conflicts with the vault")
    return vault_clients


def _capabilities(vault: Any, plan: ImportPlan) -> None:
    missing = [
        name
        for name, needed in (
            ("record.transaction", True),
            ("record.replica.insert_prepared", plan.count("clients") + plan.count("progress_notes") > 0),
            ("record.replica.bulk_load", plan.count("clients") + plan.count("progress_notes") > 0),
        )  # not private.db's: its store is first used only once the file has passed
        if needed and not _reaches(vault, name)
    ]
    if missing:
        raise ImportFailed(
            "This version of the vault cannot import atomically (" + ", ".join(missing) + "); nothing was imported."
        )


def _reaches(obj: Any, dotted: str) -> bool:
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return False
    return True


def _database_errors() -> tuple[type[BaseException], ...]:
    try:
        from sqlcipher3 import dbapi2
    except ImportError:  # pragma: no cover - sqlcipher3 is a pinned dependency
        return ()
    return (dbapi2.Error,)


@dataclass
class _Built:
    """Everything an import writes, built before anything is written. Each round's documents
    and rows wait in an encrypted, unnamed temporary file (store/import_spill.py): a
    100,000-note file's come to a few hundred megabytes, too much to hold beside the file."""

    spill: Spill = field(default_factory=Spill)
    process_notes: list[ProcessNote] = field(default_factory=list)
    # Per note entered as given: its client and its audit entry's details
    # (audit.prepared_details, which name the note and its status). Held until the end, one
    # per signed note: kept small (the client's id shared), as the peak comes while writing.
    as_given: list[tuple[str, str]] = field(default_factory=list)
    signed_notes: int = 0
    gaps: list[str] = field(default_factory=list)  # in the file's order
    stages: Stages = field(default_factory=lambda: ([], [], []))
    # The write phase, once it has begun (`_Writing`); while it is None, rounds are spilled.
    writing: _Writing | None = None
    notes: int = 0  # progress notes in the file
    notes_taken: int = 0  # of them, built and taken so far
    # Called once the notes left to build are WRITE_OVERLAP of them (None: write at the end):
    # the write phase if it could begin, else None (the file conflicts with the vault).
    begin_writing: Callable[[], _Writing | None] | None = None

    def add_problems(self, stages: Stages) -> None:
        for mine, theirs in zip(self.stages, stages):
            mine.extend(theirs)

    def put_away(self, section: str, taken: int, good: list[tuple]) -> None:
        """A round's good items: spilled, or written once the write phase has begun."""
        if section == "progress_notes":
            self.notes_taken += taken
            if (self.writing is None and self.begin_writing is not None and not any(self.stages)
                    and self.notes - self.notes_taken <= self.notes * WRITE_OVERLAP):
                self.writing, self.begin_writing = self.begin_writing(), None
        if any(self.stages) or not good:
            return  # nothing more is written: the import will be refused
        if self.writing is None:
            self.spill.add(good)
        else:
            self.writing.write(good)


class _Writing:
    """Writes built rounds into record.db, inside the import's transactions (opened by
    whoever makes this). Rounds built from now on are written as they come; those spilled
    before, while this process would otherwise wait for the workers (`write_spilled`), and
    whatever is left of them at the end (`finish`)."""

    def __init__(self, record: Any, plan: ImportPlan, built: _Built, tick: Callable[[int], None]) -> None:
        self.record, self.plan, self.tick = record, plan, tick
        self.current = "the vault"  # what is being written, for a failure's message
        # The spill takes no more rounds from now on, so it can be read as it stands.
        self._spilled = built.spill.rounds()
        self._spilled_left = len(built.spill)

    def write(self, documents: list[tuple]) -> None:
        self.current = self.plan.items.get(documents[0][0], "the record")
        self.record.replica.insert_prepared(
            [(doc_id, kind, data, heads) for doc_id, kind, data, heads, _v, _f in documents],
            [(doc_id, kind, view, fts) for doc_id, kind, _d, _h, view, fts in documents],
        )
        self.tick(len(documents))

    def write_spilled(self) -> bool:
        """Writes the next spilled round; False when none is left."""
        if not self._spilled_left:
            return False
        self._spilled_left -= 1
        self.write(next(self._spilled))
        return True

    def finish(self) -> None:
        while self.write_spilled():
            pass


def _pool_of(record: Any) -> Any:
    """The worker processes the command line starts (store/prepare_pool.py), if any."""
    return getattr(getattr(record, "replica", None), "prepare_pool", None)


def _build(vault: Any, plan: ImportPlan, vault_clients: dict[str, Client], built: _Built) -> None:
    """Checks and builds every item into `built`, writing nothing to the vault: clients first
    (the notes' checklist reads their plans), then notes, on the record's worker processes
    when it has them."""
    record = vault.record
    late_hours = vault.settings().late_entry_hours
    pool = _pool_of(record)
    context = (vault.device_id, plan.now, record.import_signer())
    summaries = {cid: _summary(c) for cid, c in vault_clients.items()}
    # Process notes first (few, and quick): a bad one is known before the write phase can
    # begin, so a refused file never opens private.db's transaction.
    for i in range(plan.count("process_notes")):
        stages, pnote = _build_process_note(i, _DECODER.decode(plan.raw("process_notes", i)), plan.now)
        if pnote is None or any(stages):
            built.add_problems(stages)
        else:
            built.process_notes.append(pnote.model_copy(update={"device_id": vault.device_id}))
    for section in ("clients", "progress_notes"):
        n = plan.count(section)
        # The workers are handed a window of rounds at once, so they go on building while
        # this process seals and puts away each round they built (a job per round left them
        # idle meanwhile, and had this process build the last chunks of every round twice).
        # Each round is put away only once the next one is built, and a window's last two
        # only once the next window's first is: when a window's last round is built, the
        # workers are handed the next window at once rather than wait while this process
        # seals what they built.
        waiting: list[list[tuple]] = []
        for start in range(0, n, BUILD_WINDOW):
            items = []
            for i in range(start, min(n, start + BUILD_WINDOW)):
                raw = plan.raw(section, i)
                summary = None
                if section == "progress_notes":
                    cid = plan.note_clients[i] if i < len(plan.note_clients) else None
                    summary = summaries.get(cid) if isinstance(cid, str) else None
                items.append((section, i, raw, summary))
            if pool is not None:
                # Once the write phase has begun, this process writes what was spilled while
                # it waits for the workers, and helps them only when that is done.
                writing = built.writing
                rounds = pool.prepare_batches(
                    items, late_hours, BUILD_BATCH, work="import", context=context,
                    helps=writing is None, meanwhile=None if writing is None else writing.write_spilled,
                )
            else:
                rounds = (build_items(items[i:i + BUILD_BATCH], late_hours, context)
                          for i in range(0, len(items), BUILD_BATCH))
            last = (len(items) - 1) // BUILD_BATCH
            for i, results in enumerate(rounds):
                if i < last:
                    for held in waiting:
                        _take_round(record, section, held, summaries, built)
                    waiting = []
                waiting.append(results)
        for held in waiting:  # a section's last rounds: the notes need every client's plan
            _take_round(record, section, held, summaries, built)


def _take_round(record: Any, section: str, results: list[tuple], summaries: dict, built: _Built) -> None:
    """One round of built items into `built`: each signed note sealed here, the round put
    away (spilled, or written once the write phase has begun), the problems collected."""
    good = []
    for result in results:
        if result[0] == "bad":
            built.add_problems(result[1])
            continue
        kind, doc_id, data, heads, view, fts, extra = result
        if section == "progress_notes":
            # Signed here by key, signer, credentials and time as the file states them.
            data, heads = _sealed(record, data, heads, extra[4])
        good.append((doc_id, kind, data, heads, view, fts))
        if section == "clients":
            summaries.setdefault(extra[0], extra)
        else:
            client_id, status, audit, gaps, _seal = extra
            if status != NoteStatus.DRAFT.value:
                built.as_given.append((sys.intern(client_id), audit))
                built.signed_notes += status == NoteStatus.SIGNED.value
            if gaps:
                built.gaps.append(doc_id)
    built.put_away(section, len(results), good)


def _sealed(record: Any, data: bytes, heads: list[bytes], to_seal: Any) -> tuple[bytes, list[bytes]]:
    """A note's document with its signed entries, sealed here by this device's key: the
    change a worker laid out (`_to_seal`: the change the binding makes for the same entries)
    with the signatures filled in, appended to the document as built; or, for a document
    built through the binding, re-issued by the record itself. (bytes, heads)."""
    if to_seal is None:
        return data, heads
    if to_seal == RESEAL:
        return record.reissue_imported(data)
    chunk, signs = to_seal
    signatures = record.sign_imported([signed for signed, _at in signs])
    chunk, head = refilled_change(chunk, [(at, sig) for (_d, at), sig in zip(signs, signatures)])
    return data + chunk, [head]


def apply_import(
    vault: Any, plan: ImportPlan, *, progress: Callable[[int, int], None] | None = None
) -> ImportSummary:
    """Write `plan` into `vault`, all or nothing; `progress(done, total)` after each item.

    First the ids are checked against the vault (a repeat is refused before anything is
    built), then every item is checked and built into its documents and rows with nothing
    written and no lock held, and only then is everything written: record.db and private.db
    each in one transaction, record.db committed first and only once every private write
    has succeeded. With worker processes the write phase begins when WRITE_OVERLAP of the
    notes are left to build; an item found bad after that rolls back what was written.
    Raises ImportFailed naming the item when an id is already in the vault, a client a note
    refers to is in neither the file nor the vault, an item is not valid (a plan from
    `scan_import`), or a write fails; then nothing changed.
    """
    _capabilities(vault, plan)
    vault_clients = check_vault_ids(vault, plan)
    built = _Built()
    try:
        return _build_and_write(vault, plan, vault_clients, built, progress)
    finally:
        built.spill.close()  # the file has no name: closing it is its end


def _build_and_write(
    vault: Any, plan: ImportPlan, vault_clients: dict[str, Client], built: _Built,
    progress: Callable[[int, int], None] | None,
) -> ImportSummary:
    record = vault.record
    # private.db and the audit log are reached only when the write phase begins: opening
    # either may create its tables, which commits, and a refused file changes no file.
    private: Any = None
    log: Any = None
    total = plan.total
    done = 0
    record_committed = False
    db_errors = _database_errors()
    writing: _Writing | None = None

    def tick(n: int = 1) -> None:
        nonlocal done
        for _ in range(n):
            done += 1
            if progress is not None:
                progress(done, total)

    def committed(exc_type, *_exc) -> None:
        nonlocal record_committed
        record_committed = exc_type is None

    try:
        with ExitStack() as transactions:

            def open_writing() -> _Writing:
                """private.db's transaction encloses record.db's: record commits first, and
                only once every private write has succeeded; private commits last."""
                nonlocal writing, private, log
                private, log = vault.private, getattr(vault, "audit", None)
                transactions.enter_context(private.transaction())
                transactions.push(committed)  # runs between record's commit and private's
                transactions.enter_context(record.transaction())
                transactions.enter_context(record.replica.bulk_load())
                writing = _Writing(record, plan, built, tick)
                return writing

            def begin_writing() -> _Writing | None:
                problems, _clients = _check_against_vault(vault, plan, private=True)
                # A conflict is said once everything is built, the items' own problems first.
                return None if problems else open_writing()

            # With worker processes, the write phase begins while they build the last notes.
            pool = _pool_of(record)
            built.notes = plan.count("progress_notes")
            built.begin_writing = begin_writing if pool is not None else None
            _build(vault, plan, vault_clients, built)
            if any(built.stages):
                _raise_first(*built.stages)
            if writing is None:
                problems, _clients = _check_against_vault(vault, plan, private=True)
                if problems:
                    raise _fail(problems, head="The import file conflicts with the vault")
                writing = open_writing()
            writing.finish()
            if built.as_given:
                # Signed here by key (`reissue_imported`): the device list carries the key.
                record.replica.list_this_device()
            for i, rights_record in enumerate(plan.rights):
                writing.current = f"client_rights[{i}]"
                record.rights.import_record(rights_record)
            for pnote in built.process_notes:
                writing.current = plan.items[pnote.id]
                private.create(pnote)
                tick()
            if log is not None:
                writing.current = "the audit log"
                _audit(log, plan, built)
    except ImportFailed:
        if record_committed:
            raise _partial() from None
        raise
    except (VaultBusy, DiskFull):
        # Another program's lock or a full disk: their own sentence, like every other command.
        if record_committed:
            raise _partial() from None
        raise
    except NotewellError as e:
        if record_committed:
            raise _partial() from None
        current = writing.current if writing is not None else "the vault"
        raise ImportFailed(f"Importing {current} failed ({e.message}); nothing was imported.") from None
    except db_errors as e:
        if record_committed:
            raise _partial() from None
        current = writing.current if writing is not None else "the vault"
        raise ImportFailed(
            f"Importing {current} failed: the database refused the write ({_db_reason(e)}); nothing was imported."
        ) from None

    return ImportSummary(
        clients=plan.count("clients"),
        notes=plan.count("progress_notes"),
        process_notes=plan.count("process_notes"),
        signed_notes=built.signed_notes,
        signed_with_gaps=tuple(built.gaps),
        rights_records=len(plan.rights),
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


def _audit(log: Any, plan: ImportPlan, built: _Built) -> None:
    """Audit entries for the import, in record.db's open transaction (so they roll back too).

    One entry for the import as a whole and one per note entered as given (signed or
    entered in error), since those were signed elsewhere, without this vault's checklist.
    """
    from store.audit import Event

    whole = dict(
        clients=plan.count("clients"),
        progress_notes=plan.count("progress_notes"),
        signed_notes=built.signed_notes,
        process_notes=plan.count("process_notes"),
    )
    # Chained one at a time as they are written (their details were made while building
    # and are held as short strings): a list of 100,000 entries would add to the import's
    # peak memory, which comes in this write phase.
    log.append_prepared(itertools.chain([(Event.IMPORT, None, prepared_details(whole))], (
        (Event.IMPORT, client_id, details) for client_id, details in built.as_given
    )))
