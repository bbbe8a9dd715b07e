"""A section's text box that expands the clinician's snippets in place.

Typing ";mse" then a space (or Enter) replaces ";mse" with the phrase saved under the
trigger "mse" (store/snippets.py), and the space follows it. Only a key typed right after a
trigger expands it: moving the cursor there, deleting back to it or pasting text that holds
one changes nothing. The check reads the few characters before the cursor on its line, so a
keystroke costs the same in a long note as in a short one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from textual import events
from textual.widgets import TextArea

from store.snippets import TRIGGER_MARK

# The trigger just before the cursor: the mark and up to 16 characters, at the start of the
# line or after a space (so "a;b" in a URL or a list is left alone).
_TRIGGER_BEFORE_CURSOR = re.compile(r"(?:^|\s)" + re.escape(TRIGGER_MARK) + r"([a-z0-9][a-z0-9_-]{0,15})\Z")
_LONGEST = len(TRIGGER_MARK) + 17  # the mark, 16 characters and the space before them


class SnippetArea(TextArea):
    """A TextArea that expands `snippets` (trigger -> phrase) when a space or Enter follows a
    trigger."""

    def __init__(self, *args, snippets: Mapping[str, str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.snippets: Mapping[str, str] = snippets or {}

    def on_key(self, event: events.Key) -> None:
        # Runs before TextArea inserts the key, which then goes in after the phrase.
        if event.key in ("space", "enter") and self.snippets and not self.read_only:
            self.expand_before_cursor()

    def expand_before_cursor(self) -> bool:
        """Replaces a known trigger that ends at the cursor with its phrase; False when there
        is none (or text is selected)."""
        start, end = self.selection
        if start != end:
            return False
        row, column = end
        before = self.document.get_line(row)[max(0, column - _LONGEST):column]
        found = _TRIGGER_BEFORE_CURSOR.search(before)
        if found is None or found.group(1) not in self.snippets:
            return False
        begin = column - len(found.group(1)) - len(TRIGGER_MARK)
        self.replace(self.snippets[found.group(1)], (row, begin), (row, column))
        return True
