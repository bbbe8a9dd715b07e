"""The app while another Notewell program holds the vault's write lock (a real second process).

Unlocking needs no write lock; a save that meets the lock shows the waiting notice, then the
one sentence of VaultBusy (never "Unexpected problem"), keeps the form open, and saves once
the other program has finished.
"""

from __future__ import annotations

import sys
from pathlib import Path

from store.errors import VaultBusy
from store.vault import Vault
from store.write_access import LOCK_WAIT_ENV, WAIT_NOTICE
from textual.widgets import Input, Label, Static

from tui_data import PASSPHRASE
from tui_helpers import screen_text, static_text, unlock, wait_for
from tui.screens.client_edit import ClientEditScreen
from tui.screens.dialogs import ErrorModal
from tui.screens.main import MainScreen

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vault_faults import LockHolder  # noqa: E402


async def test_a_save_that_meets_another_programs_lock_says_so_and_saves_later(seeded_vault, make_app, monkeypatch):
    monkeypatch.setenv(LOCK_WAIT_ENV, "0.5")
    app = make_app(seeded_vault)
    notices: list[str] = []
    notify = app.notify
    monkeypatch.setattr(app, "notify", lambda message, **kw: (notices.append(str(message)), notify(message, **kw))[1])
    with LockHolder(seeded_vault, PASSPHRASE) as holder:
        async with app.run_test(size=(100, 40)) as pilot:
            await unlock(pilot, PASSPHRASE)  # opening takes no write lock
            await pilot.press("a")
            await wait_for(pilot, lambda: isinstance(app.screen, ClientEditScreen), what="client form")
            form = app.screen
            form.query_one("#display-name", Input).value = "Morgan Invented"
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal), what="the busy vault's sentence")
            dialog = app.screen
            assert str(dialog.query_one("#error-title", Label).content) == VaultBusy.title
            assert static_text(dialog.query_one("#error-message", Static)) == VaultBusy().message
            assert WAIT_NOTICE in notices
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is form, what="the form, still open")

            holder.release()
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="back to main")
            await wait_for(pilot, lambda: "Morgan Invented" in screen_text(app), what="the new client")
            await pilot.press("ctrl+q")

    vault = Vault.open(seeded_vault, PASSPHRASE)
    try:
        assert [r.display_name for r in vault.record.list_clients()].count("Morgan Invented") == 1
    finally:
        vault.close()
