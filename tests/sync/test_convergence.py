"""Property: random edits on three devices, synced in a random order over both transports
(direct TLS on 127.0.0.1 and the mailbox), always end with identical documents: the same
heads and the same projections (clients, notes as the app reads them).

A and B are paired, B and C are paired; A and C only ever meet through B. Each device's vault
is owned by one worker thread (SQLite connections are thread-bound, and the record store keeps
a document cache that a second connection would not see); a direct sync runs `serve` on the
server's worker and `sync_now` on the client's, over a real TLS socket.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import pytest

pytest.importorskip("store.record")
pytest.importorskip("sync.direct")

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store.device_identity import ensure_identity
from store.keys import KdfParams
from store.models import Client, ProgressNote, SessionFacts
from store.vault import Vault
from sync.direct import serve, sync_now
from sync.mailbox import sync_mailbox
from sync.peers import PeerBook, ensure_group_key, set_group_key

PASSPHRASE = "convergence test passphrase"
NAMES = ("a", "b", "c")
PAIRS = (("a", "b"), ("b", "c"))
WORDS = ("calm", "sleep", "worry", "work", "walk", "plan", "goal", "call", "rest", "notes")


class Device:
    """One vault, opened and used only on its own worker thread."""

    def __init__(self, folder: Path, name: str) -> None:
        self.name = name
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"vault-{name}")
        self.vault = self.call(
            lambda: Vault.create(folder, PASSPHRASE, device_name=name, kdf=KdfParams(memory_kib=8192, time_cost=1))[0]
        )
        self.identity = self.call(lambda: ensure_identity(self.vault.record, name))

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
            heads = {k: sorted(v) for k, v in r.doc_heads().items()}
            view = {}
            for row in r.list_clients():
                notes = [r.get_note(n.note_id).model_dump(mode="json") for n in r.notes_for_client(row.client_id)]
                view[row.client_id] = (
                    r.get_client(row.client_id).model_dump(mode="json"),
                    sorted(notes, key=lambda n: n["id"]),
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
    key = x.call(lambda: ensure_group_key(x.record))
    y.call(lambda: set_group_key(y.record, key))
    x.call(lambda: PeerBook(x.record).add(y.identity.device_id, y.name, y.identity.cert_pem))
    y.call(lambda: PeerBook(y.record).add(x.identity.device_id, x.name, x.identity.cert_pem))


def direct(client: Device, server: Device) -> None:
    ports: queue.Queue[int] = queue.Queue()
    stop = threading.Event()
    served = server.submit(
        lambda: serve(
            server.record, server.identity, "127.0.0.1", 0,
            stop_event=stop, on_listening=lambda _h, p: ports.put(p), max_connections=1,
        )
    )
    try:
        port = ports.get(timeout=30)
        client.call(lambda: sync_now(client.record, client.identity, "127.0.0.1", port))
    finally:
        stop.set()
        served.result(timeout=60)


def mailbox(device: Device, folder: Path) -> None:
    report = device.call(lambda: sync_mailbox(device.record, device.identity, folder))
    # Only the unpaired pair (A and C) may refuse each other's bundles.
    assert {r.reason for r in report.rejected} <= {"foreign"}, [(r.reason, r.message) for r in report.rejected]


# --- edits -------------------------------------------------------------------------------


def _edit_text(old: str, op: tuple[int, int, str]) -> str:
    pos, cut, word = op
    pos = pos % (len(old) + 1)
    return old[:pos] + word + old[pos + min(cut, len(old) - pos):]


def apply_edit(device: Device, edit) -> str | None:
    """Applies the edit; returns "client" or "note" when it created one."""
    kind, n, op = edit

    def run():
        r = device.record
        clients = sorted(row.client_id for row in r.list_clients())
        if kind == "client" or not clients:
            r.create_client(Client(display_name=f"Person {device.name}{n}"))
            return "client"
        client_id = clients[n % len(clients)]
        notes = sorted(row.note_id for row in r.notes_for_client(client_id))
        if kind == "note" or not notes:
            note = r.create_note(
                ProgressNote(client_id=client_id, format="DAP", facts=SessionFacts(date_of_service=date(2026, 2, 1 + n % 27)))
            )
            r.set_section(note.id, "data", f"session {n}")
            return "note"
        if kind == "rename":
            client = r.get_client(client_id)
            r.update_client(client.model_copy(update={"display_name": f"Renamed {device.name}{n}"}))
            return None
        note_id = notes[n % len(notes)]
        key = ("data", "assessment", "plan")[n % 3]
        old = r.get_note(note_id).sections[key]
        r.set_section(note_id, key, _edit_text(old, op))
        return None

    return device.call(run)


edits = st.tuples(
    st.sampled_from(["client", "note", "text", "text", "text", "rename"]),
    st.integers(0, 50),
    st.tuples(st.integers(0, 200), st.integers(0, 6), st.sampled_from(WORDS)),
)
syncs = st.tuples(st.sampled_from(PAIRS), st.sampled_from(["direct", "mailbox"]), st.booleans())
steps = st.lists(
    st.one_of(st.tuples(st.just("edit"), st.sampled_from(NAMES), edits), st.tuples(st.just("sync"), syncs)),
    min_size=3,
    max_size=14,
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
        for pair, transport in zip((("a", "b"), ("b", "c"), ("a", "b")), closing):
            sync_pair(devices, pair, transport, False, folder)

        states = {name: d.state() for name, d in devices.items()}
        heads = [s[0] for s in states.values()]
        views = [s[1] for s in states.values()]
        assert heads[0] == heads[1] == heads[2]
        assert views[0] == views[1] == views[2]
        # Nothing written anywhere was lost or duplicated.
        assert len(views[0]) == created["client"]
        assert sum(len(notes) for _, notes in views[0].values()) == created["note"]
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
