"""Live sessions: after the first exchange the connection stays open and edits flow both ways.

Real vaults, real `notewell` processes, real TLS on 127.0.0.1. Waits poll the vaults with a
deadline; nothing asserts on how long anything took.
"""

from __future__ import annotations

import time

from tests.sync.test_direct_sync import (
    CANARY_PRIVATE_A,
    CANARY_PRIVATE_B,
    CANARY_RECORD,
    EDIT,
    PRIVATE,
    TAP_SERVE,
    Proxy,
    _check,
    _contains,
    _heads,
    _section,
    _seed,
)

WAIT = 30.0

LIVE_TAP_CLIENT = """
import os, threading
from store.device_identity import ensure_identity
from sync.direct import live_sync
identity = ensure_identity(record.replica, vault.device_name)
port, frames_path, stop_path = int(sys.argv[2]), sys.argv[3], sys.argv[4]
frames = open(frames_path, "wb")
def tap(direction, frame):
    frames.write(frame)
    frames.flush()
stop = threading.Event()
def watch():
    while not os.path.exists(stop_path):
        stop.wait(0.05)
    stop.set()
threading.Thread(target=watch, daemon=True).start()
report = live_sync(record.replica, identity, "127.0.0.1", port, stop_event=stop, frame_tap=tap,
                   on_live=lambda r: print("live", flush=True))
print("ended", report.summary(), flush=True)
"""


class AppLiveSession:
    """A live session run as the app runs it: the vault belongs to one store thread, the
    session runs in a worker thread, edits go through the store thread, a stop event ends it.
    `with AppLiveSession(ref, port, tap=...) as live:` waits until the session is live; on
    leaving it stops the session and closes the vault, then `live.report` holds its report."""

    def __init__(self, ref, port: int, *, tap=None) -> None:
        self.ref, self.port, self.tap = ref, port, tap
        self.report = None

    def __enter__(self) -> "AppLiveSession":
        import threading
        from concurrent.futures import ThreadPoolExecutor

        from store.device_identity import load_identity
        from sync.direct import Waker, live_sync

        self._store = ThreadPoolExecutor(max_workers=1)
        self.in_store = lambda fn: self._store.submit(fn).result()
        self.vault = self.in_store(self.ref.open)
        identity = self.in_store(lambda: load_identity(self.vault.record.replica))
        self._stop, opened, self.waker, self._outcome = threading.Event(), threading.Event(), Waker(), []

        def worker() -> None:
            try:
                self._outcome.append(live_sync(
                    self.vault.record.replica, identity, "127.0.0.1", self.port, stop_event=self._stop,
                    frame_tap=self.tap, run_in_store=self.in_store, waker=self.waker,
                    on_live=lambda _r: opened.set()))
            except BaseException as e:
                self._outcome.append(e)
                opened.set()

        self._thread = threading.Thread(target=worker, daemon=True)
        self._thread.start()
        try:
            assert opened.wait(WAIT) and not self._outcome, self._outcome
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.waker.wake()
        self._thread.join(WAIT)
        self.in_store(self.vault.close)
        self._store.shutdown()
        self.waker.close()
        assert not self._thread.is_alive()
        if exc and exc[0] is not None:
            return
        self.report = self._outcome[0]
        assert not isinstance(self.report, BaseException), self.report
        assert self.report.ok


