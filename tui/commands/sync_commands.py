"""`notewell sync ...`: pair devices, list or revoke them, serve and run direct syncs.

    notewell sync pair --listen [--host H] [--port P]     show a single-use code and wait
    notewell sync pair HOST:PORT                          type the code shown on the other device
                                                          (asked for, or read from standard input)
    notewell sync devices                                 paired devices and their last sync
    notewell sync forget DEVICE                           revoke a device (name or id prefix)
    notewell sync serve [--host H] [--port P]             accept syncs from paired devices
    notewell sync now HOST:PORT                           sync with a paired device now
    notewell sync now HOST:PORT --live                    then stay connected and push each change
    notewell sync mailbox DIR                             (tui/commands/mailbox_command.py)

Lines meant for scripts: `listening on HOST:PORT`, `pairing code: CODE` (the code last) and
`live with NAME (ID)` once a live session is open, each flushed as soon as it is true. Nothing printed here contains note text.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from contextlib import contextmanager

from sync.addresses import DEFAULT_PAIR_PORT, DEFAULT_SYNC_PORT, BadAddress, parse_address, parse_port
from tui.commands.passphrase import current_passphrase
from tui.printable import printable

DEFAULT_HOST = "127.0.0.1"


def port_number(text: str) -> int:
    """The argparse type of every --port: a whole number from 0 (any free port) to 65535
    (sync/addresses.py); argparse ends the line its own way, so the sentence has no full stop."""
    try:
        return parse_port(text)
    except BadAddress as e:
        raise argparse.ArgumentTypeError(e.message.removesuffix(".")) from None


def register(subparsers) -> None:
    p = subparsers.add_parser("sync", help="pair devices and sync the record between them")
    sync_sub = p.add_subparsers(dest="sync_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: _usage(p))

    pair = sync_sub.add_parser(
        "pair",
        help="pair with another device using a single-use code",
        description="On one device run `pair --listen` and read its code; on the other run "
        "`pair HOST:PORT` and type the code when asked (or give it on standard input). The code "
        "works once and expires after 5 minutes.",
    )
    pair.add_argument("address", nargs="?", metavar="HOST:PORT", help="the listening device (when joining)")
    pair.add_argument("--listen", action="store_true", help="show a code and wait for the other device")
    pair.add_argument("--code", help="the code shown on the listening device, for scripts; other users of "
                      "this computer can see it in the process list, so prefer standard input")
    pair.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    pair.add_argument("--port", type=port_number, default=DEFAULT_PAIR_PORT, help=f"port to listen on (default {DEFAULT_PAIR_PORT}; 0 picks a free one)")
    pair.add_argument("--code-ttl", type=float, default=None, help=argparse.SUPPRESS)  # tests
    pair.set_defaults(func=cmd_pair)

    devices = sync_sub.add_parser("devices", help="list paired devices and their last sync")
    devices.set_defaults(func=cmd_devices)

    forget = sync_sub.add_parser("forget", help="revoke a paired device; it is refused from then on")
    forget.add_argument("device", metavar="DEVICE", help="its name or the start of its id")
    forget.set_defaults(func=cmd_forget)

    serve = sync_sub.add_parser("serve", help="accept syncs from paired devices until interrupted")
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    serve.add_argument("--port", type=port_number, default=DEFAULT_SYNC_PORT, help=f"port (default {DEFAULT_SYNC_PORT}; 0 picks a free one)")
    serve.set_defaults(func=cmd_serve)

    now = sync_sub.add_parser("now", help="sync with a paired device that is serving")
    now.add_argument("address", metavar="HOST:PORT")
    now.add_argument("--live", action="store_true",
                     help="stay connected after the sync and push changes both ways until interrupted")
    now.set_defaults(func=cmd_now)

    try:
        mailbox = importlib.import_module("tui.commands.mailbox_command")
    except ModuleNotFoundError as e:
        if e.name != "tui.commands.mailbox_command":
            raise
    else:
        mailbox.register_mailbox(sync_sub)


def _usage(parser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _say(line: str) -> None:
    print(printable(line), flush=True)  # names and sentences may come from another device


def warn_clock(report) -> None:
    """One line on stderr for each device whose clock disagrees with this one's, as the sync
    measured it (sync/clock.py); times it records are then shown with a caveat."""
    for check in report.clock_skews:
        print(printable(check.warning()), file=sys.stderr, flush=True)


def _open(args):
    from store.device_identity import ensure_identity
    from store.vault import Vault

    vault = Vault.open(args.vault, current_passphrase(args))
    try:
        identity = ensure_identity(vault.record.replica, vault.device_name)
    except BaseException:
        vault.close()
        raise
    return vault, identity


@contextmanager
def _open_for_sync(args, *, wait_for_workers: bool = False):
    """The vault and identity for a direct sync, with worker processes that read the
    documents a first sync brings whole (store/prepare_pool.py). They start before the unlock,
    so the key derivation hides their start-up; a server waits for them before it listens."""
    from store.prepare_pool import PreparePool

    with PreparePool() as pool:
        vault, identity = _open(args)
        try:
            vault.record.replica.prepare_pool = pool
            if wait_for_workers:
                pool.wait_ready()  # a worker that does not start only leaves its share to us
            yield vault, identity
        finally:
            vault.close()


def _peer_label(peer) -> str:
    return f"{peer.name} ({peer.short_id})"


# --- pair ------------------------------------------------------------------------------


def cmd_pair(args) -> int:
    from sync.pairing import CODE_TTL, listen_for_pairing, normalise_code, pair_with

    if args.listen == bool(args.address):
        raise BadAddress("Use either `pair --listen` or `pair HOST:PORT`.")
    if args.address:
        host, port = parse_address(args.address, DEFAULT_PAIR_PORT)
        code = args.code if args.code is not None else _read_code()
        normalise_code(code)  # a mistyped code is caught before it can burn the real one
        vault, identity = _open(args)
        try:
            result = pair_with(vault.record.replica, identity, host, port, code)
        finally:
            vault.close()
        _say(f"Paired with {_peer_label(result.peer)}.")
        if result.group_key_replaced:
            _say("This device now uses the other device's sync-group key; redo pairing with devices "
                 "of its old group to keep using the mailbox with them.")
        return 0

    vault, identity = _open(args)
    ttl = CODE_TTL if args.code_ttl is None else args.code_ttl

    def ready(host: str, port: int, code: str) -> None:
        _say(f"listening on {host}:{port}")
        _say(f"On the other device run: notewell sync pair {host}:{port} (and type the code when asked)")
        _say(f"The code works once and expires in {_minutes(ttl)}.")
        _say(f"pairing code: {code}")

    try:
        result = listen_for_pairing(vault.record.replica, identity, args.host, args.port, ttl=ttl, on_ready=ready)
    finally:
        vault.close()
    _say(f"Paired with {_peer_label(result.peer)}.")
    return 0


def _read_code() -> str:
    """The pairing code from standard input: asked for at a terminal, or one line piped in.
    Never from the command line by default: every user of the computer can read that."""
    from sync.errors import PairingFailed

    if sys.stdin.isatty():
        print("Pairing code (shown on the other device): ", end="", file=sys.stderr, flush=True)
    line = sys.stdin.readline()
    if not line.strip():
        raise PairingFailed("No pairing code given: type the code shown on the other device when asked, "
                            "or give it on standard input.")
    return line.strip()


def _minutes(seconds: float) -> str:
    if seconds >= 60:
        n = round(seconds / 60)
        return f"{n} minute{'s' if n != 1 else ''}"
    return f"{seconds:g} seconds"


# --- devices and forget ----------------------------------------------------------------


def cmd_devices(args) -> int:
    from sync.peers import PeerBook

    vault, identity = _open(args)
    try:
        peers = PeerBook(vault.record.replica).all()
    finally:
        vault.close()
    _say(f"This device: {identity.name} ({identity.device_id})")
    if not peers:
        _say("No paired devices. Pair one with `notewell sync pair --listen`.")
        return 0
    for peer in peers:
        status = "revoked" if peer.revoked else "paired"
        if peer.last_sync_at is None:
            last = "never synced"
        else:
            outcome = "ok" if peer.last_sync_ok else "failed"
            last = f"last sync {peer.last_sync_at} {outcome}: {peer.last_sync_summary}"
        _say(f"{peer.name}  {peer.short_id}  {status}  {last}")
    return 0


def cmd_forget(args) -> int:
    from sync.peers import PeerBook

    vault, _identity = _open(args)
    try:
        peer = PeerBook(vault.record.replica).forget(args.device)
    finally:
        vault.close()
    _say(f"Revoked {_peer_label(peer)}; it can no longer sync with this device.")
    return 0


# --- serve and now ---------------------------------------------------------------------


def cmd_serve(args) -> int:
    from sync.direct import serve

    progress = _progress_line()  # a counter on stderr while a device syncs with this one (a terminal only)

    def result(report, error) -> None:
        if progress is not None:
            print(file=sys.stderr)  # ends the counter's line
        if error is not None:
            print(f"notewell: {printable(error.message)}", file=sys.stderr, flush=True)
        else:
            warn_clock(report)
            _say(f"synced with {report.peer} ({report.peer_id[:16]}): {report.summary()}")

    def live(report) -> None:
        warn_clock(report)
        _say(f"live with {report.peer} ({report.peer_id[:16]})")

    with _open_for_sync(args, wait_for_workers=True) as (vault, identity):
        stop = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            serve(vault.record.replica, identity, args.host, args.port, stop_event=stop,
                  on_listening=lambda h, p: _say(f"listening on {h}:{p}"), on_result=result, on_live=live,
                  on_progress=progress)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
    _say("stopped")
    return 0


def _progress_line():
    """A progress counter on stderr when it is a terminal (scripts get only the summary)."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        print(f"\rsyncing documents: {done}/{total}", end="", file=sys.stderr, flush=True)

    return show


