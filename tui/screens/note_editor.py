"""The progress-note editor: facts, sections, live checklist, autosave, signing, addenda.

Typing never waits for the store: each change is remembered and a debounced save sends the
changed sections and facts (`save_draft`) to the store worker. If a save fails, whatever the
error, the text stays in the editor and in the pending set, the clinician is told, and the
save is retried: the editor never stays on "Saving...".
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.timer import Timer
from textual.widgets import Button, Footer, Input, Label, Select, SelectionList, Static, TextArea

from store.automerge_guard import is_panic
from store.compliance import blocking, check_copy_forward, missing_labels
from store.text_diff import changed_span
from store.errors import NoteChangedMeanwhile, NotewellError
from store.record import DraftSaved
from store.models import NoteStatus, ProgressNote, SessionFacts, section_title
from store.projections import is_late_entry, signed_late
from store.signature_state import SignatureState, SignatureStatus
from tui.printable import printable
from tui.screens.base import EditorScreen
from tui.sync_jobs import SyncJobs
from tui.widgets.checklist import Checklist
from tui.widgets.facts_form import FactsForm
from tui.widgets.note_views import read_only_view
from tui.widgets.snippet_area import SnippetArea

AUTOSAVE_SECONDS = 0.4
RETRY_SECONDS = 3.0
SAVED_OVER_LATEST = (
    "Your text was saved over the latest version of this note, which was also changed on "
    "another device; please read it through."
)

log = logging.getLogger(__name__)


def _create(v, note: ProgressNote, sections: dict[str, str], facts: SessionFacts | None):
    """A new note's first save: the note enters the record holding what was typed."""
    update: dict[str, Any] = {"sections": {**note.sections, **sections}}
    if facts is not None:
        update["facts"] = facts
    created = v.record.create_note(note.model_copy(update=update))
    heads = v.record.draft_heads(created.id)
    return DraftSaved(base=heads, heads=heads, merged=None), v.record.compliance(created.id)


def last_stable_facts(v, note: ProgressNote) -> tuple[Any, SessionFacts] | None:
    """The date and facts of the client's most recent other note that records any of the
    facts that rarely change between sessions (modality, diagnoses addressed, goals), for the
    editor's explicit copy action. Notes entered in error are passed over; only a few are read."""
    read = 0
    for row in v.record.notes_for_client(note.client_id):
        if row.note_id == note.id or getattr(row.status, "value", row.status) == NoteStatus.ENTERED_IN_ERROR.value:
            continue
        facts = v.record.get_note(row.note_id).facts
        if facts.modality or facts.diagnoses_addressed or facts.goals_addressed:
            return facts.date_of_service, facts
        read += 1
        if read >= 5:
            break
    return None


def last_note_sections(v, note: ProgressNote) -> tuple[Any, dict[str, str]] | None:
    """The date and sections of the client's previous note (the most recent other note of
    the same date or earlier, not entered in error), for the copy-forward check. One note is
    read, once, when the editor opens: nothing on the typing path grows with the record."""
    for row in v.record.notes_for_client(note.client_id):
        if row.note_id == note.id or row.date_of_service > note.facts.date_of_service:
            continue
        if getattr(row.status, "value", row.status) == NoteStatus.ENTERED_IN_ERROR.value:
            continue
        return row.date_of_service, v.record.get_note(row.note_id).sections
    return None


def _save_failure(error: BaseException) -> bool:
    """Any failure of the store call, an Automerge panic (a BaseException) included should
    one ever get past the store; not a cancellation, an interrupt or an exit."""
    return isinstance(error, Exception) or is_panic(error)


class SaveState(Static):
    """"Saved" / "Saving..." / "Unsaved"; changes only when the state does (typing stays cheap)."""

    _shown: tuple[str, str] | None = None

    def set(self, text: str, kind: str = "") -> None:
        if self._shown == (text, kind):
            return
        self._shown = (text, kind)
        # Fixed width: no relayout of the screen for a word in the corner.
        self.update(text, layout=False)
        for name in ("saved", "saving", "unsaved", "failed"):
            self.set_class(name == kind, f"state-{name}")


