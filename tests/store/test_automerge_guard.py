"""The one guard against Automerge panics (store/automerge_guard.py), on a real panic."""

from __future__ import annotations

import pytest

from concurrent_edits import edit_concurrently, unforkable_history
from store.automerge_guard import guard_public_methods, is_panic, panic_or, panics_as
from store.errors import DocumentFault, ForeignDocument, NotFound
from store.record import RecordStore
from test_record import Device, _draft, device  # noqa: F401 (device is a fixture)


@pytest.fixture
def unforkable(device: Device):
    """(a note's document, heads at which fork_at panics inside Automerge)."""
    _draft(device.store)
    other = unforkable_history(device.store, "n1", "data")
    opened_at = device.store.draft_heads("n1")
    edit_concurrently(device.store, other, "n1", "data")
    return device.store.replica.load_doc("n1"), opened_at


def test_a_real_panic_is_a_base_exception_the_guard_recognises(unforkable) -> None:
    doc, heads = unforkable
    with pytest.raises(BaseException) as raised:
        doc.fork_at(heads)
    assert is_panic(raised.value) and not isinstance(raised.value, Exception)


def test_a_panic_becomes_a_typed_error_or_the_callers_fallback(unforkable) -> None:
    doc, heads = unforkable
    with pytest.raises(DocumentFault) as raised:
        with panics_as():
            doc.fork_at(heads)
    assert raised.value.message.endswith("nothing was changed.")
    refused = ForeignDocument("Document n1 is not a record document; nothing was changed.")
    with pytest.raises(ForeignDocument) as raised:
        with panics_as(refused):
            doc.fork_at(heads)
    assert raised.value is refused
    assert panic_or("fallback", doc.fork_at, heads) == "fallback"
    assert panic_or("fallback", doc.get_heads) == doc.get_heads()  # no panic: the call's result


def test_an_inner_guards_error_ends_in_the_outer_callers_error(unforkable) -> None:
    doc, heads = unforkable
    with pytest.raises(ForeignDocument):
        with panics_as(lambda: ForeignDocument("refused")):
            with panics_as():
                doc.fork_at(heads)


@pytest.mark.parametrize("fatal", [KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError])
def test_interrupts_and_exits_always_pass(fatal) -> None:
    def interrupted():
        raise fatal()

    with pytest.raises(fatal):
        with panics_as(also=(Exception,)):
            interrupted()
    with pytest.raises(fatal):
        panic_or(None, interrupted, also=(Exception,))


def test_other_errors_pass_unless_the_caller_names_them() -> None:
    def fails():
        raise ValueError("not a panic")

    with pytest.raises(ValueError):
        with panics_as():
            fails()
    assert panic_or("refused", fails, also=(Exception,)) == "refused"
    with pytest.raises(NotFound):  # a typed error keeps its own sentence
        with panics_as(also=(Exception,)):
            raise NotFound("There is no progress note n9.")


def test_every_public_method_of_the_record_store_is_guarded(device: Device) -> None:
    public = [n for n, m in vars(RecordStore).items() if not n.startswith("_") and callable(m)]
    assert public and all(getattr(getattr(RecordStore, n), "__panic_guarded__", False) for n in public)


def test_a_guarded_class_turns_a_panic_into_document_fault_and_drops_half_made_state(unforkable) -> None:
    doc, heads = unforkable
    dropped = []

    @guard_public_methods
    class Reader:
        def fork(self):
            return doc.fork_at(heads)

    class Holder:
        def __init__(self) -> None:
            self.cache = {"n1": doc}

        def fork(self):
            return doc.fork_at(heads)

    with pytest.raises(DocumentFault):
        Reader().fork()
    holder = guard_public_methods(Holder, on_panic=lambda h: (h.cache.clear(), dropped.append(True)))()
    with pytest.raises(DocumentFault):
        holder.fork()
    assert dropped == [True] and holder.cache == {}
