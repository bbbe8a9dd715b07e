"""The one thread that owns the vault.

SQLite (and so SQLCipher) objects are bound to the thread that opened them, and a store call
may take a while (a KDF, a search over thousands of notes). So the vault is opened, used and
closed on a single worker thread, and the app reaches it through `await store.call(fn, ...)`,
as datasette does for its writes. The UI loop never touches the vault directly.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from store.database import read_damage
from store.errors import VaultLocked

T = TypeVar("T")


class StoreWorker:
    """An async facade over a single-thread executor that holds the open `Vault`."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notewell-store")
        self._vault: Any = None
        # Read from the UI thread; written only in the worker thread.
        self._is_open = threading.Event()

    @property
    def is_open(self) -> bool:
        return self._is_open.is_set()

    async def _submit(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args))

    # --- lifecycle (each runs in the worker thread) ------------------------------------

    def _open(self, path: Path, passphrase: str) -> None:
        from store.vault import Vault

        if self._vault is not None:
            self._close()
        # Every page is verified after the first screen, before the first write
        # (store/page_check.py; the app starts it: NotewellApp.watch_page_check).
        self._vault = Vault.open(path, passphrase, pages_after_open=True)
        self._is_open.set()

    def _create(self, path: Path, passphrase: str, kwargs: dict[str, Any]) -> str:
        from store.vault import Vault

        if self._vault is not None:
            self._close()
        vault, recovery_key = Vault.create(path, passphrase, **kwargs)
        self._vault = vault
        self._is_open.set()
        return recovery_key

    def _close(self) -> None:
        vault, self._vault = self._vault, None
        self._is_open.clear()
        if vault is not None:
            vault.close()

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        if self._vault is None:
            raise VaultLocked("The vault is locked; unlock it to continue.")
        # (A live sync hears of commits from the record itself: store/replica.py listeners.)
        try:
            return fn(self._vault, *args)
        except Exception as e:
            # A damaged page read before the page check has reported it (store/page_check.py).
            damaged = read_damage(e)
            if damaged is None:
                raise
            raise damaged from None

    # --- the facade -----------------------------------------------------------------

    def open(self, path: Path, passphrase: str) -> asyncio.Future[None]:
        """Open the vault in the worker thread (raises WrongPassphrase, NotAVault, ...).

        Submitted at once, not when awaited: the key derivation starts now, and every store
        call made after this one runs after the open (the thread takes them in order), so a
        screen mounted while the key is derived can ask for its lists already."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._executor, partial(self._open, Path(path), passphrase))

    async def create(self, path: Path, passphrase: str, **kwargs: Any) -> str:
        """Create and open a vault; returns the recovery key (shown once)."""
        return await self._submit(self._create, Path(path), passphrase, kwargs)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(vault, *args)` in the worker thread and return its result."""
        return await self._submit(self._call, fn, args)

    async def close(self) -> None:
        """Close the vault (drops its keys) in the thread that opened it."""
        await self._submit(self._close)

    def close_blocking(self) -> None:
        """For shutdown paths outside the event loop: close and wait."""
        self._executor.submit(self._close).result()

    def shutdown(self) -> None:
        try:
            self.close_blocking()
        finally:
            self._executor.shutdown(wait=True)
