"""Collection in the mailbox folder (sync/mailbox_collect.py): read-marks, removal by the
writer only once every trusted device has read a bundle and the grace period has passed, and
a starting bundle for a device that comes later.

Real vaults (SQLCipher files, Automerge documents) in one folder; the grace period's edges
with an injected clock, never a sleep; then real `notewell sync mailbox` processes paired for
real. Devices A, B, C (and later D) are paired with each other, so each trusts the others.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sync import bundle as fmt
from sync.mailbox_collect import MARK_ENTRY, Collector, mark_name
from tests.sync.test_mailbox import Device, _client_with_note

DAY = 24 * 3600.0
GRACE = 7 * DAY
T0 = 1_900_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def _run(device: Device, box: Path, clock: Clock | None = None, grace: float = GRACE):
    """One `sync mailbox DIR` on `device` with the clock given: import, export, collect."""
    from sync.mailbox import sync_mailbox

    def collect(mailbox, folder, report) -> None:
        Collector(mailbox, folder, grace_seconds=grace, clock=clock or Clock()).collect(report)

    return sync_mailbox(device.record.replica, device.identity, box, after_run=collect)


def _prefix(device: Device) -> str:
    """How `device` names its files in the folder: its pseudonym (sync/pseudonyms.py)."""
    from sync.mailbox import mailbox_for

    return mailbox_for(device.record.replica, device.identity).name_prefix


def _prefix_of(in_vault, ref) -> str:
    """`_prefix` for a vault of the real-process tests."""
    return in_vault(ref, """
        from sync.peers import group_key
        from sync.pseudonyms import pseudonym
        print(pseudonym(group_key(record.replica), sys.argv[2])[:16])
    """, ref.device_id).strip()


def _bundles_of(device: Device, box: Path) -> list[str]:
    prefix = _prefix(device) + "-"
    return sorted(p.name for p in box.iterdir() if p.name.startswith(prefix) and p.name.endswith(".nwb"))


def _pair_all(*devices: Device) -> None:
    for i, one in enumerate(devices):
        for other in devices[i + 1:]:
            one.pair(other)


@pytest.fixture
def three(tmp_path):
    a, b, c = (Device(tmp_path / n, n) for n in ("office-a", "home-b", "laptop-c"))
    _pair_all(a, b, c)
    box = tmp_path / "mailbox"
    box.mkdir()
    yield a, b, c, box
    for d in (a, b, c):
        d.close()


def test_removed_by_the_writer_only_after_both_read_it_and_the_grace_period(three):
    a, b, c, box = three
    clock = Clock()
    _client_with_note(a, "Written on A.")
    _run(a, box, clock)
    (first,) = _bundles_of(a, box)

    _run(b, box, clock)  # B reads it and marks it read
    assert (box / mark_name(_prefix(b))).exists()
    clock.now += 30 * DAY
    _run(a, box, clock)
    assert first in _bundles_of(a, box)  # C has not read it: nothing is removed, however late

    _run(c, box, clock)
    read_by_all = clock.now
    _run(a, box, clock)  # both have read it: the grace period starts now
    clock.now = read_by_all + GRACE - 1
    _run(a, box, clock)
    assert first in _bundles_of(a, box)
    # B and C never remove A's bundle, whatever their clocks say.
    clock.now = read_by_all + 100 * DAY
    _run(b, box, clock)
    _run(c, box, clock)
    assert first in _bundles_of(a, box)

    # An engine's conflict copy of the bundle goes with it.
    (box / first.replace(".nwb", ".sync-conflict-20260302-101500-ABCDEFG.nwb")).write_bytes((box / first).read_bytes())
    clock.now = read_by_all + GRACE
    report = _run(a, box, clock)
    assert _bundles_of(a, box) == []
    assert first in report.bundles.removed
    assert "removed 1 of this device's bundles" in report.summary()
    # Nothing it held is lost, and the next run does not take it for a lost bundle.
    assert a.heads() == b.heads() == c.heads()
    again = _run(a, box, clock)
    assert again.bundles.written is None


def test_a_forged_mark_from_an_untrusted_key_is_ignored(three, tmp_path):
    a, b, c, box = three
    clock = Clock()
    _client_with_note(a, "Written on A.")
    _run(a, box, clock)
    _run(b, box, clock)
    (first,) = _bundles_of(a, box)
    seq = fmt.parse_file_name(first)[1]

    # A device nobody paired writes a mark under C's name, claiming C read everything of A's,
    # signed with its own key (as C's id, and as itself).
    stranger = Device(tmp_path / "stranger", "stranger")
    try:
        claim = json.dumps({"read": {a.identity.device_id: [[1, seq + 100]]}}).encode()
        to_a = {a.identity.device_id: fmt.public_key_of(a.identity.key_pem.encode())}
        for sender in (c.identity.device_id, stranger.identity.device_id):
            data = fmt.encode_for([(MARK_ENTRY, claim)], sender_id=sender, seq=999, recipients=to_a,
                                  private_key=stranger.identity.key_pem.encode())
            (box / mark_name(sender)).write_bytes(data)
    finally:
        stranger.close()
    clock.now += 30 * DAY
    _run(a, box, clock)
    clock.now += 30 * DAY
    report = _run(a, box, clock)
    assert first in _bundles_of(a, box), "a forged mark removed a bundle C never read"
    assert report.bundles.removed == []

    _run(c, box, clock)  # C's own mark, in place of the forged one
    _run(a, box, clock)
    clock.now += GRACE
    assert first in _run(a, box, clock).bundles.removed


def test_marks_too_large_or_malformed_are_ignored_unread(three):
    """A read-mark is untrusted input: one over the size bound is not even read, one whose
    JSON is out of bounds counts as nothing read, even signed by a trusted device's key."""
    from sync.mailbox import mailbox_for

    a, b, c, box = three
    _client_with_note(a, "Written on A.")
    _run(a, box)
    to_a = {a.identity.device_id: fmt.public_key_of(a.identity.key_pem.encode())}
    bad = {
        b: {"read": {a.identity.device_id: [[1, 2**70]]}},  # past any sequence number
        c: {"read": {a.identity.device_id: [[n, n] for n in range(1, 2 * 4096 + 2, 2)]}},  # too many ranges
    }
    for device, body in bad.items():
        data = fmt.encode_for([(MARK_ENTRY, json.dumps(body).encode())], sender_id=device.identity.device_id, seq=5,
                              recipients=to_a, private_key=device.identity.key_pem.encode())
        (box / mark_name(device.identity.device_id)).write_bytes(data)
    big = box / (mark_name(c.identity.device_id).removesuffix(".nwm") + " (1).nwm")
    big.write_bytes(b"NWBUNDLE" + bytes(2 * 1024 * 1024))
    collector = Collector(mailbox_for(a.record.replica, a.identity), box, grace_seconds=0)
    marks = collector.read_marks()
    assert marks.read == {}
    assert sorted(marks.ignored) == sorted([mark_name(b.identity.device_id), mark_name(c.identity.device_id), big.name])
    assert collector.collect() == []
    assert len(_bundles_of(a, box)) == 1


