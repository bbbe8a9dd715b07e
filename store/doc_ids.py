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

from automerge.core import Document

from store import documents as D
from store.automerge_guard import panic_or
from store.device_list import DEVICE_LIST_ID, KIND_DEVICE_LIST, is_device_list
from store.rights_documents import KIND_RIGHTS, is_rights_doc, read_rights
from store.snippets import KIND_SNIPPETS, SNIPPETS_ID, is_snippets

# The rule itself lives in store/doc_id_rule.py, which the record kinds' own readers
# (store/rights_documents.py) import too; it is re-exported here for every entrance.
from store.doc_id_rule import DOC_ID_PATTERN, DOC_ID_RULE, ITEM_ID_RULE, SINGLETON_IDS, is_doc_id, is_item_id  # noqa: F401


def record_kind(doc_id: str, doc: Document) -> str | None:
    """The document's kind ("client", "progress_note", "device_list", "snippets" or
    "rights_record") when it is a record document whose id is `doc_id` and `doc_id` follows
    the rule; else None. Any failure to read it (an
    Automerge panic included) means None: this runs on data from other devices."""
    if not is_doc_id(doc_id):
        return None

    def read() -> str | None:
        if doc_id == DEVICE_LIST_ID:  # the group's devices, well formed or refused (store/device_list.py)
            return KIND_DEVICE_LIST if is_device_list(doc_id, doc) else None
        if doc_id == SNIPPETS_ID:  # the clinician's phrases, well formed or refused (store/snippets.py)
            return KIND_SNIPPETS if is_snippets(doc_id, doc) else None
        # (Below, no document may take either of those ids: `is_item_id`.)
        kind = D.note_doc_kind(doc)
        if kind is None and is_rights_doc(doc):  # read whole, every event (store/rights_documents.py)
            record = read_rights(doc)
            return KIND_RIGHTS if record is not None and record.id == doc_id else None
        return kind if kind is not None and D.doc_id_of(doc) == doc_id else None

    return panic_or(None, read, also=(Exception,))