class NoteEditorScreen(EditorScreen):
    UNSAVED_MESSAGE = "The note could not be saved yet, so it stays open."
    BINDINGS = [
        Binding("ctrl+s", "sign", "Sign", id="note.sign", priority=True),
        Binding("ctrl+n", "addendum", "Add addendum", id="note.addendum", priority=True),
        Binding("ctrl+o", "resolve", "Resolve conflict", id="note.resolve", priority=True),
        Binding("ctrl+t", "entered_in_error", "Entered in error", id="note.entered_in_error", priority=True, show=False),
        Binding("escape", "close", "Back", id="note.close"),
        # The explicit copy of the last note's stable facts (FactsForm.copy_previous) in one
        # key, from the session facts (not a priority binding: in a section it stays redo).
        Binding("ctrl+y", "copy_last_facts", "Copy last note's facts", id="note.copy_facts", show=False),
    ]

    def __init__(self, note_id: str, *, unsaved: ProgressNote | None = None) -> None:
        """`unsaved`: a new note, not in the record yet; the first save that holds something
        typed creates it, so a note left before anything was typed leaves nothing behind."""
        super().__init__()
        self.note_id = note_id
        self._unsaved = unsaved
        self._previous: tuple[Any, SessionFacts] | None = None  # the last note's date and facts, to copy from
        self._snippets: dict[str, str] = {}  # the clinician's phrases, expanded in the sections
        self._last_sections: tuple[Any, dict[str, str]] | None = None  # for the copy-forward check
        self.note: ProgressNote | None = None
        self.client: Any = None
        self.mode = "loading"  # draft | signed | conflict | tampered | error
        self._signature: SignatureState | None = None  # the note's verified signature state
        self._late = False
        self._caveats: dict[str, str] = {}  # device id -> caveat for the times it wrote (sync/clock.py)
        self._pending_sections: dict[str, str] = {}
        self._saved_sections: dict[str, str] = {}
        self._facts_pending = False
        # The note's heads that the text on screen stands on: saves are made relative to it,
        # so edits a sync brings while the note is open are merged, never overwritten.
        self._base: list[bytes] | None = None
        self._told_merged = False
        self._told_unmerged = False
        self._timer: Timer | None = None
        self._save_lock = asyncio.Lock()
        self._ready = False

    # --- layout -------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="note-bar"):
            yield Static("Progress note", id="note-title", markup=False)
            yield SaveState("", id="save-state")
        with Horizontal(id="note-body"):
            yield VerticalScroll(id="note-scroll")
            with Vertical(id="checklist-pane"):
                yield Checklist(id="checklist")
        yield Footer()

    def on_mount(self) -> None:
        self.run_store(self._load, group="note-load", exclusive=True)

    async def _load(self) -> None:
        note_id = self.note_id
        if self._unsaved is not None:
            await self._load_unsaved(self._unsaved)
            return

        def load(v):
            note = v.record.get_note(note_id)
            client = v.record.get_client(note.client_id)
            signed = v.record.signature_state(note_id)  # verified with the devices' keys
            late = is_late_entry(note, v.settings().late_entry_hours)
            caveats = SyncJobs.time_caveats(v) if note.signature else {}
            self._previous = last_stable_facts(v, note) if note.status == NoteStatus.DRAFT else None
            self._snippets = v.record.snippets() if note.status == NoteStatus.DRAFT else {}
            self._last_sections = last_note_sections(v, note) if note.status == NoteStatus.DRAFT else None
            return note, client, signed, v.record.compliance(note_id), late, v.record.draft_heads(note_id), caveats

        while True:
            loaded = await self.app.store.call(load)
            if self.mode != "draft" or loaded[0].status == NoteStatus.DRAFT:
                break
            # Leaving the draft (signed elsewhere): keys typed while the note was read are
            # saved first, as edits concurrent with the signature, then the note is read again.
            self._sweep(facts=True)
            if not self.has_pending:
                # From here until the boxes are replaced, nothing more can be typed into them.
                for area in self.query("TextArea.section").results(TextArea):
                    area.read_only = True
                break
            if not await self.flush():
                return  # still unsaved: the retry comes back through _signed_elsewhere
        note, client, signed, problems, self._late, self._base, self._caveats = loaded
        await self._show(note, client, signed, problems)

    async def _load_unsaved(self, note: ProgressNote) -> None:
        from store.compliance import check_note

        def load(v):
            client = v.record.get_client(note.client_id)
            self._previous = last_stable_facts(v, note)
            self._snippets = v.record.snippets()
            self._last_sections = last_note_sections(v, note)
            return client, is_late_entry(note, v.settings().late_entry_hours)

        client, self._late = await self.app.store.call(load)
        await self._show(note, client, SignatureState(note.id, SignatureStatus.UNSIGNED, None), check_note(note, client))

    async def _show(self, note: ProgressNote, client: Any, signed: SignatureState, problems: list) -> None:
        self.note, self.client = note, client
        if signed.status == SignatureStatus.TAMPERED:
            self.mode = "tampered"  # never shown as signed, nor editable
        elif note.status == NoteStatus.DRAFT:
            self.mode = "draft"
        elif signed.status == SignatureStatus.CONFLICT:
            self.mode = "conflict"
        elif note.status == NoteStatus.ENTERED_IN_ERROR:
            self.mode = "error"
        else:
            self.mode = "signed"
        self._ready = False
        self._signature = signed
        await self._build(note, client, signed)
        self.query_one(Checklist).advice = self._copy_forward
        from store.compliance import checklist_elements

        self.query_one(Checklist).elements = checklist_elements(note.format)  # an intake's, a discharge's, ...
        self.query_one(Checklist).show(problems)
        self.query_one("#checklist-pane").display = self.mode == "draft"
        self.refresh_bindings()
        self._ready = True
        self.app.settle_heap()

    def _title(self, note: ProgressNote, client: Any) -> str:
        status = {
            "draft": "draft", "signed": "signed", "conflict": "SIGNATURE CONFLICT", "error": "entered in error",
            "tampered": "FAILS SIGNATURE VERIFICATION",
        }[self.mode]
        if self.mode == "signed" and self._signature is not None and not self._signature.signed:
            status = self._signature.label  # signed before verification existed
        if self._late and self.mode != "draft":
            # The label compares the signing device's own clock with the date of service; a
            # clock known to be off makes it doubtful, and the title says so.
            doubtful = note.signature is not None and note.signature.device_id in self._caveats
            status += " (late entry, by a device clock that was off)" if doubtful else " (late entry)"
        return printable(f"{client.display_name} - {note.format.value} - {note.facts.date_of_service.isoformat()} - {status}")

    async def _build(self, note: ProgressNote, client: Any, signed: SignatureState) -> None:
        self.query_one("#note-title", Static).update(self._title(note, client))
        scroll = self.query_one("#note-scroll", VerticalScroll)
        await scroll.remove_children()
        widgets: list = []
        if self.mode == "draft":
            self._saved_sections = dict(note.sections)
            widgets.append(FactsForm(note.facts, client, previous=self._previous, id="facts", fmt=note.format))
            for key in note.section_keys:
                widgets.append(Label(section_title(key), classes="section-title"))
                area = SnippetArea(note.sections.get(key, ""), id=f"section-{key}", soft_wrap=True, classes="section",
                                   snippets=self._snippets)
                if self.app.test_mode:
                    area.cursor_blink = False
                widgets.append(area)
            self.query_one(SaveState).set("Saved", "saved")
        else:
            widgets += read_only_view(note, signed, client, self.mode, caveats=self._caveats)
            self.query_one(SaveState).set("Read-only" if self.mode != "conflict" else "Needs your decision")
        await scroll.mount_all(widgets)
        if self.app.test_mode:
            for field in self.query(Input):
                field.cursor_blink = False
        if self.mode == "draft":
            # A new note starts at the session times; a note in progress at its first empty section.
            if note.facts.start_time is None:
                self.query_one("#f-start", Input).focus()
            else:
                first_empty = next((k for k in note.section_keys if not note.sections.get(k)), note.section_keys[0])
                self.query_one(f"#section-{first_empty}", TextArea).focus()
        elif self.mode == "conflict":
            self.query_one("#resolve-addendum", Button).focus()
        else:
            scroll.focus()

    def _copy_forward(self) -> list:
        """Sections that read nearly the same as in the client's previous note (a warning)."""
        if self.mode != "draft" or self._last_sections is None:
            return []
        on, previous = self._last_sections
        return check_copy_forward({**self._saved_sections, **self._pending_sections}, previous, on)

    # --- what the bindings offer depends on the mode -----------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "sign":
            return self.mode == "draft"
        if action == "addendum":
            return self.mode == "signed"
        if action == "resolve":
            return self.mode == "conflict"
        if action == "entered_in_error":
            return self.mode in ("draft", "signed")
        if action == "copy_last_facts":
            return self.mode == "draft" and self._previous is not None
        return True

    # --- autosave ---------------------------------------------------------------------

    @property
    def has_pending(self) -> bool:
        return bool(self._pending_sections) or self._facts_pending

    @property
    def loaded(self) -> bool:
        """The note is on screen and edits are being tracked."""
        return self._ready

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        # Not gated on `loaded`: a key typed the instant a box appears must still be saved;
        # comparing with the saved text tells an edit from the box being filled in.
        if self.mode != "draft" or not (event.text_area.id or "").startswith("section-"):
            return
        key = event.text_area.id.removeprefix("section-")
        text = event.text_area.text
        if text == self._saved_sections.get(key) and key not in self._pending_sections:
            return
        self._pending_sections[key] = text
        self._changed()

    def on_input_changed(self, event: Input.Changed) -> None:
        self._facts_changed()

    def on_select_changed(self, event: Select.Changed) -> None:
        self._facts_changed()

    def on_selection_list_selected_changed(self, event: SelectionList.SelectedChanged) -> None:
        self._facts_changed()

    def _facts_changed(self) -> None:
        if not self._ready or self.mode != "draft" or self.note is None:
            return
        # Widgets report their first value too; only a real difference is an edit.
        if not self._facts_pending and self.query_one(FactsForm).read() == self.note.facts:
            return
        self._facts_pending = True
        self._changed()

    def _changed(self) -> None:
        self.query_one(SaveState).set("Unsaved", "unsaved")
        if self._timer is not None:
            self._timer.reset()
        else:
            self._timer = self.set_timer(AUTOSAVE_SECONDS, self._autosave)

    def _autosave(self) -> None:
        self._timer = None
        self.run_store(self._autosave_flush, group="autosave")

    async def _autosave_flush(self) -> None:
        await self.flush(thorough=False)

    def _sweep(self, *, facts: bool) -> None:
        """Pick up edits whose Changed message has not arrived yet (a key, then at once the
        lock key): the boxes on screen are the truth, not the messages about them."""
        for area in self.query("TextArea.section").results(TextArea):
            key = (area.id or "").removeprefix("section-")
            if area.text != self._pending_sections.get(key, self._saved_sections.get(key)):
                self._pending_sections[key] = area.text
        if facts and self._ready and self.note is not None and not self._facts_pending:
            if self.query_one(FactsForm).read() != self.note.facts:
                self._facts_pending = True

    async def flush(self, *, thorough: bool = True) -> bool:
        """Save what is pending. True when nothing is left unsaved.

        `thorough` also re-reads the facts form (for lock, quit and close); the autosave that
        a Changed message started skips that, to keep typing cheap.
        """
        async with self._save_lock:
            if self.mode != "draft":
                return True
            self._sweep(facts=thorough)
            if not self.has_pending:
                return True
            sections = dict(self._pending_sections)
            self._pending_sections.clear()
            facts: SessionFacts | None = None
            if self._facts_pending:
                self._facts_pending = False
                facts = self.query_one(FactsForm).read()
                if facts is not None and self.note is not None and facts == self.note.facts:
                    facts = None
            if not sections and facts is None:
                self.query_one(SaveState).set("Saved", "saved")
                return True
            self.query_one(SaveState).set("Saving...", "saving")
            note_id, base = self.note_id, self._base
            facts_before = self.note.facts if self.note is not None else None

            unsaved = self._unsaved

            def save(v):
                if unsaved is not None:
                    return _create(v, unsaved, sections, facts)
                saved = v.record.save_draft(note_id, base=base, sections=sections, facts=facts, facts_before=facts_before)
                return saved, v.record.compliance(note_id)

            try:
                saved, problems = await self.app.store.call(save)
            except BaseException as e:
                if not _save_failure(e):
                    raise
                # Keep every unsaved keystroke: newer edits (already pending) win.
                for key, text in sections.items():
                    self._pending_sections.setdefault(key, text)
                if facts is not None:
                    self._facts_pending = True
                self.query_one(SaveState).set("Not saved - will retry", "failed")
                if isinstance(e, NotewellError):
                    said = f"{e.title}: {e.message}"
                else:  # a bug: its type in the log, never its message (it could hold note text)
                    log.error("unexpected %s while saving a note", type(e).__name__)
                    said = f"The note could not be saved ({type(e).__name__})."
                self.notify(f"{said} Your text is kept and will be saved on retry.", severity="error", timeout=8)
                self.set_timer(RETRY_SECONDS, self._autosave)
                return False
            if unsaved is not None:
                # In the record from now on: unlocking comes back to it.
                self._unsaved = None
                self.app.place.note_kind, self.app.place.note_id = "progress", note_id
            self._base = saved.base
            self._saved_sections.update(sections)
            if facts is not None and self.note is not None:
                self.note = self.note.model_copy(update={"facts": facts})
            if saved.unmerged and not self._told_unmerged:
                # Could not be merged with what a sync brought: said once, until a save merges again.
                self.notify(SAVED_OVER_LATEST, severity="warning", timeout=15)
            self._told_unmerged = saved.unmerged
            if saved.merged is not None and saved.merged.status != NoteStatus.DRAFT:
                self.run_store(self._signed_elsewhere, group="note-load", exclusive=True)
            elif saved.merged is not None:
                self._show_merged(saved.merged, saved.heads, quietly=saved.unmerged)
            self.query_one(Checklist).show(problems)
            if self.has_pending:
                self.query_one(SaveState).set("Unsaved", "unsaved")
            else:
                self.query_one(SaveState).set("Saved", "saved")
            return True

    def on_sync_jobs_record_changed(self, message: SyncJobs.RecordChanged) -> None:
        if message.concerns(self.note_id):
            self.note_changed_elsewhere()

    def note_changed_elsewhere(self) -> None:
        """A sync changed the record: show what it brought to this note, if anything."""
        if self.mode == "draft" and self._ready:
            self.run_store(self._catch_up, group="note-catch-up", exclusive=True)

    async def _catch_up(self) -> None:
        async with self._save_lock:
            if self.has_pending or self._base is None:
                return  # the next save merges and shows it
            note_id = self.note_id
            note, heads = await self.app.store.call(
                lambda v: (v.record.get_note(note_id), v.record.draft_heads(note_id)))
            if sorted(heads) == sorted(self._base):
                return
            if note.status == NoteStatus.DRAFT:
                self._show_merged(note, heads)
                return
        await self._signed_elsewhere()

    async def _signed_elsewhere(self) -> None:
        """The note was signed (or marked entered in error) on another device while open
        here. What was typed here went in as edits concurrent with that, so a signed note now
        shows a signature conflict to resolve; the editor reloads into that view."""
        if not await self.flush():
            return  # still unsaved: the retry comes back here
        self.notify("This note was signed on another device while it was open here. Anything typed here is "
                    "kept; resolve the signature conflict if one is shown.", timeout=12)
        await self._load()

    def _show_merged(self, merged: ProgressNote, heads: list[bytes], *, quietly: bool = False) -> None:
        """The note also holds edits made elsewhere (a sync while it was open): show them in
        the text boxes, each as one replacement so the cursor stays with its text. Not while
        the clinician is still typing: the next save merges again and comes back here.
        `quietly`: the clinician has been told otherwise (SAVED_OVER_LATEST)."""
        areas = {(a.id or "").removeprefix("section-"): a for a in self.query("TextArea.section").results(TextArea)}
        if self.has_pending or any(area.text != self._saved_sections.get(key) for key, area in areas.items()):
            return
        for key, area in areas.items():
            new = merged.sections.get(key, "")
            if area.text != new:
                start, old_end, new_end = changed_span(area.text, new)
                document = area.document
                area.replace(new[start:new_end], document.get_location_from_index(start),
                             document.get_location_from_index(old_end))
                self._saved_sections[key] = new
        self._base = heads
        if not self._told_merged and not quietly:
            self._told_merged = True
            text = "This note was also edited on another device; both sets of edits are kept and shown here."
            if self.note is not None and merged.facts != self.note.facts:
                text += " Some session facts changed there too: reopen the note to see them."
            self.notify(text, timeout=10)

    # --- actions ------------------------------------------------------------------------

    def action_sign(self) -> None:
        if self.mode == "draft":
            self.run_store(self._sign, group="note-sign", exclusive=True)

    async def _sign(self) -> None:
        from tui.screens.dialogs import ConfirmDialog, ErrorModal

        if not await self.flush():
            return
        note_id = self.note_id
        if self._unsaved is not None:  # nothing typed yet: the checklist says what is missing
            from store.compliance import check_note

            problems, settings = check_note(self._unsaved, self.client), await self.app.store.call(lambda v: v.settings())
        else:
            problems, settings = await self.app.store.call(lambda v: (v.record.compliance(note_id), v.settings()))
        facts = self._unsaved.facts if self._unsaved is not None else self.note.facts
        # Signed now, would it be labelled a late entry? Asked of the record's own clock.
        late = await self.app.store.call(
            lambda v: signed_late(facts.date_of_service, facts.stop_time, v.now(), v.settings().late_entry_hours))
        self.query_one(Checklist).show(problems)
        block = blocking(problems)
        if block:
            await self.app.push_screen_wait(
                ErrorModal("Not ready to sign", "Still to complete: " + ", ".join(missing_labels(block)) + ".")
            )
            return
        confirmed = await self.app.push_screen_wait(
            ConfirmDialog(
                "Sign this note?",
                f"Signing as {settings.clinician_name}, {settings.credentials}. A signed note is locked; "
                "later corrections are added as addenda."
                + (f" It will be marked LATE ENTRY: signed more than {settings.late_entry_hours} hours "
                   "after the session ended." if late else ""),
                yes="Sign",
            )
        )
        if not confirmed:
            return
        seen = self._base  # the version on screen: a sync may have brought edits meanwhile
        try:
            await self.app.store.call(lambda v: v.record.sign_note(note_id, expected_heads=seen))
        except NoteChangedMeanwhile as e:
            await self._catch_up()
            await self.app.push_screen_wait(ErrorModal(e.title, e.message))
            return
        self.notify("Note signed.")
        await self._load()

    def action_addendum(self) -> None:
        if self.mode == "signed":
            self.run_store(self._addendum, group="note-addendum", exclusive=True)

    async def _addendum(self) -> None:
        from tui.screens.dialogs import AddendumDialog

        settings = await self.app.store.call(lambda v: v.settings())
        result = await self.app.push_screen_wait(AddendumDialog(signer=f"{settings.clinician_name}, {settings.credentials}"))
        if not result:
            return
        text, reason = result
        note_id = self.note_id
        await self.app.store.call(lambda v: v.record.add_addendum(note_id, text, reason))
        self.notify("Addendum signed and added.")
        await self._load()

    def action_copy_last_facts(self) -> None:
        if self.mode == "draft" and self._previous is not None and self.query(FactsForm):
            self.query_one(FactsForm).copy_previous()

    def action_entered_in_error(self) -> None:
        if self.mode in ("draft", "signed"):
            self.run_store(self._entered_in_error, group="note-error", exclusive=True)

    async def _entered_in_error(self) -> None:
        from tui.screens.dialogs import ReasonDialog

        if not await self.flush():
            return
        if self._unsaved is not None:  # never in the record: nothing to mark
            self.dismiss(None)
            return
        reason = await self.app.push_screen_wait(
            ReasonDialog(
                "Mark as entered in error?",
                "The note stays in the record, labelled entered in error (for example, written for "
                "the wrong client). Say why.",
                yes="Mark entered in error",
            )
        )
        if not reason:
            return
        note_id = self.note_id
        await self.app.store.call(lambda v: v.record.mark_entered_in_error(note_id, reason))
        self.notify("Note marked as entered in error.")
        await self._load()

    def action_resolve(self) -> None:
        if self.mode == "conflict":
            self.query_one("#resolve-addendum", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id in ("resolve-addendum", "resolve-resign"):
            choice = "addendum" if event.button.id == "resolve-addendum" else "resign"
            self.run_store(self._resolve, choice, group="note-resolve", exclusive=True)

    async def _resolve(self, choice: str) -> None:
        from tui.screens.dialogs import ConfirmDialog

        question = (
            "Restore the signed text and record the other device's edits as a signed addendum?"
            if choice == "addendum"
            else "Sign the merged note as it now reads? The earlier signature is kept in its history."
        )
        if not await self.app.push_screen_wait(ConfirmDialog("Resolve the signature conflict", question, yes="Resolve")):
            return
        note_id = self.note_id
        await self.app.store.call(lambda v: v.record.resolve_signature_conflict(note_id, choice))
        self.notify("Signature conflict resolved.")
        await self._load()
