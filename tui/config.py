"""The app's settings: a small TOML file the clinician may edit.

Looked up at $NOTEWELL_CONFIG, else `platformdirs.user_config_dir("notewell")/config.toml`.
A missing file means the defaults. Nothing clinical lives here.

    theme = "textual-dark"
    idle_lock_minutes = 5
    [keymap]
    lock = "ctrl+l"
    sign_note = "f9"
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from store.errors import NotewellError
from store.models import to_problems


class ConfigInvalid(NotewellError):
    title = "Settings file problem"


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

    @field_validator("overdue_hours")
    @classmethod
    def _bands(cls, v: list[int]) -> list[int]:
        if any(h <= 0 or h > 24 * 365 for h in v) or len(set(v)) != len(v):
            raise ValueError("must be distinct numbers of hours between 1 and 8760")
        return sorted(v)


def config_path() -> Path:
    env = os.environ.get("NOTEWELL_CONFIG")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("notewell")) / "config.toml"


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
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigInvalid(f"The settings file {path} is not valid TOML ({e}).") from None
    try:
        return AppConfig.model_validate(data)
    except ValidationError as e:
        parts = "; ".join(f"{f}: {r}" if f else r for f, r in to_problems(e))
        raise ConfigInvalid(f"The settings file {path} has a problem: {parts}.") from None
