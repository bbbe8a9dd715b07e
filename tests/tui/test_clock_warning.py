"""The app with a clock that disagrees with a paired device's (issue 9, finding 8).

Two real vaults sync through the real sans-IO session (`sync.protocol.SyncSession`, frames
handed across in memory), each with its own clock: this device 5 days fast, the other 5 days
slow. The session remembers the finding; the main screen then shows one warning line, and a
signed note shows its times with the caveat. Without a finding the main screen is unchanged
(the snapshot tests cover that screen).
"""

from __future__ import annotations

import time

from textual.widgets import Static

from store.vault import Vault
from sync.clock import current_skews
from sync.protocol import SyncSession
from tui_data import FAST_KDF, PASSPHRASE, SIGNED_NOTE
from tui_helpers import screen_text, static_text, unlock, wait_for

DAY = 86400.0


def sync_in_memory(here: Vault, other: Vault, *, here_clock, other_clock) -> None:
    client = SyncSession(here.record.replica, device_id=here.device_id, device_name=here.device_name, role="client",
                         peer_device_id=other.device_id, clock=here_clock)
    server = SyncSession(other.record.replica, device_id=other.device_id, device_name=other.device_name, role="server",
                         peer_device_id=here.device_id, clock=other_clock)
    to_client, to_server = server.start(), client.start()
    for _ in range(100):
        if client.finished and server.finished:
            return
        to_server, to_client = (
            [out for frame in to_client for out in client.receive(frame)],
            [out for frame in to_server for out in server.receive(frame)],
        )
    raise AssertionError("the in-memory sync did not finish")


def make_other(tmp_path) -> Vault:
    vault, _ = Vault.create(tmp_path / "other", PASSPHRASE, device_name="other tablet", kdf=FAST_KDF)
    return vault


async def test_main_screen_warns_while_the_last_sync_found_a_skew(seeded_vault, make_app, tmp_path):
    here = Vault.open(seeded_vault, PASSPHRASE)
    other = make_other(tmp_path)
    try:
        sync_in_memory(here, other, here_clock=lambda: time.time() + 5 * DAY,
                       other_clock=lambda: time.time() - 5 * DAY)
    finally:
        here.close()
        other.close()

    app = make_app(seeded_vault)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        warning = app.screen.query_one("#clock-warning", Static)
        await wait_for(pilot, lambda: warning.display, what="clock warning")
        assert static_text(warning) == (
            "This device's clock is about 10 days ahead of other tablet's; check the date and time settings."
        )
        assert warning.region.height == 1

        # This device signed the seeded note: its time carries the caveat.
        app.screen.open_note("progress", SIGNED_NOTE)
        await wait_for(pilot, lambda: "(this device's clock was ~10 days ahead of other tablet's)" in screen_text(app),
                       what="caveat on the signature: " + screen_text(app))


async def test_the_warning_goes_once_the_clocks_agree_again(seeded_vault, make_app, tmp_path):
    here = Vault.open(seeded_vault, PASSPHRASE)
    other = make_other(tmp_path)
    try:
        sync_in_memory(here, other, here_clock=lambda: time.time() + 5 * DAY, other_clock=time.time)
        assert [c.peer_name for c in current_skews(here.record.replica)] == ["other tablet"]
        sync_in_memory(here, other, here_clock=time.time, other_clock=time.time)
        assert current_skews(here.record.replica) == [] and current_skews(other.record.replica) == []
    finally:
        here.close()
        other.close()

    app = make_app(seeded_vault)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: "To do" in screen_text(app), what="main screen loaded")
        await wait_for(pilot, lambda: not any(w.group == "clock-warning" for w in app.screen.workers if w.is_running),
                       what="clock check on the main screen")
        assert not app.screen.query_one("#clock-warning", Static).display


def test_an_addendum_dated_before_its_signature_is_shown_as_such():
    # Such pairs arrive from other devices (older versions, or in an import file): the view
    # keeps the written order and says the date is off, with the caveat for a known skew.
    from datetime import date, datetime, timezone

    from store.models import Addendum, NoteFormat, NoteStatus, ProgressNote, SessionFacts, Signature
    from store.signature_state import SignatureState, SignatureStatus, SignedVersion
    from tui.widgets.note_views import read_only_view

    signed_at = datetime(2026, 3, 14, 15, 0, tzinfo=timezone.utc)
    note = ProgressNote(
        client_id="c1", format=NoteFormat.DAP, facts=SessionFacts(date_of_service=date(2026, 3, 9)),
        status=NoteStatus.SIGNED,
        signature=Signature(signer="Dana Hartwell", credentials="PsyD", signed_at=signed_at, device_id="fast",
                            heads=[], content_hash=""),
        addenda=[Addendum(text="Synthetic correction.", reason="Synthetic reason.", signer="Dana Hartwell",
                          credentials="PsyD", signed_at=datetime(2026, 3, 4, 15, 0, tzinfo=timezone.utc),
                          device_id="slow", content_hash="")],
    )
    caveats = {"fast": "(device clock was ~10 days ahead of this one's)"}
    # As the store reads such a note back when every signature verifies (store/signature_state.py).
    version = SignedVersion(entry_id="s1", note=note, device_id="fast", device_label="fast tablet",
                            content_hash="", verified=True)
    state = SignatureState(note_id=note.id, status=SignatureStatus.VERIFIED, shown=version, versions=(version,),
                           addenda=tuple(note.addenda))
    texts = [static_text(w) for w in read_only_view(note, state, None, "signed", caveats=caveats)
             if isinstance(w, Static)]
    signature = next(t for t in texts if t.startswith("Signed by"))
    addendum = next(t for t in texts if t.startswith("Addendum"))
    assert "2026-03-14 15:00 (device clock was ~10 days ahead of this one's)" in signature
    assert "(dated before the signature it amends: a device clock was off)" in addendum
