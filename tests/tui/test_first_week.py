"""A first week with the app (issue 16): each finding a clinician ran into, driven through the
real app on a real encrypted vault with Pilot."""

from __future__ import annotations

from store.vault import Vault
from textual.widgets import Input, Static

from tui_data import PASSPHRASE
from tui_helpers import screen_text, static_text, unlock, wait_for
from tui.screens.client_edit import ClientEditScreen, GoalRow
from tui.screens.dialogs import ConfirmDialog
from tui.screens.main import MainScreen


def _clients(path) -> list[str]:
    vault = Vault.open(path, PASSPHRASE)
    try:
        return [r.display_name for r in vault.record.list_clients()]
    finally:
        vault.close()


async def _type(pilot, text: str) -> None:
    await pilot.press(*[{" ": "space"}.get(ch, ch) for ch in text])


# 1. "+ Goal" focuses the goal, so a goal typed at once is saved as the goal.
async def test_add_goal_focuses_the_goal_not_its_objective(seeded_vault, make_app):
    app = make_app(seeded_vault)
    async with app.run_test(size=(100, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ClientEditScreen), what="client form")
        form = app.screen
        await _type(pilot, "Morgan Invented")
        await pilot.click("#add-goal")
        await wait_for(pilot, lambda: len(form.query(GoalRow)) == 1)
        await _type(pilot, "Sleep through")
        goal = form.query_one(GoalRow)
        assert goal.query_one(".goal-description", Input).value == "Sleep through"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="back to main: " + screen_text(app))
    vault = Vault.open(seeded_vault, PASSPHRASE)
    try:
        (row,) = [r for r in vault.record.list_clients() if r.display_name == "Morgan Invented"]
        assert [g.description for g in vault.record.get_client(row.client_id).goals] == ["Sleep through"]
    finally:
        vault.close()


# 2. Esc or Cancel on a filled form asks before discarding it.
async def test_leaving_a_filled_client_form_asks_first(seeded_vault, make_app):
    app = make_app(seeded_vault)
    async with app.run_test(size=(100, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ClientEditScreen), what="client form")
        form = app.screen
        await _type(pilot, "Morgan Invented")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="a question before discarding")
        assert "discard" in screen_text(app).lower()
        await pilot.press("escape")  # keep editing
        await wait_for(pilot, lambda: app.screen is form)
        assert form.query_one("#display-name", Input).value == "Morgan Invented"
        await pilot.click("#cancel")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the question again, from Cancel")
        await pilot.click("#yes")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
        # An untouched form closes at once: nothing to lose.
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ClientEditScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="an empty form closing at once")
    assert "Morgan Invented" not in _clients(seeded_vault)
