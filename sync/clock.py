"""Clocks that disagree: measured when devices sync, remembered per paired device.

Every time the record holds (signatures, addenda, marks) comes from the clock of the device
that wrote it, and nothing else vouches for it. A device whose clock is wrong writes wrong
times without noticing. So each sync compares the two clocks:

- direct sync: each HELLO carries its sender's clock (`sync.protocol`); the receiver knows
  the peer read its clock somewhere between two moments of its own (it sent its hello or
  opened the connection; the peer's hello arrived), takes the middle, and counts half the
  round trip as uncertainty;
- mailbox: a bundle's header carries the time it was written. A bundle read later than it
  was written is normal (it was carried on a stick), so only a bundle from the future
  says something: its sender's clock is ahead by at least that much.

The last finding per paired device is kept in the record store's local (never synced) table
under `sync.clock.v1` with when it was seen, so the app can warn on its main screen and put a
caveat next to times written by a device with a wrong clock. Which of two disagreeing clocks
is wrong cannot be told from two devices alone, so the words say "ahead of" / "behind", never
"wrong".
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from store.replica import RecordReplica

# Clocks kept by the network agree within a second, and a clock left alone drifts by well under
# a minute a month; a wrong time zone or a wrong date is an hour or more off. Five minutes sits
# far above drift and any round trip, and far below the smallest error that matters to the
# record (late-entry labels work in hours, dates of service in days).
CLOCK_SKEW_THRESHOLD_SECONDS = 5 * 60

CLOCKS_KEY = "sync.clock.v1"
# A peer's clock reading outside this range is not a clock reading (and is ignored).
_EARLIEST, _LATEST = 946684800.0, 32503680000.0  # 2000-01-01 .. 3000-01-01


@dataclass(frozen=True)
class ClockCheck:
    """One comparison of this device's clock with a paired device's."""

    peer_id: str
    peer_name: str
    offset_seconds: float  # the peer's clock minus this device's: > 0 when the peer is ahead
    skewed: bool  # the difference is beyond the threshold, round trip allowed for
    seen_at: str  # when (this device's clock, ISO UTC)
    transport: str  # "direct" or "mailbox"

    @property
    def this_device_ahead(self) -> bool:
        return self.offset_seconds < 0

    def warning(self, *, short: bool = False) -> str:
        """The one line the command line prints (`short`: the main screen's line)."""
        side = "ahead of" if self.this_device_ahead else "behind"
        line = f"This device's clock is about {span(self.offset_seconds)} {side} {self.peer_name}'s; check the date and time settings."
        return line if short else line + " Times it records are shown with a caveat."


def span(seconds: float) -> str:
    """'10 days', '3 hours', '12 minutes': how far apart, rounded the way people say it."""
    seconds = abs(seconds)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= 2 * size or unit == "minute":
            n = max(1, round(seconds / size))
            return f"{n} {unit}{'s' if n != 1 else ''}"
    raise AssertionError("unreachable")


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).replace(microsecond=0).isoformat()


def clock_reading(value: object) -> float | None:
    """A peer's clock as sent (seconds since 1970), or None when absent or not a plausible time."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    if not math.isfinite(value) or not _EARLIEST <= value <= _LATEST:
        return None
    return value


def measure_direct(peer_id: str, peer_name: str, peer_time: float, sent_at: float, received_at: float) -> ClockCheck:
    """The peer read its clock at `peer_time` somewhere between `sent_at` and `received_at`
    of ours (our hello left, or the connection opened; its hello arrived)."""
    middle = (sent_at + received_at) / 2
    margin = max(0.0, received_at - sent_at) / 2
    offset = peer_time - middle
    skewed = abs(offset) - margin > CLOCK_SKEW_THRESHOLD_SECONDS
    return ClockCheck(peer_id, peer_name, round(offset, 3), skewed, _iso(received_at), "direct")


def measure_bundle(peer_id: str, peer_name: str, written_at: float, now: float) -> ClockCheck | None:
    """A bundle written at `written_at` (its sender's clock), read at `now` (ours).

    From the future beyond the threshold: the sender's clock is ahead by at least that much.
    Within the threshold either way: the clocks agree (as far as a bundle can tell). Older:
    nothing can be said (it may have waited in the folder), so None.
    """
    offset = written_at - now
    if offset < -CLOCK_SKEW_THRESHOLD_SECONDS:
        return None
    return ClockCheck(peer_id, peer_name, round(offset, 3), offset > CLOCK_SKEW_THRESHOLD_SECONDS, _iso(now), "mailbox")


# --- remembered per peer, in the local table --------------------------------------------


def remembered(store: RecordReplica) -> dict[str, ClockCheck]:
    """The last finding per paired device (device id -> check); {} when none or unreadable."""
    raw = store.local_get(CLOCKS_KEY)
    if raw is None:
        return {}
    try:
        return {peer_id: ClockCheck(**fields) for peer_id, fields in json.loads(raw).items()}
    except (ValueError, TypeError, AttributeError):
        return {}  # device-local advice, not the record: an unreadable entry is rewritten next sync


def remember(store: RecordReplica, check: ClockCheck) -> None:
    """Keep `check` as the last finding for its peer (read-modify-write under the write lock)."""
    with store.transaction():
        checks = remembered(store)
        checks[check.peer_id] = check
        data = {peer_id: asdict(c) for peer_id, c in checks.items()}
        store.local_put(CLOCKS_KEY, json.dumps(data, sort_keys=True).encode("utf-8"))


def current_skews(store: RecordReplica) -> list[ClockCheck]:
    """Paired devices whose clock disagreed with this one's at the last check, largest first."""
    return sorted(
        (c for c in remembered(store).values() if c.skewed),
        key=lambda c: (-abs(c.offset_seconds), c.peer_name, c.peer_id),
    )


def time_caveats(store: RecordReplica, this_device_id: str) -> dict[str, str]:
    """Device id -> a short caveat for times that device wrote, for every device whose clock is
    known to disagree: each such peer, and this device itself when it disagrees with any."""
    skews = current_skews(store)
    out: dict[str, str] = {}
    for c in skews:
        side = "behind" if c.this_device_ahead else "ahead of"
        out[c.peer_id] = f"(device clock was ~{span(c.offset_seconds)} {side} this one's)"
    if skews:
        worst = skews[0]
        side = "ahead of" if worst.this_device_ahead else "behind"
        out[this_device_id] = f"(this device's clock was ~{span(worst.offset_seconds)} {side} {worst.peer_name}'s)"
    return out
