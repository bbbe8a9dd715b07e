"""Snippets: add, change and delete the clinician's own phrases (store/snippets.py).

A list of the snippets on the left, the one being written on the right. Snippets are kept in
the record and travel to the clinician's other devices, so they are for phrases, never for
facts about a client; the dialog says so.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from store.errors import ValidationFailed
from store.snippets import MAX_SNIPPETS, TRIGGER_MARK
from tui.printable import printable
from tui.screens.base import NotewellModal

NEW = "\x00new"  # the list's first row: a new snippet (no trigger can start with NUL)


def _first_words(text: str, width: int = 28) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


class SnippetsDialog(NotewellModal[None]):
    BINDINGS = [
        Binding("escape", "close", "Close", id="dialog.cancel"),
        Binding("ctrl+s", "save", "Save snippet", id="snippets.save"),
    ]

    def __init__(self) -> None:
        super().__init__(classes="dialog snippets-dialog")
        self.snippets: dict[str, str] = {}
        self.editing: str | None = None  # the trigger being changed; None: a new snippet
        self._as_opened: tuple[str, str] = ("", "")

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box snippets-box"):
            yield Label("Snippets", classes="dialog-title")
            yield Static(
                f"Type {TRIGGER_MARK} and a trigger, then a space, in any section of a note: the phrase "
                "replaces it. Snippets travel to your other devices with the record: keep them to "
                "phrases, never facts about a client.",
                classes="hint",
            )
            with Horizontal(id="snippets-body"):
                yield OptionList(id="snippet-list")
                with Vertical(id="snippet-form"):
                    yield Label("Trigger (letters and digits, e.g. mse)")
                    yield Input(placeholder="mse", id="snippet-trigger", compact=True, max_length=16)
                    yield Label("Phrase")
                    yield TextArea(id="snippet-text", soft_wrap=True)
            yield Static("", id="snippet-error", classes="field-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save", id="save", variant="primary")
                yield Button("Delete", id="delete")
                yield Button("Close", id="close")

    def on_mount(self) -> None:
        if self.app.test_mode:
            self.query_one("#snippet-trigger", Input).cursor_blink = False
            self.query_one("#snippet-text", TextArea).cursor_blink = False
        self.run_store(self._load, group="snippets")

    async def _load(self, select: str | None = None) -> None:
        self.snippets = await self.app.store.call(lambda v: v.record.snippets())
        listing = self.query_one("#snippet-list", OptionList)
        listing.clear_options()
        listing.add_option(Option(Text("+ New snippet"), id=NEW))
        for trigger, text in self.snippets.items():
            row = Text(f"{TRIGGER_MARK}{trigger}", style="bold")
            row.append("  " + printable(_first_words(text, max(8, 27 - len(trigger)))))  # one line in the list
            listing.add_option(Option(row, id=trigger))
        self._edit(select if select in self.snippets else None)
        listing.highlighted = listing.get_option_index(select) if select in self.snippets else 0
        self.query_one("#snippet-trigger" if select is None else "#snippet-list").focus()

    def _form(self) -> tuple[str, str]:
        return self.query_one("#snippet-trigger", Input).value.strip(), self.query_one("#snippet-text", TextArea).text

    def _edit(self, trigger: str | None) -> None:
        self.editing = trigger
        self.query_one("#snippet-trigger", Input).value = trigger or ""
        self.query_one("#snippet-text", TextArea).text = self.snippets.get(trigger, "") if trigger else ""
        self.query_one("#delete", Button).disabled = trigger is None
        self._as_opened = self._form()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        chosen = None if event.option.id == NEW else event.option.id
        if chosen == self.editing and chosen is not None:
            return
        from tui.screens.dialogs import confirm_discard

        def switch() -> None:
            self.query_one("#snippet-error", Static).update("")
            self._edit(chosen)
            self.query_one("#snippet-trigger", Input).focus()

        confirm_discard(self, self._form() != self._as_opened, switch)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one("#snippet-text", TextArea).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        elif event.button.id == "delete":
            self._delete()
        elif event.button.id == "close":
            self.action_close()

    def action_save(self) -> None:
        trigger, text = self._form()
        trigger = trigger.removeprefix(TRIGGER_MARK).lower()
        if self.editing is None and len(self.snippets) >= MAX_SNIPPETS and trigger not in self.snippets:
            self.query_one("#snippet-error", Static).update(f"A vault holds at most {MAX_SNIPPETS} snippets.")
            return
        self.run_store(self._save, trigger, text, group="snippets-save", exclusive=True)

    async def _save(self, trigger: str, text: str) -> None:
        replaces = self.editing
        try:
            await self.app.store.call(lambda v: v.record.save_snippet(trigger, text, replaces=replaces))
        except ValidationFailed as e:
            self.query_one("#snippet-error", Static).update(e.message)
            return
        self.query_one("#snippet-error", Static).update("")
        self.notify(f"Snippet {TRIGGER_MARK}{trigger} saved.")
        await self._load(select=trigger)

    def _delete(self) -> None:
        from tui.screens.dialogs import ConfirmDialog

        trigger = self.editing
        if trigger is None:
            return

        async def delete() -> None:
            if not await self.app.push_screen_wait(
                ConfirmDialog("Delete this snippet?", f"{TRIGGER_MARK}{trigger} will no longer expand, on any device.",
                              yes="Delete")
            ):
                return
            await self.app.store.call(lambda v: v.record.delete_snippet(trigger))
            self.notify(f"Snippet {TRIGGER_MARK}{trigger} deleted.")
            await self._load()

        self.run_store(delete, group="snippets-delete", exclusive=True)

    def action_close(self) -> None:
        from tui.screens.dialogs import confirm_discard

        confirm_discard(self, self._form() != self._as_opened, lambda: self.dismiss(None))
