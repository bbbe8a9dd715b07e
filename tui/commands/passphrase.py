"""Where a command gets a passphrase: a file, the environment, or a prompt.

For scripts: `--passphrase-file FILE` or NOTEWELL_PASSPHRASE. A new passphrase (init,
passwd, recover) comes from `--new-passphrase-file`, NOTEWELL_NEW_PASSPHRASE, or a prompt
asked twice. The passphrase is never echoed or logged.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

from store.errors import NotewellError


class PassphraseUnavailable(NotewellError):
    title = "Passphrase needed"


def _read_file(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PassphraseUnavailable(f"Cannot read the passphrase file {path}: {e.strerror}.") from None
    # A trailing newline from `echo pass > file` is not part of the passphrase.
    return text.rstrip("\r\n")


def _prompt(label: str) -> str:
    if not sys.stdin.isatty():
        raise PassphraseUnavailable(
            "No passphrase given: use --passphrase-file FILE or NOTEWELL_PASSPHRASE when not at a terminal."
        )
    return getpass.getpass(f"{label}: ")


def current_passphrase(args) -> str:
    path = getattr(args, "passphrase_file", None)
    if path:
        return _read_file(path)
    env = os.environ.get("NOTEWELL_PASSPHRASE")
    if env is not None:
        return env
    return _prompt("Passphrase")


def new_passphrase(args, *, allow_current_sources: bool = False) -> str:
    """A passphrase being set. `init` may take it from the ordinary sources too."""
    path = getattr(args, "new_passphrase_file", None)
    if path:
        return _read_file(path)
    env = os.environ.get("NOTEWELL_NEW_PASSPHRASE")
    if env is not None:
        return env
    if allow_current_sources:
        if getattr(args, "passphrase_file", None) or os.environ.get("NOTEWELL_PASSPHRASE") is not None:
            return current_passphrase(args)
    first = _prompt("New passphrase")
    second = _prompt("Repeat the new passphrase")
    if first != second:
        raise PassphraseUnavailable("The two passphrases differ; nothing was changed.")
    return first