def test_a_revoked_devices_missing_mark_does_not_hold_collection_back(three):
    from sync.peers import PeerBook

    a, b, c, box = three
    clock = Clock()
    _client_with_note(a, "Written on A.")
    _run(a, box, clock)
    _run(b, box, clock)
    (first,) = _bundles_of(a, box)
    _run(a, box, clock)
    clock.now += GRACE
    _run(a, box, clock)
    assert first in _bundles_of(a, box)  # C, trusted, has not read it

    PeerBook(a.record.replica).forget(c.identity.device_id)
    _run(a, box, clock)  # the bundle saying so is for B only; B marks it and A's first one read
    _run(b, box, clock)
    _run(a, box, clock)
    clock.now += GRACE
    _run(a, box, clock)
    assert _bundles_of(a, box) == [], "bundles B has read stay because C, revoked, never will"


def test_a_stale_or_copied_mark_never_removes_what_was_not_read(three):
    """Conflict copies and duplicates of a mark: the one with the highest signed number
    counts, an older copy put back in its place cannot claim more than it said, and the owner
    removes the engine's copies of its own mark."""
    a, b, c, box = three
    clock = Clock()
    _client_with_note(a, "First, written on A.")
    _run(a, box, clock)
    _run(b, box, clock)
    _run(c, box, clock)
    c_mark = box / mark_name(_prefix(c))
    old_mark = c_mark.read_bytes()  # C has read A's first bundle

    _client_with_note(a, "Second, written on A.")
    _run(a, box, clock)
    second = _bundles_of(a, box)[-1]
    _run(b, box, clock)
    _run(c, box, clock)  # C's mark now covers the second one too
    new_mark = c_mark.read_bytes()
    # An engine's conflict copy of the new mark, then the old mark put back under the name.
    stem = mark_name(_prefix(c)).removesuffix(".nwm")
    (box / f"{stem}.sync-conflict-20260302-101500-ABCDEFG.nwm").write_bytes(new_mark)
    (box / f"{stem} (1).nwm").write_bytes(old_mark)
    c_mark.write_bytes(old_mark)
    clock.now += 1
    _run(a, box, clock)
    clock.now += GRACE
    _run(a, box, clock)
    assert _bundles_of(a, box) == [], "the newest of C's marks, in a conflict copy, counts"

    # Only the copies left: an old one alone cannot remove a bundle C had not read then.
    _client_with_note(a, "Third, written on A.")
    _run(a, box, clock)
    third = _bundles_of(a, box)[-1]
    assert third != second
    _run(b, box, clock)
    for p in box.glob(f"{stem}*.nwm"):
        p.write_bytes(old_mark)
    clock.now += GRACE
    _run(a, box, clock)
    clock.now += GRACE
    _run(a, box, clock)
    assert third in _bundles_of(a, box)

    # C's own run replaces its mark and removes the engine's copies of it.
    _run(c, box, clock)
    assert sorted(p.name for p in box.glob(f"{stem}*")) == [mark_name(_prefix(c))]


