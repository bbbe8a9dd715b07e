"""The record export as a printable PDF (fpdf2).

Every page carries the practice and clinician in its header and "Generated on <date>" and
"Page N of M" in its footer. Text uses a core PDF font (Helvetica), so the file needs no font
files and its text extracts cleanly; characters outside Latin-1 are transliterated (curly
quotes to straight ones, accented letters outside Latin-1 to their base letter) or shown as
"?", never dropped silently.

Takes a RecordExport (store/export.py), which holds only the record: no process notes.
"""

from __future__ import annotations

import secrets
import unicodedata
from datetime import datetime, timezone

from fpdf import FPDF
from fpdf.enums import AccessPermission, EncryptionMethod, XPos, YPos

from store.models import (
    MODALITY_LABELS,
    Addendum,
    Client,
    ProgressNote,
    note_title,
    section_title,
)

_REPLACEMENTS = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2032": "'", "\u2033": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "--", "\u2015": "--",
    "\u2212": "-", "\u2026": "...", "\u2022": "*", "\u00b7": "\u00b7", "\u2192": "->",
    "\u2190": "<-", "\u2264": "<=", "\u2265": ">=", "\u2260": "!=", "\u2248": "~",
    "\u00a0": " ", "\u2009": " ", "\u200a": " ", "\u202f": " ", "\u2002": " ", "\u2003": " ",
    "\u200b": "", "\u200c": "", "\u200d": "", "\ufeff": "", "\t": "    ", "\r": "",
    "\u0141": "L", "\u0142": "l", "\u0110": "D", "\u0111": "d", "\u0131": "i", "\u0152": "OE", "\u0153": "oe", "\u20ac": "EUR", "\u2122": "(TM)",
}

PAGE_MARGIN = 15
LINE = 5


def pdf_safe(text: str) -> str:
    """`text` in the Latin-1 a core font can show, keeping as much of it readable as can be."""
    out: list[str] = []
    for ch in text:
        if ch in _REPLACEMENTS:
            out.append(_REPLACEMENTS[ch])
            continue
        if ch == "\n" or (ch.isprintable() and ord(ch) < 256):
            out.append(ch)
            continue
        if not ch.isprintable():
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", ch) if ord(c) < 256 and c.isprintable())
        out.append(base or "?")
    return "".join(out)


def _when(at: datetime | None) -> str:
    if at is None:
        return ""
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


