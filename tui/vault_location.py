"""Where the vault is when no --vault is given: $NOTEWELL_VAULT, else the user data folder.

A module of its own so that the command line and the commands it dispatches to (the demo
vault is kept beside the real one) share it without importing each other.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_vault_path() -> Path:
    env = os.environ.get("NOTEWELL_VAULT")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("notewell")) / "vault"