def test_a_device_trusted_later_gets_a_starting_bundle_with_everything(three, tmp_path):
    """D is paired after A's bundles were removed from the folder. A writes D a starting
    bundle; D ends up with everything; that bundle is removed in its turn once all read it.
    A also carries bundles on a second folder (a USB stick): the bundle it wrote for D's
    arrival went there, so only the starting bundle brings D everything here."""
    a, b, c, box = three
    clock = Clock()
    for i in range(3):
        _client_with_note(a, f"Note {i} written on A.")
        _run(a, box, clock)
        _run(b, box, clock)
        _run(c, box, clock)
    _run(a, box, clock)
    clock.now += GRACE
    _run(a, box, clock)
    assert _bundles_of(a, box) == []

    d = Device(tmp_path / "tablet-d", "tablet-d")
    try:
        for x in (a, b, c):
            x.pair(d)
        stick = tmp_path / "stick"
        stick.mkdir()
        _client_with_note(a, "Note written on A after D joined.")
        _run(a, stick, clock)  # the full bundle for the new recipient goes to the stick
        report = _run(a, box, clock)
        assert report.bundles.started, report.summary()
        assert "starting bundle" in report.summary()
        again = _run(a, box, clock)
        assert again.bundles.started is None  # once, until D has read it

        _run(d, box, clock)
        assert d.heads() == a.heads()
        assert d.projection() == a.projection()

        for x in (b, c, d):
            _run(x, box, clock)
        _run(a, box, clock)
        clock.now += GRACE
        _run(a, box, clock)
        assert _bundles_of(a, box) == []
        assert _run(a, box, clock).bundles.started is None  # D's mark covers what was removed
    finally:
        d.close()


def test_marks_and_collection_stay_out_of_old_readers_way(three):
    """A read-mark is no bundle: bundle readers skip it, and its contents are ciphertext."""
    from sync.mailbox import is_bundle_name

    a, b, c, box = three
    _client_with_note(a, "Written on A, never in the clear.")
    _run(a, box)
    _run(b, box)
    mark = box / mark_name(_prefix(b))
    assert not is_bundle_name(mark.name)
    assert a.identity.device_id.encode() not in mark.read_bytes()
    assert b"read" not in mark.read_bytes()[fmt.HEADER_SIZE:]


