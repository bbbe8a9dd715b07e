"""Spotting record content in a process note, to suggest (never force) moving it.

Process notes keep their special protection only while they hold no record content:
diagnoses, service codes, medication, test results, session times. These patterns are
deliberately simple; a hint that is sometimes wrong costs a glance, never a blocked save.
"""

from __future__ import annotations

import re

PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("an ICD-10 code", re.compile(r"\b[A-TV-Z][0-9][0-9A-Z]\.[0-9A-Z]{1,4}\b")),
    ("a CPT code", re.compile(r"(?<![\d.])\+?9\d{4}(?![\d.])")),
    ("a medication dose", re.compile(r"\b\d+(?:\.\d+)?\s?(?:mg|mcg|µg|ml|mL|g)\b", re.IGNORECASE)),
    ("a test score", re.compile(r"\b(?:PHQ-?9|GAD-?7|BDI(?:-II)?|PCL-?5|AUDIT|MoCA|MMSE)\b\s*[:=]?\s*\d{1,2}\b", re.IGNORECASE)),
    ("session times", re.compile(r"\b\d{1,2}[:.]\d{2}\s*(?:-|–|to)\s*\d{1,2}[:.]\d{2}\b")),
)


def record_content_hints(text: str) -> list[str]:
    """What kinds of record content the text seems to hold (never the matched text)."""
    return [label for label, pattern in PATTERNS if pattern.search(text)]


def hint_message(kinds: list[str]) -> str:
    if not kinds:
        return ""
    return (
        "This looks like record content (" + ", ".join(kinds) + "). Diagnoses, codes, "
        "medication, test results and session times belong in the progress note, "
        "not in a private process note."
    )
