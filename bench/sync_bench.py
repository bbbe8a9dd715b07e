"""Sync figures: direct sync between two processes on loopback, the mailbox, and a JS baseline.

    python -m bench.sync_bench [--notes 1000] [--clients 50] [--edits 20] [--runs 3] [--no-js]
    python -m bench.sync_bench --growth [--large] [--no-js]   # the growth table (1k, 10k; 50k)

The growth table (`--growth`): an initial direct sync of the bench vaults bench/common.py builds
(1,000, 10,000 and, with --large, 50,000 notes) into a fresh paired vault served by `notewell
sync serve` in its own process, with default settings. Beside it, in the same run and
alternating with it: the floor (load every document with Automerge, write every stored byte
in one SQLCipher transaction, copy every byte over TLS 1.3 on 127.0.0.1; measured here, one
core, one after the other) and the JS baseline. Printed per size: the sync's wall time, the
floor, ours / floor, baseline / ours, the receiver's peak RSS (the `sync serve` process and,
apart, its largest worker process) and the load average before and after. Then, per size, the
least any receiver can take here (bench/least_work.py: loading, reading through the binding
and checking signatures, with the floor's transaction and TLS copy, over every core) and
ours / least.

Prints figures; asserts nothing. What is measured:

- initial sync: vault A holds N synthetic progress notes (and their clients), vault B is empty;
  B runs `notewell sync serve` in its own process (which reads what it receives with its
  worker processes, store/prepare_pool.py, started before it listens), A calls `sync_now`
  from this one. Wall time of the `sync_now` call (TLS handshake included, vault unlock
  excluded).
- live session, B serving in its own process, every byte through a counting TCP relay on
  127.0.0.1: first the one-off cost of opening a session (TLS 1.3 handshake with both
  certificates, hello, manifest, done) in bytes. Then one-character edits, each at a random
  moment: propagation = from before the edit until B's vault file holds it (polled here
  through a connection of B's own), median of --edits; and the bytes on the wire for it, both
  directions, TLS records included, counted at the socket until the exchange is quiet. Two
  ways: `notewell sync now --live` on A in its own process with the edits committed by this
  process (another connection: found by the session's 20 ms look at the store), and the way
  the app's Stay connected runs it, `live_sync` in a worker thread of this process on its own
  record connection, with the edits committed by a store thread, which wakes the session
  after each call. Each for the first edit of a document in the session (its sync state
  starts fresh: four messages) and for further edits of the same document (two).
- one edit over a new connection each time: append one character to a note on A, then
  `sync_now`; wall time from before the edit to the end of the sync, median of --edits runs;
  and its bytes on the wire (handshake included), broken down by frame type.
- mailbox: A writes a full bundle of every document into a folder; a fresh paired vault C
  imports it, with worker processes as `notewell sync mailbox` has them (started before the
  unlock). Wall time of each, and the bundle's size.
- baseline: the same documents (A's saved bytes) loaded into an automerge-repo 2.5.6 Repo
  behind its websocket server adapter in one Node process; an empty Repo in a second Node
  process connects with the websocket client adapter and finds every document. Wall time from
  connecting until every document is ready. The ratio is baseline / ours.

Targets (issue 4): initial sync at least 5x faster than the baseline, one-edit propagation
<= 50 ms, one-character edit <= 1 KB on the wire (both over the live session, which is how
automerge-repo's websocket connection works too: it stays open).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from bench.least_work import describe as describe_least, least_cpu, least_on_cores, reading_cores
from store.device_identity import ensure_identity
from store.keys import KdfParams, allow_test_kdf
from store.models import ClinicianSettings
from store.prepare_pool import PreparePool
from store.synthetic import populate
from store.vault import Vault
from sync.direct import Waker, live_sync, sync_now
from sync.framing import HEADER, FrameType
from sync.mailbox import sync_mailbox
from sync.peers import PeerBook, ensure_group_key, set_group_key

REPO = Path(__file__).resolve().parents[1]
JS_DIR = REPO / "bench" / "js_baseline"
PASSPHRASE = "sync bench passphrase"
FAST_KDF = KdfParams(memory_kib=8192, time_cost=1)
allow_test_kdf()  # the bench's vaults use the cheap test KDF (store/keys.py)
SETTINGS = ClinicianSettings(clinician_name="Dr. Bench Example", credentials="PhD")


def log(msg: str) -> None:
    print(msg, flush=True)


# --- set-up ------------------------------------------------------------------------------


def make_vault(path: Path, name: str) -> Vault:
    vault, _ = Vault.create(path, PASSPHRASE, device_name=name, kdf=FAST_KDF, settings=SETTINGS)
    ensure_identity(vault.record.replica, name)
    return vault


def pair(x: Vault, y: Vault) -> None:
    """What a completed pairing stores on both sides."""
    ix, iy = ensure_identity(x.record.replica, x.device_name), ensure_identity(y.record.replica, y.device_name)
    key = ensure_group_key(x.record.replica)
    set_group_key(y.record.replica, key)
    PeerBook(x.record.replica).add(iy.device_id, iy.name, iy.cert_pem)
    PeerBook(y.record.replica).add(ix.device_id, ix.name, ix.cert_pem)


@contextmanager
def serving(vault_path: Path):
    """`notewell sync serve` on a free port in its own process; yields the port."""
    with serving_watched(vault_path) as (port, _rss):
        yield port


class CountingRelay:
    """A TCP relay on 127.0.0.1 that counts the bytes of one connection in each direction.

    `last` is the monotonic time of the last byte relayed, to tell when an exchange is over."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = self.down = 0
        self.last = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _pump(self, src: socket.socket, dst: socket.socket, attr: str) -> None:
        try:
            while chunk := src.recv(65536):
                setattr(self, attr, getattr(self, attr) + len(chunk))
                self.last = time.monotonic()
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _run(self) -> None:
        client, _ = self.listener.accept()
        server = socket.create_connection(self.target)
        pumps = [
            threading.Thread(target=self._pump, args=(client, server, "up")),
            threading.Thread(target=self._pump, args=(server, client, "down")),
        ]
        for t in pumps:
            t.start()
        for t in pumps:
            t.join()
        client.close()
        server.close()
        self.listener.close()

    def wait(self) -> None:
        self._thread.join(timeout=30)

    @property
    def total(self) -> int:
        return self.up + self.down

    def quiet(self, for_s: float = 0.3, timeout: float = 10.0) -> int:
        """Waits until no byte has passed for `for_s`; the total so far."""
        deadline = time.monotonic() + timeout
        while time.monotonic() - self.last < for_s and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.total