@pytest.fixture
def grace_zero(tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    config.write_text("[mailbox]\ngrace_days = 0\n")
    monkeypatch.setenv("NOTEWELL_CONFIG", str(config))


def test_real_processes_remove_only_what_all_read_and_start_a_new_device(
    grace_zero, make_vault, pair, notewell, in_vault, tmp_path,
):
    """End to end with `notewell sync mailbox DIR` processes, paired for real (A listens,
    B, C and later D join), grace_days = 0 in the settings file."""
    a, b, c = make_vault("office"), make_vault("home"), make_vault("laptop")
    pair(a, b)
    pair(a, c)
    box = tmp_path / "box"
    box.mkdir()
    in_vault(a, """
        from datetime import date
        from store.models import Client, ProgressNote, SessionFacts
        for i in range(3):
            client = record.create_client(Client(display_name=f"Synthetic Person {i}"))
            record.create_note(ProgressNote(client_id=client.id, format="DAP",
                                            facts=SessionFacts(date_of_service=date(2026, 3, 2))))
    """)

    def run(ref) -> str:
        done = notewell(ref, "sync", "mailbox", str(box))
        # 3: B's and C's bundles are foreign to each other (each paired with A only)
        assert done.returncode in (0, 3) and done.stderr == "", done.stdout + done.stderr
        assert all("(foreign)" in line for line in done.stdout.splitlines() if line.startswith("rejected ")), done.stdout
        return done.stdout

    a_prefix = _prefix_of(in_vault, a)

    def a_bundles() -> list[str]:
        return sorted(p.name for p in box.glob(f"{a_prefix}-*.nwb"))

    run(a)
    first = a_bundles()
    assert len(first) == 1
    run(b)
    run(a)
    assert a_bundles() == first  # C has not read it
    run(c)
    out = run(a)
    assert a_bundles() == [], out
    assert "removed 1 of this device's bundles" in out

    d = make_vault("tablet")
    pair(a, d)
    out = run(a)
    assert len(a_bundles()) == 1, out  # the starting bundle, for D
    run(d)
    state = """
        print(json.dumps({k: sorted(h.hex() for h in v) for k, v in record.replica.doc_heads().items()
                          if not k.startswith("_")}))
    """
    heads_a, heads_d = json.loads(in_vault(a, state)), json.loads(in_vault(d, state))
    assert {k: heads_a[k] for k in heads_a if k in heads_d} == {k: heads_d[k] for k in heads_a if k in heads_d}
    notes = """
        print(len(record.list_clients()))
    """
    assert in_vault(d, notes).strip() == "3"
    for ref in (b, c, d):
        run(ref)
    out = run(a)
    assert a_bundles() == [], out


def test_the_watcher_collects_once_every_device_has_read(grace_zero, make_vault, pair, notewell, start_notewell,
                                                         in_vault, tmp_path):
    """`sync mailbox DIR --watch` on A: the round after B and C have read its bundles (their
    marks arrive like any file) removes them; nothing else is run on A."""
    from tests.sync.test_mailbox_watch import _eventually, _start_watch

    a, b, c = make_vault("office"), make_vault("home"), make_vault("laptop")
    pair(a, b)
    pair(a, c)
    box = tmp_path / "box"
    box.mkdir()
    in_vault(a, """
        from store.models import Client
        record.create_client(Client(display_name="Synthetic Person"))
    """)
    a_prefix, b_prefix = _prefix_of(in_vault, a), _prefix_of(in_vault, b)
    watch_a = _start_watch(start_notewell, a, box)

    def a_bundles() -> list[Path]:
        return sorted(box.glob(f"{a_prefix}-*.nwb"))

    _eventually(lambda: a_bundles() or None, "A's bundle written")
    for ref in (b, c):
        done = notewell(ref, "sync", "mailbox", str(box))
        assert done.returncode in (0, 3), done.stdout + done.stderr
    _eventually(lambda: (not a_bundles() and (box / mark_name(b_prefix)).exists()) or None,
                "A's bundles removed by its watcher", timeout=120)
    rc, out, err = watch_a.terminate()
    assert rc == 0, err
    assert "of this device's bundles that every device has read" in out, out
