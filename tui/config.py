"""The app's settings: a small TOML file the clinician may edit.

Looked up at $NOTEWELL_CONFIG, else `platformdirs.user_config_dir("notewell")/config.toml`.
A missing file means the defaults. Nothing clinical lives here.

    theme = "textual-dark"
    idle_lock_minutes = 5
    [keymap]
    lock = "ctrl+l"
    sign_note = "f9"
    [backup]
    folder = "/Volumes/BackupDrive/notewell"   # automatic backups go here (docs/backup.md)
    every = "daily"                            # "daily", "weekly", or hours such as "6h"
    [mailbox]
    grace_days = 7       # a bundle every device has read is removed by its writer this much later
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from store.errors import NotewellError


class ConfigInvalid(NotewellError):
    title = "Settings file problem"


_EVERY = {"hourly": 1, "daily": 24, "weekly": 24 * 7}


class BackupConfig(BaseModel):
    """Automatic backups on this device (docs/backup.md). Off while `folder` is not set."""

    model_config = ConfigDict(extra="forbid")

    folder: Path | None = None
    """The folder automatic backups are written to: an external drive or a network share."""

    every: str = "daily"
    """How often: "hourly", "daily", "weekly", or a number of hours or days ("6h", "2d")."""

    @field_validator("folder")
    @classmethod
    def _folder(cls, v: Path | None) -> Path | None:
        return None if v is None or not str(v).strip() else v.expanduser()

    @field_validator("every")
    @classmethod
    def _every(cls, v: str) -> str:
        cls.hours_of(v)
        return v.strip().lower()

    @staticmethod
    def hours_of(text: str) -> int:
        text = text.strip().lower()
        if text in _EVERY:
            return _EVERY[text]
        match = re.fullmatch(r"(\d{1,4})\s*([hd])", text)
        hours = int(match[1]) * (24 if match[2] == "d" else 1) if match else 0
        if not 1 <= hours <= 24 * 366:
            raise ValueError('must be "hourly", "daily", "weekly", or hours or days such as "6h" or "2d"')
        return hours

    @property
    def interval(self) -> timedelta:
        return timedelta(hours=self.hours_of(self.every))

    @property
    def enabled(self) -> bool:
        return self.folder is not None

    def describe(self) -> str:
        """"every day", "every 6 hours"."""
        hours = self.hours_of(self.every)
        if hours % 24 == 0:
            days = hours // 24
            return {1: "every day", 7: "every week"}.get(days, f"every {days} days")
        return "every hour" if hours == 1 else f"every {hours} hours"


class MailboxConfig(BaseModel):
    """The mailbox folder's collection (docs/sync-across-networks.md)."""

    model_config = ConfigDict(extra="forbid")

    grace_days: float = Field(default=7.0, ge=0, le=366)
    """Days a bundle this device wrote stays in the mailbox folder once every paired device
    has read it, before this device removes it."""

    @property
    def grace_seconds(self) -> float:
        return self.grace_days * 24 * 3600


class AppConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    theme: str = "textual-dark"
    """A Textual theme name (see the command palette's "Change theme")."""

    idle_lock_minutes: float = Field(default=5.0, gt=0, le=24 * 60)
    """Minutes without a key press or mouse action before the vault locks itself."""

    keymap: dict[str, str] = Field(default_factory=dict)
    """Binding id -> key(s), e.g. {"lock": "ctrl+l", "search": "ctrl+f,slash"}; see the help screen."""

    overdue_hours: list[int] = Field(default_factory=lambda: [24, 48, 72], min_length=1, max_length=6)
    """Hours after a session at which an unsigned or missing progress note counts as overdue,
    one band each (the To do screen and the counts on the main screen)."""

    backup: BackupConfig = Field(default_factory=BackupConfig)
    """Automatic backups: where and how often (`[backup]`)."""

    mailbox: MailboxConfig = Field(default_factory=MailboxConfig)
    """The mailbox folder: how long bundles every device has read stay (`[mailbox]`)."""

    @field_validator("overdue_hours")
    @classmethod
    def _bands(cls, v: list[int]) -> list[int]:
        if any(h <= 0 or h > 24 * 365 for h in v) or len(set(v)) != len(v):
            raise ValueError("must be distinct numbers of hours between 1 and 8760")
        return sorted(v)