def _eventually(check, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _section_or_none(ref, note_id):
    from store.errors import NotFound

    try:
        return _section(ref, note_id)
    except NotFound:
        return None


def _lines(proc, prefix: str) -> list[str]:
    return [line for line in proc.lines if line.startswith(prefix)]


def test_a_live_session_carries_edits_both_ways_on_one_connection(
        make_vault, pair, serve, start_notewell, notewell, in_vault):
    a, b = make_vault("office"), make_vault("home")
    note = _seed(in_vault, a, text="Live base text.")["notes"][0]
    pair(a, b)
    server, port = serve(b)
    client = start_notewell(a, "sync", "now", f"127.0.0.1:{port}", "--live")
    client.wait_for("live with home")
    server.wait_for("live with office")
    assert _section(b, note) == "Live base text."  # the first exchange

    # An edit committed on the office vault (by another process) reaches home, and back.
    in_vault(a, EDIT, note, "0", "Office ")
    _eventually(lambda: _section(b, note) == "Office Live base text.", "the office edit at home")
    in_vault(b, EDIT, note, str(len("Office Live base text.")), " Home")
    _eventually(lambda: _section(a, note) == "Office Live base text. Home", "the home edit at the office")
    # A note created at home during the session arrives whole.
    created = _seed(in_vault, b, text="Created while live.")
    _eventually(lambda: created["notes"][0] in _heads(a), "the new note at the office")
    assert _section(a, created["notes"][0]) == "Created while live."

    # Meanwhile the server serves other connections too (here a plain sync).
    during = notewell(a, "sync", "now", f"127.0.0.1:{port}")
    assert during.returncode == 0, during.stderr
    server.wait_for("synced with office")

    # The office side leaves: it says goodbye, the server records the session and keeps serving.
    rc, out, err = client.terminate()
    assert rc == 0, err
    assert "live sync with home" in out and "ended" in out
    server.wait_for("synced with office")
    again = notewell(a, "sync", "now", f"127.0.0.1:{port}")
    assert again.returncode == 0, again.stderr
    server.wait_for("synced with office")
    rc, _out, err = server.terminate()
    assert rc == 0, err
    # The edits went over one connection: one live session, besides the two plain syncs.
    assert len(_lines(server, "live with")) == 1 and len(_lines(server, "synced with")) == 3
    assert _check(a) == [] and _check(b) == []
    assert _heads(a) == _heads(b)


def test_the_server_leaving_ends_the_live_session_cleanly(make_vault, pair, serve, start_notewell, in_vault):
    a, b = make_vault("office"), make_vault("home")
    note = _seed(in_vault, a, text="Before the server leaves.")["notes"][0]
    pair(a, b)
    server, port = serve(b)
    client = start_notewell(a, "sync", "now", f"127.0.0.1:{port}", "--live")
    client.wait_for("live with home")
    in_vault(a, EDIT, note, "0", "Pushed ")
    _eventually(lambda: _section(b, note) == "Pushed Before the server leaves.", "the edit at home")

    rc, _out, err = server.terminate()
    assert rc == 0, err
    rc, out, err = client.finish()
    assert rc == 0, err
    assert "ended" in out
    assert _check(a) == [] and _check(b) == []
    assert _heads(a) == _heads(b)


def test_process_notes_never_cross_a_live_session(make_vault, pair, in_vault, start_in_vault, tmp_path):
    a, b = make_vault("office"), make_vault("home")
    seeded_a = _seed(in_vault, a, text="Record text before the session.")
    seeded_b = _seed(in_vault, b, text="Home synthetic session.")
    in_vault(a, PRIVATE, seeded_a["client"], f"Private reflection {CANARY_PRIVATE_A}.")
    in_vault(b, PRIVATE, seeded_b["client"], f"Private reflection {CANARY_PRIVATE_B}.")
    pair(a, b)

    frames_a, frames_b, stop = tmp_path / "frames-a", tmp_path / "frames-b", tmp_path / "stop"
    server = start_in_vault(a, TAP_SERVE, str(frames_a))
    port = int(server.wait_for("listening on").rsplit(":", 1)[1])
    proxy = Proxy(port)
    try:
        client = start_in_vault(b, LIVE_TAP_CLIENT, str(proxy.port), str(frames_b), str(stop))
        client.wait_for("live")
        # While the session is open: record edits on both sides, new process notes on both.
        note_a, note_b = seeded_a["notes"][0], seeded_b["notes"][0]
        in_vault(a, EDIT, note_a, "0", f"Live {CANARY_RECORD} ")
        in_vault(b, PRIVATE, seeded_b["client"], f"Second reflection {CANARY_PRIVATE_B}.")
        in_vault(b, EDIT, note_b, "0", "Edited at home. ")
        in_vault(a, PRIVATE, seeded_a["client"], f"Second reflection {CANARY_PRIVATE_A}.")
        _eventually(lambda: _section(b, note_a).startswith(f"Live {CANARY_RECORD} "), "the office edit at home")
        _eventually(lambda: _section(a, note_b).startswith("Edited at home. "), "the home edit at the office")
        stop.write_text("stop")
        rc, client_out, client_err = client.finish()
        assert rc == 0, client_err
        rc, server_out, server_err = server.finish()
        assert rc == 0, server_err
        assert proxy.done.wait(30)
    finally:
        proxy.close()
    assert "ended" in client_out and "result" in server_out

    wire = {"client->server": bytes(proxy.c2s), "server->client": bytes(proxy.s2c)}
    plain = {"frames at office": frames_a.read_bytes(), "frames at home": frames_b.read_bytes()}
    logs = {"output": (client_out + client_err + server_out + server_err).encode()}
    assert all(wire.values()) and all(plain.values())
    for label, data in {**wire, **plain, **logs}.items():
        for canary in (CANARY_PRIVATE_A, CANARY_PRIVATE_B):
            assert not _contains(data, canary), f"{canary} leaked in {label}"
    # The captures are real: the live edit is in the plaintext frames, and TLS hides it.
    assert _contains(plain["frames at office"], CANARY_RECORD)
    assert _contains(plain["frames at home"], CANARY_RECORD)
    assert not any(_contains(data, CANARY_RECORD) for data in wire.values())


def test_the_app_runs_a_live_session_in_a_worker_thread(make_vault, pair, serve, in_vault):
    # As the app does: the vault belongs to one store thread, the session runs in a worker
    # thread, edits go through the store thread and wake the session; a stop event ends it.
    a, b = make_vault("office"), make_vault("home")
    note = _seed(in_vault, a, text="App base text.")["notes"][0]
    pair(a, b)
    server, port = serve(b)
    with AppLiveSession(a, port) as live:
        record = live.vault.record
        live.in_store(lambda: record.set_section(note, "data", "App base text, typed on."))
        live.waker.wake()
        _eventually(lambda: _section(b, note) == "App base text, typed on.", "the app's edit at home")
        in_vault(b, EDIT, note, "0", "Home: ")
        _eventually(lambda: live.in_store(lambda: record.get_note(note).sections["data"]).startswith("Home: "),
                    "the home edit in the app")
    assert live.report.received == 1 and live.report.sent == 3  # client and note whole, then the edit
    server.wait_for("synced with office")
    assert _heads(a) == _heads(b) and _check(a) == [] and _check(b) == []


def _paired_in_process(make_vault, in_vault):
    """Two vaults holding what a completed pairing stores (pairing itself is tested elsewhere)."""
    from store.device_identity import load_identity
    from sync.peers import PeerBook, ensure_group_key, set_group_key

    a, b = make_vault("office"), make_vault("home")
    note = _seed(in_vault, a, text="Keepalive base text.")["notes"][0]
    va, vb = a.open(), b.open()
    try:
        ia, ib = load_identity(va.record.replica), load_identity(vb.record.replica)
        set_group_key(vb.record.replica, ensure_group_key(va.record.replica))
        PeerBook(va.record.replica).add(ib.device_id, ib.name, ib.cert_pem)
        PeerBook(vb.record.replica).add(ia.device_id, ia.name, ia.cert_pem)
    finally:
        va.close()
        vb.close()
    return a, b, note


def _run_live_pair(a, b, *, client_timing: dict, server_timing: dict, during):
    """Server (home) and live client (office) in threads of this process, each owning its
    vault; `during(stop)` runs while the session is open. Returns (client outcome, server results)."""
    import threading

    from store.device_identity import load_identity
    from sync.direct import SyncServer, live_sync

    bound, stop, results, outcome = threading.Event(), threading.Event(), [], []
    address: list[int] = []

    def server_thread() -> None:
        vb = b.open()
        try:
            server = SyncServer(vb.record.replica, load_identity(vb.record.replica), "127.0.0.1", 0,
                                on_result=lambda r, e: results.append((r, e)), **server_timing)
            address.append(server.bind()[1])
            bound.set()
            server.serve(stop, max_connections=1)
        finally:
            vb.close()

    def client_thread() -> None:
        va = a.open()
        try:
            outcome.append(live_sync(va.record.replica, load_identity(va.record.replica), "127.0.0.1", address[0],
                                     stop_event=stop, **client_timing))
        except BaseException as e:
            outcome.append(e)
        finally:
            va.close()

    threads = [threading.Thread(target=server_thread, daemon=True)]
    threads[0].start()
    assert bound.wait(WAIT)
    threads.append(threading.Thread(target=client_thread, daemon=True))
    threads[1].start()
    try:
        during(stop, threads[1])
    finally:
        stop.set()
        for thread in threads:
            thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads)
    return outcome[0], results