class _RecordPDF(FPDF):
    def __init__(self, header_left: str, header_right: str, footer_left: str) -> None:
        super().__init__(orientation="P", unit="mm", format="Letter")
        self._header_left = pdf_safe(header_left)
        self._header_right = pdf_safe(header_right)
        self._footer_left = pdf_safe(footer_left)
        self.set_margins(PAGE_MARGIN, PAGE_MARGIN + 5, PAGE_MARGIN)
        self.set_auto_page_break(True, margin=PAGE_MARGIN + 5)

    def header(self) -> None:
        self.set_y(8)
        self.set_font("Helvetica", "", 8)
        self.set_text_color(80)
        half = self.epw / 2
        self.cell(half, 4, self._header_left, new_x=XPos.RIGHT, new_y=YPos.TOP)
        self.cell(half, 4, self._header_right, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_draw_color(160)
        self.line(self.l_margin, self.get_y() + 1, self.w - self.r_margin, self.get_y() + 1)
        self.set_text_color(0)
        self.set_y(PAGE_MARGIN + 5)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", "", 8)
        self.set_text_color(80)
        half = self.epw / 2
        self.cell(half, 4, self._footer_left, new_x=XPos.RIGHT, new_y=YPos.TOP)
        self.cell(half, 4, f"Page {self.page_no()} of {{nb}}", align="R")
        self.set_text_color(0)


class _Writer:
    def __init__(self, pdf: _RecordPDF) -> None:
        self.pdf = pdf

    def title(self, text: str) -> None:
        self.pdf.set_font("Helvetica", "B", 16)
        self.pdf.multi_cell(0, 8, pdf_safe(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.pdf.ln(1)

    def heading(self, text: str, *, keep_with: float = 30) -> None:
        pdf = self.pdf
        if pdf.get_y() + keep_with > pdf.page_break_trigger:
            pdf.add_page()
        pdf.ln(3)
        pdf.set_font("Helvetica", "B", 12)
        pdf.set_fill_color(230)
        pdf.multi_cell(0, 7, pdf_safe(text), fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(1)

    def subheading(self, text: str) -> None:
        pdf = self.pdf
        if pdf.get_y() + 15 > pdf.page_break_trigger:
            pdf.add_page()
        pdf.ln(1)
        pdf.set_font("Helvetica", "B", 10)
        pdf.multi_cell(0, LINE, pdf_safe(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def label(self, text: str) -> None:
        """A status label that must not be missed (draft, entered in error, late entry)."""
        self.pdf.set_font("Helvetica", "B", 10)
        self.pdf.set_text_color(150, 0, 0)
        self.pdf.multi_cell(0, LINE, pdf_safe(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.pdf.set_text_color(0)

    def field(self, name: str, value: str) -> None:
        if not value:
            return
        pdf = self.pdf
        pdf.set_x(pdf.l_margin)
        pdf.set_font("Helvetica", "B", 10)
        pdf.write(LINE, pdf_safe(f"{name}: "))
        pdf.set_font("Helvetica", "", 10)
        pdf.write(LINE, pdf_safe(value))
        pdf.ln(LINE)

    def text(self, value: str, *, italic: bool = False) -> None:
        self.pdf.set_font("Helvetica", "I" if italic else "", 10)
        self.pdf.multi_cell(0, LINE, pdf_safe(value) or " ", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def gap(self, h: float = 2) -> None:
        self.pdf.ln(h)


def _client_section(w: _Writer, client: Client) -> None:
    w.heading("Client", keep_with=20)
    w.field("Name", client.display_name)
    w.field("Date of birth", client.date_of_birth.isoformat() if client.date_of_birth else "not recorded")
    for name, value in sorted(client.identifiers.items()):
        w.field(name, value)
    w.field("Record id", client.id)
    if client.plan_start is not None:
        w.field("Treatment plan started", client.plan_start.isoformat())
        w.field("Plan reviewed every", f"{client.review_interval_days} days")

    w.heading("Diagnoses", keep_with=20)
    if not client.diagnoses:
        w.text("No diagnoses recorded.", italic=True)
    for dx in client.diagnoses:
        w.text(f"{dx.code}  {dx.description}".rstrip())

    w.heading("Treatment plan and goals", keep_with=20)
    if not client.goals:
        w.text("No treatment-plan goals recorded.", italic=True)
    for i, goal in enumerate(client.goals, 1):
        w.subheading(f"Goal {i}: {goal.description}" + ("" if goal.active else " (inactive)"))
        w.field("Measurable objective", goal.objective or "not recorded")


def _outcomes_section(w: _Writer, export) -> None:
    from store.outcomes import MEASURES

    w.heading("Outcome measures", keep_with=30)
    rows = export.outcomes.measure_table()
    if not rows:
        w.text("No PHQ-9, GAD-7 or PCL-5 scores recorded in this period.", italic=True)
        return
    pdf = w.pdf
    pdf.set_font("Helvetica", "", 9)
    with pdf.table(
        col_widths=(26, 14, 30, 14, 30, 14, 34),
        text_align=("LEFT", "RIGHT", "LEFT", "RIGHT", "LEFT", "RIGHT", "LEFT"),
        line_height=LINE,
        first_row_as_headings=True,
        repeat_headings=1,
    ) as table:
        header = table.row()
        header.cell("Date")
        for measure in MEASURES:
            header.cell(measure.name)
            header.cell("Severity")
        for on, points in rows:
            row = table.row()
            row.cell(on.isoformat())
            for measure in MEASURES:
                point = points.get(measure.key)
                row.cell("" if point is None else str(point.score))
                row.cell("" if point is None else point.band)
    w.gap(1)
    for measure in MEASURES:
        bands = ", ".join(f"{b.low}-{b.high} {b.label}" for b in measure.bands)
        w.text(f"{measure.name} (0-{measure.maximum}): {bands}.", italic=True)
    if export.include_drafts and any(p.draft for s in export.outcomes.series for p in s.points):
        w.text("Scores from draft (unsigned) notes are included in this table.", italic=True)


def _facts(w: _Writer, note: ProgressNote, client: Client) -> None:
    f = note.facts
    times = ""
    if f.start_time and f.stop_time:
        times = f"{f.start_time.strftime('%H:%M')}-{f.stop_time.strftime('%H:%M')} ({f.minutes} minutes)"
    elif f.start_time:
        times = f"started {f.start_time.strftime('%H:%M')}"
    w.field("Date of service", f.date_of_service.isoformat())
    w.field("Time", times or "not recorded")
    codes = f.cpt_code or "not recorded"
    if f.add_on_codes:
        codes += " with add-on " + ", ".join(f"+{c}" for c in f.add_on_codes)
    w.field("Service (CPT)", codes)
    w.field("Modality", MODALITY_LABELS.get(f.modality, "") if f.modality else "not recorded")
    descriptions = {d.code: d.description for d in client.diagnoses}
    dx = [f"{code} {descriptions.get(code, '')}".rstrip() for code in f.diagnoses_addressed]
    w.field("Diagnoses addressed", "; ".join(dx) or "none recorded")
    w.field("Interventions", "; ".join(f.interventions) or "none recorded")
    goals = {g.id: g.description for g in client.goals}
    for gp in f.goals_addressed:
        line = f"{goals.get(gp.goal_id, gp.goal_id)}: {gp.rating.value.replace('_', ' ')}"
        if gp.comment:
            line += f" - {gp.comment}"
        w.field("Goal progress", line)
    risk = f.risk
    if risk.assessed:
        text = f"suicide {risk.suicide.value}, violence {risk.violence.value}"
        if risk.actions:
            text += f"; actions: {risk.actions}"
        w.field("Risk assessment", text)
    else:
        w.field("Risk assessment", "not recorded" + (f"; actions: {risk.actions}" if risk.actions else ""))
    from store.outcomes import MEASURES, severity

    scores = [
        f"{m.name} {getattr(f, m.key)} ({severity(m, getattr(f, m.key))})" for m in MEASURES if getattr(f, m.key) is not None
    ]
    w.field("Outcome measures", "; ".join(scores))
    # Others present at a couples or family session, as the export released them (initials).
    w.field("Also present", ", ".join(p.initials for p in f.participants))


def _addendum(w: _Writer, addendum: Addendum, index: int, total: int) -> None:
    w.subheading(f"Addendum {index} of {total}")
    w.field("Signed", f"{addendum.signer}, {addendum.credentials}, on {_when(addendum.signed_at)}")
    w.field("Reason", addendum.reason)
    w.text(addendum.text)
    w.field("Content SHA-256", addendum.content_hash)


def _note_section(w: _Writer, exported, client: Client, late_hours: int) -> None:
    note: ProgressNote = exported.note
    f = note.facts
    status = " - DRAFT" if exported.draft else " - ENTERED IN ERROR" if exported.entered_in_error else ""
    w.heading(f"{note_title(note.format)}, {f.date_of_service.isoformat()} ({note.format.value}){status}", keep_with=45)
    if exported.draft:
        w.label("DRAFT - NOT SIGNED. This note is unfinished and is not part of the signed record.")
    if exported.entered_in_error and note.entered_in_error:
        eie = note.entered_in_error
        w.label(f"ENTERED IN ERROR on {_when(eie.marked_at)} by {eie.marked_by}. Reason: {eie.reason}")
    elif exported.entered_in_error:
        w.label("ENTERED IN ERROR.")
    if exported.late_entry:
        w.label(f"LATE ENTRY: signed more than {late_hours} hours after the session ended.")
    if exported.fails_verification:
        w.label(
            "FAILS SIGNATURE VERIFICATION: this note is not signed as it reads. What failed: "
            + " ".join(exported.findings)
        )
    elif exported.legacy_signature:
        w.label("SIGNED BEFORE VERIFICATION EXISTED: the signature below is not verified by key.")
    if exported.signature_conflict:
        w.label(
            "SIGNATURE CONFLICT: the note was edited on another device while it was being signed; "
            "the signed version is shown."
        )
    _facts(w, note, client)
    for key in note.section_keys:
        w.subheading(section_title(key))
        w.text(note.sections.get(key, "") or "(empty)", italic=not note.sections.get(key, ""))
    w.gap(1)
    if note.signature:
        s = note.signature
        w.field("Electronically signed", f"{s.signer}, {s.credentials}, on {_when(s.signed_at)}")
        w.field("Signing device", s.device_id[:16])
        w.field("Content SHA-256", s.content_hash)
    elif exported.fails_verification:
        w.field("Signature", "fails verification")
    elif not exported.draft:
        w.field("Signature", "none")
    if note.resolution:
        r = note.resolution
        how = "edits recorded as an addendum" if r.choice == "addendum" else "note signed again"
        w.field("Signature conflict resolved", f"{how}, by {r.resolved_by} on {_when(r.resolved_at)}")
    total = len(note.addenda)
    for i, addendum in enumerate(note.addenda, 1):
        _addendum(w, addendum, i, total)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def render_pdf(export, *, compress: bool = True, password: str | None = None) -> bytes:
    """The PDF bytes of a RecordExport. `compress=False` leaves page text readable in the
    raw bytes (tests use it to look for what must not be there).

    With `password`, the PDF standard's own encryption (AES-256, revision 6): every string
    and stream, the document information (title, author) included, is encrypted, and a
    reader asks for the password before showing anything. The owner password is random and
    thrown away: the recipient needs one password, and every permission (printing, copying,
    screen readers) is granted, since it is the client's own record."""
    s = export.settings
    clinician = ", ".join(p for p in (s.clinician_name.strip(), s.credentials.strip()) if p)
    practice = " - ".join(p for p in (s.practice_name.strip(), clinician) if p) or "Notewell"
    generated = export.generated_at.astimezone().strftime("%Y-%m-%d")
    pdf = _RecordPDF(
        header_left=practice,
        header_right=f"Confidential health record: {export.client.display_name}",
        footer_left=f"Generated on {generated}",
    )
    pdf.set_title(pdf_safe(f"Health record of {export.client.display_name}"))
    pdf.set_author(pdf_safe(practice))
    pdf.set_creator("Notewell")
    pdf.set_compression(compress)
    pdf.set_creation_date(export.generated_at)
    if password is not None:
        pdf.set_encryption(
            owner_password=secrets.token_urlsafe(32),
            user_password=password,
            encryption_method=EncryptionMethod.AES_256,
            permissions=AccessPermission.all(),
            encrypt_metadata=True,
        )
    pdf.add_page()
    w = _Writer(pdf)

    w.title(f"Health record of {export.client.display_name}")
    w.field("Prepared by", practice)
    w.field("Generated on", f"{generated} ({_when(export.generated_at)})")
    w.field("Covers", export.period())
    signed = sum(1 for n in export.notes if not n.draft and not n.entered_in_error)
    w.field(
        "Contents",
        f"{_count(len(export.notes), 'progress note')} ({signed} signed, "
        f"{_count(export.drafts_count, 'draft')}, "
        f"{sum(1 for n in export.notes if n.entered_in_error)} entered in error), "
        f"{export.addenda_count} {'addendum' if export.addenda_count == 1 else 'addenda'}",
    )
    w.field(
        "Drafts",
        "included and marked DRAFT" if export.include_drafts else "not included (unsigned notes are not part of the record)",
    )
    w.text(
        "This is the designated record set: demographics, diagnoses, treatment plan, progress notes "
        "with their addenda, and outcome measures. Psychotherapy notes are kept separately and are "
        "not part of it.",
        italic=True,
    )

    _client_section(w, export.client)
    late_hours = export.settings.late_entry_hours
    _outcomes_section(w, export)
    if not export.notes:
        w.heading("Progress notes", keep_with=20)
        w.text("No progress notes in this period.", italic=True)
    for exported in export.notes:
        _note_section(w, exported, export.client, late_hours)
        _amendment_records(w, export, exported.note.id)
    return bytes(pdf.output())


def _amendment_records(w: _Writer, export, note_id: str) -> None:
    """Every amendment request concerning the note (164.526): what was asked and what was
    decided; for a denial, the denial, the client's statement and the rebuttal."""
    for record in getattr(export, "amendments", ()):
        if note_id not in record.data("opened").note_ids:
            continue
        opened = record.data("opened")
        w.subheading(f"Amendment request received {opened.received_on.isoformat()} from {opened.requester}")
        w.field("Requested change", opened.requested_change)
        if record.id in getattr(export, "unverified_amendments", ()):
            w.label("SIGNATURE NOT VERIFIED: a step of this request is not signed by a device this one trusts.")
        titles = {"accepted": "Accepted", "denied": "Denied", "statement": "Client's statement of disagreement",
                  "rebuttal": "Rebuttal"}
        for event in record.all_events():
            name = event.name
            if name not in titles:
                continue
            title = titles[name] + (" (also recorded on another device)" if event in record.concurrent else "")
            text = {"accepted": "amendment", "denied": "reason"}.get(name, "text")
            who = f"{event.by}, {event.credentials}" if event.credentials else (event.by or "recorded")
            w.field(title, f"on {event.data.on.isoformat()} ({who}, recorded {_when(event.at)})")
            w.text(getattr(event.data, text))
        for conflict in record.conflicts():
            w.label(f"RECORDED DIFFERENTLY ON TWO DEVICES: {conflict}.")
        if not any(n in record.events for n in ("accepted", "denied")):
            w.label("Not yet decided.")