@contextmanager
def live_client(vault_path: Path, port: int):
    """`notewell sync now 127.0.0.1:PORT --live` in its own process, until the block ends."""
    env = dict(os.environ, NOTEWELL_PASSPHRASE=PASSPHRASE, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "--vault", str(vault_path), "sync", "now", f"127.0.0.1:{port}", "--live"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        for line in proc.stdout:
            if line.startswith("live with"):
                break
        else:
            raise RuntimeError("the live client ended before its session opened")
        threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
        yield proc
    finally:
        proc.terminate()  # SIGTERM: it says goodbye and exits
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def wait_for_heads(record, doc_id: str, heads: list[bytes], timeout: float = 10.0) -> bool:
    """Polls another process's vault (cheaply: PRAGMA data_version) until doc_id has heads."""
    want = sorted(heads)
    deadline = time.monotonic() + timeout
    marker = None
    while time.monotonic() < deadline:
        now = record.replica.change_marker()
        if now != marker:
            marker = now
            if sorted(record.replica.stored_doc(doc_id)[1]) == want:
                return True
        time.sleep(0.001)
    return False


def measure_edits(edit, b_record, relay: CountingRelay, targets: list[str], jitter: random.Random,
                  current_heads) -> tuple[list[float], list[int]]:
    """Per edit: seconds from before it until B's file holds it, and bytes on the wire for it."""
    times, sizes = [], []
    for doc_id in targets:
        before = relay.quiet()
        # Edits come at any moment, not in step with the live side's 20 ms look for changes
        # (after a fixed pause they would always land just after one).
        time.sleep(jitter.uniform(0, 0.1))
        t = time.perf_counter()
        edit(doc_id)
        if not wait_for_heads(b_record, doc_id, current_heads(doc_id)):
            raise RuntimeError("a live edit did not arrive")
        times.append(time.perf_counter() - t)
        sizes.append(relay.quiet() - before)
    return times, sizes


def report_edits(figures: dict, key: str, what: str, times: list[float], sizes: list[int]) -> None:
    figures[f"{key}_ms"] = statistics.median(times) * 1000
    figures[f"{key}_bytes"] = statistics.median(sizes)
    log(f"{what}: propagation median {figures[f'{key}_ms']:.1f} ms (min {min(times) * 1000:.1f}, "
        f"max {max(times) * 1000:.1f}); on the wire median {figures[f'{key}_bytes']:.0f} bytes "
        f"(min {min(sizes)}, max {max(sizes)}, n={len(sizes)})")


def live_figures(a: Vault, b_path: Path, port: int, drafts: list[str], edits: int) -> dict:
    """Live session, two ways: the command in its own process (edits by another process,
    found by its 20 ms look at the store), and in this process as the app's Stay connected
    runs it (the session on its own connection, edits committed by a store thread, which wakes
    the session after each call)."""
    figures: dict = {}
    jitter = random.Random(4)
    b = Vault.open(b_path, PASSPHRASE)  # a second connection to B's file, to see edits land
    heads_on_a = lambda doc_id: a.record.replica.stored_doc(doc_id)[1]  # noqa: E731
    try:
        relay = CountingRelay(port)
        with live_client(a.path, relay.port):
            figures["live_open_bytes"] = relay.quiet()
            log(f"live session opened: {figures['live_open_bytes']} bytes on the wire "
                "(TLS 1.3 handshake with both certificates, hello, manifest, done)")
            edit = lambda doc_id: one_char_edit(a.record, doc_id)  # noqa: E731
            report_edits(figures, "live_cli_first", "live, `sync now --live`, first edit of a document in the session",
                         *measure_edits(edit, b.record, relay, drafts[1:edits + 1], jitter, heads_on_a))
            report_edits(figures, "live_cli_again", "live, `sync now --live`, further edits of the same document",
                         *measure_edits(edit, b.record, relay, [drafts[0]] * edits, jitter, heads_on_a))
        relay.wait()

        store = ThreadPoolExecutor(max_workers=1)  # the app's store thread
        in_store = lambda fn: store.submit(fn).result()  # noqa: E731
        va = in_store(lambda: Vault.open(a.path, PASSPHRASE))
        identity = in_store(lambda: ensure_identity(va.record.replica, va.device_name))
        relay, waker, stop, opened = CountingRelay(port), Waker(), threading.Event(), threading.Event()
        outcome: list = []

        def worker() -> None:
            # As the app's Stay connected runs it: its own record connection in this thread,
            # the edits committed by the store thread's, which then wakes the session.
            session_store = va.open_record_store()
            try:
                outcome.append(live_sync(session_store.replica, identity, "127.0.0.1", relay.port, stop_event=stop,
                                         waker=waker, on_live=lambda _r: opened.set()))
            except BaseException as e:  # reported below
                outcome.append(e)
                opened.set()
            finally:
                va.close_record_store(session_store)

        thread = threading.Thread(target=worker, daemon=True)
        thread.start()
        try:
            opened.wait(60)
            if outcome:
                raise RuntimeError(f"the in-process live session failed: {outcome[0]}")

            def edit_in_app(doc_id: str) -> None:
                in_store(lambda: one_char_edit(va.record, doc_id))
                waker.wake()

            others = drafts[edits + 1:2 * edits + 1] or drafts[1:edits + 1]
            report_edits(figures, "live_app_first", "live, in the app's way, first edit of a document in the session",
                         *measure_edits(edit_in_app, b.record, relay, others, jitter, heads_on_a))
            report_edits(figures, "live_app_again", "live, in the app's way, further edits of the same document",
                         *measure_edits(edit_in_app, b.record, relay, [drafts[0]] * edits, jitter, heads_on_a))
        finally:
            stop.set()
            waker.wake()
            thread.join(30)
            relay.wait()
            in_store(va.close)
            store.shutdown()
            waker.close()
    finally:
        b.close()
    return figures


# --- measurements ------------------------------------------------------------------------


def one_char_edit(record, note_id: str) -> None:
    note = record.get_note(note_id)
    key = note.section_keys[0]
    record.set_section(note_id, key, note.sections[key] + "x")


def draft_note_ids(record, limit: int) -> list[str]:
    ids = []
    for row in record.list_clients():
        for n in record.notes_for_client(row.client_id):
            if n.status.value == "draft":
                ids.append(n.note_id)
                if len(ids) >= limit:
                    return ids
    return ids


def write_docs_file(record, path: Path) -> None:
    """The baseline's input: exactly the documents A holds (u32 length + save() bytes)."""
    with open(path, "wb") as f:
        for doc_id in sorted(record.replica.doc_heads()):
            data = record.replica.load_doc(doc_id).save()
            f.write(struct.pack(">I", len(data)) + data)


def initial_sync(a: Vault, identity, tmp: Path, run: int) -> float:
    """One initial sync from A into a fresh, empty, paired vault served by another process."""
    b = make_vault(tmp / f"b{run}", f"bench-b{run}")
    pair(a, b)
    b_path = b.path
    b.close()
    with serving(b_path) as port:
        t = time.perf_counter()
        report = sync_now(a.record.replica, identity, "127.0.0.1", port)
        elapsed = time.perf_counter() - t
    log(f"initial direct sync run {run + 1}: {elapsed:.3f} s ({report.summary()})")
    return elapsed


# --- the growth table (issue 14) ----------------------------------------------------------


def _peak_rss_mb(pid: int) -> float | None:
    """VmHWM of a running process, in MB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def stored_documents(record) -> list[tuple[str, bytes]]:
    return [(doc_id, record.replica.stored_doc(doc_id)[0]) for doc_id in sorted(record.replica.doc_heads())]


def floor_seconds(docs: list[tuple[str, bytes]], identity_a, identity_b, tmp: Path) -> dict:
    """The floor of a first sync of `docs`: every document loaded with Automerge, every stored
    byte written in one SQLCipher transaction, and every byte copied over TLS 1.3 on
    127.0.0.1 (the devices' own certificates, both ways checked). One core, one after the other."""
    from automerge.core import Document

    from store.database import open_database
    from sync.direct import client_context, server_context

    figures = {}
    t = time.perf_counter()
    for _doc_id, data in docs:
        Document.load(data)
    figures["load"] = time.perf_counter() - t

    path = tmp / f"floor-{time.monotonic_ns()}.db"
    conn = open_database(path, os.urandom(32), create=True)
    t = time.perf_counter()
    conn.execute("CREATE TABLE docs(id TEXT PRIMARY KEY, data BLOB)")
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO docs VALUES (?, ?)", docs)
    conn.execute("COMMIT")
    figures["transaction"] = time.perf_counter() - t
    conn.close()

    payload = b"".join(struct.pack(">I", len(d)) + d for _i, d in docs)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    got: list[int] = []

    def receive() -> None:
        raw, _ = listener.accept()
        with server_context(identity_b, [identity_a.cert_pem]).wrap_socket(raw, server_side=True) as tls:
            n = 0
            while n < len(payload):
                chunk = tls.recv(1 << 20)
                if not chunk:
                    break
                n += len(chunk)
            got.append(n)

    thread = threading.Thread(target=receive)
    thread.start()
    t = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with client_context(identity_a, [identity_b.cert_pem]).wrap_socket(raw) as tls:
            tls.sendall(payload)
            thread.join()
    figures["tls"] = time.perf_counter() - t
    listener.close()
    assert got == [len(payload)]
    figures["floor"] = figures["load"] + figures["transaction"] + figures["tls"]
    return figures


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a running process so far (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerWatch:
    """What a `sync serve` process did: when it said each session was done (monotonic time of
    its "synced with" line), and its CPU time and its workers' so far."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.synced_at: list[float] = []

    def drain(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("synced with"):
                self.synced_at.append(time.monotonic())

    def wait_synced(self, count: int, timeout: float = 3600.0) -> float | None:
        """The time the `count`th session was reported done (waits for it)."""
        deadline = time.monotonic() + timeout
        while len(self.synced_at) < count and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.01)
        return self.synced_at[count - 1] if len(self.synced_at) >= count else None

    def cpu(self) -> tuple[float | None, float]:
        """(the server's CPU seconds, its workers' together)."""
        return _cpu_seconds(self.proc.pid), sum(c for c in map(_cpu_seconds, _children(self.proc.pid)) if c)


@contextmanager
def serving_watched(vault_path: Path, watch: list | None = None):
    """`serving`, also yielding a function that reads the server's peak RSS so far (MB) and
    its largest worker's; `watch`, when given, gets the process's `ServerWatch`."""
    env = dict(os.environ, NOTEWELL_PASSPHRASE=PASSPHRASE, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "--vault", str(vault_path), "sync", "serve", "--port", "0"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        port = None
        for line in proc.stdout:
            if line.startswith("listening on"):
                port = int(line.rsplit(":", 1)[1])
                break
        if port is None:
            raise RuntimeError("sync serve ended before listening")
        # Keep reading its output so it never blocks on a full pipe.
        watcher = ServerWatch(proc)
        threading.Thread(target=watcher.drain, daemon=True).start()
        if watch is not None:
            watch.append(watcher)

        def rss() -> tuple[float | None, float | None]:
            workers = [_peak_rss_mb(c) for c in _children(proc.pid)]
            return _peak_rss_mb(proc.pid), max((w for w in workers if w), default=None)

        yield port, rss
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def growth_row(notes: int, clients: int, tmp: Path, runs: int, js: bool) -> dict:
    from bench.common import PASSPHRASE as BUILT_PASSPHRASE, synthetic_vault

    a_path = synthetic_vault("sync", notes, clients)
    a = Vault.open(a_path, BUILT_PASSPHRASE)
    try:
        identity = ensure_identity(a.record.replica, a.device_name)
        docs = stored_documents(a.record)
        docs_file = tmp / f"docs-{notes}.bin"
        with open(docs_file, "wb") as f:
            for _doc_id, data in docs:
                f.write(struct.pack(">I", len(data)) + data)
        row: dict = {"notes": notes, "documents": len(docs), "bytes": sum(len(d) for _i, d in docs),
                     "ours": [], "floor": [], "js": [], "rss": [], "worker_rss": [], "load": [], "floor_rest": []}
        load_before = _load()
        row["least"] = least_cpu(docs, a.record.replica.device_trust())
        log(f"{notes} notes: {describe_least(row['least'])}; load {load_before} -> {_load()}")
        for run in range(runs):
            b = make_vault(tmp / f"g{notes}-{run}", f"bench-b{run}")
            pair(a, b)
            ib = ensure_identity(b.record.replica, b.device_name)
            b_path = b.path
            b.close()
            load_before = _load()
            shown = []
            watch: list[ServerWatch] = []
            with serving_watched(b_path, watch) as (port, rss):
                cpu_before = watch[0].cpu()
                sender_cpu = time.process_time()
                start = time.monotonic()
                t = time.perf_counter()
                report = sync_now(a.record.replica, identity, "127.0.0.1", port,
                                  on_progress=lambda d, total: shown.append(d))
                elapsed = time.perf_counter() - t
                sender_cpu = time.process_time() - sender_cpu
                # The receiver is done once it has stored everything and written its audit
                # entry (the signature findings among what arrived): its "synced with" line.
                done_at = watch[0].wait_synced(1)
                receiver = (done_at - start) if done_at is not None else None
                cpu_after = watch[0].cpu()
                server_rss, worker_rss = rss()
            serve_cpu = (cpu_after[0] or 0) - (cpu_before[0] or 0)
            worker_cpu = cpu_after[1] - cpu_before[1]
            row["ours"].append(elapsed)
            row.setdefault("receiver", []).append(receiver)
            row.setdefault("cpu", []).append((sender_cpu, serve_cpu, worker_cpu))
            row["rss"].append(server_rss)
            row["worker_rss"].append(worker_rss)
            log(f"{notes} notes, run {run + 1}: initial direct sync {elapsed:.2f} s ({report.summary()}), the "
                f"receiver done (stored, audited) after {receiver if receiver is None else round(receiver, 2)} s; "
                f"CPU: sender {sender_cpu:.2f} s, receiver {serve_cpu:.2f} s + its workers {worker_cpu:.2f} s; "
                f"progress shown on the sender {len(set(shown))} times; receiver peak RSS {server_rss} MB "
                f"(largest worker {worker_rss} MB); load {load_before} -> {_load()}")
            shutil.rmtree(tmp / f"g{notes}-{run}", ignore_errors=True)

            load_before = _load()
            floor = floor_seconds(docs, identity, ib, tmp)
            row["floor"].append(floor["floor"])
            row["floor_rest"].append(floor["transaction"] + floor["tls"])
            log(f"{notes} notes, run {run + 1}: floor {floor['floor']:.2f} s (load {floor['load']:.2f}, "
                f"transaction {floor['transaction']:.2f}, TLS copy {floor['tls']:.2f}); load {load_before} -> {_load()}")
            if js:
                js_load = run_js_load(docs_file)
                if js_load is not None:
                    row.setdefault("js_load", []).append(js_load)
                    row.setdefault("native_load", []).append(floor["load"])
                    log(f"{notes} notes, run {run + 1}: loading every document, JS Automerge (wasm) {js_load:.2f} s, "
                        f"the Python binding (native) {floor['load']:.2f} s: {js_load / floor['load']:.1f}x")
                load_before = _load()
                urls = tmp / f"urls-{notes}-{run}.json"
                elapsed = run_js_file(docs_file, urls, run)
                if elapsed is not None:
                    row["js"].append(elapsed)
                log(f"{notes} notes, run {run + 1}: JS baseline {elapsed} s; load {load_before} -> {_load()}")
            row["load"].append(_load())
        return row
    finally:
        a.close()


def run_js_load(docs_file: Path) -> float | None:
    out = subprocess.run(["node", "load_only.mjs", str(docs_file)], cwd=JS_DIR, capture_output=True, text=True,
                         timeout=1800)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])["elapsedMs"] / 1000


def print_growth(rows: list[dict]) -> None:
    med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
    log("")
    log("| notes (documents) | initial direct sync | receiver done | CPU: sender, receiver + workers | floor "
        "| ours / floor | JS baseline | baseline / ours "
        "| receiver peak RSS (serve / largest worker) | load average (1/5/15 min) |")
    log("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ours, floor, js = med(r["ours"]), med(r["floor"]), med(r["js"])
        done = med([x for x in r.get("receiver", []) if x is not None])
        cpu = [med([c[i] for c in r.get("cpu", [])]) for i in range(3)] if r.get("cpu") else None
        rss = max((x for x in r["rss"] if x), default=None)
        worker = max((x for x in r["worker_rss"] if x), default=None)
        log(f"| {r['notes']:,} ({r['documents']:,}) | {ours:.2f} s | {f'{done:.2f} s' if done else '-'} "
            f"| {f'{cpu[0]:.2f}, {cpu[1]:.2f} + {cpu[2]:.2f} s' if cpu else '-'} "
            f"| {floor:.2f} s | {ours / floor:.2f} "
            f"| {f'{js:.1f} s' if js else 'not run'} | {f'{js / ours:.1f}x' if js else '-'} "
            f"| {rss:.0f} / {worker:.0f} MB | {', '.join(r['load'])} |")
    log("")
    log(f"The least any receiver can take here: the CPU of loading every document, reading each through the "
        f"binding and checking each signature, plus the floor's transaction and TLS copy, spread perfectly "
        f"over {reading_cores()} cores (bench/least_work.py).")
    log("| notes | least CPU, one core | least on all cores | initial direct sync | ours / least |")
    log("|---|---|---|---|---|")
    for r in rows:
        ours = med(r["ours"])
        least = least_on_cores(r["least"], plus=med(r["floor_rest"]))
        log(f"| {r['notes']:,} | {r['least']['total']:.2f} s | {least:.2f} s | {ours:.2f} s | {ours / least:.2f} |")
    for r in rows:
        if r.get("js_load") and r["js"]:
            ours, js = med(r["ours"]), med(r["js"])
            js_load, native = med(r["js_load"]), med(r["native_load"])
            # The baseline with its documents loaded at the native binding's speed instead.
            same_runtime = js - js_load + native
            log(f"{r['notes']:,} notes: JS loads {js_load:.2f} s vs native {native:.2f} s ({js_load / native:.1f}x); "
                f"baseline / ours {js / ours:.1f}x, of which the runtime accounts for "
                f"{js / same_runtime:.1f}x and the rest (protocol, storage) {same_runtime / ours:.1f}x")


def run_growth(args, tmp: Path) -> None:
    sizes = [(1000, 50, args.runs), (10000, 200, 1)]
    if args.large:
        sizes.append((50000, 1000, 1))
    if args.sizes:
        wanted = {int(n) for n in args.sizes.split(",")}
        sizes = [s for s in [(1000, 50, args.runs), (10000, 200, 1), (50000, 1000, 1)] if s[0] in wanted]
    js = not args.no_js and js_available()
    rows = [growth_row(n, c, tmp, runs, js and (n <= 10000 or args.large_js)) for n, c, runs in sizes]
    print_growth(rows)


def run_all(args, tmp: Path) -> dict:
    figures: dict = {}
    a = make_vault(tmp / "a", "bench-a")
    t = time.perf_counter()
    populate(a, clients=args.clients, notes=args.notes, seed=7)
    log(f"setup: {args.notes} notes and {args.clients} clients written on A in {time.perf_counter() - t:.1f} s")
    identity = ensure_identity(a.record.replica, a.device_name)
    figures["documents"] = len(a.record.replica.doc_heads())
    write_docs_file(a.record, tmp / "docs.bin")

    # Ours and the baseline alternate, so both see the same load on a shared machine.
    ours, theirs = [], []
    js_ready = not args.no_js and js_available()
    for run in range(args.runs):
        ours.append(initial_sync(a, identity, tmp, run))
        if js_ready:
            elapsed = run_js_once(tmp, run)
            if elapsed is not None:
                theirs.append(elapsed)
    figures["initial_s"] = statistics.median(ours)
    figures["baseline_s"] = statistics.median(theirs) if theirs else None
    figures["baseline_runs"] = len(theirs)

    b_path = tmp / f"b{args.runs - 1}"
    with serving(b_path) as port:
        drafts = draft_note_ids(a.record, 2 * args.edits + 1)
        figures.update(live_figures(a, b_path, port, drafts, args.edits))
        times = []
        for i in range(args.edits):
            t = time.perf_counter()
            one_char_edit(a.record, drafts[i % len(drafts)])
            sync_now(a.record.replica, identity, "127.0.0.1", port)
            times.append(time.perf_counter() - t)
        figures["edit_median_ms"] = statistics.median(times) * 1000
        log(f"one small edit over a new connection each time, edit to synced: median {figures['edit_median_ms']:.1f} ms "
            f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}, n={len(times)})")

        relay = CountingRelay(port)
        by_type: dict[str, int] = {}

        def tap(_direction: str, frame: bytes) -> None:
            name = FrameType(frame[HEADER.size - 1]).name
            by_type[name] = by_type.get(name, 0) + len(frame)

        one_char_edit(a.record, drafts[-1])
        sync_now(a.record.replica, identity, "127.0.0.1", relay.port, frame_tap=tap)
        relay.wait()
        figures["edit_wire_bytes"] = relay.up + relay.down
        figures["edit_sync_frame_bytes"] = by_type.get("SYNC", 0)
        log(f"one-character edit over a new connection: {figures['edit_wire_bytes']} bytes in total "
            f"(sent {relay.up}, received {relay.down}, TLS included); frames by type, both directions: "
            + ", ".join(f"{k} {v}" for k, v in sorted(by_type.items())))

    # Mailbox: A writes everything; a fresh device C, paired with A, imports it.
    c = make_vault(tmp / "c", "bench-c")
    pair(a, c)
    # As `notewell sync mailbox` runs it: with worker processes started before the unlock.
    pool = PreparePool()
    pool.wait_ready()
    c.record.replica.prepare_pool = pool
    box = tmp / "mailbox"
    box.mkdir()
    t = time.perf_counter()
    written = sync_mailbox(a.record.replica, identity, box, full=True)
    figures["mailbox_export_s"] = time.perf_counter() - t
    size = (box / written.bundles.written).stat().st_size
    t = time.perf_counter()
    got = sync_mailbox(c.record.replica, ensure_identity(c.record.replica, c.device_name), box)
    figures["mailbox_import_s"] = time.perf_counter() - t
    c.record.replica.prepare_pool = None
    log(f"mailbox: export of {written.sent} documents {figures['mailbox_export_s']:.3f} s "
        f"(bundle {size / 1024:.0f} KiB), import {figures['mailbox_import_s']:.3f} s "
        f"({got.received} received), total {figures['mailbox_export_s'] + figures['mailbox_import_s']:.3f} s")
    # The mailbox's cost of a one-character edit: the edited note travels whole.
    one_char_edit(a.record, draft_note_ids(a.record, 1)[0])
    edit = sync_mailbox(a.record.replica, identity, box)
    figures["mailbox_edit_bytes"] = (box / edit.bundles.written).stat().st_size
    log(f"mailbox bundle for a one-character edit: {figures['mailbox_edit_bytes']} bytes "
        f"({edit.sent} document)")
    c.close()
    pool.close()

    a.close()
    return figures


def ensure_node_modules() -> None:
    # Every package package.json names (an earlier install may lack one added since).
    wanted = json.loads((JS_DIR / "package.json").read_text())["dependencies"]
    if all((JS_DIR / "node_modules" / name).is_dir() for name in wanted):
        return
    log("installing the baseline's packages (npm install in bench/js_baseline)")
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS_DIR, check=True)


def js_available() -> bool:
    if shutil.which("node") is None or shutil.which("npm") is None:
        log("baseline: node/npm not found; skipped")
        return False
    ensure_node_modules()
    return True


def run_js_once(tmp: Path, run: int) -> float | None:
    return run_js_file(tmp / "docs.bin", tmp / f"urls-{run}.json", run)


def run_js_file(docs_file: Path, urls: Path, run: int) -> float | None:
    store_dir = Path(tempfile.mkdtemp(prefix="notewell-js-store-"))
    server = subprocess.Popen(
        ["node", "server.mjs", str(docs_file), str(urls)],
        cwd=JS_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        port = None
        for line in server.stdout:
            if line.startswith("listening "):
                port = int(line.split()[1])
            if line.startswith("urls "):
                break
        if port is None:
            log(f"baseline run {run + 1}: the server did not start")
            return None
        out = subprocess.run(
            ["node", "client.mjs", str(port), str(urls), str(store_dir)], cwd=JS_DIR, capture_output=True,
            text=True, timeout=1800,
        )
        if out.returncode != 0:
            log(f"baseline run {run + 1} failed: " + (out.stderr.strip().splitlines() or ["no output"])[0][:300])
            return None
        result = json.loads(out.stdout.strip().splitlines()[-1])
        log(f"baseline run {run + 1}: {result['documents']} documents ({result['withHeads']} with content) "
            f"in {result['elapsedMs'] / 1000:.3f} s ({result['retries']} finds waited on after 'unavailable')")
        return result["elapsedMs"] / 1000
    finally:
        shutil.rmtree(store_dir, ignore_errors=True)
        server.stdin.close()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3, help="initial-sync runs of each side (median)")
    parser.add_argument("--no-js", action="store_true", help="skip the automerge-repo baseline")
    parser.add_argument("--growth", action="store_true", help="the growth table at 1k and 10k notes")
    parser.add_argument("--large", action="store_true", help="with --growth: 50k notes too (long)")
    parser.add_argument("--sizes", default="", help="with --growth: only these sizes (1000,10000,50000)")
    parser.add_argument("--large-js", action="store_true", help="with --large: the JS baseline at 50k too")
    args = parser.parse_args(argv)

    if args.growth:
        with tempfile.TemporaryDirectory(prefix="notewell-sync-growth-") as tmp:
            run_growth(args, Path(tmp))
        return 0

    with tempfile.TemporaryDirectory(prefix="notewell-sync-bench-") as tmp:
        figures = run_all(args, Path(tmp))
        baseline = figures["baseline_s"]

    log("")
    log("summary")
    log(f"  initial sync, {figures['documents']} documents, median of {args.runs}: {figures['initial_s']:.3f} s")
    if baseline is not None:
        ratio = baseline / figures["initial_s"]
        log(f"  baseline (automerge-repo 2.5.6 over websocket, median of {figures['baseline_runs']}): {baseline:.3f} s; "
            f"ratio baseline/ours {ratio:.1f}x (target >= 5x)")
    for key, how in (("live_app", "in the app's way (edit and session in one process, woken on commit)"),
                     ("live_cli", "with `sync now --live` (edit by another process, found by the 20 ms look)")):
        log(f"  live session {how}: one-edit propagation, median {figures[key + '_first_ms']:.1f} ms for a "
            f"document's first edit in the session, {figures[key + '_again_ms']:.1f} ms for further edits "
            f"(target <= 50 ms); on the wire (TLS records included), median {figures[key + '_first_bytes']:.0f} "
            f"and {figures[key + '_again_bytes']:.0f} bytes (target <= 1024)")
    log(f"  opening a live session, once: {figures['live_open_bytes']} bytes (TLS handshake with both "
        "certificates, hello, manifest, done)")
    log(f"  over a new connection per edit instead: {figures['edit_median_ms']:.1f} ms and "
        f"{figures['edit_wire_bytes']} bytes ({figures['edit_sync_frame_bytes']} of them SYNC frames)")
    log(f"  mailbox export + import: {figures['mailbox_export_s'] + figures['mailbox_import_s']:.3f} s; "
        f"bundle for a one-character edit: {figures['mailbox_edit_bytes']} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
