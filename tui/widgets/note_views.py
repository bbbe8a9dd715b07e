"""Read-only views of a progress note: signed, entered in error, or in signature conflict."""

from __future__ import annotations

from typing import Any

from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Button, Label, Static

from store.models import MODALITY_LABELS, ProgressNote, SessionFacts, section_title
from store.signature_state import SignatureState


def _when(at, device_id: str, caveats: dict[str, str]) -> str:
    text = at.astimezone().strftime('%Y-%m-%d %H:%M')
    caveat = caveats.get(device_id)
    return f"{text} {caveat}" if caveat else text


def read_only_view(
    note: ProgressNote, state: SignatureState, client: Any, mode: str, *, caveats: dict[str, str] | None = None
) -> list[Widget]:
    """A signed, entered-in-error, conflicted or tampered note: nothing here can be edited.

    What is shown as signed comes from the note's signature state (verified with the signing
    devices' keys, store/signature_state.py): only a verified signature reads "signed"; a
    failing one is a tamper finding, with the signed originals this device holds.
    `caveats` (device id -> text, from sync.clock.time_caveats) follow the times written by
    a device whose clock is known to disagree with this one's."""
    caveats = caveats or {}
    out: list = []
    if mode == "error" and note.entered_in_error:
        out.append(Static(f"Entered in error: {note.entered_in_error.reason}", classes="banner banner-error", markup=False))
    if mode == "tampered":
        out.append(
            Static(
                "FAILS SIGNATURE VERIFICATION: this note is not shown as signed. What failed:\n"
                + "\n".join(f"- {f}" for f in state.findings)
                + "\nThe signed versions this device holds are shown below, then the note as it now reads.",
                classes="banner banner-error",
                markup=False,
            )
        )
        out += _versions(state, caveats)
        out.append(Label("The note as it now reads (not verified)", classes="section-title"))
        out += sections_view(note)
    elif mode == "conflict":
        out.append(
            Static(
                "Signature conflict: this note was signed and its content differs between signed "
                "versions, or was changed after signing. Every signed version is shown below with "
                "the device and time that signed it. Choose how to settle it: keep the first "
                "signature and record the rest as an addendum, or sign the note as it now reads.",
                classes="banner banner-error",
                markup=False,
            )
        )
        out.append(
            Horizontal(
                Button("Keep signed, edits as addendum", id="resolve-addendum", variant="primary"),
                Button("Sign the merged note again", id="resolve-resign", variant="warning"),
                classes="dialog-buttons",
            )
        )
        out += _versions(state, caveats)
        if state.current_hash not in {v.content_hash for v in state.versions}:
            out.append(Label("Edits made after signing (current text, not signed)", classes="section-title"))
            signed = state.versions[-1].note if state.versions else None
            changed = [k for k in note.section_keys if signed is None or note.sections.get(k) != signed.sections.get(k)]
            out += sections_view(note, keys=changed or None)
    else:
        out.append(Static(facts_summary(note.facts, client), classes="facts-summary", markup=False))
        out += sections_view(note)
        shown = state.shown
        if shown is not None:
            s = shown.signature
            tail = " (verified)" if state.signed else f" ({state.label}; not verified)"
            out.append(
                Static(
                    f"Signed by {s.signer}, {s.credentials} on {shown.device_label}, "
                    f"{_when(s.signed_at, s.device_id, caveats)}{tail}",
                    classes="signature",
                    markup=False,
                )
            )
    addenda = state.addenda if state.addenda or state.versions else tuple(note.addenda)
    signed_at = state.shown.signature.signed_at if state.shown is not None else None
    for a in addenda:
        when = _when(a.signed_at, a.device_id, caveats)
        if signed_at is not None and a.signed_at < signed_at:
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


def _versions(state: SignatureState, caveats: dict[str, str]) -> list[Widget]:
    """Every signed version, oldest first, labelled from this device's point of view."""
    out: list = []
    for i, v in enumerate(state.versions, 1):
        s = v.signature
        notes = []
        if not v.verified:
            notes.append("not verified")
        if v.superseded:
            notes.append("settled by a later signature")
        if v.kept_here:
            notes.append("kept on this device; a sync removed or altered it")
        extra = f" ({'; '.join(notes)})" if notes else ""
        out.append(
            Label(
                f"Signed version {i}: signed by {s.signer}, {s.credentials} on {v.device_label}, "
                f"{_when(s.signed_at, v.device_id, caveats)}{extra}",
                classes="section-title",
                markup=False,
            )
        )
        out += sections_view(v.note)
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
    if facts.pcl5 is not None:
        scores.append(f"PCL-5 {facts.pcl5}")
    if facts.participants:
        lines.append("Also present: " + participants_text(facts.participants))
    if any(scores):
        lines.append("  ".join(s for s in scores if s))
    return "\n".join(lines)



def participants_text(participants) -> str:
    """'Blake Brook (B.B.); (J.E.)': each person's name where the note has one, with the
    initials that stand for them in another client's export."""
    return "; ".join(f"{p.name} ({p.initials})" if p.name else f"({p.initials})" for p in participants)