# What each setting allows, in the words a clinician editing the file needs.
ALLOWED = {
    "theme": 'a theme name in quotes, e.g. "textual-dark" or "nord"',
    "idle_lock_minutes": "a number of minutes above 0 and at most 1440, e.g. 5",
    "keymap": 'a [keymap] table of action id = "key", e.g. lock = "ctrl+l" (ids: the help screen, F1)',
    "overdue_hours": "a list of 1 to 6 different whole numbers of hours from 1 to 8760, e.g. [24, 48, 72]",
    "backup": 'a [backup] table with folder = "/path/to/drive" and every = "daily"',
    "backup.folder": 'a folder in quotes, e.g. folder = "/Volumes/Backups" (an external drive or a share)',
    "backup.every": '"hourly", "daily", "weekly", or hours or days such as "6h" or "2d"',
    "mailbox": "a [mailbox] table with grace_days = 7",
    "mailbox.grace_days": "a number of days from 0 to 366, e.g. grace_days = 7",
}


def _line_of(text: str, key: str) -> int | None:
    """The line (from 1) that sets `key` at the top level or in [keymap], if one does."""
    import re

    pattern = re.compile(rf"^\s*(\[\s*{re.escape(key)}\s*\]|\"?{re.escape(key)}\"?\s*=)")
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return number
    return None


def _problem(path: Path, text: str, error: ValidationError) -> str:
    """One sentence per bad setting: the file, the line, and what is allowed there."""
    said: list[str] = []
    top = [k for k in ALLOWED if "." not in k]
    for item in error.errors():
        # A setting inside a table ([backup] every = ...) is named by its path, backup.every.
        loc = [str(part) for part in item["loc"] if isinstance(part, str)]
        key = ".".join(loc)
        line = _line_of(text, loc[-1]) if loc else None
        where = f"line {line}" if line else "a line"
        if item["type"] == "extra_forbidden":
            settings = top if len(loc) < 2 else [k.split(".", 1)[1] for k in ALLOWED if k.startswith(loc[0] + ".")]
            said.append(f"{where} sets {key!r}, which is not a setting (the settings are {', '.join(settings)})")
        else:
            said.append(f"{where}, {key}, must be {ALLOWED.get(key, 'as documented')}")
    return f"The settings file {path}: " + "; ".join(dict.fromkeys(said))


def config_path() -> Path:
    env = os.environ.get("NOTEWELL_CONFIG")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("notewell")) / "config.toml"


def load_config_or_defaults(path: Path | None = None) -> tuple[AppConfig, str | None]:
    """The settings, or the defaults and one sentence saying why the file was not used (the
    app starts and shows it; a mistyped line never keeps the clinician from their notes)."""
    try:
        return load_config(path), None
    except ConfigInvalid as e:
        return AppConfig(), e.message.rstrip(".") + "; the app started with the default settings."


def load_config(path: Path | None = None) -> AppConfig:
    """Read the settings file; defaults when it does not exist."""
    path = path or config_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return AppConfig()
    except OSError as e:
        raise ConfigInvalid(f"Cannot read the settings file {path}: {e.strerror}.") from None
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError:
        raise ConfigInvalid(f"The settings file {path} is not UTF-8 text, so it is not valid TOML.") from None
    except tomllib.TOMLDecodeError as e:
        # tomllib says where: "... (at line 2, column 21)".
        raise ConfigInvalid(f"The settings file {path} is not valid TOML: {e}; each line is key = value "
                            'with text in quotes, e.g. theme = "nord".') from None
    try:
        return AppConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigInvalid(_problem(path, text, e) + ".") from None
