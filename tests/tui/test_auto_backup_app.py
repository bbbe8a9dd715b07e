"""Automatic backups in the app (Pilot, real vaults, real backup files, a clock passed in).

A due backup is made on opening and shown on the settings screen; the next one only after the
interval; the main screen warns while backups are overdue (the drive missing, full) in one
sentence and stops once a backup is made; typing while a backup runs loses nothing.
"""

from __future__ import annotations

import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

from textual.widgets import Static, TextArea

from store.backup import verify_backup
from store.last_backup import last_backup
from store.vault import Vault
from tui.config import AppConfig, BackupConfig
from tui.screens.main import MainScreen
from tui.screens.note_editor import NoteEditorScreen
from tui.screens.settings import SettingsDialog
from tui_data import DRAFT_NOTE, PASSPHRASE
from tui_helpers import static_text, unlock, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vault_faults import small_disk  # noqa: E402

T0 = datetime(2026, 12, 3, 9, 15, tzinfo=timezone.utc)
BACKUP_WAIT = 120.0


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def backing_up(folder: Path, every: str = "daily") -> AppConfig:
    return AppConfig(backup=BackupConfig(folder=folder, every=every))


def backups(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.endswith(".nwbackup") and not p.name.startswith("."))


def warning_text(app) -> str:
    main = next(s for s in app.screen_stack if isinstance(s, MainScreen))
    widget = main.query_one("#backup-warning", Static)
    return static_text(widget) if widget.display else ""


async def settle(pilot, app) -> None:
    """Run a check of whether a backup is due, and wait until it has looked (and any backup
    it started has ended)."""
    worker = app.check_backups()
    await worker.wait()
    await wait_for(pilot, lambda: not app.auto_backups.running, timeout=BACKUP_WAIT, what="the backup to end")


async def test_a_due_backup_is_made_on_opening_and_the_next_after_the_interval(seeded_vault, make_app, tmp_path):
    drive = tmp_path / "drive"
    drive.mkdir()
    clock = Clock(T0)
    app = make_app(seeded_vault, config=backing_up(drive), clock=clock)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: app.auto_backups.made == 1 and not app.auto_backups.running,
                       timeout=BACKUP_WAIT, what="the backup made on opening")
        [first] = backups(drive)
        assert "20261203T091500Z" in first.name
        assert warning_text(app) == ""

        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsDialog), what="settings")
        status = app.screen.query_one("#backup-status", Static)
        assert static_text(status) == f"Automatic backups every day to {drive}. Last backup: 2026-12-03 09:15 UTC."
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="main screen")

        clock.now = T0 + timedelta(hours=23, minutes=59)  # not yet due
        await settle(pilot, app)
        assert app.auto_backups.made == 1 and backups(drive) == [first]

        clock.now = T0 + timedelta(days=1)
        await settle(pilot, app)
        assert app.auto_backups.made == 2
        assert [p.name for p in backups(drive)] == [first.name, first.name.replace("20261203", "20261204")]
        assert warning_text(app) == ""
        await pilot.press("ctrl+q")

    for path in backups(drive):
        assert verify_backup(path, passphrase=PASSPHRASE).counts.clients == 2
    with Vault.open(seeded_vault, PASSPHRASE) as vault:
        assert last_backup(vault).at == T0 + timedelta(days=1)
        assert [e.event for e in vault.audit.entries()].count("backup_written") == 2


async def test_the_main_screen_warns_while_overdue_and_not_after_a_backup(seeded_vault, make_app, tmp_path):
    drive = tmp_path / "drive"  # not plugged in yet
    clock = Clock(T0)
    app = make_app(seeded_vault, config=backing_up(drive), clock=clock)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: warning_text(app), timeout=BACKUP_WAIT, what="the backup warning")
        assert warning_text(app) == (
            f"No backup of this device yet: the backup folder {drive} does not exist (is the drive "
            "connected?); no backup was written."
        )
        drive.mkdir()  # the drive is back
        clock.now = T0 + timedelta(minutes=1)
        await settle(pilot, app)
        assert app.auto_backups.made == 1 and len(backups(drive)) == 1
        await wait_for(pilot, lambda: warning_text(app) == "", what="the warning gone")

        # Overdue again when the next backup cannot be made: the warning names the last one.
        drive.rename(tmp_path / "unplugged")
        clock.now = T0 + timedelta(days=3)
        await settle(pilot, app)
        await wait_for(pilot, lambda: warning_text(app).startswith("No backup since 2026-12-03 09:16 UTC: "),
                       what="the overdue warning")
        await pilot.press("ctrl+q")


