"""The record's one document-id rule (store/doc_ids.py explains why there is one), in a
module of its own that imports nothing, so that readers of record kinds can apply it to the
ids a document names (a rights record's notes) without a circle of imports.

The rule is the import format's (docs/import-format.md): 1-64 letters, digits, dots, dashes
or underscores, starting with a letter or digit. `\\Z`, not `$`: `$` also matches before a
final newline.
"""

from __future__ import annotations

import re

DOC_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z"
_DOC_ID_RE = re.compile(DOC_ID_PATTERN)
DOC_ID_RULE = "must be 1-64 letters, digits, dots, dashes or underscores, starting with a letter or digit"


def is_doc_id(doc_id: object) -> bool:
    """True when `doc_id` may name a record document."""
    return isinstance(doc_id, str) and _DOC_ID_RE.match(doc_id) is not None


# The ids of the record's one-of-a-kind documents: the group's device list
# (store/device_list.py) and the clinician's snippets (store/snippets.py). No client, note or
# rights record may take one: its document would be stored, and merged, as that document.
SINGLETON_IDS = frozenset({"device-list", "snippets"})
ITEM_ID_RULE = DOC_ID_RULE + ', and not "device-list" or "snippets"'


def is_item_id(doc_id: object) -> bool:
    """True when `doc_id` may name a client, a note or a rights record."""
    return is_doc_id(doc_id) and doc_id not in SINGLETON_IDS
