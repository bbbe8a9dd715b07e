"""Domain models: the shared vocabulary of the store, sync and the app.

These are plain pydantic values. The record's source of truth is the Automerge documents
(store/documents.py); these models are what those documents read back as, and what callers
hand in. `to_problems` turns a pydantic error into (field, reason) pairs that name the field
without quoting the (possibly clinical) input.
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime, time, timedelta, timezone
from enum import Enum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    computed_field,
    field_validator,
    model_validator,
)

from store.errors import ValidationFailed


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


# --- plausible dates ------------------------------------------------------------------
#
# Every date and moment that enters the store (the store API, an import file, a document
# received by sync) must lie in this range. Beyond it lie only typing errors and hostile
# input, and values near the ends of what Python's dates can hold make ordinary arithmetic
# (a session's end, hours overdue, a time zone) overflow. Documents already stored are read
# as they are (STORED below), and every view copes with any date.

EARLIEST_DATE = date(1900, 1, 1)
EARLIEST_MOMENT = datetime(1900, 1, 1, tzinfo=timezone.utc)
# Notes may be drafted ahead of a session; a year ahead is already generous.
FUTURE_MARGIN = timedelta(days=366)

# Validation context for models read back from stored documents: the range is not applied
# there, so an old vault holding an implausible date still opens and shows it.
STORED = {"stored": True}


def latest_date() -> date:
    return date.today() + FUTURE_MARGIN


def plausible_date(value: date) -> bool:
    if isinstance(value, datetime):
        return plausible_moment(value)
    return EARLIEST_DATE <= value <= latest_date()


def plausible_moment(value: datetime) -> bool:
    at = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    try:
        return EARLIEST_MOMENT <= at <= datetime.now(timezone.utc) + FUTURE_MARGIN
    except OverflowError:  # an offset that pushes the instant past what datetime holds
        return False


def implausible_reason(value: date) -> str:
    """Why `value` is not plausible, naming the bound it crosses (never the value itself)."""
    at = value if not isinstance(value, datetime) or value.tzinfo else value.replace(tzinfo=timezone.utc)
    try:
        early = at < (EARLIEST_MOMENT if isinstance(at, datetime) else EARLIEST_DATE)
    except OverflowError:  # an offset at the very ends of the calendar
        early = at.year < EARLIEST_DATE.year
    if early:
        return f"is before {EARLIEST_DATE.isoformat()}, the earliest plausible date"
    return f"is in the future (after {latest_date().isoformat()}, the latest plausible date)"


def implausible_dates(model: BaseModel, prefix: str = "") -> list[tuple[str, str]]:
    """(field, reason) for every date or moment in `model`, nested models included, that is
    outside the plausible range. Used where a model may have been built without validation
    (`model_copy`) and for documents received by sync."""
    problems: list[tuple[str, str]] = []

    # Only dates, models and lists can hold a date: other values (text, numbers, the
    # sections' dict) are not visited. A visited value's path is kept as (parent, field name
    # or index) and spelled only for a date found implausible (`_spell`): most notes have
    # none, and spelling every visited path was a third of the walk.
    holders = (date, BaseModel, list, tuple)

    def visit(value: Any, where: tuple | None) -> None:
        if isinstance(value, date):  # a datetime is a date too
            if not plausible_date(value):
                problems.append((_spell(prefix, where), implausible_reason(value)))
        elif isinstance(value, BaseModel):
            # The class's fields, as `model_fields` gives them (without its property's call).
            for name in getattr(type(value), "__pydantic_fields__", {}):
                field = getattr(value, name)
                if isinstance(field, holders):
                    visit(field, (where, name))
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if isinstance(item, holders):
                    visit(item, (where, i))

    visit(model, None)
    return problems


def _spell(prefix: str, where: tuple | None) -> str:
    """A path kept by `implausible_dates` as written out: "facts.goals_addressed[0].x"."""
    pieces: list[str | int] = []
    while where is not None:
        where, piece = where
        pieces.append(piece)
    out = prefix
    for piece in reversed(pieces):
        if isinstance(piece, int):
            out = f"{out}[{piece}]"
        else:
            out = f"{out}.{piece}" if out else piece
    return out


def require_plausible(model: BaseModel) -> None:
    """Raises ValidationFailed naming each implausible date of `model` (the store API's check)."""
    problems = implausible_dates(model)
    if problems:
        raise ValidationFailed(problems)


class PlausibleDates(BaseModel):
    """A model whose own date and datetime fields must be plausible (unless read as STORED)."""

    @model_validator(mode="after")
    def _plausible_dates(self, info: ValidationInfo) -> Any:
        # Each model checks its own fields; nested models were checked when they were built.
        if info.context and info.context.get("stored"):
            return self
        # The fields' values as the instance holds them (extra fields are forbidden, so these
        # are exactly its fields): a model is validated once per item of an import, and
        # looking each field up by name cost twice as long. A datetime is a date.
        for name, value in self.__dict__.items():
            if isinstance(value, date) and not plausible_date(value):
                raise ValueError(f"{name}: {implausible_reason(value)}")
        return self


class _Model(PlausibleDates):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, str_strip_whitespace=False)


