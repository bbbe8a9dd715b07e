"""Where another device listens: ports and addresses as a person types them.

The command line (`notewell sync ...`) and the Devices screen read addresses with these, so a
typing mistake is refused the same way everywhere, with one sentence (`BadAddress`), before
anything connects or listens.

    parse_address("192.168.1.20:7341", DEFAULT_SYNC_PORT) -> ("192.168.1.20", 7341)
    parse_address("[::1]", DEFAULT_PAIR_PORT)             -> ("::1", 7342)
    parse_address("0.0.0.0:0", DEFAULT_SYNC_PORT, listening=True)  # port 0: any free port
    parse_port("7341") -> 7341
"""

from __future__ import annotations

from sync.errors import SyncError

# The default TCP ports: direct sync, and pairing with a code.
DEFAULT_SYNC_PORT = 7341
DEFAULT_PAIR_PORT = 7342

MAX_PORT = 65535


class BadAddress(SyncError):
    title = "Bad address"


def parse_port(text: str) -> int:
    """A port number to listen on: a whole number from 0 (any free port) to 65535."""
    try:
        port = int(text, 10)
    except ValueError:
        port = -1
    if not 0 <= port <= MAX_PORT:
        raise BadAddress(f"{text!r} is not a port number (0-{MAX_PORT}).")
    return port


def parse_address(text: str, default_port: int, *, listening: bool = False) -> tuple[str, int]:
    """(host, port) from HOST:PORT, HOST, [IPv6]:PORT or a bare IPv6 address; the port is
    `default_port` when none is given. Connecting needs a real port (1-65535); `listening`
    also allows 0, which lets the system pick a free one."""
    text = text.strip()
    host, port = text, str(default_port)
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise BadAddress(f"{text!r} is not an address; use HOST:PORT.")
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise BadAddress(f"{text!r} is not an address; use HOST:PORT.")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    lowest = 0 if listening else 1
    if not host or not port.isdigit() or not lowest <= int(port) <= MAX_PORT:
        raise BadAddress(f"{text!r} is not an address; use HOST:PORT.")
    return host, int(port)
