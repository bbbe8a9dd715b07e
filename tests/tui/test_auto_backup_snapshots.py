"""Snapshots of what automatic backups add to the screens: the main screen's warning while a
backup is overdue (the drive not plugged in) and the settings screen's line. A fixed clock and
a fixed folder, so nothing on screen depends on today. Regenerate after a deliberate change
with `pytest tests/tui/test_auto_backup_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from tui.config import AppConfig, BackupConfig
from tui.screens.settings import SettingsDialog
from tui_data import CLIENT_A, PASSPHRASE
from tui_helpers import unlock, wait_for

SIZES = [(80, 24), (120, 40)]
UNPLUGGED = Path("/nonexistent-notewell-drive/backups")
CLOCK = datetime(2026, 12, 3, 9, 15, tzinfo=timezone.utc)


def unplugged_app(make_app, vault):
    config = AppConfig(backup=BackupConfig(folder=UNPLUGGED, every="daily"))
    return make_app(vault, config=config, clock=lambda: CLOCK)


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "120x40"])
def test_main_screen_warns_of_an_overdue_backup(snap_compare, seeded_vault, make_app, size):
    app = unplugged_app(make_app, seeded_vault)

    async def ready(pilot):
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: app.screen.client_id == CLIENT_A and app.screen.query_one("#timeline").option_count > 0
                       and app.screen.previews_shown_for == CLIENT_A)
        await wait_for(pilot, lambda: app.screen.query_one("#backup-warning").display, timeout=60, what="warning")
        app.screen.query_one("#timeline").focus()

    assert snap_compare(app, terminal_size=size, run_before=ready)


def test_settings_screen_shows_the_automatic_backups(snap_compare, seeded_vault, make_app):
    app = unplugged_app(make_app, seeded_vault)

    async def ready(pilot):
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: app.screen.query_one("#backup-warning").display, timeout=60, what="warning")
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsDialog)
                       and not app.screen.query_one("#clinician-name").disabled, what="settings")

    assert snap_compare(app, terminal_size=(120, 40), run_before=ready)
