"""Snippets: the clinician's own phrases, typed as a short trigger and expanded in place.

A snippet is a phrase the clinician writes again and again ("Client was alert and oriented
x3"), not a fact about a client, so the phrases travel with the record to every device of the
group, as one record document of their own kind (`snippets`, id `SNIPPETS_ID`), synced by
both transports like the device list (store/device_list.py):

    root "type" = "snippets", root "id" = "snippets"
    root "snippet:<trigger>"   the phrase (a string)

Each snippet is its own root key, so snippets added on two devices merge without loss; the
same trigger changed on both keeps one of the two (Automerge's choice, the same on every
device). A deleted snippet is a deleted key. The document never holds anything else.

Another device's copy is untrusted input: `is_snippets` is the one shape check, and
store/doc_ids.py refuses (as `ForeignDocument`) a snippets document that breaks it, before
it is stored and again after a merge, so no device can push more than `MAX_SNIPPETS`
phrases, a phrase over `MAX_TEXT_CHARS`, a trigger outside the rule or any other key.
"""

from __future__ import annotations

import re

from automerge.core import ROOT, Document, ScalarType

from store.documents import _MapView
from store.errors import ValidationFailed

SNIPPETS_ID = "snippets"
KIND_SNIPPETS = "snippets"
PREFIX = "snippet:"
# What the clinician types before a trigger, in a section, to expand it (";mse").
TRIGGER_MARK = ";"
TRIGGER_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,15}\Z")
TRIGGER_RULE = "1-16 lower-case letters, digits, dashes or underscores, starting with a letter or digit"
MAX_SNIPPETS = 200
MAX_TEXT_CHARS = 2000
# Newlines and tabs are part of a phrase; no other control character is.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def problems(trigger: object, text: object) -> list[tuple[str, str]]:
    """What is wrong with a snippet, as (field, reason) pairs; [] when it is acceptable."""
    found: list[tuple[str, str]] = []
    if not isinstance(trigger, str) or not TRIGGER_RE.match(trigger):
        found.append(("trigger", f"must be {TRIGGER_RULE}"))
    if not isinstance(text, str) or not text.strip():
        found.append(("text", "must not be empty"))
    elif len(text) > MAX_TEXT_CHARS:
        found.append(("text", f"must be at most {MAX_TEXT_CHARS} characters"))
    elif _CONTROL_RE.search(text):
        found.append(("text", "must not hold control characters"))
    return found


def read_snippets(doc: Document) -> dict[str, str]:
    """trigger -> phrase, for a document that passed `is_snippets` (others read as far as
    they are well formed)."""
    root = _MapView(doc, ROOT)
    found: dict[str, str] = {}
    for key in root.keys():
        if key.startswith(PREFIX):
            text = root.scalar(key)
            if isinstance(text, str):
                found[key[len(PREFIX):]] = text
    return dict(sorted(found.items()))


def is_snippets(doc_id: str, doc: Document) -> bool:
    """Whether `doc` is a well-formed snippets document stored under `doc_id`: its type and
    id, at most MAX_SNIPPETS snippets, each trigger and phrase within the rules, no other key.
    Any failure to read it means no: this runs on data from other devices."""
    if doc_id != SNIPPETS_ID:
        return False
    try:
        root = _MapView(doc, ROOT)
        if root.scalar("type") != KIND_SNIPPETS or root.scalar("id") != SNIPPETS_ID:
            return False
        entries = [k for k in root.keys() if k not in ("type", "id")]
        if len(entries) > MAX_SNIPPETS:
            return False
        for key in entries:
            if not key.startswith(PREFIX):
                return False
            value, _ = doc.get(ROOT, key)  # a scalar is (type, value); an object is not a phrase
            if not isinstance(value, tuple) or value[0] != ScalarType.Str:
                return False
            if problems(key[len(PREFIX):], value[1]):
                return False
        return True
    except Exception:
        return False


def new_snippets_doc(actor: bytes) -> Document:
    doc = Document(actor)
    with doc.transaction() as tx:
        tx.put(ROOT, "type", ScalarType.Str, KIND_SNIPPETS)
        tx.put(ROOT, "id", ScalarType.Str, SNIPPETS_ID)
    return doc


def write_snippet(doc: Document, trigger: str, text: str, *, replaces: str | None = None) -> bool:
    """Adds or changes the snippet `trigger` (renaming `replaces` to it when given); False
    when the document already says so. ValidationFailed (nothing written) for a bad snippet
    or one too many."""
    found = problems(trigger, text)
    if found:
        raise ValidationFailed(found)
    current = read_snippets(doc)
    if replaces is not None and replaces != trigger and trigger in current:
        raise ValidationFailed([("trigger", f"{TRIGGER_MARK}{trigger} is already a snippet")])
    if current.get(trigger) == text and (replaces in (None, trigger) or replaces not in current):
        return False
    count = len(current) + (trigger not in current) - (replaces in current and replaces != trigger)
    if count > MAX_SNIPPETS:
        raise ValidationFailed([("snippets", f"at most {MAX_SNIPPETS} snippets")])
    with doc.transaction() as tx:
        if replaces is not None and replaces != trigger and replaces in current:
            tx.delete(ROOT, PREFIX + replaces)
        tx.put(ROOT, PREFIX + trigger, ScalarType.Str, text)
    return True


def delete_snippet(doc: Document, trigger: str) -> bool:
    """Removes the snippet `trigger`; False when there is none."""
    if trigger not in read_snippets(doc):
        return False
    with doc.transaction() as tx:
        tx.delete(ROOT, PREFIX + trigger)
    return True
