"""The one region where two versions of a text differ.

A section edit is written as the smallest splice (store/documents.py), so concurrent edits
elsewhere in the text survive a merge; the note editor replaces the same region on screen when
a sync brings changes, so the cursor stays with the text around it.
"""

from __future__ import annotations

from typing import NamedTuple


class ChangedSpan(NamedTuple):
    start: int  # where the texts first differ
    old_end: int  # end of the differing region in the old text
    new_end: int  # end of the differing region in the new text


def changed_span(old: str, new: str) -> ChangedSpan:
    """The differing middle of `old` and `new` (their common prefix and suffix left out):
    `old[start:old_end]` is replaced by `new[start:new_end]`."""
    limit = min(len(old), len(new))
    start = 0
    while start < limit and old[start] == new[start]:
        start += 1
    old_end, new_end = len(old), len(new)
    while old_end > start and new_end > start and old[old_end - 1] == new[new_end - 1]:
        old_end -= 1
        new_end -= 1
    return ChangedSpan(start, old_end, new_end)
