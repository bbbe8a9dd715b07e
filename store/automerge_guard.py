"""The one guard against Automerge panics, used by store/ and sync/ alike.

The pinned binding (automerge 0.2.0.dev4, the Rust automerge 0.7.2 under pyo3) reports some
of its own failures by panicking. pyo3 raises a panic as `PanicException`, which derives
from BaseException, not Exception: an `except Exception` lets it through, and a caller that
gets one raw has no sentence to show (the editor once stayed on "Saving..." for ever).
Known cases: `fork_at` at an older version of a note whose history holds a change that
depends on another device's change and on this device's previous one, which is what typing,
syncing and typing again makes (MissingOps; automerge issue 1327); reading or merging
malformed data from another device.

- `panics_as(error)`: a block in which a panic becomes the typed `error` (by default
  `DocumentFault`).
- `panic_or(fallback, call, *args)`: the call's result, or `fallback` after a panic.
- `guard_public_methods(cls)`: every public method of a class behind `panics_as()`, so that
  no panic leaves it raw (RecordStore).

`also` names further exception classes to treat like a panic, for calls on data from another
device, where any failure to read it means "refuse it". Whatever the caller asks, the
guard never converts KeyboardInterrupt, SystemExit, GeneratorExit or MemoryError (the state
of this process or machine, not of a document: blaming the document would mislead), nor a
NotewellError, which already carries its own sentence. A `DocumentFault` raised by an inner
guard counts as a panic for an outer one, so nested guards end in the outer caller's error.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from store.errors import DocumentFault, NotewellError

T = TypeVar("T")

# Never converted, never swallowed.
FATAL: tuple[type[BaseException], ...] = (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError)

ErrorSource = NotewellError | Callable[[], NotewellError] | None


def is_panic(error: BaseException) -> bool:
    """True for pyo3's PanicException. Each pyo3 extension makes its own class of that name
    (in no importable module), so it is recognised by its name, not imported."""
    kind = type(error)
    return kind.__name__ == "PanicException" and kind.__module__ == "pyo3_runtime"


def _converts(error: BaseException, also: tuple[type[BaseException], ...]) -> bool:
    if isinstance(error, FATAL):
        return False
    if is_panic(error) or isinstance(error, DocumentFault):
        return True
    if isinstance(error, NotewellError):
        return False
    return bool(also) and isinstance(error, also)


def _typed(error: ErrorSource, caught: BaseException) -> NotewellError:
    if error is None:
        return caught if isinstance(caught, DocumentFault) else DocumentFault()
    return error() if callable(error) else error


@contextmanager
def panics_as(
    error: ErrorSource = None,
    *,
    also: tuple[type[BaseException], ...] = (),
    on_panic: Callable[[], None] | None = None,
) -> Iterator[None]:
    """A panic inside the block (and an exception of the `also` classes) becomes `error`:
    a NotewellError, or a function that makes one; DocumentFault when None.
    `on_panic` runs first, to drop state the panic may have left half-made."""
    try:
        yield
    except BaseException as caught:
        if not _converts(caught, also):
            raise
        if on_panic is not None:
            on_panic()
        raise _typed(error, caught) from None


def panic_or(fallback: T, call: Callable[..., Any], *args: Any, also: tuple[type[BaseException], ...] = ()) -> Any:
    """`call(*args)`, or `fallback` when it panics (or raises one of `also`)."""
    try:
        return call(*args)
    except BaseException as caught:
        if not _converts(caught, also):
            raise
        return fallback


def guard_public_methods(cls: type[T] | None = None, *, on_panic: Callable[[Any], None] | None = None) -> Any:
    """Puts each public method of `cls` behind `panics_as()`: a panic anywhere inside becomes
    DocumentFault (the transaction it ran in rolls back on the way out). Methods added later
    are covered as well, which is why this is a class decorator and not one per method.
    `on_panic(instance)` runs before the error is raised. `@guard_public_methods` or
    `@guard_public_methods(on_panic=...)`."""
    if cls is None:
        return functools.partial(guard_public_methods, on_panic=on_panic)

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
            # `panics_as()` spelled out: a try costs nothing until it catches, and this runs
            # on every store call (a keystroke's save included).
            try:
                return method(self, *args, **kwargs)
            except BaseException as caught:
                if not _converts(caught, ()):
                    raise
                if on_panic is not None:
                    on_panic(self)
                raise _typed(None, caught) from None

        guarded.__panic_guarded__ = True  # type: ignore[attr-defined]
        return guarded

    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(member):
            setattr(cls, name, wrap(member))
    return cls
