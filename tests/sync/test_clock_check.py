"""Comparing clocks (sync/clock.py) in the sans-IO session between two real vaults: round-trip
allowance, older peers whose hello has no time, and what a bundle's time can and cannot say."""

from __future__ import annotations

import json
import time

from sync.clock import (
    CLOCK_SKEW_THRESHOLD_SECONDS,
    current_skews,
    measure_bundle,
    measure_direct,
    remembered,
    span,
)
from sync.framing import Frame, FrameType
from sync.protocol import SyncSession
from tests.sync.test_direct_sync import _run_pair, two_open  # noqa: F401  (a fixture)

MINUTE = 60.0


def test_a_slow_round_trip_is_not_taken_for_a_skew():
    # The peer's clock reads 6 minutes ahead of the middle of a 20-minute round trip: it may
    # have read it near either end, so nothing can be claimed.
    check = measure_direct("p", "tablet", 1_800_000_000 + 16 * MINUTE, 1_800_000_000, 1_800_000_000 + 20 * MINUTE)
    assert not check.skewed
    fast = measure_direct("p", "tablet", 1_800_000_000 + 6 * MINUTE, 1_800_000_000, 1_800_000_000 + 0.05)
    assert fast.skewed and not fast.this_device_ahead
    assert fast.warning(short=True) == (
        "This device's clock is about 6 minutes behind tablet's; check the date and time settings."
    )


def test_what_a_bundle_time_can_say():
    now = 1_800_000_000.0
    assert measure_bundle("p", "tablet", now - 3 * 86400, now) is None  # it may have waited
    assert not measure_bundle("p", "tablet", now - 2 * MINUTE, now).skewed  # agrees: clears
    ahead = measure_bundle("p", "tablet", now + CLOCK_SKEW_THRESHOLD_SECONDS + 1, now)
    assert ahead.skewed and ahead.transport == "mailbox"


def test_spans_read_the_way_people_say_them():
    assert [span(s) for s in (61, 7000, 5 * 3600, 10 * 86400 + 3600, -10 * 86400)] == [
        "1 minute", "117 minutes", "5 hours", "10 days", "10 days",
    ]


def test_a_hello_without_a_time_is_an_older_peer_and_still_syncs(two_open):
    va, vb, ia, ib = two_open
    client = SyncSession(va.record.replica, device_id=ia.device_id, device_name="office", role="client",
                         peer_device_id=ib.device_id, clock=lambda: time.time() + 86400)
    server = SyncSession(vb.record.replica, device_id=ib.device_id, device_name="home", role="server",
                         peer_device_id=ia.device_id)

    # The client's hello as a Notewell without clock comparison sends it.
    receive = server.receive

    def older(frame: Frame):
        if frame.type == FrameType.HELLO:
            data = json.loads(frame.payload)
            del data["time"]
            frame = Frame(FrameType.HELLO, json.dumps(data).encode())
        return receive(frame)

    server.receive = older
    _run_pair(client, server)
    assert client.report.ok and server.report.ok
    assert server.report.clock is None and remembered(vb.record.replica) == {}
    # The server's own hello carried its time, so the client still compared the two clocks.
    assert client.report.clock.skewed and client.report.clock.this_device_ahead
    assert [c.peer_id for c in current_skews(va.record.replica)] == [ib.device_id]


def test_a_sync_with_agreeing_clocks_records_agreement(two_open):
    va, vb, ia, ib = two_open
    client = SyncSession(va.record.replica, device_id=ia.device_id, device_name="office", role="client", peer_device_id=ib.device_id)
    server = SyncSession(vb.record.replica, device_id=ib.device_id, device_name="home", role="server", peer_device_id=ia.device_id)
    _run_pair(client, server)
    for vault, peer in ((va, ib), (vb, ia)):
        (check,) = remembered(vault.record.replica).values()
        assert check.peer_id == peer.device_id and not check.skewed and abs(check.offset_seconds) < MINUTE
    assert current_skews(va.record.replica) == [] and current_skews(vb.record.replica) == []
