"""The session facts of a progress note as a form, read back into a SessionFacts.

Others present at a couples or family session are typed as "Name (initials); Name": a name
that is exactly one other client's is linked to that client's record; initials left out are
made from the name. The initials are how the person appears in any other client's export.

Each field that does not parse keeps its last saved value and is named in `problems`, so a
half-typed time never wipes a good one and never blocks saving the rest.
"""

from __future__ import annotations

from datetime import date, time
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Select, SelectionList, Static

from store.errors import ValidationFailed
from store.outcomes import MEASURES
from tui.widgets.note_views import participants_text
from store.models import (
    MODALITY_LABELS,
    Client,
    Modality,
    NoteFormat,
    PROGRESS_FORMATS,
    ProgressRating,
    RiskLevel,
    SessionFacts,
    normalise_cpt,
    validated,
)

RATING_LABELS = {
    ProgressRating.WORSE: "worse",
    ProgressRating.NO_CHANGE: "no change",
    ProgressRating.SOME_PROGRESS: "some progress",
    ProgressRating.SIGNIFICANT_PROGRESS: "significant progress",
    ProgressRating.ACHIEVED: "achieved",
}


def parse_time(text: str) -> time | None:
    """"10:00", "10.00", "1000" or "9:05" -> time; "" -> None; anything else ValueError."""
    text = text.strip().replace(".", ":")
    if not text:
        return None
    if ":" not in text and text.isdigit() and len(text) in (3, 4):
        text = text[:-2] + ":" + text[-2:]
    hours, _, minutes = text.partition(":")
    if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError("must look like 10:00")
    return time(int(hours), int(minutes))


# The fields each record note does not record (hidden in its form; store/compliance.py's
# checklist for it asks for none of them).
_NOT_BILLED = ("f-cpt", "f-modality", "f-dx", "f-interventions", "f-suicide", "f-violence", "f-risk-actions", "f-participants")
NOT_RECORDED: dict[NoteFormat | None, tuple[str, ...]] = {
    NoteFormat.INTAKE: ("f-interventions", "f-participants"),
    NoteFormat.REVIEW: _NOT_BILLED,
    NoteFormat.DISCHARGE: _NOT_BILLED,
}


def _folded(name: str) -> str:
    return " ".join(name.split()).casefold()


def _initials_of(name: str) -> str:
    return "".join(w[0].upper() + "." for w in name.split() if w[0].isalpha())


def parse_participants(text: str, known: dict[str, str], before: list[dict]) -> list[dict]:
    """"Blake Brook (B.B.); Jordan" -> participants. A name that is one other client's (by
    `known`, folded name -> id) links that record; a person the note already had keeps the
    link it had. ValueError names what cannot be read."""
    linked = {(p.get("name") or "", p["initials"]): p.get("client_id") for p in before}
    out: list[dict] = []
    for entry in (e.strip() for e in text.split(";")):
        if not entry:
            continue
        name, initials = entry, ""
        if entry.endswith(")") and "(" in entry:
            name, _, initials = entry[:-1].rpartition("(")
            name, initials = name.strip(), initials.strip()
        initials = initials or _initials_of(name)
        if not initials:
            raise ValueError("give each person a name or initials, like Jordan Ellis (J.E.)")
        if name:
            client_id = linked.get((name, initials)) or known.get(_folded(name))
        else:  # initials alone: a person kept by initials (an imported note)
            client_id = linked.get(("", initials))
        out.append({"client_id": client_id, "name": name, "initials": initials})
    return out


def _hhmm(t: time | None) -> str:
    return t.strftime("%H:%M") if t else ""


