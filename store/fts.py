"""Turning what a clinician types into a search box into safe FTS5 syntax.

FTS5 has its own query language; raw input such as `"`, `AND(` or `-` would raise. Each
word becomes a quoted phrase, and the last one a prefix match so results appear while typing.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)


def fts_query(text: str) -> str | None:
    """An FTS5 MATCH expression for `text`, or None when it holds no searchable word."""
    words = _WORD.findall(text)
    if not words:
        return None
    quoted = [f'"{w}"' for w in words]
    quoted[-1] += "*"
    return " ".join(quoted)


def snippet_sql(table: str, column: int, *, width: int = 12) -> str:
    """The snippet() call used for result previews; brackets mark the matched words."""
    return f"snippet({table}, {column}, '[', ']', ' ... ', {width})"
