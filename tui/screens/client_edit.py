"""Create or edit a client: name, date of birth, diagnoses (ICD-10), treatment-plan goals, and
the plan's start date and review interval (store/plan_reviews.py)."""

from __future__ import annotations

from datetime import date
from typing import Any

from textual.app import ComposeResult
from textual import work
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Checkbox, Footer, Input, Label, Static

from store.errors import ValidationFailed
from store.diagnosis_codes import DiagnosisCode, shared_index
from store.models import DEFAULT_REVIEW_INTERVAL_DAYS, Client, validated
from tui.screens.base import NotewellScreen
from tui.screens.diagnosis_search import DiagnosisSearchDialog


class DiagnosisRow(Horizontal):
    def __init__(self, code: str = "", description: str = "") -> None:
        super().__init__(classes="edit-row diagnosis-row")
        self._code, self._description = code, description

    def compose(self) -> ComposeResult:
        yield Input(self._code, placeholder="ICD-10, e.g. F41.1", classes="dx-code")
        yield Input(self._description, placeholder="description", classes="dx-description")
        yield Button("Remove", classes="remove")

    def value(self) -> dict[str, str] | None:
        code = self.query_one(".dx-code", Input).value.strip()
        description = self.query_one(".dx-description", Input).value.strip()
        if not code and not description:
            return None
        return {"code": code, "description": description}


class GoalRow(Vertical):
    def __init__(self, goal_id: str | None = None, description: str = "", objective: str = "", active: bool = True) -> None:
        super().__init__(classes="edit-row goal-row")
        self.goal_id = goal_id
        self._description, self._objective, self._active = description, objective, active

    def compose(self) -> ComposeResult:
        with Horizontal(classes="goal-line"):
            yield Input(self._description, placeholder="goal, e.g. reduce panic attacks", classes="goal-description")
            yield Checkbox("active", self._active, classes="goal-active")
            yield Button("Remove", classes="remove")
        yield Input(self._objective, placeholder="measurable objective, e.g. fewer than 1 a week for 4 weeks", classes="goal-objective")

    def value(self) -> dict[str, Any] | None:
        description = self.query_one(".goal-description", Input).value.strip()
        objective = self.query_one(".goal-objective", Input).value.strip()
        if not description and not objective:
            return None
        data: dict[str, Any] = {
            "description": description,
            "objective": objective,
            "active": self.query_one(".goal-active", Checkbox).value,
        }
        if self.goal_id:
            data["id"] = self.goal_id
        return data


