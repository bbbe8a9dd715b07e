"""A client's sessions by date: progress notes with their status, process notes apart."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option, OptionDoesNotExist

from store.models import NOTE_TITLES, NoteFormat

PRIVATE_LABEL = "private - this device only"
PREVIEW_CHARS = 48
# Progress notes are read for their first words only among a client's newest ones: reading a
# note is a document load, and a long history would slow the client's first view.
PREVIEWED_NOTES = 40


def first_words(text: str, limit: int = PREVIEW_CHARS) -> str:
    """The start of a note, on one line and cut between words: enough to tell two notes of
    the same day apart. Shown on screen only, never logged."""
    from tui.printable import printable

    words = " ".join(text.split())
    if len(words) > limit:
        words = words[:limit].rsplit(" ", 1)[0] + "..."
    return printable(words)


def note_preview(note: Any) -> str:
    """The first words of a progress note's first section that holds any."""
    return next((first_words(t) for t in (note.sections.get(k, "") for k in note.section_keys) if t.strip()), "")


def row_id(row: Any, *names: str) -> str:
    for name in names:
        value = getattr(row, name, None)
        if value:
            return str(value)
    raise AttributeError("row has no id")


def _as_date(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    if isinstance(value, str) and value:
        return date.fromisoformat(value[:10])
    return None


def status_labels(row: Any) -> list[str]:
    """What a clinician must see about a progress note at a glance."""
    status = getattr(row, "status", "draft")
    status = getattr(status, "value", status)
    labels = {"draft": ["draft"], "signed": ["signed"], "entered_in_error": ["entered in error"]}.get(
        str(status), [str(status)]
    )
    if getattr(row, "signature_conflict", False):
        labels = ["signature conflict"]
    # The verified state (RecordStore.verify_rows) decides whether "signed" may be shown.
    verified = getattr(row, "signature_status", "")
    if verified == "conflict":
        labels = ["signature conflict"]
    elif verified == "tampered":
        labels = ["FAILS VERIFICATION"]
    elif verified == "legacy" and labels == ["signed"]:
        labels = ["signed before verification existed"]
    elif verified == "pending" and labels == ["signed"]:
        # Its state is still to be computed (store/signature_index.py): never "signed" yet.
        labels = ["signature being checked"]
    if getattr(row, "late_entry", False):
        labels.append("late entry")
    return labels


STATUS_STYLE = {
    "draft": "bold yellow",
    "signed": "bold green",
    "late entry": "bold dark_orange",
    "signature conflict": "bold white on red",
    "FAILS VERIFICATION": "bold white on red",
    "signed before verification existed": "bold dark_orange",
    "signature being checked": "dim",
    "entered in error": "strike dim",
}


def _note_format(value: Any) -> NoteFormat | None:
    try:
        return NoteFormat(value)
    except ValueError:
        return None


def progress_prompt(row: Any, preview: str = "") -> Text:
    text = Text("  ")
    fmt = getattr(row, "format", "")
    fmt = getattr(fmt, "value", fmt)
    record_note = NOTE_TITLES.get(_note_format(fmt))
    # An intake, review or discharge summary by its name; a session note by its format.
    text.append(f"{record_note} " if record_note else f"{fmt:<5}", style="bold")
    cpt = getattr(row, "cpt_code", None)
    minutes = getattr(row, "minutes", None)
    if cpt:
        text.append(f"{cpt} ")
    if minutes:
        text.append(f"{minutes} min ", style="dim")
    for label in status_labels(row):
        text.append(f"[{label}]", style=STATUS_STYLE.get(label, ""))
        text.append(" ")
    addenda = getattr(row, "addenda_count", 0) or 0
    if addenda:
        text.append(f"+{addenda} addend{'um' if addenda == 1 else 'a'} ", style="italic")
    if preview:
        text.append(preview, style="dim")
    return text


def process_prompt(note: Any) -> Text:
    text = Text("  ")
    text.append("process note ", style="italic magenta")
    text.append(f"({PRIVATE_LABEL}) ", style="bold magenta")
    words = first_words(getattr(note, "body", "") or "")
    if words:
        text.append(words, style="dim")
    return text


class Timeline(OptionList):
    """Option ids are "progress:<id>" and "process:<id>"; date headings are disabled rows."""

    option_dates: dict[str, date]
    _progress_rows: dict[str, Any]  # note id -> the row shown, to add its preview to

    def show(self, note_rows: Iterable[Any], process_notes: Iterable[Any], previews: dict[str, str] | None = None) -> None:
        """`previews`: note id -> the first words of a progress note (note_preview)."""
        previews = previews or {}
        self.option_dates = {}
        self._progress_rows = {}
        highlighted = self.highlighted_option.id if self.highlighted_option else None
        by_date: dict[date, list[Option]] = {}
        undated: list[Option] = []
        for row in note_rows:
            note_id = row_id(row, "note_id", "id")
            self._progress_rows[note_id] = row
            option = Option(progress_prompt(row, previews.get(note_id, "")), id="progress:" + note_id)
            day = _as_date(getattr(row, "date_of_service", None))
            self.option_dates[option.id] = day
            (by_date.setdefault(day, []) if day else undated).append(option)
        for note in process_notes:
            option = Option(process_prompt(note), id="process:" + note.id)
            day = _as_date(getattr(note, "session_date", None))
            self.option_dates[option.id] = day
            (by_date.setdefault(day, []) if day else undated).append(option)
        options: list[Option | None] = []
        for day in sorted(by_date, reverse=True):
            options.append(Option(Text(day.strftime("%a %d %b %Y"), style="bold underline"), disabled=True))
            # Progress notes first, then the private ones, so the two never interleave.
            options.extend(sorted(by_date[day], key=lambda o: (o.id or "").startswith("process:")))
        options.extend(undated)
        self.clear_options()
        self.add_options(options)
        if highlighted:
            try:
                self.highlighted = self.get_option_index(highlighted)
                return
            except OptionDoesNotExist:
                pass
        for index, option in enumerate(options):
            if option is not None and not option.disabled:
                self.highlighted = index
                break

    def show_previews(self, previews: dict[str, str]) -> None:
        """Adds the first words to notes already shown (read after the rows: a document load
        each, so the timeline is drawn first). The rows, highlight and scroll stay as they are."""
        for note_id, preview in previews.items():
            row = getattr(self, "_progress_rows", {}).get(note_id)
            if row is not None and preview:
                self.replace_option_prompt("progress:" + note_id, progress_prompt(row, preview))

    def highlighted_date(self) -> date | None:
        option = self.highlighted_option
        if option is None or option.id is None:
            return None
        return getattr(self, "option_dates", {}).get(option.id)
