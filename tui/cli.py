"""The `notewell` command line.

Each group of commands lives in its own module with a `register(subparsers)` function that
adds its sub-commands and sets `func` on them; this module only parses, resolves the vault
path, and turns typed errors into one sentence on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from store.errors import NotewellError
from tui.printable import printable
from tui.vault_location import default_vault_path

# Modules that contribute commands. Each has register(subparsers).
COMMAND_MODULES = (
    "tui.commands.vault_commands",
    "tui.commands.client_commands",
    "tui.commands.sync_commands",
    "tui.commands.export_commands",
    "tui.commands.rights_commands",
    "tui.commands.backup_commands",
    "tui.commands.app_command",
)


class _Parser(argparse.ArgumentParser):
    """Argument errors as one sentence on stderr (exit 2), like every other refusal; the
    usage is one `--help` away."""

    def error(self, message: str):
        self.exit(2, f"notewell: {message}; see `{self.prog} --help`.\n")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = _Parser(
        prog="notewell",
        description="Encrypted, offline-first clinical notes. With no command, opens the app.",
    )
    parser.add_argument("--vault", type=Path, help="vault folder (default: $NOTEWELL_VAULT or the user data dir)")
    parser.add_argument(
        "--passphrase-file",
        type=Path,
        help="read the passphrase from this file (for scripts); NOTEWELL_PASSPHRASE also works",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        module.register(sub)
    return parser


def _announce_waits_on_stderr() -> None:
    """A command that has to wait for another program's write lock says so, once per wait
    (the wait is bounded: NOTEWELL_LOCK_WAIT, store/write_access.py)."""
    from store.write_access import WAIT_NOTICE, set_wait_notice

    set_wait_notice(lambda: print(f"notewell: {WAIT_NOTICE}", file=sys.stderr, flush=True))


def main(argv: list[str] | None = None) -> int:
    # No core dumps while a vault may be open: they would hold decrypted notes.
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass

    _announce_waits_on_stderr()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.vault = (args.vault or default_vault_path()).expanduser()
    func = getattr(args, "func", None)
    if func is None:
        from tui.commands.app_command import run_app

        func = run_app
    try:
        code = func(args)
    except NotewellError as e:
        print(f"notewell: {printable(e.message)}", file=sys.stderr)  # it may quote another device
        return e.exit_code or 1
    except KeyboardInterrupt:
        print("notewell: interrupted; nothing acknowledged was lost.", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