def test_keepalives_hold_an_idle_live_session_open(make_vault, in_vault):
    a, b, note = _paired_in_process(make_vault, in_vault)
    timing = dict(keepalive=0.2, idle_timeout=1.0)

    def during(stop, client) -> None:
        _eventually(lambda: _section_or_none(b, note) == "Keepalive base text.", "the first exchange")
        time.sleep(3.0)  # idle for three times the idle limit: only the PINGs keep it open
        assert client.is_alive()
        in_vault(a, EDIT, note, "0", "Still live. ")
        _eventually(lambda: _section(b, note).startswith("Still live. "), "the edit after the idle time")

    report, results = _run_live_pair(a, b, client_timing=timing, server_timing=timing, during=during)
    assert not isinstance(report, BaseException), report
    assert report.ok and [e for _r, e in results] == [None]


def test_a_silent_peer_is_dropped_and_both_vaults_stay_intact(make_vault, in_vault):
    from sync.errors import ConnectionLost

    a, b, note = _paired_in_process(make_vault, in_vault)

    def during(stop, client) -> None:
        # The client never pings (keepalive far off); the server gives up after 0.5 s of silence
        # and closes, which the client sees as the connection ending without a goodbye.
        client.join(WAIT)

    report, results = _run_live_pair(
        a, b, client_timing=dict(keepalive=60.0, idle_timeout=60.0),
        server_timing=dict(keepalive=60.0, idle_timeout=0.5), during=during)
    assert isinstance(report, ConnectionLost)
    assert len(results) == 1 and isinstance(results[0][1], ConnectionLost)
    assert _section(b, note) == "Keepalive base text."  # the first exchange stayed applied
    assert _check(a) == [] and _check(b) == [] and _heads(a) == _heads(b)
