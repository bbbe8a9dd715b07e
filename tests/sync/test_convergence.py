"""Property: random edits on three devices, synced in a random order over both transports
(direct TLS on 127.0.0.1 and the mailbox), always end with identical documents: the same
heads and the same projections (clients, notes as the app reads them).

A and B are paired, B and C are paired; A and C only ever meet through B. Each device's vault
is owned by one worker thread (SQLite connections are thread-bound, and the record store keeps
a document cache that a second connection would not see); a direct sync runs `serve` on the
server's worker and `sync_now` on the client's, over a real TLS socket.
"""

from __future__ import annotations

import dataclasses
import hashlib
import queue
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import pytest

pytest.importorskip("store.record")
pytest.importorskip("sync.direct")

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from store.device_identity import ensure_identity
from store.keys import KdfParams
from store.errors import (
    ComplianceIncomplete,
    NoSignatureConflict,
    NoteNotSigned,
    SignedNoteLocked,
    ValidationFailed,
)
from store.models import ClinicianSettings
from store.synthetic import make_client, make_note
from store.vault import Vault
from sync.direct import serve, sync_now
from sync.mailbox import sync_mailbox
from sync.peers import PeerBook, ensure_group_key, set_group_key

PASSPHRASE = "convergence test passphrase"
SETTINGS = ClinicianSettings(clinician_name="Dr. Synthetic Example", credentials="PhD")
NAMES = ("a", "b", "c")
PAIRS = (("a", "b"), ("b", "c"))
WORDS = ("calm", "sleep", "worry", "work", "walk", "plan", "goal", "call", "rest", "notes")


class Device:
    """One vault, opened and used only on its own worker thread."""

    def __init__(self, folder: Path, name: str) -> None:
        self.name = name
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"vault-{name}")
        self.vault = self.call(
            lambda: Vault.create(
                folder, PASSPHRASE, device_name=name, settings=SETTINGS, kdf=KdfParams(memory_kib=8192, time_cost=1)
            )[0]
        )
        self.identity = self.call(lambda: ensure_identity(self.vault.record.replica, name))
        self._made = 0

    def next_id(self) -> str:
        """Ids unique per device but the same on every run, so hypothesis can replay a failure."""
        self._made += 1
        return hashlib.sha256(f"{self.name}/{self._made}".encode()).hexdigest()[:32]

    def call(self, fn, timeout: float = 60):
        return self.pool.submit(fn).result(timeout=timeout)

    def submit(self, fn):
        return self.pool.submit(fn)

    @property
    def record(self):
        return self.vault.record

    def state(self) -> tuple[dict, dict]:
        def read():
            r = self.record
            heads = {k: sorted(v) for k, v in r.replica.doc_heads().items()}
            view = {}
            # The documents as read back, and the projected rows the lists and queues use
            # (signature conflicts included).
            for row in r.list_clients():
                rows = sorted(r.notes_for_client(row.client_id), key=lambda n: n.note_id)
                view[row.client_id] = (
                    r.get_client(row.client_id).model_dump(mode="json"),
                    dataclasses.asdict(row),
                    [r.get_note(n.note_id).model_dump(mode="json") for n in rows],
                    [dataclasses.asdict(n) for n in rows],
                )
            return heads, view

        return self.call(read)

    def close(self) -> None:
        try:
            self.call(self.vault.close)
        finally:
            self.pool.shutdown(wait=True)


def _pair(x: Device, y: Device) -> None:
    """What pairing leaves behind: each other's certificate, one shared group key."""
    key = x.call(lambda: ensure_group_key(x.record.replica))
    y.call(lambda: set_group_key(y.record.replica, key))
    x.call(lambda: PeerBook(x.record.replica).add(y.identity.device_id, y.name, y.identity.cert_pem))
    y.call(lambda: PeerBook(y.record.replica).add(x.identity.device_id, x.name, x.identity.cert_pem))


def direct(client: Device, server: Device) -> None:
    ports: queue.Queue[int] = queue.Queue()
    stop = threading.Event()
    served = server.submit(
        lambda: serve(
            server.record.replica, server.identity, "127.0.0.1", 0,
            stop_event=stop, on_listening=lambda _h, p: ports.put(p), max_connections=1,
        )
    )
    try:
        port = ports.get(timeout=30)
        client.call(lambda: sync_now(client.record.replica, client.identity, "127.0.0.1", port))
    finally:
        stop.set()
        served.result(timeout=60)


def mailbox(device: Device, folder: Path) -> None:
    report = device.call(lambda: sync_mailbox(device.record.replica, device.identity, folder))
    # Only the unpaired pair (A and C) may refuse each other's bundles.
    assert {r.reason for r in report.bundles.rejected} <= {"foreign"}, [(r.reason, r.message) for r in report.bundles.rejected]


# --- edits -------------------------------------------------------------------------------


def _edit_text(old: str, op: tuple[int, int, str]) -> str:
    pos, cut, word = op
    pos = pos % (len(old) + 1)
    return old[:pos] + word + old[pos + min(cut, len(old) - pos):]