class ClientEditScreen(NotewellScreen[str | None]):
    BINDINGS = [
        Binding("ctrl+s", "save", "Save client", id="client.save"),
        Binding("escape", "cancel", "Cancel", id="client.cancel"),
    ]

    def __init__(self, client: Client | None) -> None:
        super().__init__()
        self._client = client

    def compose(self) -> ComposeResult:
        c = self._client
        with VerticalScroll(id="client-form"):
            yield Label("Edit client" if c else "New client", classes="dialog-title")
            yield Label("Name")
            yield Input(c.display_name if c else "", placeholder="name as in the record", id="display-name")
            yield Label("Date of birth (YYYY-MM-DD, optional)")
            yield Input(c.date_of_birth.isoformat() if c and c.date_of_birth else "", id="dob")
            yield Label("Diagnoses", classes="section-title")
            with Vertical(id="diagnoses"):
                for d in c.diagnoses if c else []:
                    yield DiagnosisRow(d.code, d.description)
            with Horizontal(classes="edit-buttons"):
                yield Button("Find diagnosis", id="find-diagnosis")
                yield Button("+ Diagnosis", id="add-diagnosis")
            yield Label("Treatment-plan goals", classes="section-title")
            with Vertical(id="goals"):
                for g in c.goals if c else []:
                    yield GoalRow(g.id, g.description, g.objective, g.active)
            yield Button("+ Goal", id="add-goal")
            with Horizontal(classes="edit-row"):
                yield Label("Plan started (YYYY-MM-DD) ")
                yield Input(c.plan_start.isoformat() if c and c.plan_start else "", placeholder="not yet", id="plan-start", compact=True)
                yield Label(" reviewed every ")
                interval = str(c.review_interval_days) if c else str(DEFAULT_REVIEW_INTERVAL_DAYS)
                yield Input(interval, id="review-interval", compact=True)
                yield Label(" days")
            yield Static("", id="client-error", classes="field-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save", id="save", variant="primary")
                yield Button("Cancel", id="cancel")
        yield Footer()

    def on_mount(self) -> None:
        self._no_blink()
        self.query_one("#display-name", Input).focus()
        self._as_opened = self._form_state()
        self._index_codes()

    @work(thread=True, exclusive=True, group="dx-index", exit_on_error=False)
    def _index_codes(self) -> None:
        """The diagnosis code set, indexed while the form is filled in, so that Find
        diagnosis answers at once (store/diagnosis_codes.py; once per process)."""
        shared_index()

    def _form_state(self) -> tuple:
        """Everything the form holds, to tell an untouched form from one with typing in it."""
        return (
            tuple(field.value for field in self.query(Input)),
            tuple(box.value for box in self.query(Checkbox)),
        )

    def _no_blink(self) -> None:
        if self.app.test_mode:
            for field in self.query(Input):
                field.cursor_blink = False

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        button = event.button
        if button.id == "find-diagnosis":
            self.app.push_screen(DiagnosisSearchDialog(), self._add_found_diagnosis)
        elif button.id == "add-diagnosis":
            row = DiagnosisRow()
            await self.query_one("#diagnoses").mount(row)
            self._no_blink()
            row.query_one(Input).focus()
        elif button.id == "add-goal":
            row = GoalRow()
            await self.query_one("#goals").mount(row)
            self._no_blink()
            # By class: a query for the first Input searches breadth-first and finds the
            # objective, one level above the goal's own line.
            row.query_one(".goal-description", Input).focus()
        elif button.has_class("remove"):
            for ancestor in button.ancestors:
                if isinstance(ancestor, (DiagnosisRow, GoalRow)):
                    await ancestor.remove()
                    break
        elif button.id == "save":
            self.action_save()
        elif button.id == "cancel":
            self.action_cancel()

    async def _add_found_diagnosis(self, found: DiagnosisCode | None) -> None:
        if found is None:
            return
        if any((row.value() or {}).get("code", "").upper() == found.code for row in self.query(DiagnosisRow)):
            self.notify(f"{found.code} is already in the list.")
            return
        row = DiagnosisRow(found.code, found.description)
        await self.query_one("#diagnoses").mount(row)
        self._no_blink()
        self.query_one("#find-diagnosis", Button).focus()

    def action_cancel(self) -> None:
        from tui.screens.dialogs import confirm_discard

        confirm_discard(self, self._form_state() != self._as_opened, lambda: self.dismiss(None))

    def action_save(self) -> None:
        error = self.query_one("#client-error", Static)
        dob_text = self.query_one("#dob", Input).value.strip()
        data: dict[str, Any] = {
            "display_name": self.query_one("#display-name", Input).value,
            "diagnoses": [v for row in self.query(DiagnosisRow) if (v := row.value())],
            "goals": [v for row in self.query(GoalRow) if (v := row.value())],
        }
        if dob_text:
            try:
                data["date_of_birth"] = date.fromisoformat(dob_text)
            except ValueError:
                error.update("date_of_birth: must look like 1980-04-17")
                return
        plan_text = self.query_one("#plan-start", Input).value.strip()
        if plan_text:
            try:
                data["plan_start"] = date.fromisoformat(plan_text)
            except ValueError:
                error.update("plan_start: must look like 2026-01-05")
                return
        interval = self.query_one("#review-interval", Input).value.strip()
        if not interval.isdigit():
            error.update("review_interval_days: a whole number of days, from 1 to 366")
            return
        data["review_interval_days"] = int(interval)
        if self._client is not None:
            data["id"] = self._client.id
            data["identifiers"] = self._client.identifiers
            data["created_at"] = self._client.created_at
        try:
            client = validated(Client, data)
        except ValidationFailed as e:
            # The model's own message: which field and why (e.g. not an ICD-10 code).
            error.update(e.message)
            return
        error.update("")
        self.run_store(self._save, client, group="client-save", exclusive=True)

    async def _save(self, client: Client) -> None:
        error = self.query_one("#client-error", Static)
        creating = self._client is None
        try:
            saved = await self.app.store.call(
                (lambda v: v.record.create_client(client)) if creating else (lambda v: v.record.update_client(client))
            )
        except ValidationFailed as e:
            error.update(e.message)
            return
        self.notify("Client added." if creating else "Client saved.")
        self.dismiss(saved.id)
