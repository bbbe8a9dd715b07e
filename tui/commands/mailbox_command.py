"""`notewell sync mailbox DIR`: sync through a folder (USB stick, shared or cloud-drive folder).

Registered by tui/commands/sync_commands.py under `notewell sync`. One run merges every
other paired device's bundles found in DIR, then writes this device's bundle of what changed.
Exit status: 0 when every bundle read was applied (or already was), 3 when some were rejected
(the summary says which and why; a rejected bundle changes nothing).
Each run, and each round of --watch, ends with collection (sync/mailbox_collect.py): this
device's read-mark, and its own bundles every trusted device has read removed after the
settings file's `[mailbox] grace_days` (7).

With --watch it stays (sync/mailbox_watch.py): `watching the mailbox DIR` once it is, then the
same summary for each round that brought something in, wrote a bundle or refused one; a
problem with the folder or the vault is one line on stderr, and the watch goes on. SIGTERM or
Ctrl-C ends it (exit 0).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tui.commands.passphrase import current_passphrase
from tui.printable import printable, printable_lines

EXIT_SOME_REJECTED = 3


def register_mailbox(sync_sub) -> None:
    p = sync_sub.add_parser(
        "mailbox",
        help="merge paired devices' bundles from a folder and write this device's bundle there",
        description=(
            "Sync without a network: merge every paired device's bundles found in DIR, then write "
            "a bundle of what changed on this device since its last bundle. Bundles are encrypted "
            "with the sync-group key and signed; the folder only ever holds ciphertext."
        ),
    )
    p.add_argument("dir", type=Path, metavar="DIR", help="the mailbox folder")
    p.add_argument(
        "--full",
        action="store_true",
        help="write every document, not only what changed (after a bundle was lost or deleted)",
    )
    p.add_argument(
        "--watch",
        action="store_true",
        help="stay: bring in bundles as they appear and write this device's changes seconds after each save "
             "(for a folder carried by Syncthing or a cloud drive)",
    )
    p.add_argument("--poll", action="store_true",
                   help="with --watch: look at the folder every few seconds instead of using file-system notifications")
    p.set_defaults(func=cmd_mailbox)


def _progress_line():
    """How far a bundle's new documents are stored, on stderr when it is a terminal (a first
    import brings thousands; scripts get only the summary)."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        # Each new document is checked, then stored: `total` counts both steps.
        end = "\n" if done == total else ""
        print(f"\rimporting a bundle of {total // 2} new documents: {100 * done // max(1, total)}%",
              end=end, file=sys.stderr, flush=True)

    return show


def cmd_mailbox(args) -> int:
    from store.device_identity import ensure_identity
    from store.prepare_pool import PreparePool
    from store.vault import Vault
    from sync.mailbox import MailboxError, check_mailbox_folder, sync_mailbox
    from sync.mailbox_collect import collecting

    if args.poll and not args.watch:
        raise MailboxError("--poll only changes how --watch looks at the folder; add --watch, or leave --poll out.")
    # Checked before the passphrase's unlock cost: a real folder this device can write in.
    folder = check_mailbox_folder(args.dir)
    args.grace_seconds = _grace_seconds()
    if args.watch:
        return _watch(args, folder)
    # Worker processes read documents new to this device (a first import brings them all);
    # started before the unlock, whose key derivation hides their start-up.
    with PreparePool() as pool:
        vault = Vault.open(args.vault, current_passphrase(args))
        try:
            vault.record.replica.prepare_pool = pool
            identity = ensure_identity(vault.record.replica, vault.device_name)
            report = sync_mailbox(vault.record.replica, identity, folder, full=args.full, on_progress=_progress_line(),
                                  after_run=collecting(args.grace_seconds))
        finally:
            vault.close()
    for check in report.clock_skews:
        print(printable(check.warning()), file=sys.stderr, flush=True)
    # Bundle file names in a shared folder are anyone's to choose: shown, never obeyed.
    print(printable_lines(f"synced through the mailbox {folder}: {report.summary()}"))
    return 0 if report.ok else EXIT_SOME_REJECTED



def _grace_seconds() -> float:
    """How long a bundle every device has read stays (`[mailbox] grace_days`, tui/config.py).
    A settings file that cannot be read is said once; the default (7 days) is used."""
    from tui.config import load_config_or_defaults

    config, problem = load_config_or_defaults()
    if problem:
        print(printable(problem), file=sys.stderr, flush=True)
    return config.mailbox.grace_seconds


def _watch(args, folder: Path) -> int:
    """`sync mailbox DIR --watch`: until SIGTERM or Ctrl-C."""
    import signal
    import threading

    from store.device_identity import ensure_identity
    from store.prepare_pool import PreparePool
    from store.vault import Vault
    from sync.mailbox_watch import watch_mailbox

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    def said(report, error) -> None:
        if error is not None:
            print(printable(f"{error.title}: {error.message}"), file=sys.stderr, flush=True)
            return
        for check in report.clock_skews:
            print(printable(check.warning()), file=sys.stderr, flush=True)
        print(printable_lines(f"synced through the mailbox {folder}: {report.summary()}"), flush=True)

    def notice(text: str) -> None:
        print(printable(text), file=sys.stderr, flush=True)

    with PreparePool() as pool:
        vault = Vault.open(args.vault, current_passphrase(args))
        try:
            vault.record.replica.prepare_pool = pool
            identity = ensure_identity(vault.record.replica, vault.device_name)
            print(printable(f"watching the mailbox {folder}"), flush=True)
            watch_mailbox(vault.record.replica, identity, folder, stop=stop, on_round=said,
                          notifications=not args.poll, on_notice=notice, grace_seconds=args.grace_seconds)
        finally:
            vault.close()
    print("stopped watching the mailbox", flush=True)
    return 0