def cmd_now(args) -> int:
    from sync.direct import sync_now

    host, port = parse_address(args.address, DEFAULT_SYNC_PORT)
    if args.live:
        return _now_live(args, host, port)
    try:
        with _open_for_sync(args) as (vault, identity):
            report = sync_now(vault.record.replica, identity, host, port, on_progress=_progress_line())
    finally:
        if sys.stderr.isatty():
            print(file=sys.stderr)
    warn_clock(report)
    _say(f"synced with {report.peer} ({report.peer_id[:16]}): {report.summary()}")
    return 0 if report.ok else 1


def _now_live(args, host: str, port: int) -> int:
    """`sync now --live`: SIGTERM or Ctrl-C ends the session with a goodbye to the other side."""
    from sync.direct import live_sync

    shown = {"received": 0, "sent": 0}

    def opened(report) -> None:
        warn_clock(report)
        _say(f"live with {report.peer} ({report.peer_id[:16]}): {report.summary()}")

    def exchanged(report) -> None:
        # Counts only, and only when they move.
        if (report.received, report.sent) != (shown["received"], shown["sent"]):
            shown.update(received=report.received, sent=report.sent)
            _say(f"live: received {report.received}, sent {report.sent}")

    with _open_for_sync(args) as (vault, identity):
        stop = threading.Event()
        handlers = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            report = live_sync(vault.record.replica, identity, host, port, stop_event=stop,
                               on_progress=_progress_line(), on_live=opened, on_exchange=exchanged)
        finally:
            for sig, previous in handlers.items():
                signal.signal(sig, previous)
    _say(f"live sync with {report.peer} ({report.peer_id[:16]}) ended: {report.summary()}")
    return 0 if report.ok else 1