def apply_edit(device: Device, edit) -> str | None:
    """Applies the edit; returns "client" or "note" when it created one.

    Edits the store refuses for the note's current state (typing into a signed note, signing
    one that is signed or has no conflict to resolve) are no-ops here, as in the app.
    """
    kind, n, op = edit

    def run():
        r = device.record
        rng = random.Random(n)
        clients = sorted(row.client_id for row in r.list_clients())
        if kind == "client" or not clients:
            r.create_client(make_client(rng, n).model_copy(update={"id": device.next_id()}))
            return "client"
        client = r.get_client(clients[n % len(clients)])
        notes = sorted(row.note_id for row in r.notes_for_client(client.id))
        if kind == "note" or not notes:
            note = make_note(rng, client, n, date(2026, 2, 1 + n % 27), complete=n % 3 != 0)
            r.create_note(note.model_copy(update={"id": device.next_id()}))
            return "note"
        if kind == "rename":
            r.update_client(client.model_copy(update={"display_name": f"Renamed {device.name}{n}"}))
            return None
        if kind == "sign":
            # Signing needs a draft; picking among every draft on the device makes it likely.
            drafts = sorted(
                row.note_id for c in clients for row in r.notes_for_client(c) if row.status.value == "draft"
            )
            notes = drafts or notes
        note = r.get_note(notes[n % len(notes)])
        try:
            if kind == "sign":
                r.sign_note(note.id)
            elif kind == "addendum":
                r.add_addendum(note.id, f"Addendum {device.name}{n}", "clarify")
            elif kind == "resolve":
                r.resolve_signature_conflict(note.id, "resign" if n % 2 else "addendum")
            else:
                key = note.section_keys[n % len(note.section_keys)]
                r.set_section(note.id, key, _edit_text(note.sections[key], op))
        except (SignedNoteLocked, NoteNotSigned, NoSignatureConflict, ComplianceIncomplete, ValidationFailed):
            pass
        return None

    return device.call(run)


edits = st.tuples(
    st.sampled_from(["client", "note", "note", "text", "text", "text", "rename", "sign", "sign", "addendum", "resolve"]),
    st.integers(0, 50),
    st.tuples(st.integers(0, 200), st.integers(0, 6), st.sampled_from(WORDS)),
)
syncs = st.tuples(st.sampled_from(PAIRS), st.sampled_from(["direct", "mailbox"]), st.booleans())
edit_steps = st.tuples(st.just("edit"), st.sampled_from(NAMES), edits)
steps = st.lists(
    st.one_of(edit_steps, edit_steps, st.tuples(st.just("sync"), syncs)),
    min_size=6,
    max_size=24,
)
# The closing round: A-B, B-C, A-B, each over a transport drawn at random, brings everyone
# together whatever happened before.
settle = st.lists(st.sampled_from(["direct", "mailbox"]), min_size=3, max_size=3)


def sync_pair(devices: dict[str, Device], pair: tuple[str, str], transport: str, flip: bool, folder: Path) -> None:
    x, y = (devices[pair[1]], devices[pair[0]]) if flip else (devices[pair[0]], devices[pair[1]])
    if transport == "direct":
        direct(x, y)
    else:
        # Write, read and write back, read: both have everything the other had.
        mailbox(x, folder)
        mailbox(y, folder)
        mailbox(x, folder)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=steps, closing=settle)
def test_random_edits_and_sync_orders_converge(tmp_path_factory, steps, closing):
    root = tmp_path_factory.mktemp("converge")
    folder = root / "mailbox"
    folder.mkdir()
    devices = {name: Device(root / name, name) for name in NAMES}
    try:
        _pair(devices["a"], devices["b"])
        _pair(devices["b"], devices["c"])
        created = {"client": 0, "note": 0, None: 0}
        for step in steps:
            if step[0] == "edit":
                created[apply_edit(devices[step[1]], step[2])] += 1
            else:
                pair, transport, flip = step[1]
                sync_pair(devices, pair, transport, flip, folder)
        # The closing syncs carry everything across; a device list that first reaches a device
        # there gains that device's vouches at its next sync (store/device_list.py), so the
        # closing round is run again while it still changes something (twice at most).
        for _round in range(3):
            for pair, transport in zip((("a", "b"), ("b", "c"), ("a", "b")), closing):
                sync_pair(devices, pair, transport, False, folder)
            states = {name: d.state() for name, d in devices.items()}
            if len({repr(s[0]) for s in states.values()}) == 1:
                break

        heads = [s[0] for s in states.values()]
        views = [s[1] for s in states.values()]
        assert heads[0] == heads[1] == heads[2]
        assert views[0] == views[1] == views[2]
        # Nothing written anywhere was lost or duplicated.
        assert len(views[0]) == created["client"]
        assert sum(len(v[2]) for v in views[0].values()) == created["note"]
        rows = [row for v in views[0].values() for row in v[3]]
        event(f"signed notes: {sum(1 for row in rows if row['status'] != 'draft') > 0}")
        event(f"signature conflicts: {sum(1 for row in rows if row['signature_conflict']) > 0}")
    finally:
        for d in devices.values():
            d.close()


def test_direct_sync_with_a_device_that_has_two_peers(tmp_path):
    """B trusts A and C. OpenSSL looks trust anchors up by subject name, so certificates that
    shared one subject made B verify C against A's key and refuse it."""
    devices = {name: Device(tmp_path / name, name) for name in NAMES}
    try:
        _pair(devices["a"], devices["b"])
        _pair(devices["b"], devices["c"])
        apply_edit(devices["c"], ("client", 1, (0, 0, "calm")))
        direct(devices["b"], devices["c"])  # B is the client: it trusts A and C
        apply_edit(devices["a"], ("client", 2, (0, 0, "calm")))
        direct(devices["a"], devices["b"])  # B is the server
        direct(devices["c"], devices["b"])  # B is the server, C the client
        states = [d.state() for d in devices.values()]
        assert states[0] == states[1] == states[2]
        assert len(states[0][1]) == 2
    finally:
        for d in devices.values():
            d.close()