async def test_a_full_backup_folder_gives_one_sentence_and_leaves_earlier_backups(seeded_vault, make_app, tmp_path):
    clock = Clock(T0)
    with small_disk(tmp_path / "drive", size="4m") as disk:
        app = make_app(seeded_vault, config=backing_up(disk.path), clock=clock)
        async with app.run_test(size=(120, 40)) as pilot:
            await unlock(pilot, PASSPHRASE)
            await wait_for(pilot, lambda: app.auto_backups.made == 1 and not app.auto_backups.running,
                           timeout=BACKUP_WAIT, what="the first backup")
            disk.fill(leave=32 * 1024)
            before = {p.name: p.read_bytes() for p in disk.path.iterdir()}
            clock.now = T0 + timedelta(days=1, minutes=1)
            await settle(pilot, app)
            assert app.auto_backups.made == 1
            expected = (
                f"No backup since 2026-12-03 09:15 UTC: the backup folder {disk.path} is full; no backup "
                "was written and earlier backups are untouched."
            )
            await wait_for(pilot, lambda: warning_text(app) == expected, what=f"the warning, not {warning_text(app)!r}")
            assert {p.name: p.read_bytes() for p in disk.path.iterdir()} == before
            await pilot.press("ctrl+q")
        disk.free()
        [earlier] = backups(disk.path)
        verify_backup(earlier, passphrase=PASSPHRASE)


async def test_typing_while_an_automatic_backup_runs_loses_nothing(seeded_vault, make_app, tmp_path):
    drive = tmp_path / "drive"
    drive.mkdir()
    reached, release = threading.Event(), threading.Event()

    def held(done: int, total: int) -> None:
        # The backup stops here (its snapshot taken, its file being written: the child process
        # waits for each progress report to return) until the typing is saved.
        reached.set()
        release.wait(BACKUP_WAIT)

    app = make_app(seeded_vault, config=backing_up(drive), clock=Clock(T0))
    app.auto_backups.progress = held
    typed = " Typed while backing up 4f1c."
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: reached.is_set() and app.auto_backups.running, timeout=BACKUP_WAIT,
                       what="a backup under way")
        app.screen.open_note("progress", DRAFT_NOTE)
        await wait_for(pilot, lambda: isinstance(app.screen, NoteEditorScreen) and app.screen.loaded, what="editor")
        editor = app.screen
        area = editor.query_one("#section-subjective", TextArea)
        area.focus()
        area.move_cursor(area.document.end)
        for ch in typed:
            await pilot.press("space" if ch == " " else ch)
        await wait_for(pilot, lambda: area.text.endswith(typed), what="the typed text on screen")
        await wait_for(pilot, lambda: not editor.has_pending and static_text(editor.query_one("#save-state")) == "Saved",
                       timeout=BACKUP_WAIT, what="the typing saved while the backup runs")
        assert app.auto_backups.running  # still held: the save did not wait for the backup
        release.set()
        await wait_for(pilot, lambda: app.auto_backups.made == 1 and not app.auto_backups.running,
                       timeout=BACKUP_WAIT, what="the backup to finish")
        await pilot.press("ctrl+q")

    with Vault.open(seeded_vault, PASSPHRASE) as vault:
        assert vault.record.get_note(DRAFT_NOTE).sections["subjective"].endswith(typed)
        assert last_backup(vault) is not None
    [made] = backups(drive)
    verify_backup(made, passphrase=PASSPHRASE)
