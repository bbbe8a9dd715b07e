"""Where a command gets a passphrase: a file, the environment, or a prompt.

For scripts: `--passphrase-file FILE` or NOTEWELL_PASSPHRASE. A new passphrase (init,
passwd, recover) comes from `--new-passphrase-file`, NOTEWELL_NEW_PASSPHRASE, or a prompt
asked twice. The passphrase is never echoed or logged.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from store.errors import NotewellError


class PassphraseUnavailable(NotewellError):
    title = "Passphrase needed"


def _read_file(path: Path, what: str = "passphrase") -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PassphraseUnavailable(f"Cannot read the {what} file {path}: {e.strerror}.") from None
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


# --- the password of an encrypted export ---------------------------------------------------
#
# Not the vault's passphrase: the recipient of the file gets it. It comes from a file
# (`--password-file`) or a prompt, never from the command line or the environment, where
# other programs and the shell's history would see it.


class ExportPasswordUnavailable(NotewellError):
    title = "Password needed"


def _password_prompt(label: str, refusal: str) -> str:
    if not sys.stdin.isatty():
        raise ExportPasswordUnavailable(refusal)
    return getpass.getpass(f"{label}: ")


def export_password(args) -> str:
    """The password to encrypt an export with: from --password-file, or asked twice."""
    path = getattr(args, "password_file", None)
    if path:
        return _read_file(path, "password")
    refusal = "No export password given: use --password-file FILE when not at a terminal; nothing was written."
    first = _password_prompt("Password for the encrypted export", refusal)
    second = _password_prompt("Repeat the password", refusal)
    if first != second:
        raise ExportPasswordUnavailable("The two passwords differ; nothing was written.")
    return first


def import_password(args) -> str:
    """The password of an encrypted export being imported: from --password-file, or asked."""
    path = getattr(args, "password_file", None)
    if path:
        return _read_file(path, "password")
    return _password_prompt(
        "Password of the encrypted export",
        "This export is encrypted: give its password with --password-file FILE when not at a terminal; "
        "nothing was imported.",
    )


class RefusePasswordOnCommandLine(argparse.Action):
    """`--password` exists only to refuse it, without repeating what was typed: a password
    on the command line is visible to every program on the machine and kept in the shell's
    history. (Without it, `--password` would be taken as short for `--password-file`.)"""

    def __init__(self, option_strings, dest, **kwargs):
        kwargs.update(nargs="?", help=argparse.SUPPRESS, default=None)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.exit(
            2,
            "notewell: a password is never taken on the command line (other programs and the shell's "
            "history would see it); you will be asked for it, or use --password-file FILE.\n",
        )


def add_password_options(p, *, help: str) -> None:
    """--password-file, and the refusal of --password, for a command that reads an export's
    password (export, import)."""
    p.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help=help,
    )
    p.add_argument("--password", action=RefusePasswordOnCommandLine)