class FactsForm(Vertical):
    """Date, times, CPT, modality, diagnoses, goals, interventions, risk, PHQ-9/GAD-7/PCL-5."""

    def __init__(
        self,
        facts: SessionFacts,
        client: Client | None,
        *,
        previous: tuple[date, SessionFacts] | None = None,
        id: str | None = None,
        fmt: NoteFormat | None = None,
    ) -> None:
        """`previous`: the date and facts of the client's last note, offered to copy. `fmt`:
        the note's format; an intake, review or discharge hides the fields it does not record."""
        super().__init__(id=id, classes="facts-form")
        self.fmt = fmt
        self.facts = facts
        self.client = client
        self.previous = previous
        self.problems: list[str] = []
        # The suggestion last written into the CPT field, so we only replace our own guess.
        self._auto_cpt: str | None = None

    def compose(self) -> ComposeResult:
        f = self.facts
        if self.previous is not None:
            # Never filled for the clinician: copied only when they ask, and said so.
            with Horizontal(classes="facts-line"):
                yield Button(f"Copy modality, diagnoses, goals from {self.previous[0].isoformat()}",
                             id="copy-last-facts", compact=True)
            copied = Static("", id="copied-facts", classes="hint", markup=False)
            copied.display = False  # takes no room until something is copied
            yield copied
        with Horizontal(classes="facts-line"):
            yield Label("Date", classes="facts-label")
            yield Input(f.date_of_service.isoformat(), id="f-date", classes="f-date", compact=True)
            yield Label("Start", classes="facts-label")
            yield Input(_hhmm(f.start_time), placeholder="hh:mm", id="f-start", classes="f-time", compact=True)
            yield Label("Stop", classes="facts-label")
            yield Input(_hhmm(f.stop_time), placeholder="hh:mm", id="f-stop", classes="f-time", compact=True)
            yield Static(self._minutes_text(f.minutes), id="f-minutes")
        with Horizontal(classes="facts-line"):
            yield Label("CPT", classes="facts-label")
            yield Input(f.cpt_code or "", placeholder="code", id="f-cpt", classes="f-cpt", compact=True)
            yield Static("", id="f-cpt-hint")
            yield Label("Add-on", classes="facts-label")
            yield Input(", ".join(f.add_on_codes), placeholder="none", id="f-addons", classes="f-addons", compact=True)
        with Horizontal(classes="facts-line"):
            yield Label("Modality", classes="facts-label")
            yield Select(
                [(label, m.value) for m, label in MODALITY_LABELS.items()],
                value=f.modality.value if f.modality else Select.NULL,
                prompt="choose",
                id="f-modality",
                compact=True,
            )
        diagnoses = self.client.diagnoses if self.client else []
        yield Label("Diagnoses addressed", classes="facts-heading", id="f-dx-heading")
        if diagnoses:
            yield SelectionList[str](
                *[(f"{d.code} {d.description}".strip(), d.code, d.code in f.diagnoses_addressed) for d in diagnoses],
                id="f-dx",
                compact=True,
            )
        else:
            yield Static("The client has no diagnoses yet: add them with Edit client (e) on the main screen.", classes="hint",
                         id="f-dx-hint")
        yield Label("Goals addressed (treatment plan)", classes="facts-heading")
        goals = [g for g in (self.client.goals if self.client else []) if g.active]
        ratings = {gp.goal_id: gp.rating.value for gp in f.goals_addressed}
        if not goals:
            yield Static("No active treatment-plan goals yet.", classes="hint")
        for goal in goals:
            with Horizontal(classes="facts-line goal-line"):
                yield Label(goal.description, classes="goal-label", markup=False)
                yield Select(
                    [(label, r.value) for r, label in RATING_LABELS.items()],
                    value=ratings.get(goal.id, Select.NULL),
                    prompt="not addressed",
                    id=f"goal-{goal.id}",
                    classes="goal-rating",
                    compact=True,
                )
        with Horizontal(classes="facts-line"):
            yield Label("Interventions", classes="facts-label")
            yield Input(", ".join(f.interventions), placeholder="specific, comma-separated", id="f-interventions", compact=True)
        levels = [(r.value, r.value) for r in RiskLevel]
        with Horizontal(classes="facts-line"):
            yield Label("Risk: suicide ", classes="facts-label")
            yield Select(levels, value=f.risk.suicide.value if f.risk.suicide else Select.NULL, prompt="not assessed", id="f-suicide", classes="risk", compact=True)
        with Horizontal(classes="facts-line"):
            yield Label("Risk: violence", classes="facts-label")
            yield Select(levels, value=f.risk.violence.value if f.risk.violence else Select.NULL, prompt="not assessed", id="f-violence", classes="risk", compact=True)
        with Horizontal(classes="facts-line"):
            yield Label("Risk actions", classes="facts-label")
            yield Input(f.risk.actions, placeholder="what was done, if anything", id="f-risk-actions", compact=True)
        with Horizontal(classes="facts-line"):
            yield Label("PHQ-9", classes="facts-label")
            yield Input("" if f.phq9 is None else str(f.phq9), placeholder="0-27", id="f-phq9", classes="f-score", compact=True)
            yield Label("GAD-7", classes="facts-label")
            yield Input("" if f.gad7 is None else str(f.gad7), placeholder="0-21", id="f-gad7", classes="f-score", compact=True)
            yield Label("PCL-5", classes="facts-label")
            yield Input("" if f.pcl5 is None else str(f.pcl5), placeholder="0-80", id="f-pcl5", classes="f-score", compact=True)
        with Horizontal(classes="facts-line"):
            yield Label("Others present", classes="facts-label")
            yield Input(participants_text(f.participants), placeholder="couples/family: name (initials); ...",
                        id="f-participants", compact=True)
        yield Static("", id="facts-error", classes="field-error")

    def on_mount(self) -> None:
        self._refresh_minutes()
        self._hide_unrecorded()
        self.known_clients: dict[str, str] | None = None  # folded name -> client id, once loaded
        if hasattr(self.app, "store"):
            self.run_worker(self._load_known_clients(), group="facts-clients", exit_on_error=False)

    async def _load_known_clients(self) -> None:
        own = self.client.id if self.client else None
        rows = await self.app.store.call(lambda v: v.record.list_clients())
        names: dict[str, list[str]] = {}
        for row in rows:
            if row.client_id != own:
                names.setdefault(_folded(row.display_name), []).append(row.client_id)
        # A name two clients share links neither: the person is kept by name.
        self.known_clients = {name: ids[0] for name, ids in names.items() if len(ids) == 1}

    def _hide_unrecorded(self) -> None:
        """Hides the lines of the fields this kind of note does not record (their values are
        kept as they are): a review or discharge summary is not a billed session."""
        hidden = NOT_RECORDED.get(self.fmt, ())
        for field_id in hidden:
            for field in self.query("#" + field_id):
                line = field.parent if isinstance(field.parent, Horizontal) else field
                line.display = False
        if "f-dx" in hidden:  # its heading, and the hint shown instead of it
            self.query_one("#f-dx-heading").display = False
            for hint in self.query("#f-dx-hint"):
                hint.display = False

    @staticmethod
    def _minutes_text(minutes: int | None) -> str:
        return f"{minutes} min" if minutes else "-- min"

    def _refresh_minutes(self) -> None:
        from store.compliance import suggest_cpt

        try:
            start = parse_time(self.query_one("#f-start", Input).value)
            stop = parse_time(self.query_one("#f-stop", Input).value)
        except ValueError:
            start = stop = None
        minutes = None
        if start and stop and stop > start:
            minutes = (stop.hour * 60 + stop.minute) - (start.hour * 60 + start.minute)
        self.query_one("#f-minutes", Static).update(self._minutes_text(minutes))
        # Suggested for session notes only: an intake is 90791/90792 whatever its length.
        session = self.fmt is None or self.fmt in PROGRESS_FORMATS
        suggestion = suggest_cpt(minutes) if minutes and session else None
        hint = self.query_one("#f-cpt-hint", Static)
        hint.update(f"suggested {suggestion}" if suggestion else ("under 16 min" if minutes and session else ""))
        cpt = self.query_one("#f-cpt", Input)
        if suggestion and (not cpt.value.strip() or cpt.value.strip() == self._auto_cpt):
            self._auto_cpt = suggestion
            cpt.value = suggestion

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "copy-last-facts" and self.previous is not None:
            event.stop()
            self.copy_previous()

    def copy_previous(self) -> None:
        """The clinician's copy of the last note's stable facts: modality, diagnoses
        addressed and goals (with their ratings, to review); never times, codes, risk, scores
        or text. What was copied is named under the button."""
        on, previous = self.previous  # type: ignore[misc]
        copied: list[str] = []
        if previous.modality is not None:
            self.query_one("#f-modality", Select).value = previous.modality.value
            copied.append("modality")
        if self.query("#f-dx"):
            listing = self.query_one("#f-dx", SelectionList)
            codes = [code for code in previous.diagnoses_addressed if code in {d.code for d in self.client.diagnoses}]
            for code in codes:
                listing.select(code)
            if codes:
                copied.append("diagnoses addressed")
        ratings = {gp.goal_id: gp.rating.value for gp in previous.goals_addressed}
        goals = 0
        for select in self.query(".goal-rating").results(Select):
            rating = ratings.get((select.id or "").removeprefix("goal-"))
            if rating is not None:
                select.value = rating
                goals += 1
        if goals:
            copied.append("goals (check the ratings for this session)")
        said = ", ".join(copied) if copied else "nothing that applies to this client's plan"
        note = self.query_one("#copied-facts", Static)
        note.update(f"Copied from the note of {on.isoformat()}: {said}.")
        note.display = True
        # What the clinician writes next: the interventions, the first fact after those copied.
        self.query_one("#f-interventions", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id in ("f-start", "f-stop"):
            self._refresh_minutes()

    def read(self) -> SessionFacts | None:
        """The facts as typed; fields that do not parse keep their saved value."""
        base = self.facts.model_dump(exclude={"minutes"})
        data = dict(base)
        problems: list[str] = []

        def text(id_: str) -> str:
            return self.query_one("#" + id_, Input).value.strip()

        try:
            data["date_of_service"] = date.fromisoformat(text("f-date"))
        except ValueError:
            problems.append("date: must look like 2026-11-20")
        for key, id_ in (("start_time", "f-start"), ("stop_time", "f-stop")):
            try:
                data[key] = parse_time(text(id_))
            except ValueError as e:
                problems.append(f"{key.replace('_', ' ')}: {e}")
        cpt = text("f-cpt")
        try:
            data["cpt_code"] = normalise_cpt(cpt) if cpt else None
        except ValueError as e:
            problems.append(f"CPT {e}")
        addons = [c for c in text("f-addons").replace(";", ",").replace(" ", ",").split(",") if c]
        try:
            data["add_on_codes"] = [normalise_cpt(c) for c in addons]
        except ValueError as e:
            problems.append(f"add-on code {e}")
        modality = self.query_one("#f-modality", Select).value
        data["modality"] = None if modality is Select.NULL else Modality(modality)
        if self.query("#f-dx"):
            data["diagnoses_addressed"] = list(self.query_one("#f-dx", SelectionList).selected)
        goals: list[dict[str, Any]] = []
        for select in self.query(".goal-rating").results(Select):
            if select.value is not Select.NULL:
                goals.append({"goal_id": select.id.removeprefix("goal-"), "rating": select.value})
        # Goals not shown (inactive ones) keep what the note said about them.
        shown = {s.id.removeprefix("goal-") for s in self.query(".goal-rating").results(Select)}
        goals += [gp for gp in base["goals_addressed"] if gp["goal_id"] not in shown]
        data["goals_addressed"] = goals
        data["interventions"] = [i for i in text("f-interventions").replace(";", ",").split(",")]
        risk = {"actions": self.query_one("#f-risk-actions", Input).value}
        for key, id_ in (("suicide", "f-suicide"), ("violence", "f-violence")):
            value = self.query_one("#" + id_, Select).value
            risk[key] = None if value is Select.NULL else value
        data["risk"] = risk
        for measure in MEASURES:
            raw = text(f"f-{measure.key}")
            if not raw:
                data[measure.key] = None
            elif raw.isdigit() and 0 <= int(raw) <= measure.maximum:
                data[measure.key] = int(raw)
            else:
                problems.append(f"{measure.name}: a whole number from 0 to {measure.maximum}")
        try:
            data["participants"] = parse_participants(text("f-participants"), self.known_clients or {}, base["participants"])
        except ValueError as e:
            problems.append(f"others present: {e}")
        try:
            facts = validated(SessionFacts, data)
        except ValidationFailed as e:
            problems.append(e.message)
            facts = None
        if problems != self.problems:
            self.query_one("#facts-error", Static).update("; ".join(problems))
        self.problems = problems
        return facts
