"""Reading stored documents into the rows `notewell check` compares, on every core.

A check loads each document it cannot skip (store/check_record.py: the first check of a
vault, `check --full`, or after a sync brought many) and reads it into its list and search
rows: about 1.2 ms a document, all of it holding the interpreter lock, so 12 s at 10,000
notes and 90 s at 50,000 on one core. `check --full` also verifies every signed note's
signatures again (about 1.4 ms a note). From PARALLEL_FROM documents on, worker processes
(store/prepare_pool.py, `work="check"` and `work="states"`) do both beside this process.
The documents go out in windows of WINDOW, so a check holds one window's bytes at a time,
never the record's.

What comes back is what `expected_rows` gives in this process, or None for a document whose
stored bytes do not load: the check reports that document ("cannot be loaded") and goes on,
with workers or without.
"""

from __future__ import annotations

from collections.abc import Iterator

from store.docstore import DocStore
from store.projections import Expected, expected_rows_of_stored
from store.signature_index import WorkerKeys

# Starting a worker costs about 0.15 s of CPU, some 130 documents' reading: below this many
# documents one core is as quick.
PARALLEL_FROM = 400
WINDOW = 2048  # documents whose bytes are held at once


class ExpectedRowsReader:
    """`read_many` for `store.projections.projection_mismatches`: the expected rows of each
    document id given, in order; with `workers`, read on worker processes when there are
    many (the command line's check; the app never starts them for a check)."""

    def __init__(self, docs: DocStore, late_entry_hours: int, *, workers: bool = False) -> None:
        self._docs = docs
        self._late = late_entry_hours
        self._workers = workers

    def __call__(self, doc_ids: list[str]) -> Iterator[Expected]:
        if not self._workers or len(doc_ids) < PARALLEL_FROM:
            for doc_id in doc_ids:
                data = _stored(self._docs, doc_id)
                yield None if data is None else expected_rows_of_stored(doc_id, data, self._late)
            return
        for window in _on_workers(self._docs, doc_ids, "check", self._late):
            for _doc_id, expected in window:
                yield expected  # None: gone since the check listed it, or unloadable


def states_on_workers(docs: DocStore, note_ids: list[str], keys: WorkerKeys) -> Iterator[list[tuple[str, tuple | None]]]:
    """`check --full`'s signature pass, read on worker processes: windows of (note id,
    `store.signature_index.states_of_stored` of its stored bytes, verified with `keys`), for
    the store to keep where they still hold (`SignatureIndex.settle_prepared`)."""
    return _on_workers(docs, note_ids, "states", 0, keys)


def _stored(docs: DocStore, doc_id: str) -> bytes | None:
    found = docs.stored_bytes(doc_id)  # a damaged page raises here, as it should
    return None if found is None else found[0]


def _on_workers(docs: DocStore, doc_ids: list[str], work: str, late_entry_hours: int,
                context: object = None) -> Iterator[list[tuple[str, object]]]:
    """The pool's `work` on the stored bytes of `doc_ids`, a window at a time, in order:
    (id, its result), None for an id with no stored bytes."""
    from store.prepare_pool import PreparePool  # only a check that reads many starts one

    with PreparePool() as pool:
        for start in range(0, len(doc_ids), WINDOW):
            window = [(doc_id, _stored(docs, doc_id)) for doc_id in doc_ids[start:start + WINDOW]]
            items = [(doc_id, data) for doc_id, data in window if data is not None]
            done = pool.prepare_many(items, late_entry_hours, work=work, context=context)
            read = dict(zip((doc_id for doc_id, _ in items), done, strict=True))
            yield [(doc_id, read.get(doc_id)) for doc_id, _data in window]