# Scores are whole numbers: JSON's true is not a score of 1.
Score = Annotated[int, Strict()]


# --- codes ---------------------------------------------------------------------------

# ICD-10-CM: a letter, two characters (digit, then digit or letter), optionally a dot and
# one to four more. F41.1, F32.A, Z63.0, F43.10.
ICD10_RE = re.compile(r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$")
# CPT: five digits; add-on codes are written with a leading plus in the tables (+90785).
CPT_RE = re.compile(r"^\+?[0-9]{5}$")


def normalise_icd10(code: str) -> str:
    code = code.strip().upper()
    if not ICD10_RE.match(code):
        raise ValueError("is not an ICD-10 code (expected a form like F41.1)")
    return code


def normalise_cpt(code: str) -> str:
    code = code.strip()
    if not CPT_RE.match(code):
        raise ValueError("is not a CPT code (expected five digits, like 90834)")
    return code.lstrip("+")


ICD10 = Annotated[str, Field(min_length=3, max_length=8)]


# --- clients -------------------------------------------------------------------------


class Diagnosis(_Model):
    code: str
    description: str = ""

    @field_validator("code")
    @classmethod
    def _code(cls, v: str) -> str:
        return normalise_icd10(v)


class Goal(_Model):
    """A treatment-plan goal with its measurable objective."""

    id: str = Field(default_factory=new_id)
    description: str = Field(min_length=1)
    objective: str = ""
    active: bool = True


# How often a treatment plan is reviewed unless the clinician sets otherwise (days).
DEFAULT_REVIEW_INTERVAL_DAYS = 90


class Client(_Model):
    id: str = Field(default_factory=new_id)
    display_name: str = Field(min_length=1, max_length=200)
    date_of_birth: date | None = None
    # Free-form identifiers (MRN, insurance member id, ...), name -> value.
    identifiers: dict[str, str] = Field(default_factory=dict)
    diagnoses: list[Diagnosis] = Field(default_factory=list)
    goals: list[Goal] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)
    # The treatment plan's start and how often it is reviewed (store/plan_reviews.py).
    plan_start: date | None = None
    review_interval_days: int = Field(default=DEFAULT_REVIEW_INTERVAL_DAYS, ge=1, le=366)

    @field_validator("display_name")
    @classmethod
    def _name(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("must not be blank")
        return v

    @field_validator("date_of_birth")
    @classmethod
    def _dob(cls, v: date | None) -> date | None:
        if v is not None and v > date.today():
            raise ValueError("is in the future")
        return v

    @model_validator(mode="after")
    def _unique(self) -> Client:
        codes = [d.code for d in self.diagnoses]
        if len(codes) != len(set(codes)):
            raise ValueError("diagnoses: the same code is listed twice")
        ids = [g.id for g in self.goals]
        if len(ids) != len(set(ids)):
            raise ValueError("goals: two goals share an id")
        return self


# --- progress notes ------------------------------------------------------------------


class NoteFormat(str, Enum):
    SOAP = "SOAP"
    DAP = "DAP"
    BIRP = "BIRP"
    GIRP = "GIRP"
    PIRP = "PIRP"
    # Record notes beyond the session note (docs/record-beyond-session-notes.md): written,
    # checked, signed, synced and exported like progress notes, each with its own sections
    # and its own checklist (store/compliance.py).
    INTAKE = "INTAKE"  # intake / diagnostic assessment (90791, 90792)
    REVIEW = "REVIEW"  # treatment-plan review
    DISCHARGE = "DISCHARGE"  # discharge summary


# The session-note formats (SOAP .. PIRP); the others are the record notes above.
PROGRESS_FORMATS: tuple[NoteFormat, ...] = (
    NoteFormat.SOAP, NoteFormat.DAP, NoteFormat.BIRP, NoteFormat.GIRP, NoteFormat.PIRP,
)


FORMAT_SECTIONS: dict[NoteFormat, tuple[str, ...]] = {
    NoteFormat.SOAP: ("subjective", "objective", "assessment", "plan"),
    NoteFormat.DAP: ("data", "assessment", "plan"),
    NoteFormat.BIRP: ("behavior", "intervention", "response", "plan"),
    NoteFormat.GIRP: ("goal", "intervention", "response", "plan"),
    NoteFormat.PIRP: ("problem", "intervention", "response", "plan"),
    NoteFormat.INTAKE: ("presenting_problem", "history", "mental_status", "risk", "diagnosis", "initial_plan"),
    NoteFormat.REVIEW: ("goal_progress", "goal_changes"),
    NoteFormat.DISCHARGE: ("discharge_reason", "course_of_treatment", "goal_progress", "final_measures", "referrals"),
}

# What each kind of note is called where it is shown or printed.
NOTE_TITLES: dict[NoteFormat, str] = {
    NoteFormat.INTAKE: "Intake assessment",
    NoteFormat.REVIEW: "Treatment-plan review",
    NoteFormat.DISCHARGE: "Discharge summary",
}


def note_title(fmt: NoteFormat) -> str:
    return NOTE_TITLES.get(fmt, "Progress note")


# Titles of the sections whose key does not read as its title.
SECTION_TITLES: dict[str, str] = {
    "presenting_problem": "Presenting problem",
    "mental_status": "Mental status exam",
    "diagnosis": "Diagnosis and justification",
    "initial_plan": "Initial plan",
    "goal_progress": "Progress per goal",
    "goal_changes": "Changes to goals",
    "discharge_reason": "Reason for discharge",
    "course_of_treatment": "Course of treatment",
    "final_measures": "Final measures",
    "referrals": "Referrals",
}


def section_title(key: str) -> str:
    return SECTION_TITLES.get(key, key.capitalize())


class Modality(str, Enum):
    IN_PERSON = "in_person"
    VIDEO = "video"
    AUDIO_ONLY = "audio_only"


MODALITY_LABELS = {
    Modality.IN_PERSON: "in person",
    Modality.VIDEO: "video",
    Modality.AUDIO_ONLY: "audio-only",
}


class ProgressRating(str, Enum):
    WORSE = "worse"
    NO_CHANGE = "no_change"
    SOME_PROGRESS = "some_progress"
    SIGNIFICANT_PROGRESS = "significant_progress"
    ACHIEVED = "achieved"


class RiskLevel(str, Enum):
    NONE = "none"
    LOW = "low"
    MODERATE = "moderate"
    HIGH = "high"


class NoteStatus(str, Enum):
    DRAFT = "draft"
    SIGNED = "signed"
    ENTERED_IN_ERROR = "entered_in_error"


class GoalProgress(_Model):
    goal_id: str
    rating: ProgressRating
    comment: str = ""


class RiskAssessment(_Model):
    """Suicide and violence risk as assessed in session, and what was done about it."""

    suicide: RiskLevel | None = None
    violence: RiskLevel | None = None
    actions: str = ""

    @property
    def assessed(self) -> bool:
        return self.suicide is not None and self.violence is not None

    @property
    def elevated(self) -> bool:
        return any(r in (RiskLevel.MODERATE, RiskLevel.HIGH) for r in (self.suicide, self.violence))


class Signature(_Model):
    signer: str
    credentials: str
    signed_at: datetime
    device_id: str
    heads: list[str]  # hex Automerge change hashes the signature covers
    content_hash: str  # sha256 hex of the canonical signed content


class Addendum(_Model):
    id: str = Field(default_factory=new_id)
    text: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    signer: str
    credentials: str
    signed_at: datetime
    device_id: str
    content_hash: str


class EnteredInError(_Model):
    reason: str = Field(min_length=1)
    marked_at: datetime
    marked_by: str


class SignatureConflictResolution(_Model):
    """How a clinician settled a signature conflict; kept in the note for the record."""

    choice: str  # "addendum" or "resign"
    resolved_at: datetime
    resolved_by: str
    device_id: str


class Participant(_Model):
    """Someone present at a couples or family session. `client_id` links a client of the
    practice; someone who is not a client is named. `initials` is how the person appears in
    any other client's export (store/export.py), chosen by the clinician."""

    client_id: str | None = None
    name: str = Field(default="", max_length=200)
    initials: str = Field(min_length=1, max_length=8)

    @field_validator("initials")
    @classmethod
    def _initials(cls, v: str) -> str:
        v = v.strip()
        if not v or not all(c.isalpha() or c in ".-' " for c in v):
            raise ValueError("must be letters (with dots or dashes), like J.D.")
        return v

    @field_validator("client_id")
    @classmethod
    def _client(cls, v: str | None) -> str | None:
        return None if v in (None, "") else v

    @property
    def key(self) -> str:
        """What the note's document keys this participant by (one entry per person)."""
        return self.client_id or "named:" + self.initials


class SessionFacts(_Model):
    """The facts of a session an auditor looks for, apart from the narrative sections."""

    date_of_service: date
    start_time: time | None = None
    stop_time: time | None = None
    cpt_code: str | None = None
    add_on_codes: list[str] = Field(default_factory=list)
    modality: Modality | None = None
    diagnoses_addressed: list[str] = Field(default_factory=list)
    goals_addressed: list[GoalProgress] = Field(default_factory=list)
    interventions: list[str] = Field(default_factory=list)
    risk: RiskAssessment = Field(default_factory=RiskAssessment)
    phq9: Score | None = Field(default=None, ge=0, le=27)
    gad7: Score | None = Field(default=None, ge=0, le=21)
    pcl5: Score | None = Field(default=None, ge=0, le=80)
    # Present at a couples or family session besides (or, for 90846, instead of) the client.
    participants: list[Participant] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _drop_derived(cls, data: object) -> object:
        # `minutes` is derived from the times; a dump read back in carries it.
        if isinstance(data, dict) and "minutes" in data:
            data = {k: v for k, v in data.items() if k != "minutes"}
        return data

    @field_validator("cpt_code")
    @classmethod
    def _cpt(cls, v: str | None) -> str | None:
        return None if v in (None, "") else normalise_cpt(v)

    @field_validator("add_on_codes")
    @classmethod
    def _addons(cls, v: list[str]) -> list[str]:
        return [normalise_cpt(c) for c in v]

    @field_validator("diagnoses_addressed")
    @classmethod
    def _dx(cls, v: list[str]) -> list[str]:
        return [normalise_icd10(c) for c in v]

    @field_validator("interventions")
    @classmethod
    def _interventions(cls, v: list[str]) -> list[str]:
        return [i.strip() for i in v if i.strip()]

    @model_validator(mode="after")
    def _times(self) -> SessionFacts:
        if self.start_time and self.stop_time and self.stop_time <= self.start_time:
            raise ValueError("stop_time: must be after the start time")
        keys = [p.key for p in self.participants]
        if len(keys) != len(set(keys)):
            raise ValueError("participants: the same person is listed twice")
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def minutes(self) -> int | None:
        if self.start_time is None or self.stop_time is None:
            return None
        start = self.start_time.hour * 60 + self.start_time.minute
        stop = self.stop_time.hour * 60 + self.stop_time.minute
        return stop - start


class ProgressNote(_Model):
    id: str = Field(default_factory=new_id)
    client_id: str
    format: NoteFormat
    sections: dict[str, str] = Field(default_factory=dict)
    facts: SessionFacts
    status: NoteStatus = NoteStatus.DRAFT
    signature: Signature | None = None
    addenda: list[Addendum] = Field(default_factory=list)
    entered_in_error: EnteredInError | None = None
    resolution: SignatureConflictResolution | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @model_validator(mode="before")
    @classmethod
    def _fill_sections(cls, data: object) -> object:
        # A new note gets every section of its format, empty.
        if isinstance(data, dict) and "format" in data:
            try:
                fmt = NoteFormat(data["format"])
            except ValueError:
                return data
            sections = dict(data.get("sections") or {})
            for key in FORMAT_SECTIONS[fmt]:
                sections.setdefault(key, "")
            data = {**data, "sections": sections}
        return data

    @model_validator(mode="after")
    def _sections_match_format(self) -> ProgressNote:
        expected = set(FORMAT_SECTIONS[self.format])
        extra = set(self.sections) - expected
        if extra:
            raise ValueError(
                f"sections: {', '.join(sorted(extra))} is not a section of a {self.format.value} note"
            )
        return self

    @property
    def section_keys(self) -> tuple[str, ...]:
        return FORMAT_SECTIONS[self.format]


class ProcessNote(_Model):
    """A private reflection. Lives only in private.db on the device that wrote it."""

    id: str = Field(default_factory=new_id)
    client_id: str
    session_date: date
    body: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    device_id: str = ""


class ClinicianSettings(_Model):
    clinician_name: str = ""
    credentials: str = ""
    practice_name: str = ""
    late_entry_hours: int = Field(default=72, ge=1, le=24 * 365)


# --- validation helpers --------------------------------------------------------------


def to_problems(err: ValidationError) -> list[tuple[str, str]]:
    """(field, reason) pairs from a pydantic error, never echoing the input value."""
    problems: list[tuple[str, str]] = []
    for e in err.errors(include_input=False, include_url=False):
        field = ".".join(str(p) for p in e.get("loc", ()))
        reason = e.get("msg", "is not valid")
        reason = reason.removeprefix("Value error, ")
        # A model-level check reports its own field as "field: reason".
        if not field and ": " in reason:
            field, reason = reason.split(": ", 1)
        problems.append((field, reason))
    return problems


def validated(model: type[BaseModel], data: dict) -> BaseModel:
    """Build a model or raise ValidationFailed naming each field and reason."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ValidationFailed(to_problems(e)) from None
