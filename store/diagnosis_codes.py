"""Finding ICD-10-CM diagnosis codes by words or by a code's first characters, offline.

The code set is the official ICD-10-CM, as packaged by simple-icd-10-cm (pinned in
pyproject.toml); only billable codes are offered, the leaves of the classification: "F41.1
Generalized anxiety disorder" is billable, its category "F41 Other anxiety disorders" is not.

Importing the package and indexing its 74,000 billable codes takes a few seconds, so the
index is built once per process, on first use (`shared_index`), which the app calls from a
worker thread when a screen that may need it opens, never on the typing path. A search is
then a few dictionary and bisect lookups: words are matched whole except the last, which may
be the beginning of a word still being typed.
"""

from __future__ import annotations

import re
import threading
import warnings
from bisect import bisect_left
from dataclasses import dataclass

_WORD_RE = re.compile(r"[a-z0-9]+")
# A code or the beginning of one: a letter and a digit, then letters, digits and a dot.
_CODE_RE = re.compile(r"^[a-z][0-9][0-9a-z]?\.?[0-9a-z]{0,4}\Z")
DEFAULT_LIMIT = 50


@dataclass(frozen=True)
class DiagnosisCode:
    code: str  # with its dot, as written on a claim: "F41.1"
    description: str


class DiagnosisIndex:
    """Billable ICD-10-CM codes, searchable by words or a code prefix."""

    def __init__(self, codes: list[DiagnosisCode]) -> None:
        self.codes = codes
        postings: dict[str, list[int]] = {}
        for i, entry in enumerate(codes):
            for word in set(_WORD_RE.findall(entry.description.lower())):
                postings.setdefault(word, []).append(i)
        self._postings = {word: frozenset(ids) for word, ids in postings.items()}
        self._words = sorted(self._postings)
        compact = sorted((c.code.replace(".", "").lower(), i) for i, c in enumerate(codes))
        self._compact = [k for k, _ in compact]
        self._compact_ids = [i for _, i in compact]

    @classmethod
    def from_package(cls) -> DiagnosisIndex:
        with warnings.catch_warnings():  # the package reads its data with a deprecated call
            warnings.simplefilter("ignore", DeprecationWarning)
            import simple_icd_10_cm as cm

            return cls([DiagnosisCode(code, cm.get_description(code))
                        for code in cm.get_all_codes(True) if cm.is_leaf(code)])

    def _with_prefix(self, prefix: str) -> set[int]:
        found: set[int] = set()
        start = bisect_left(self._words, prefix)
        for word in self._words[start:]:
            if not word.startswith(prefix):
                break
            found |= self._postings[word]
        return found

    def search(self, query: str, limit: int = DEFAULT_LIMIT) -> list[DiagnosisCode]:
        """Billable codes whose description holds every word of `query` (the last may be
        unfinished), or whose code starts with `query`: first those whose description starts
        with the first word, then the shortest, so "generalized anxiety" puts F41.1 at the top
        and "panic" F41.0. [] for an empty query."""
        text = query.strip().lower()
        if not text:
            return []
        if _CODE_RE.match(text):
            prefix = text.replace(".", "")
            start = bisect_left(self._compact, prefix)
            ids = []
            for key, i in zip(self._compact[start:], self._compact_ids[start:]):
                if not key.startswith(prefix) or len(ids) >= limit:
                    break
                ids.append(i)
            return [self.codes[i] for i in ids]
        words = _WORD_RE.findall(text)
        if not words:
            return []
        whole, last = words[:-1], words[-1]
        if query[-1:].isspace():  # the last word is finished too
            whole, last = words, None
        sets = [self._postings.get(w, frozenset()) for w in whole]
        if last is not None:
            sets.append(self._with_prefix(last))
        sets.sort(key=len)
        found = set(sets[0])
        for other in sets[1:]:
            found &= other
            if not found:
                return []
        first = words[0]

        def rank(i: int) -> tuple:
            description = self.codes[i].description
            # A description that starts with the first word typed names the condition itself.
            return (not description.lower().startswith(first), len(description), self.codes[i].code)

        ranked = sorted(found, key=rank)
        return [self.codes[i] for i in ranked[:limit]]


_shared: DiagnosisIndex | None = None
_shared_lock = threading.Lock()


def shared_index() -> DiagnosisIndex:
    """The process's one index, built on first call (seconds; call it off the UI thread)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = DiagnosisIndex.from_package()
        return _shared


def shared_index_if_built() -> DiagnosisIndex | None:
    """The index when it has been built, else None (never builds)."""
    return _shared
