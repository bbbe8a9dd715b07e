"""The auditor's checklist for a progress note, and the CPT/time rules.

`check_note` lists what a note lacks against elements 1-8 of an audit (docs: DOMAIN.md);
element 9, the signature, is what signing adds, so it is not checked here. Each problem names
a stable element key (the editor's checklist rows) and one sentence for the clinician that
never quotes note text: counts and section names only.

Severity: "missing" (an element is absent), "error" (present but wrong or contradictory) and
"warning" (worth a look, not a rule Notewell can decide, such as a code it does not know).
`RecordStore.sign_note` refuses to sign while any non-warning problem remains; `blocking`
picks those out and `missing_labels` names them for `ComplianceIncomplete`.

Intake assessments, treatment-plan reviews and discharge summaries have checklists of their
own (`check_record_note`, docs/record-beyond-session-notes.md); couples and family sessions
are checked against who was present (`participant_problems`).

CPT time rules (DOMAIN.md's table), as read here:
- 90832 16-37 min, 90834 38-52, 90837 53 or more; under 16 minutes is not billable as
  psychotherapy. Codes do not stack: one primary code per note, so a 75-minute session is one
  90837, and a primary code among the add-ons is an error.
- 90846/90847 (family) 26 or more; 90791 and 90853 are not timed.
- 90839 (crisis) covers 30-74 minutes. +90840 is reported only with 90839, once for each
  further 30 minutes, a unit counting once its midpoint is passed: 75-104 minutes is one
  +90840, 105-134 two, and so on (`crisis_add_on_units`). Under 30 minutes a crisis session
  is billed as ordinary psychotherapy.
- +90785 (interactive complexity) is never reported with 90839/+90840, and once at most.
- When the minutes are unknown, `check_cpt` leaves the time rules alone: `check_note`
  reports the missing time as its own element, so the clinician sees one problem, not two.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from store.models import FORMAT_SECTIONS, PROGRESS_FORMATS, Client, NoteFormat, ProgressNote, section_title

MISSING = "missing"
ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class ComplianceProblem:
    element: str
    message: str
    severity: str = MISSING


# The checklist, in the order the editor shows it: element key -> label.
ELEMENT_LABELS: dict[str, str] = {
    "client": "client",
    "date_of_service": "date of service",
    "time": "start and stop time",
    "cpt": "service code (CPT)",
    "cpt_time": "CPT code matching the time",
    "modality": "modality",
    "diagnosis": "diagnosis addressed",
    "interventions": "specific interventions",
    "response": "client's response",
    "goals": "progress toward goals",
    "risk": "risk assessment",
    "plan": "plan with next steps",
    "sections": "every section filled",
    # Couples and family sessions, and the record notes (intake, review, discharge).
    "participants": "participants present",
    "assessment": "diagnosis with justification",
    "measures": "final measures",
}

# The elements each kind of note is checked for, in checklist order (the editor's rows).
SESSION_ELEMENTS: tuple[str, ...] = (
    "client", "date_of_service", "time", "cpt", "cpt_time", "modality", "diagnosis",
    "interventions", "response", "goals", "risk", "plan", "sections",
)
RECORD_NOTE_ELEMENTS: dict[NoteFormat, tuple[str, ...]] = {
    NoteFormat.INTAKE: (
        "client", "date_of_service", "time", "cpt", "modality", "diagnosis", "assessment", "risk", "plan", "sections",
    ),
    NoteFormat.REVIEW: ("client", "date_of_service", "goals", "sections"),
    NoteFormat.DISCHARGE: ("client", "date_of_service", "goals", "measures", "sections"),
}


def checklist_elements(fmt: NoteFormat) -> tuple[str, ...]:
    """The checklist rows of a note of `fmt` (an element with a problem is shown besides)."""
    return RECORD_NOTE_ELEMENTS.get(fmt, SESSION_ELEMENTS)


# Whole phrases (case-insensitive) that say a session happened without saying what was done.
VAGUE_INTERVENTIONS: frozenset[str] = frozenset(
    {
        "therapy",
        "psychotherapy",
        "provided therapy",
        "supportive therapy",
        "support",
        "provided support",
        "counseling",
        "counselling",
        "talk therapy",
        "talked",
        "discussed",
        "listened",
        "check-in",
        "checked in",
    }
)

# Minimum words before a narrative counts as more than a placeholder.
RESPONSE_MIN_WORDS = 5
PLAN_MIN_WORDS = 3

# Where each format records the client's response.
RESPONSE_SECTIONS: dict[NoteFormat, tuple[str, ...]] = {
    NoteFormat.SOAP: ("objective", "assessment"),
    NoteFormat.DAP: ("data",),
    NoteFormat.BIRP: ("response",),
    NoteFormat.GIRP: ("response",),
    NoteFormat.PIRP: ("response",),
}

PSYCHOTHERAPY = ("90832", "90834", "90837")
FAMILY = ("90846", "90847")
CRISIS = "90839"
CRISIS_ADD_ON = "90840"
INTERACTIVE_COMPLEXITY = "90785"
UNTIMED = ("90791", "90853")
# Inclusive minute ranges; None means no upper bound.
TIME_RANGES: dict[str, tuple[int, int | None]] = {
    "90832": (16, 37),
    "90834": (38, 52),
    "90837": (53, None),
    "90846": (26, None),
    "90847": (26, None),
    "90839": (30, 74),
}
PRIMARY_CODES = frozenset(PSYCHOTHERAPY + FAMILY + UNTIMED + (CRISIS,))
ADD_ON_CODES = frozenset({CRISIS_ADD_ON, INTERACTIVE_COMPLEXITY})
PSYCHOTHERAPY_MIN_MINUTES = 16


def blocking(problems: Iterable[ComplianceProblem]) -> list[ComplianceProblem]:
    """The problems that stop a note from being signed: everything but warnings."""
    return [p for p in problems if p.severity != WARNING]


def missing_labels(problems: Iterable[ComplianceProblem]) -> list[str]:
    """Checklist labels of the blocking problems, each once, in checklist order."""
    elements = {p.element for p in blocking(problems)}
    return [label for key, label in ELEMENT_LABELS.items() if key in elements]


# --- CPT and time ----------------------------------------------------------------------


def _code(code: str) -> str:
    return code.strip().lstrip("+")


def crisis_add_on_units(minutes: int) -> int:
    """How many +90840 a crisis session of `minutes` carries (0 up to 74 minutes)."""
    if minutes < 75:
        return 0
    return (minutes - 75) // 30 + 1


def suggest_cpt(minutes: int | None, *, crisis: bool = False, family: str | None = None) -> str | None:
    """The primary code the minutes support, or None when they support none.

    `family` is "with_client" (90847) or "without_client" (90846). A crisis session under 30
    minutes is ordinary psychotherapy. Add-ons are not suggested here: see
    `crisis_add_on_units` for +90840.
    """
    if family not in (None, "with_client", "without_client"):
        raise ValueError("family must be None, 'with_client' or 'without_client'")
    if minutes is None:
        return None
    if family is not None:
        if minutes < TIME_RANGES["90846"][0]:
            return None
        return "90847" if family == "with_client" else "90846"
    if crisis and minutes >= TIME_RANGES[CRISIS][0]:
        return CRISIS
    for code in PSYCHOTHERAPY:
        low, high = TIME_RANGES[code]
        if minutes >= low and (high is None or minutes <= high):
            return code
    return None


def _range_text(code: str) -> str:
    low, high = TIME_RANGES[code]
    return f"{low} minutes or more" if high is None else f"{low}-{high} minutes"


def _time_problems(primary: str, add_ons: Sequence[str], minutes: int) -> list[ComplianceProblem]:
    def error(message: str) -> list[ComplianceProblem]:
        return [ComplianceProblem("cpt_time", message, ERROR)]

    if primary in PSYCHOTHERAPY:
        if minutes < PSYCHOTHERAPY_MIN_MINUTES:
            return error("Under 16 minutes is not billable as psychotherapy.")
        low, high = TIME_RANGES[primary]
        if minutes < low or (high is not None and minutes > high):
            return error(
                f"{primary} covers {_range_text(primary)}; a {minutes}-minute session is "
                f"{suggest_cpt(minutes)}."
            )
        return []
    if primary in FAMILY:
        if minutes < TIME_RANGES[primary][0]:
            return error("Family psychotherapy (90846/90847) needs at least 26 minutes.")
        return []
    if primary == CRISIS:
        if minutes < TIME_RANGES[CRISIS][0]:
            other = suggest_cpt(minutes)
            tail = f"a {minutes}-minute session is {other}" if other else "under 16 minutes is not billable"
            return error(f"Crisis psychotherapy (90839) needs at least 30 minutes; {tail}.")
        expected = crisis_add_on_units(minutes)
        given = sum(1 for c in add_ons if c == CRISIS_ADD_ON)
        if given != expected:
            if expected == 0:
                return error(
                    f"A {minutes}-minute crisis session is 90839 alone; +90840 starts at 75 minutes."
                )
            return error(f"A {minutes}-minute crisis session is 90839 with {expected} x +90840.")
    return []


def check_cpt(
    cpt_code: str | None, add_on_codes: Sequence[str], minutes: int | None
) -> list[ComplianceProblem]:
    """Problems with a note's service codes, given the session's minutes (None if unknown)."""
    problems: list[ComplianceProblem] = []
    add_ons = [_code(c) for c in add_on_codes]
    primary = _code(cpt_code) if cpt_code else ""

    if not primary:
        problems.append(ComplianceProblem("cpt", "Choose the service code (CPT) for the session."))
    elif primary in ADD_ON_CODES:
        problems.append(
            ComplianceProblem(
                "cpt", f"+{primary} is an add-on code; choose the session's primary code.", ERROR
            )
        )
    elif primary not in PRIMARY_CODES:
        problems.append(
            ComplianceProblem(
                "cpt",
                f"{primary} is not a psychotherapy code Notewell knows; check it with the payer.",
                WARNING,
            )
        )

    for code in dict.fromkeys(add_ons):
        if code in PRIMARY_CODES:
            problems.append(
                ComplianceProblem(
                    "cpt",
                    f"Codes do not stack: a note has one primary code, so {code} cannot be added.",
                    ERROR,
                )
            )
        elif code not in ADD_ON_CODES:
            problems.append(
                ComplianceProblem(
                    "cpt",
                    f"+{code} is not a psychotherapy code Notewell knows; check it with the payer.",
                    WARNING,
                )
            )

    crisis = primary == CRISIS or CRISIS_ADD_ON in add_ons
    if CRISIS_ADD_ON in add_ons and primary != CRISIS:
        problems.append(
            ComplianceProblem(
                "cpt", "+90840 is reported only with crisis psychotherapy (90839).", ERROR
            )
        )
    if INTERACTIVE_COMPLEXITY in add_ons:
        if crisis:
            problems.append(
                ComplianceProblem(
                    "cpt",
                    "+90785 (interactive complexity) is not reported with crisis psychotherapy.",
                    ERROR,
                )
            )
        if add_ons.count(INTERACTIVE_COMPLEXITY) > 1:
            problems.append(
                ComplianceProblem("cpt", "+90785 is reported once per session.", ERROR)
            )

    if minutes is not None and primary in PRIMARY_CODES:
        problems.extend(_time_problems(primary, add_ons, minutes))
    return problems


# --- the note --------------------------------------------------------------------------


def _words(text: str) -> int:
    return len(text.split())


def _normalise_phrase(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip(" \t\r\n.,;:!").lower())


def is_vague_intervention(text: str) -> bool:
    return _normalise_phrase(text) in VAGUE_INTERVENTIONS


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def check_note(
    note: ProgressNote, client: Client | None = None, *, today: date | None = None, credentials: str | None = None
) -> list[ComplianceProblem]:
    """What `note` lacks against audit elements 1-8; [] when it is complete.

    With `client`, diagnoses and goals are checked against the client's treatment plan.
    `today` (default: the local date) is what "in the future" is measured against. An
    intake, review or discharge note has its own checklist (`check_record_note`), for which
    `credentials` (the signer's) decide whether 90792 may be used.
    """
    facts = note.facts
    problems: list[ComplianceProblem] = []

    def add(element: str, message: str, severity: str = MISSING) -> None:
        problems.append(ComplianceProblem(element, message, severity))

    if note.format not in PROGRESS_FORMATS:
        return check_record_note(note, client, today=today, credentials=credentials)

    # 1. client, date of service, time
    problems.extend(_client_and_date_problems(note, client, today))
    problems.extend(_time_problems_of(facts))

    # 2. service code consistent with the time; modality; who was present
    problems.extend(check_cpt(facts.cpt_code, facts.add_on_codes, facts.minutes))
    if facts.modality is None:
        add("modality", "Choose the modality: in person, video or audio-only.")
    problems.extend(participant_problems(note))

    # 3. diagnosis
    if not facts.diagnoses_addressed:
        add("diagnosis", "Choose at least one diagnosis (ICD-10) the session addressed.")
    elif client is not None:
        on_record = {d.code for d in client.diagnoses}
        absent = [c for c in facts.diagnoses_addressed if c not in on_record]
        if absent:
            add(
                "diagnosis",
                f"{_plural(len(absent), 'diagnosis addressed is', 'diagnoses addressed are')} "
                "not on the client's record; add it to the treatment plan first.",
                ERROR,
            )

    # 4. interventions, named specifically
    if not facts.interventions:
        add("interventions", "Name the interventions used (e.g. cognitive restructuring).")
    else:
        vague = sum(1 for i in facts.interventions if is_vague_intervention(i))
        if vague:
            add(
                "interventions",
                f"{_plural(vague, 'intervention is', 'interventions are')} too general; "
                "name the technique used (e.g. cognitive restructuring).",
                ERROR,
            )

    # 5. the client's response, with observable detail
    response_keys = RESPONSE_SECTIONS[note.format]
    response = " ".join(note.sections.get(k, "") for k in response_keys)
    names = " and ".join(section_title(k) for k in response_keys)
    if not response.strip():
        add("response", f"Describe the client's response, with what you observed ({names}).")
    elif _words(response) < RESPONSE_MIN_WORDS:
        add("response", f"The client's response ({names}) is too brief; add what you observed.")

    # 6. progress toward named treatment-plan goals
    if not facts.goals_addressed:
        add("goals", "Rate progress toward at least one treatment-plan goal.")
    else:
        rated = [g.goal_id for g in facts.goals_addressed]
        if len(rated) != len(set(rated)):
            add("goals", "The same goal is rated twice.", ERROR)
        if client is not None:
            plan = {g.id: g for g in client.goals}
            if not plan:
                add("goals", "The client's treatment plan has no goals yet; add one first.", ERROR)
            else:
                unknown = sum(1 for g in set(rated) if g not in plan)
                if unknown:
                    add(
                        "goals",
                        f"{_plural(unknown, 'goal rated is', 'goals rated are')} "
                        "not on the client's treatment plan.",
                        ERROR,
                    )
                inactive = sum(1 for g in set(rated) if g in plan and not plan[g].active)
                if inactive:
                    add(
                        "goals",
                        f"{_plural(inactive, 'goal rated is', 'goals rated are')} "
                        "no longer active on the treatment plan.",
                        WARNING,
                    )

    # 7. risk assessment, and what was done when it is elevated
    problems.extend(_risk_problems(facts))

    # 8. plan with specific next steps
    plan_text = note.sections.get("plan", "")
    if not plan_text.strip():
        add("plan", "Write the plan with specific next steps.")
    elif _words(plan_text) < PLAN_MIN_WORDS:
        add("plan", "The plan is too brief; name the specific next steps.")

    # Every section of the format filled.
    empty = [section_title(k) for k in FORMAT_SECTIONS[note.format] if not note.sections.get(k, "").strip()]
    if empty:
        add("sections", f"Fill in every section of the {note.format.value} note: {', '.join(empty)}.")

    return problems


# --- copy-forward: a section that repeats the last note -----------------------------------

# Checklist rows that appear only when they have something to say (advice, never blocking).
ADVICE_LABELS: dict[str, str] = {"copy_forward": "written for this session"}

# Payers deny notes whose narrative is cloned from the last one. Two sections count as nearly
# identical when their words, in order, match this much (difflib's ratio over the word lists:
# one word changed in ten is 0.9), once both hold enough words to say something. Only the
# first COPY_COMPARED_WORDS words of each are compared, so the check costs the same however
# long a section grows (it runs after every autosave).
COPY_SIMILARITY = 0.85
COPY_MIN_WORDS = 8
COPY_COMPARED_WORDS = 200
_WORD = re.compile(r"[a-z0-9']+")


def _first_words(text: str) -> list[str]:
    return _WORD.findall(text[: COPY_COMPARED_WORDS * 16].lower())[:COPY_COMPARED_WORDS]


def text_similarity(a: str, b: str) -> float:
    """0..1: how much of their wording, in order, two texts share; 0 when either is too
    short to judge."""
    wa, wb = _first_words(a), _first_words(b)
    if len(wa) < COPY_MIN_WORDS or len(wb) < COPY_MIN_WORDS:
        return 0.0
    return difflib.SequenceMatcher(None, wa, wb, autojunk=False).ratio()


def check_copy_forward(
    sections: dict[str, str], previous: dict[str, str], previous_date: date | None = None
) -> list[ComplianceProblem]:
    """A warning for each section that reads nearly the same as the same section of the
    client's previous note (`previous`). Names sections and the date, never their text."""
    alike = [key for key, text in sections.items()
             if previous.get(key) and text.strip() and text_similarity(text, previous[key]) >= COPY_SIMILARITY]
    if not alike:
        return []
    names = ", ".join(section_title(k) for k in alike)
    when = f"the note of {previous_date.isoformat()}" if previous_date else "the last note"
    return [ComplianceProblem(
        "copy_forward",
        f"{names} {'reads' if len(alike) == 1 else 'read'} almost the same as in {when}; payers deny "
        "cloned notes: describe this session.",
        WARNING,
    )]
# --- shared elements -------------------------------------------------------------------


def _client_and_date_problems(note: ProgressNote, client: Client | None, today: date | None) -> list[ComplianceProblem]:
    problems = []
    if not note.client_id.strip():
        problems.append(ComplianceProblem("client", "The note is not attached to a client."))
    elif client is not None and client.id != note.client_id:
        problems.append(
            ComplianceProblem("client", "The note belongs to a different client than the one checked against.", ERROR)
        )
    if note.facts.date_of_service > (today or date.today()):
        problems.append(ComplianceProblem("date_of_service", "The date of service is in the future.", ERROR))
    return problems


def _time_problems_of(facts) -> list[ComplianceProblem]:
    if facts.start_time is None and facts.stop_time is None:
        return [ComplianceProblem("time", "Enter the session's start and stop time.")]
    if facts.start_time is None:
        return [ComplianceProblem("time", "Enter the session's start time.")]
    if facts.stop_time is None:
        return [ComplianceProblem("time", "Enter the session's stop time.")]
    return []


def _risk_problems(facts) -> list[ComplianceProblem]:
    risk = facts.risk
    problems = []
    unset = [name for name, level in (("suicide", risk.suicide), ("violence", risk.violence)) if level is None]
    if unset:
        problems.append(ComplianceProblem("risk", f"Record the {' and '.join(unset)} risk level."))
    if risk.elevated and not risk.actions.strip():
        problems.append(
            ComplianceProblem(
                "risk", "Risk is moderate or high: write what was done (e.g. safety plan, consultation)."
            )
        )
    return problems


def _sections_problems(note: ProgressNote, what: str) -> list[ComplianceProblem]:
    empty = [section_title(k) for k in FORMAT_SECTIONS[note.format] if not note.sections.get(k, "").strip()]
    if empty:
        return [ComplianceProblem("sections", f"Fill in every section of the {what}: {', '.join(empty)}.")]
    return []


# --- couples and family sessions -------------------------------------------------------


def participant_problems(note: ProgressNote) -> list[ComplianceProblem]:
    """Who was present, against the service code. The participants are the people present
    besides the note's client; 90847 is family psychotherapy with the client present, 90846
    without, and both need someone else there. Others present at an individual
    psychotherapy session suggest a family code (a warning: a parent may join briefly)."""
    facts = note.facts
    primary = _code(facts.cpt_code) if facts.cpt_code else ""
    problems = []
    if any(p.client_id == note.client_id for p in facts.participants):
        problems.append(
            ComplianceProblem(
                "participants",
                "The note's own client is listed among the others present; list only the others.",
                ERROR,
            )
        )
    others = [p for p in facts.participants if p.client_id != note.client_id]
    if primary in FAMILY and not others:
        problems.append(
            ComplianceProblem(
                "participants",
                f"Family psychotherapy ({primary}) needs the others present: add each participant.",
            )
        )
    elif primary in PSYCHOTHERAPY and others:
        problems.append(
            ComplianceProblem(
                "participants",
                "Others were present: a couples or family session is 90847 (with the client) "
                "or 90846 (without).",
                WARNING,
            )
        )
    return problems


# --- record notes: intake, plan review, discharge ----------------------------------------

INTAKE_CODES = ("90791", "90792")
# 90792 adds medical services: billed by a clinician who prescribes. Read from the signer's
# credentials (the words of ClinicianSettings.credentials).
PRESCRIBING_CREDENTIALS = frozenset({"MD", "DO", "NP", "PMHNP", "APRN", "PA", "PA-C", "FNP", "DNP"})
JUSTIFICATION_MIN_WORDS = 5


def prescribes(credentials: str | None) -> bool | None:
    """Whether credentials name a prescribing licence; None when there are none to read."""
    if credentials is None or not credentials.strip():
        return None
    words = {w.strip(".").upper() for w in re.split(r"[\s,;/]+", credentials) if w.strip(".")}
    return bool(words & PRESCRIBING_CREDENTIALS)


def _intake_code_problems(note: ProgressNote, credentials: str | None) -> list[ComplianceProblem]:
    facts = note.facts
    primary = _code(facts.cpt_code) if facts.cpt_code else ""
    if not primary:
        return [ComplianceProblem("cpt", "Choose the service code: 90791, or 90792 where you prescribe.")]
    if primary not in INTAKE_CODES:
        return [
            ComplianceProblem(
                "cpt", f"An intake assessment is 90791 (or 90792 with medical services), not {primary}.", ERROR
            )
        ]
    problems = []
    if primary == "90792":
        who = prescribes(credentials)
        if who is False:
            problems.append(
                ComplianceProblem(
                    "cpt", "90792 includes medical services, billed by a prescribing clinician; use 90791.", ERROR
                )
            )
        elif who is None:
            problems.append(
                ComplianceProblem("cpt", "90792 includes medical services: use it only if you prescribe.", WARNING)
            )
    add_ons = [_code(c) for c in facts.add_on_codes]
    if any(c != INTERACTIVE_COMPLEXITY for c in add_ons) or add_ons.count(INTERACTIVE_COMPLEXITY) > 1:
        problems.append(
            ComplianceProblem("cpt", "An intake assessment takes no add-on code but +90785, once.", ERROR)
        )
    return problems


def _all_goals_rated(note: ProgressNote, client: Client | None) -> list[ComplianceProblem]:
    """Progress per goal: every active goal of the plan rated (and none rated twice)."""
    rated = [g.goal_id for g in note.facts.goals_addressed]
    problems = []
    if len(rated) != len(set(rated)):
        problems.append(ComplianceProblem("goals", "The same goal is rated twice.", ERROR))
    if client is None:
        if not rated:
            problems.append(ComplianceProblem("goals", "Rate progress toward each treatment-plan goal."))
        return problems
    active = [g.id for g in client.goals if g.active]
    if not client.goals:
        problems.append(ComplianceProblem("goals", "The client's treatment plan has no goals yet; add one first.", ERROR))
        return problems
    unrated = [g for g in active if g not in set(rated)]
    if unrated:
        problems.append(
            ComplianceProblem(
                "goals", f"Rate progress toward every active goal: {_plural(len(unrated), 'goal is', 'goals are')} not rated."
            )
        )
    unknown = sum(1 for g in set(rated) if g not in {x.id for x in client.goals})
    if unknown:
        problems.append(
            ComplianceProblem(
                "goals", f"{_plural(unknown, 'goal rated is', 'goals rated are')} not on the client's treatment plan.", ERROR
            )
        )
    return problems


def check_record_note(
    note: ProgressNote, client: Client | None = None, *, today: date | None = None, credentials: str | None = None
) -> list[ComplianceProblem]:
    """The checklist of an intake assessment, a treatment-plan review or a discharge summary
    (docs/record-beyond-session-notes.md); [] when complete. `credentials`: the signer's,
    for 90792 (None: not known here, so a warning rather than an error)."""
    facts = note.facts
    problems = _client_and_date_problems(note, client, today)

    if note.format == NoteFormat.INTAKE:
        # A billed service: time, code and modality as for a session; then the diagnosis
        # made and why, the risk assessed, and the plan the treatment starts from.
        problems.extend(_time_problems_of(facts))
        problems.extend(_intake_code_problems(note, credentials))
        if facts.modality is None:
            problems.append(ComplianceProblem("modality", "Choose the modality: in person, video or audio-only."))
        if not facts.diagnoses_addressed:
            problems.append(ComplianceProblem("diagnosis", "Choose the diagnosis (ICD-10) the assessment arrived at."))
        elif client is not None:
            absent = [c for c in facts.diagnoses_addressed if c not in {d.code for d in client.diagnoses}]
            if absent:
                problems.append(
                    ComplianceProblem(
                        "diagnosis",
                        f"{_plural(len(absent), 'diagnosis is', 'diagnoses are')} not on the client's record; "
                        "add it to the treatment plan first.",
                        ERROR,
                    )
                )
        justification = note.sections.get("diagnosis", "")
        if _words(justification) < JUSTIFICATION_MIN_WORDS:
            problems.append(
                ComplianceProblem("assessment", "Justify the diagnosis: the criteria met and what supports them.")
            )
        problems.extend(_risk_problems(facts))
        if _words(note.sections.get("initial_plan", "")) < PLAN_MIN_WORDS:
            problems.append(ComplianceProblem("plan", "Write the initial plan with specific next steps."))
        problems.extend(_sections_problems(note, "intake assessment"))
    elif note.format == NoteFormat.REVIEW:
        problems.extend(_all_goals_rated(note, client))
        problems.extend(_sections_problems(note, "treatment-plan review"))
    elif note.format == NoteFormat.DISCHARGE:
        problems.extend(_all_goals_rated(note, client))
        if facts.phq9 is None and facts.gad7 is None and facts.pcl5 is None and not note.sections.get(
            "final_measures", ""
        ).strip():
            problems.append(
                ComplianceProblem("measures", "Record the final measures (a score, or why none was taken).")
            )
        problems.extend(_sections_problems(note, "discharge summary"))
    return problems
