"""Concurrent edits on two devices that make Automerge's fork_at panic (MissingOps).

This device types; the other device builds on that and its edit is synced in; this device
types on. Its new change then depends on the other device's change and on its own previous
change, which the other one already depends on. Automerge 0.7.2's fork_at walks such a
history twice over the shared change when its own previous change is listed first among the
dependencies (hash order, so about one round in two), and panics with MissingOps
(automerge issue 1327) when that change is as small as a few keystrokes (as the editor's
autosave makes them; a larger one comes out as a plain "duplicate seq" error instead). The rounds go on until the history has that shape. An editor that opens
the note then, and saves after the other device's next edit (made without this device's
last one) is synced in, stands on heads fork_at cannot reach.
"""

from __future__ import annotations

from automerge.core import Document

from store.documents import section_text, splice_section

OTHER_DEVICE = bytes.fromhex("0e" * 16)  # the other device's actor


def unforkable_history(record, note_id: str, key: str, *, max_rounds: int = 64) -> Document:
    """Builds the history on `record` (this device) with invented words in section `key`.

    Returns the other device's document, which lacks this device's last edit: an editor that
    opens the note now stands on heads that fork_at cannot reach once `edit_concurrently`
    has brought the other device's next edit.
    """
    record.set_section(note_id, key, section_text(record.replica.load_doc(note_id), key) + " So")
    other = record.replica.load_doc(note_id)
    other.set_actor(OTHER_DEVICE)
    for n in range(max_rounds):
        other.merge(record.replica.load_doc(note_id))
        splice_section(other, key, f"Office note {n}. " + section_text(other, key))
        record.replica.apply_doc(note_id, other)  # as a sync merges it
        record.set_section(note_id, key, section_text(record.replica.load_doc(note_id), key) + f" {n}.")
        doc = record.replica.load_doc(note_id)
        (head,) = doc.get_heads()
        changes = {c.hash: c for c in doc.get_changes([])}
        last = changes[head]
        own_previous = [d for d in last.deps if changes[d].actor_id == last.actor_id]
        if len(last.deps) == 2 and own_previous and last.deps[0] == own_previous[0]:
            return other
    raise AssertionError("the history never took the shape that makes fork_at panic")


def edit_concurrently(record, other: Document, note_id: str, key: str) -> None:
    """The other device, not having this device's last edit, writes once more; synced in."""
    splice_section(other, key, "Also from the office. " + section_text(other, key))
    record.replica.apply_doc(note_id, other)
