"""Property: any interleaving of edits, signatures, addenda and conflict resolutions on three
devices (A-B and B-C paired; A and C meet only through B), synced in any order over both
transports (direct TLS on 127.0.0.1 and the mailbox), ends with every signature ever made
still present and verifiable on every device, and a note shown as signed only if the content
shown verifies."""

from __future__ import annotations

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from store import documents as D
from store.signing import open_entry

from test_convergence import NAMES, WORDS, Device, _pair, apply_edit, settle, sync_pair, syncs  # noqa: E402

# Signing-heavy edits: signatures, addenda and resolutions on notes the devices share, with
# typing between them (what makes signed content change after signing).
sig_edits = st.tuples(
    st.sampled_from(["text", "text", "sign", "sign", "sign", "addendum", "resolve", "resolve", "note"]),
    st.integers(0, 16).map(lambda k: 3 * k + 1),  # notes made complete, so they can be signed
    st.tuples(st.integers(0, 200), st.integers(0, 6), st.sampled_from(WORDS)),
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("edit"), st.sampled_from(NAMES), sig_edits),
        st.tuples(st.just("edit"), st.sampled_from(NAMES), sig_edits),
        st.tuples(st.just("sync"), syncs),
    ),
    min_size=6,
    max_size=20,
)
# Every run starts from one client with two complete drafts that all three devices hold.
PREAMBLE = [
    ("edit", "a", ("client", 1, (0, 0, "calm"))),
    ("edit", "a", ("note", 1, (0, 0, "calm"))),
    ("edit", "a", ("note", 2, (0, 0, "calm"))),
    ("sync", (("a", "b"), "direct", False)),
    ("sync", (("b", "c"), "mailbox", False)),
]


def signed_entries_on(device: Device) -> dict[tuple[str, str], str]:
    """(note id, entry id) -> envelope of every signed entry the device's notes hold now."""

    def read():
        r = device.record
        out = {}
        for row in r.list_notes():
            for entry_id, envelope in D.signed_entries(r.replica.load_doc(row.note_id)).items():
                out[(row.note_id, entry_id)] = envelope
        return out

    return device.call(read)


def check_device(device: Device, made: dict[tuple[str, str], str]) -> tuple[int, int]:
    """Every entry ever made is in the note (or kept on this device) and verifies; a note shown
    as signed shows content its standing signature covers. Returns (signed, conflicts)."""

    def read():
        r = device.record
        key_for = r.replica.device_trust().public_key
        signed = conflicts = 0
        # A session that changed a device's trust leaves the notes it signed "pending" (never
        # shown as signed) until the app or `check` computes them off the first screen: the
        # labels before that say so, and afterwards agree with a verification from scratch.
        while r.settle_signature_states(50):
            pass
        for (note_id, entry_id), envelope in made.items():
            held = D.signed_entries(r.replica.load_doc(note_id)).get(entry_id)
            if held is None:
                held = r.replica.kept_signed_entries(note_id).get(entry_id)
            assert held == envelope, f"{device.name} lost or altered entry {entry_id} of {note_id}"
            opened = open_entry(entry_id, held, note_id, key_for)
            assert opened.verified, f"{device.name}: {opened.problem}"
        for row in r.list_notes():
            state = r.signature_state(row.note_id)
            assert state.status.value != "tampered", (device.name, state.findings)
            if state.signed:
                signed += 1
                assert state.shown.verified
                shown = r.get_note(row.note_id)
                assert D.content_hash(shown) == state.shown.content_hash
            conflicts += state.status.value == "conflict"
            labelled = r.verify_rows([row])[0].signature_status
            assert labelled == state.status.value
        return signed, conflicts

    return device.call(read)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=steps, closing=settle)
def test_every_signature_survives_any_interleaving_and_verifies(tmp_path_factory, steps, closing):
    root = tmp_path_factory.mktemp("signatures")
    folder = root / "mailbox"
    folder.mkdir()
    devices = {name: Device(root / name, name) for name in NAMES}
    made: dict[tuple[str, str], str] = {}
    try:
        _pair(devices["a"], devices["b"])
        _pair(devices["b"], devices["c"])
        for step in PREAMBLE + steps:
            if step[0] == "edit":
                apply_edit(devices[step[1]], step[2])
                made.update(signed_entries_on(devices[step[1]]))
            else:
                pair, transport, flip = step[1]
                sync_pair(devices, pair, transport, flip, folder)
        for pair, transport in zip((("a", "b"), ("b", "c"), ("a", "b")), closing):
            sync_pair(devices, pair, transport, False, folder)
        results = [check_device(d, made) for d in devices.values()]
        assert results[0] == results[1] == results[2]
        event(f"signed entries made: {min(len(made), 6)}+")
        event(f"conflicts at the end: {results[0][1] > 0}")
    finally:
        for d in devices.values():
            d.close()
