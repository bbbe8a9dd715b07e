"""The bounds of every network entrance: how many connections, how long, how much memory.

Anything on the network can connect to `sync serve` or to a pairing listener, and a paired
device can be lost or hostile, so each entrance has a cap or a total deadline that no client
can stretch (a byte now and then does not reset it):

    max_connections     connections `sync serve` holds at once; one over it is closed at once
    handshake_timeout   seconds for a whole TLS handshake, from accept() to its end
    frame_timeout       seconds from a frame's first byte to its last
    pair_attempt        seconds for a whole pairing attempt on one connection
    session_hold_bytes  what one sync session holds in memory before it stores it: whole documents,
                        and what sync messages brought to the documents it holds

Each has a default that an honest device never reaches (docs/sync-protocol.md, "Bounds") and
an environment variable, read when a server or listener starts, for tests and unusual
networks. A value that is not a positive number is refused with one sentence.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from sync.errors import SyncError

MAX_CONNECTIONS = 32
HANDSHAKE_TIMEOUT = 20.0
# A 16 MiB frame at 150 KB/s, a slow Wi-Fi link, still arrives in time.
FRAME_TIMEOUT = 120.0
# The joiner types the code before it connects: an attempt is a few round trips.
PAIR_ATTEMPT_TIMEOUT = 30.0
SESSION_HOLD_BYTES = 64 * 1024 * 1024

ENV = {
    "max_connections": "NOTEWELL_SYNC_MAX_CONNECTIONS",
    "handshake_timeout": "NOTEWELL_SYNC_HANDSHAKE_TIMEOUT",
    "frame_timeout": "NOTEWELL_SYNC_FRAME_TIMEOUT",
    "pair_attempt": "NOTEWELL_PAIR_ATTEMPT_TIMEOUT",
    "session_hold_bytes": "NOTEWELL_SYNC_HOLD_BYTES",
}


@dataclass(frozen=True)
class Limits:
    max_connections: int = MAX_CONNECTIONS
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    frame_timeout: float = FRAME_TIMEOUT
    pair_attempt: float = PAIR_ATTEMPT_TIMEOUT
    session_hold_bytes: int = SESSION_HOLD_BYTES

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Limits":
        """The defaults, with any value the environment sets (SyncError for a bad one)."""
        environ = os.environ if environ is None else environ
        values: dict[str, float | int] = {}
        for name, variable in ENV.items():
            raw = environ.get(variable)
            if raw is None or not raw.strip():
                continue
            whole = name in ("max_connections", "session_hold_bytes")
            try:
                value: float | int = int(raw) if whole else float(raw)
            except ValueError:
                value = -1
            if not (value > 0 and math.isfinite(value)):  # also refuses nan
                kind = "a whole number" if whole else "a number of seconds"
                raise SyncError(f"{variable} must be {kind} above 0, not {raw.strip()[:20]!r}.")
            values[name] = value
        return cls(**values)  # type: ignore[arg-type]
