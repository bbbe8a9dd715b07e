"""The one rule for a record document's id, and the one check that a document is a record
document with a given id.

Every entrance uses both: the store's own creation paths, import, direct sync, mailbox
bundles and the sync intake (store/replica.py). One rule everywhere matters: a document
stored under an id that one transport accepts and another refuses would break every later
sync of that other transport in the group.

The rule is the import format's (docs/import-format.md): 1-64 letters, digits, dots, dashes
or underscores, starting with a letter or digit. Ids the store makes itself are uuid4 hex.
`\\Z`, not `$`: `$` also matches before a final newline.
"""

from __future__ import annotations

import re

from automerge.core import Document

from store import documents as D
from store.automerge_guard import panic_or
from store.device_list import KIND_DEVICE_LIST, is_device_list
from store.snippets import KIND_SNIPPETS, SNIPPETS_ID, is_snippets

DOC_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z"
_DOC_ID_RE = re.compile(DOC_ID_PATTERN)
DOC_ID_RULE = "must be 1-64 letters, digits, dots, dashes or underscores, starting with a letter or digit"


def is_doc_id(doc_id: object) -> bool:
    """True when `doc_id` may name a record document."""
    return isinstance(doc_id, str) and _DOC_ID_RE.match(doc_id) is not None


def record_kind(doc_id: str, doc: Document) -> str | None:
    """The document's kind ("client", "progress_note", "device_list" or "snippets") when it is a record document whose
    id is `doc_id` and `doc_id` follows the rule; else None. Any failure to read it (an
    Automerge panic included) means None: this runs on data from other devices."""
    if not is_doc_id(doc_id):
        return None

    def read() -> str | None:
        if is_device_list(doc_id, doc):  # the group's devices (store/device_list.py)
            return KIND_DEVICE_LIST
        if doc_id == SNIPPETS_ID:  # the clinician's phrases, well formed or refused (store/snippets.py)
            return KIND_SNIPPETS if is_snippets(doc_id, doc) else None
        kind = D.note_doc_kind(doc)
        return kind if kind is not None and D.doc_id_of(doc) == doc_id else None

    return panic_or(None, read, also=(Exception,))
