"""Property (issue 12): random schedules of pairing, revoking, syncing (direct TLS on
127.0.0.1 and the mailbox) and editing on four devices, one of which ("d", the lost laptop)
is revoked by some of the others along the way:

- nothing a device writes after it has heard of the revocation is ever readable by, or held
  by, the revoked device;
- nothing the revoked device writes after the revocation ever reaches a device that had heard
  of the revocation when it was written (devices that had not heard may take it: nothing can
  stop that, and they refuse it from the moment they hear).

Who has heard is read from each device's own state (its device list), not modelled. The lost
device itself never revokes anyone here (what it signs after its revocation is covered by
tests/sync/test_revocation.py's device-list rules).
"""

from __future__ import annotations

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from store.errors import NotewellError
from store.models import Client
from sync import bundle as fmt
from sync.mailbox import sync_mailbox
from sync.peers import PeerBook

from test_convergence import Device, _pair, direct  # noqa: E402

NAMES = ("a", "b", "c", "d")
LOST = "d"
OTHERS = ("a", "b", "c")

steps = st.lists(
    st.one_of(
        st.tuples(st.just("pair"), st.sampled_from(OTHERS), st.sampled_from(NAMES)),
        st.tuples(st.just("revoke"), st.sampled_from(OTHERS), st.just(LOST)),
        st.tuples(st.just("direct"), st.sampled_from(NAMES), st.sampled_from(NAMES)),
        st.tuples(st.just("mailbox"), st.sampled_from(NAMES), st.just("")),
        st.tuples(st.just("write"), st.sampled_from(NAMES), st.just("")),
        st.tuples(st.just("write"), st.just(LOST), st.just("")),
    ),
    min_size=4,
    max_size=10,
)
# Every run starts with the lost device paired with a and c, and b between a and c.
START = (("a", "b"), ("b", "c"), ("a", "d"), ("c", "d"))


def _knows(device: Device, lost: Device) -> bool:
    return device.call(lambda: lost.identity.device_id in device.record.replica.device_trust().revoked)


def _names(device: Device) -> set[str]:
    return device.call(lambda: {row.display_name for row in device.record.list_clients()})


def _paired(x: Device, y: Device) -> bool:
    return x.call(lambda: PeerBook(x.record.replica).get(y.identity.device_id) is not None)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(schedule=steps, revoke_at=st.integers(0, 3), revoker=st.sampled_from(("a", "c")))
def test_a_revoked_device_neither_reads_nor_spreads_anything_after_the_revocation(
        tmp_path_factory, schedule, revoke_at, revoker):
    # Every schedule holds at least one revocation, early enough for what follows to matter.
    schedule = schedule[:revoke_at] + [("revoke", revoker, LOST)] + schedule[revoke_at:]
    root = tmp_path_factory.mktemp("revocation")
    box = root / "box"
    box.mkdir()
    devices = {n: Device(root / n, n) for n in NAMES}
    lost = devices[LOST]
    written_after: dict[str, set[str]] = {}  # the lost device's canary -> who had heard then
    secrets: set[str] = set()  # written by a device that had heard
    revoked_by: set[str] = set()
    written_knowing: set[str] = set()  # bundles written by a device that had heard
    made = 0
    try:
        for x, y in START:
            _pair(devices[x], devices[y])
        # Something of the lost device's from before, held by its two peers.
        devices[LOST].call(lambda: lost.record.create_client(Client(display_name="Synthetic Before")))
        direct(devices["a"], lost)
        for step, x, y in schedule:
            made += 1
            if step == "pair":
                if x == y or _paired(devices[x], devices[y]) or (y == LOST and revoked_by):
                    continue
                _pair(devices[x], devices[y])
            elif step == "revoke":
                if not _paired(devices[x], lost):
                    continue
                devices[x].call(lambda: PeerBook(devices[x].record.replica).forget(lost.identity.device_id))
                revoked_by.add(x)
            elif step == "direct":
                if x == y:
                    continue
                try:
                    direct(devices[x], devices[y])
                except NotewellError:
                    event("a direct sync refused")  # not paired, or revoked: refused, as it should
            elif step == "mailbox":
                report = devices[x].call(lambda: sync_mailbox(devices[x].record.replica, devices[x].identity, box))
                reasons = {r.reason for r in report.bundles.rejected}
                assert reasons <= {"foreign", "revoked", "not-a-recipient"}, reasons
                # The run reads revocations first and writes last: what it knows now, it knew then.
                if report.bundles.written and x != LOST and _knows(devices[x], lost):
                    written_knowing.add(report.bundles.written)
            elif step == "write":
                device = devices[x]
                if x == LOST and revoked_by:
                    name = f"Canary {made}"
                    written_after[name] = {n for n in OTHERS if _knows(devices[n], lost)}
                elif x != LOST and _knows(device, lost):
                    name = f"Secret {made}"
                    secrets.add(name)
                else:
                    name = f"Synthetic {made}"
                device.call(lambda: device.record.create_client(Client(display_name=name)))

            # Every revoker has heard of the revocation; hearing is never undone.
            for n in revoked_by:
                assert _knows(devices[n], lost)
            held_by_lost = _names(lost)
            assert not (held_by_lost & secrets), "the revoked device holds something written after the revocation"
            for canary, heard in written_after.items():
                for n in heard:
                    assert canary not in _names(devices[n]), f"{canary} reached {n}, which had heard of the revocation"
        # And no bundle written by a device that had heard is for the lost device.
        for name in sorted(written_knowing):
            data = (box / name).read_bytes()
            try:
                fmt.open_payload(data, fmt.read_header(data), device_id=lost.identity.device_id,
                                 private_key=lost.identity.key_pem.encode())
            except fmt.NotForThisDevice:
                continue
            raise AssertionError(f"{name}, written after hearing of the revocation, opens for the lost device")
        event(f"revoked by {len(revoked_by)}, canaries {len(written_after)}, secrets {len(secrets)}")
    finally:
        for device in devices.values():
            device.close()
