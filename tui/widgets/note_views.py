"""Read-only views of a progress note: signed, entered in error, or in signature conflict."""

from __future__ import annotations

from typing import Any

from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Button, Label, Static

from store.models import MODALITY_LABELS, ProgressNote, SessionFacts, section_title


def _when(at, device_id: str, caveats: dict[str, str]) -> str:
    text = at.astimezone().strftime('%Y-%m-%d %H:%M')
    caveat = caveats.get(device_id)
    return f"{text} {caveat}" if caveat else text


def read_only_view(
    note: ProgressNote, signed: ProgressNote | None, client: Any, mode: str, *, caveats: dict[str, str] | None = None
) -> list[Widget]:
    """A signed, entered-in-error or conflicted note: nothing here can be edited.

    `caveats` (device id -> text, from sync.clock.time_caveats) follow the times written by
    a device whose clock is known to disagree with this one's."""
    caveats = caveats or {}
    out: list = []
    if mode == "error" and note.entered_in_error:
        out.append(Static(f"Entered in error: {note.entered_in_error.reason}", classes="banner banner-error", markup=False))
    if mode == "conflict":
        out.append(
            Static(
                "This note was edited on another device while it was being signed. The signed "
                "version and the edits are both shown below. Choose how to settle it: keep the "
                "signed text and record the edits as an addendum, or sign the merged note again.",
                classes="banner banner-error",
            )
        )
        out.append(
            Horizontal(
                Button("Keep signed, edits as addendum", id="resolve-addendum", variant="primary"),
                Button("Sign the merged note again", id="resolve-resign", variant="warning"),
                classes="dialog-buttons",
            )
        )
        shown = signed or note
        out.append(Label("Signed version", classes="section-title"))
        out += sections_view(shown)
        out.append(Label("Edits made on another device (current text)", classes="section-title"))
        changed = [k for k in note.section_keys if signed is None or note.sections.get(k) != signed.sections.get(k)]
        out += sections_view(note, keys=changed or None)
    else:
        out.append(Static(facts_summary(note.facts, client), classes="facts-summary", markup=False))
        out += sections_view(note)
    if note.signature:
        s = note.signature
        out.append(
            Static(
                f"Signed by {s.signer}, {s.credentials} on {_when(s.signed_at, s.device_id, caveats)}",
                classes="signature",
                markup=False,
            )
        )
    for a in note.addenda:
        when = _when(a.signed_at, a.device_id, caveats)
        if note.signature is not None and a.signed_at < note.signature.signed_at:
            # Written by a device whose clock was behind the signing device's (or before
            # addenda were held to the signature's time): shown in the order written.
            when += " (dated before the signature it amends: a device clock was off)"
        out.append(
            Static(
                f"Addendum - {when} - {a.signer}, {a.credentials}\n"
                f"Reason: {a.reason}\n{a.text}",
                classes="addendum",
                markup=False,
            )
        )
    if mode == "signed":
        out.append(Static("Signed notes are locked; corrections go in an addendum (its key is in the footer).", classes="hint"))
    return out


def sections_view(note: ProgressNote, keys: list[str] | None = None) -> list[Widget]:
    out: list = []
    for key in keys or note.section_keys:
        out.append(Label(section_title(key), classes="section-title"))
        out.append(Static(note.sections.get(key, "") or "(empty)", classes="section-text", markup=False))
    return out


def facts_summary(facts: SessionFacts, client: Any) -> str:
    parts = [f"Date {facts.date_of_service.isoformat()}"]
    if facts.start_time and facts.stop_time:
        parts.append(f"{facts.start_time.strftime('%H:%M')}-{facts.stop_time.strftime('%H:%M')} ({facts.minutes} min)")
    if facts.cpt_code:
        parts.append("CPT " + " + ".join([facts.cpt_code] + facts.add_on_codes))
    if facts.modality:
        parts.append(MODALITY_LABELS[facts.modality])
    lines = ["  ".join(parts)]
    if facts.diagnoses_addressed:
        lines.append("Diagnoses: " + ", ".join(facts.diagnoses_addressed))
    goals = {g.id: g.description for g in (client.goals if client else [])}
    for gp in facts.goals_addressed:
        lines.append(f"Goal: {goals.get(gp.goal_id, gp.goal_id)} - {gp.rating.value.replace('_', ' ')}")
    if facts.interventions:
        lines.append("Interventions: " + ", ".join(facts.interventions))
    risk = facts.risk
    if risk.assessed:
        lines.append(f"Risk: suicide {risk.suicide.value}, violence {risk.violence.value}" + (f"; {risk.actions}" if risk.actions else ""))
    scores = [f"PHQ-9 {facts.phq9}" if facts.phq9 is not None else "", f"GAD-7 {facts.gad7}" if facts.gad7 is not None else ""]
    if any(scores):
        lines.append("  ".join(s for s in scores if s))
    return "\n".join(lines)

