"""The direct-sync session, sans-IO: frames in, frames out, no sockets or threads.

`SyncSession` runs one sync between this device and one authenticated peer over any reliable
byte stream (`sync.direct` gives it TLS). It only touches record documents through the
record's sync intake (`RecordReplica`, store/replica.py): `doc_heads()`, `load_doc(id)`, `apply_doc(id, doc)`, `stored_doc(id)`,
`apply_snapshots(items, batch=, on_batch=)`, `check_sync_message(id, message, earlier)` (the
document budget, before a peer's sync message is received) and, live, `change_marker()`.

Conversation (docs/sync-protocol.md has the byte layout):

1. HELLO both ways, server first (so a client the server refused reads the TLS alert instead of
   writing into a closed connection): protocol name, supported versions, device id, name. The
   highest common version is used; none in common -> `ProtocolVersionMismatch`. The device id
   must be the fingerprint the TLS layer saw.
2. MANIFEST both ways (client first, right after its hello): every document id with its heads.
   Both sides compute the same set of documents that differ (heads not identical, or present
   on one side only).
3. Turns, client first, strictly alternating (half duplex, so neither side can block the other
   on full socket buffers): in its turn a side sends one SYNC frame (document id + Automerge
   sync message) for each document with something to say, then TURN_END(count). A document
   the peer has none of goes once, in the side's first turn, as a WHOLE frame (its stored
   bytes), and is stored in bulk (`apply_snapshots`) at the end, or as soon as the whole
   documents held reach `hold_bytes` (so a peer cannot fill this device's memory, and a
   large first sync keeps what it stored if the connection drops). Every
   document gets a fresh `SyncState` for this connection. The exchange ends after two
   consecutive turns with no messages: then neither side has anything left to say.
4. Each side writes the documents that changed (`apply_doc`: merge, never replace, so nothing
   is deleted) and sends DONE (how many documents it changed and a digest of the final heads of
   the differing documents); the digests must agree.
5. Live (the client asked in its hello, the server offers it): after DONE the session stays
   open (`live`). `poll_local()` returns SYNC frames for documents changed locally since the
   last call; a received SYNC is applied and answered; PING keeps the connection warm; BYE
   (`close()`) ends it.

Usage:

    session = SyncSession(store, device_id=me.device_id, device_name=me.name,
                          role="client", peer_device_id=fingerprint_from_tls)
    out = session.start()            # frames to send
    for frame in incoming: out = session.receive(frame)   # send `out` each time
    session.finished / session.report

What each message holds on the wire, and the checks of its size and shape, are in
`sync.wire`; this module decides what a message means and when it may come. Sockets, reading
with a deadline and the loops that run a session are `sync.driver`'s.

Errors from bad peer data are typed (`ProtocolError` and subclasses); Automerge panics
(pyo3 `PanicException`, a BaseException) and other failures to read foreign data become
`MalformedSyncMessage`, through the store's one guard (store/automerge_guard.py).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Iterable, Iterator

from automerge.core import Document, Message, SyncState

from store.automerge_guard import panics_as
from store.device_list import DEVICE_LIST_ID
from store.replica import RecordReplica
from store.errors import DocumentOverBudget, ForeignDocument
from sync import clock as clocks
from sync.report import ProgressCallback, SyncReport
from sync.errors import (
    MalformedSyncMessage,
    NotPaired,
    PeerReportedError,
    ProtocolError,
)
from sync.framing import Frame, FrameType
from sync.limits import SESSION_HOLD_BYTES
from sync.peers import PeerBook
# The codecs of every message (sync/wire.py); the names tests and older callers import from
# here are kept importable from here.
from sync.wire import (  # noqa: F401
    DOC_ID_RE,
    HEAD_RE,
    MAX_HEADS_PER_DOC,
    PROTOCOL_NAME,
    SUPPORTED_VERSIONS,
    decode_baseline,
    decode_sync,
    done_frame,
    encode_baseline,
    encode_sync,
    error_frame,
    common_features,
    heads_digest,
    hello_frame,
    manifest_frame,
    printable_name,
    progress_frame,
    raise_peer_error,
    read_done,
    read_hello,
    read_manifest,
    read_progress,
    read_turn_end,
    sync_frame,
    changes_frame,
    turn_end_frame,
    version_mismatch,
    whole_frame,
)

# Automerge converges in a handful of round trips; a peer that keeps talking is broken.
MAX_TURNS = 200
APPLY_BATCH = 256
# Whole documents received are stored once this many are held (or `hold_bytes` of them), so
# storing goes on while they arrive: no long pause at the end for the peer to wait through,
# and a first sync cut short keeps what it stored. Sent in chunks of WHOLE_CHUNK frames, so
# the sender never builds a whole record's frames at once.
STORE_EVERY = 1024
WHOLE_CHUNK = 512
# Documents of the sync-message path held in memory at once (their bytes count against
# `hold_bytes` too): past either, the changed ones are stored and all are let go.
MAX_HELD_DOCS = 1024
# A side that works for long tells the waiting side (PROGRESS), at most this often (seconds).
PROGRESS_EVERY = 0.25
# Per peer, in the local table: the heads both sides held after the last complete sync, so
# the next manifest lists only what changed since (docs/sync-protocol.md, "Baseline").
BASELINE_PREFIX = "sync.baseline.v1."


def _unreadable() -> MalformedSyncMessage:
    return MalformedSyncMessage(
        "The other device sent document data that could not be read; nothing from it was saved."
    )


def _foreign(call, *args):
    """Run an Automerge call on peer data: a panic or any other failure to read it refuses it
    (typed errors keep their own sentence)."""
    with panics_as(_unreadable, also=(Exception,)):
        return call(*args)


# --- the session -------------------------------------------------------------------------


class SyncSession:
    """One sync with one authenticated peer; see the module docstring for the conversation.

    `store` is the record's sync intake (`store.replica.RecordReplica`); the peer's device id is the
    fingerprint the transport authenticated. Use one session per connection.
    """

    def __init__(
        self,
        store: RecordReplica,
        *,
        device_id: str,
        device_name: str,
        role: str,
        peer_device_id: str,
        on_progress: ProgressCallback | None = None,
        versions: tuple[int, ...] = SUPPORTED_VERSIONS,
        live: bool = False,
        clock: Callable[[], float] = time.time,
        opened_at: float | None = None,
        hold_bytes: int = SESSION_HOLD_BYTES,
        store_every: int = STORE_EVERY,
    ) -> None:
        if role not in ("client", "server"):
            raise ValueError("role must be 'client' or 'server'")
        self.store = store
        # A device list an earlier session brought gets this device's vouches before this
        # one compares anything (store/device_list.py), so they travel in it: written after a
        # session instead, they would leave the two sides apart until their next sync.
        store.share_vouches()
        self.device_id = device_id
        self.device_name = device_name
        self.role = role
        self.peer_device_id = peer_device_id
        self.on_progress = on_progress
        self.versions = tuple(versions)
        self.version: int | None = None
        self.report = SyncReport(peer_id=peer_device_id)
        self._state = "start"
        self._wake: Callable[[frozenset[str]], None] | None = None
        self._local_heads: dict[str, set[bytes]] = {}
        self._peer_heads: dict[str, set[bytes]] = {}
        self._differ: list[str] = []
        self._docs: dict[str, Document] = {}
        self._sync_states: dict[str, SyncState] = {}
        self._received_this_turn: list[str] = []
        self._sent_last_turn: set[str] = set()
        self._my_last_count: int | None = None
        self._turns = 0
        self._digest = ""
        self._final: dict[str, list[bytes]] = {}
        self._baseline, self._baseline_digest = self._load_baseline()
        self._delta = False
        # Whole documents: the ones only one side has travel as their stored bytes.
        self._send_whole: set[str] = set()
        self._expect_whole: set[str] = set()
        self._whole_in: dict[str, bytes] = {}  # received, not yet stored
        self._whole_seen: set[str] = set()
        self._whole_stored: dict[str, list[bytes]] = {}  # stored during this sync: its heads
        self._hold_bytes, self._held = hold_bytes, 0
        self._store_every = max(1, store_every)
        self._whole_settled = 0  # whole documents stored or refused here
        # Documents of the sync-message path: what the peer's messages brought to each one
        # held and not yet stored (bytes, counted against `hold_bytes`), the ids of the ones
        # stored during this session, and what is stored of them now (their heads).
        self._sync_held: dict[str, int] = {}
        self._stored_here: dict[str, set[bytes]] = {}
        self._applied: set[str] = set()
        # Features both hellos list (sync/wire.py): PROGRESS frames only to a peer that reads them.
        self._features: frozenset[str] = frozenset()
        self._peer_settled = 0  # whole documents the peer says it has settled
        self._last_progress = 0.0
        # Work done in steps, so frames (chunks of whole documents, PROGRESS) go out between
        # them (`more()`), and frames that arrive meanwhile wait in `_inbox`.
        self._steps: Iterator[list[Frame]] | None = None
        self._inbox: deque[Frame] = deque()
        self.in_steps = False  # the caller calls `more()` while `has_more` (sync/driver.py does)
        self._whole_out_heads: dict[str, list[bytes]] = {}
        self._whole_sent = False
        # Documents both sides held at the end of their last sync (the baseline) travel as
        # the changes since (CHANGES, a hello feature): each side sends its changes once, in
        # its first turn, and takes no part in Automerge's sync rounds for them.
        self._by_changes: set[str] = set()
        self._changes_sent = False
        self._changes_in: set[str] = set()
        self._frames_this_turn = 0
        # The document budget (store/document_budget.py): what the peer's sync messages have
        # brought to each document so far, and the documents refused for going over it.
        self._received_size: dict[str, object] = {}
        self._over_budget: set[str] = set()
        # Live mode (asked by the client, offered by the server): after DONE the connection
        # stays open and each side pushes sync messages for the documents it changes.
        self.live_requested = live
        self._live = False
        self._known: dict[str, set[bytes]] = {}
        self._marker: tuple | None = None
        # This device's clock (seconds since 1970), sent in the hello and compared with the
        # peer's. The peer read its clock after `_clock_from` of ours: when our hello left
        # (server), or when the connection was opened (client, `opened_at`).
        self._clock = clock
        self._clock_from = opened_at if opened_at is not None else clock()

    # -- public

    @property
    def finished(self) -> bool:
        return self._state == "finished"

    @property
    def live(self) -> bool:
        """True once the first exchange is over and the session stays open for pushes."""
        return self._state == "live"

    @property
    def started_talking(self) -> bool:
        """True once the peer's hello was accepted (before that, a refusal looks like a hang-up)."""
        return self._state not in ("start", "await-hello")

    @property
    def documents_to_sync(self) -> int:
        return len(self._differ)

    @property
    def held_bytes(self) -> int:
        """Bytes the peer sent that this session holds in memory, not yet stored: whole
        documents, and what sync messages brought to the documents held (at most `hold_bytes`,
        or one document's when a single one is larger)."""
        return self._held + sum(self._sync_held.values())

    @property
    def held_documents(self) -> int:
        """Documents of the sync-message path held in memory (at most MAX_HELD_DOCS)."""
        return len(self._docs)

    @property
    def has_more(self) -> bool:
        """True while work is left that `more()` does a step of (the driver calls it before
        it reads again)."""
        return self._steps is not None or bool(self._inbox)

    def more(self) -> list[Frame]:
        """The next step of the work in hand (a chunk of whole documents to send, a batch to
        store), or the next frame that waited for it: the frames to send."""
        if self._steps is not None:
            frames = next(self._steps, None)
            if frames is not None:
                return frames
            self._steps = None
        if self._inbox:
            return self._handle(self._inbox.popleft())
        return []

    def _run_steps(self, steps: Iterator[list[Frame]]) -> list[Frame]:
        """Starts work done in steps: its first step's frames now, the rest through `more()`
        when the caller drives it so (`in_steps`, set by sync/driver.py); else all at once."""
        assert self._steps is None, "one piece of work at a time"
        if not self.in_steps:
            return [frame for step in steps for frame in step]
        self._steps = steps
        return self.more()

    def start(self) -> list[Frame]:
        if self._state != "start":
            raise RuntimeError("session already started")
        self._state = "await-hello"
        if self.role == "server":
            self._clock_from = self._clock()
            return [self._hello()]
        return []

    def receive(self, frame: Frame) -> list[Frame]:
        if frame.type == FrameType.ERROR:
            raise_peer_error(frame, self.versions)
        if frame.type == FrameType.PROGRESS and "progress" in self._features:
            self._on_peer_progress(read_progress(frame))
            return []
        if self._steps is not None or self._inbox:
            self._inbox.append(frame)  # handled once the work in hand is done (`more()`)
            return []
        return self._handle(frame)

    def _handle(self, frame: Frame) -> list[Frame]:
        handler = {
            "await-hello": self._on_hello,
            "await-manifest": self._on_manifest,
            "peer-turn": self._on_turn_frame,
            "await-done": self._on_done,
            "live": self._on_live,
        }.get(self._state)
        if handler is None:
            raise ProtocolError("The other device sent a sync message after the sync had ended.")
        return handler(frame)

    # -- hello

    def _hello(self) -> Frame:
        return hello_frame(
            versions=self.versions, device_id=self.device_id, name=self.device_name,
            baseline=self._baseline_digest,
            # the server offers live mode; the client asks for it or not
            live=True if self.role == "server" else self.live_requested,
            # this device's clock, so the peer can tell when the two disagree (older peers
            # ignore it; a hello without it is not compared)
            time=round(self._clock(), 3),
        )

    # -- progress: this side's own, and what a peer that works for long says of its own

    def _on_peer_progress(self, settled: int) -> None:
        self._peer_settled = max(self._peer_settled, min(settled, len(self._send_whole)))
        self._turn_progress()

    def _turn_progress(self) -> None:
        """After this side's turn: documents with nothing left to say; whole documents sent
        count once the peer says it stored them (to an older peer: once sent)."""
        pending_whole = len(self._send_whole) - self._peer_settled if "progress" in self._features else 0
        self._progress(len(self._differ) - len(self._sent_last_turn) - pending_whole)

    def _progress_frames(self, *, force: bool = False) -> list[Frame]:
        """A PROGRESS frame for a peer that reads them, at most every PROGRESS_EVERY seconds."""
        if "progress" not in self._features:
            return []
        now = time.monotonic()
        if not force and now - self._last_progress < PROGRESS_EVERY:
            return []
        self._last_progress = now
        return [progress_frame(self._whole_settled)]

    def _on_hello(self, frame: Frame) -> list[Frame]:
        if frame.type != FrameType.HELLO:
            raise ProtocolError("The other device did not start with a hello; the connection was closed.")
        hello = read_hello(frame)
        versions = hello.versions
        common = set(self.versions) & {v for v in versions if isinstance(v, int) and not isinstance(v, bool)}
        if not common:
            raise version_mismatch(versions, self.versions)
        self.version = max(common)
        if hello.device_id != self.peer_device_id:
            raise NotPaired("The other device's hello does not match its certificate; the connection was closed.")
        self.report.peer_name = printable_name(hello.name)
        self._compare_clocks(hello.time)
        self._features = common_features(hello)
        # Both sides decide the same way: delta manifests only when both hold the same baseline.
        self._delta = self._baseline_digest is not None and hello.baseline == self._baseline_digest
        self._live = hello.live is True and (self.role == "server" or self.live_requested)
        self._state = "await-manifest"
        if self.role == "client":
            return [self._hello(), self._manifest()]
        return []

    def _compare_clocks(self, value: object) -> None:
        """Measures the peer's clock against ours and remembers the finding for this peer."""
        received_at = self._clock()
        peer_time = clocks.clock_reading(value)
        if peer_time is None:
            return  # an older peer (no time in its hello): nothing to compare
        check = clocks.measure_direct(
            self.peer_device_id, self.report.peer_name or self.peer_device_id[:16],
            peer_time, self._clock_from, received_at,
        )
        self.report.clock = check
        clocks.remember(self.store, check)

    # -- manifest

    def _manifest(self) -> Frame:
        self._local_heads = {doc_id: set(heads) for doc_id, heads in self.store.doc_heads().items()}
        listed = self._local_heads
        if self._delta:
            listed = {d: h for d, h in listed.items() if self._baseline.get(d) != h}
        return manifest_frame(listed, delta=self._delta)

    def _on_manifest(self, frame: Frame) -> list[Frame]:
        if frame.type != FrameType.MANIFEST:
            raise ProtocolError("The other device skipped the document list; the connection was closed.")
        peer, delta = read_manifest(frame)
        if delta is not self._delta:
            raise ProtocolError("The two devices disagree on what they last synced; the connection was closed.")
        out: list[Frame] = []
        if self.role == "server":
            out.append(self._manifest())
        if self._delta:
            # What the peer did not list is as it was at the end of the last sync.
            effective = dict(self._baseline)
            effective.update(peer)
            candidates = set(peer) | {d for d, h in self._local_heads.items() if self._baseline.get(d) != h}
        else:
            effective, candidates = peer, set(self._local_heads) | set(peer)
        self._peer_heads = effective
        self._differ = sorted(d for d in candidates if self._local_heads.get(d) != effective.get(d))
        # What one side lacks entirely is sent whole: no sync rounds, no load on the sender.
        self._send_whole = {d for d in self._differ if d in self._local_heads and not effective.get(d)}
        self._expect_whole = {d for d in self._differ if d not in self._local_heads and effective.get(d)}
        if self._delta and "changes" in self._features:
            # Both sides decide alike: the same differing documents, the same baseline.
            self._by_changes = {
                d for d in self._differ
                if d not in self._send_whole and d not in self._expect_whole and self._baseline.get(d)
            }
        self._progress(0)
        if self.role == "client":
            first = [d for d in self._differ
                     if d not in self._send_whole and d not in self._expect_whole and d not in self._by_changes]
            out += self._run_steps(self._my_turn(first))
        else:
            self._state = "peer-turn"
        return out

    # -- turns

    def _doc(self, doc_id: str) -> Document:
        doc = self._docs.get(doc_id)
        if doc is None:
            # A document only the peer has starts empty here and is created by apply_doc; one
            # let go of earlier in this session (stored) is read again, its sync state kept.
            here = doc_id in self._local_heads or doc_id in self._stored_here
            doc = self.store.load_doc(doc_id) if here else Document()
            self._docs[doc_id] = doc
            self._sync_states.setdefault(doc_id, SyncState())
        return doc

    def _over_hold(self) -> bool:
        return self.held_bytes > self._hold_bytes or len(self._docs) > MAX_HELD_DOCS

    def _let_go(self) -> Iterator[list[Frame]]:
        """Stores the documents of the sync-message path held that changed here (transactions
        of APPLY_BATCH, progress between them) and lets go of every one held. Their sync
        states stay: a document read again later goes on where it was."""
        held = sorted(self._docs)
        to_apply = [d for d in held if set(self._docs[d].get_heads()) != self._stored_heads(d)]
        # The device list before anything else the peer sent: a revocation it brings applies
        # to this session already (docs/security.md, "Revocation").
        batches = [[DEVICE_LIST_ID]] if DEVICE_LIST_ID in to_apply else []
        rest = [d for d in to_apply if d != DEVICE_LIST_ID]
        batches += [rest[start:start + APPLY_BATCH] for start in range(0, len(rest), APPLY_BATCH)]
        for batch in batches:
            self._refuse_revoked_peer()
            # One transaction per batch: far fewer fsyncs, and any unexpected failure rolls the
            # whole batch back (merges are idempotent, so the next sync simply redoes it).
            with self._transaction():
                for doc_id in batch:
                    try:
                        changed = _foreign(self.store.apply_doc, doc_id, self._docs[doc_id])
                    except ForeignDocument as e:
                        # Refused before anything was written (the store's contract). One bad
                        # document must not block the others, now and in every later sync.
                        self.report.errors.append(e.message)
                        self._over_budget.add(doc_id)  # nothing more of it in this session
                        continue
                    if changed:
                        self._applied.add(doc_id)
                    self._stored_here[doc_id] = set(self.store.doc_heads_of(doc_id))
            yield self._progress_frames()
        for doc_id in held:
            self._docs.pop(doc_id, None)
        self._sync_held.clear()

    def _stored_heads(self, doc_id: str) -> set[bytes]:
        if doc_id in self._stored_here:
            return self._stored_here[doc_id]
        return self._local_heads.get(doc_id) or set()

    def _let_go_now(self) -> list[Frame]:
        """`_let_go` at once (within the turn being received: bounded by the hold)."""
        frames: list[Frame] = []
        for step in self._let_go():
            frames = step or frames
        return frames

    def _within_budget(self, doc_id: str, raw: bytes) -> bool:
        """Counts what a sync message brings to the document against the budget, before it is
        received. Over it, the document is refused whole for the rest of the session (named
        in the report) and the sync goes on with the others."""
        if doc_id in self._over_budget:
            return False
        try:
            self._received_size[doc_id] = _foreign(
                self.store.check_sync_message, doc_id, raw, self._received_size.get(doc_id))
        except DocumentOverBudget as e:
            self._over_budget.add(doc_id)
            self._docs.pop(doc_id, None)
            self._sync_held.pop(doc_id, None)
            self.report.errors.append(e.message)
            return False
        except ForeignDocument:
            raise _unreadable() from None
        return True

    def _my_turn(self, candidates: Iterable[str]) -> Iterator[list[Frame]]:
        """This side's turn, in steps: whole documents the peer lacks and the changes since
        the baseline (first turn only, in chunks of WHOLE_CHUNK), then a sync message per
        document with something to say, then TURN_END(count)."""
        self._turns += 1
        if self._turns > MAX_TURNS:
            raise ProtocolError("The other device kept the sync going without end; the connection was closed.")
        whole_ids: list[str] = []
        if not self._whole_sent:
            self._whole_sent = True
            # The device list first, so a receiver that stores what it holds before the end
            # (`hold_bytes`, `store_every`) has heard of every revocation before it stores
            # anything else.
            whole_ids = sorted(self._send_whole, key=lambda d: (d != DEVICE_LIST_ID, d))
        changes_first = not self._changes_sent
        self._changes_sent = True
        out: list[Frame] = []
        sent: set[str] = set()
        for doc_id in candidates:
            if doc_id in self._over_budget:
                continue
            doc = self._doc(doc_id)
            # The sync state holds what the peer told us, so this too runs on foreign data.
            message = _foreign(doc.generate_sync_message, self._sync_states[doc_id])
            if message is not None:
                out.append(sync_frame(doc_id, message.encode()))
                sent.add(doc_id)
            if len(self._docs) > MAX_HELD_DOCS:
                out += self._let_go_now()  # nothing changed in these: only let go
        self._sent_last_turn = sent
        self._state = "peer-turn"
        for start in range(0, len(whole_ids), WHOLE_CHUNK):
            chunk = []
            for doc_id in whole_ids[start:start + WHOLE_CHUNK]:
                data, heads = self.store.stored_doc(doc_id)
                self._whole_out_heads[doc_id] = heads
                chunk.append(whole_frame(doc_id, data))
            yield chunk
        changes_count = 0
        if changes_first:  # in chunks too: each frame that goes out tells the peer this side works
            for chunk in self._changes_out():
                changes_count += sum(1 for f in chunk if f.type == FrameType.CHANGES)  # not PROGRESS
                yield chunk
        count = len(whole_ids) + changes_count + len(sent)
        self._my_last_count = count
        self._turn_progress()
        yield out + [turn_end_frame(count)]

    def _changes_out(self) -> Iterator[list[Frame]]:
        """This side's CHANGES frames (its first turn, in chunks of WHOLE_CHUNK): per document
        of `_by_changes`, what this side holds that the peer is known to lack. The client knows the peer holds the
        baseline's heads; the server, which hears the client's changes first, knows the
        peer holds the heads it listed (the changes it sent brought them here). Bounded by
        the document's own stored size: past it, the whole document goes instead (a load
        of both merges them just the same)."""
        frames: list[Frame] = []
        for doc_id in sorted(self._by_changes):
            if doc_id in self._over_budget:
                continue
            known = self._baseline.get(doc_id) if self.role == "client" else self._peer_heads.get(doc_id)
            held = self._docs.get(doc_id)
            here = set(held.get_heads()) if held is not None else self._stored_heads(doc_id)
            if not known or here == set(known):
                continue  # nothing the peer lacks (and nothing loaded to find out)
            doc = self._doc(doc_id)
            changes = _foreign(doc.get_changes, sorted(known))
            blob = b"".join(c.bytes for c in changes)
            if len(blob) > 4096:
                saved = doc.save()
                blob = saved if len(saved) < len(blob) else blob
            frames.append(changes_frame(doc_id, blob))
            if len(self._docs) > MAX_HELD_DOCS:
                frames += self._let_go_now()  # what changed here is stored; all are let go
            if len(frames) >= WHOLE_CHUNK:
                yield frames
                frames = []
        yield frames

    def _receive_changes(self, doc_id: str, raw: bytes) -> list[Frame]:
        """A peer's changes to a document both held at the last sync: counted against the
        budget with our copy, loaded with it (merged, never replacing), and held like a
        document of the sync-message path, so it is stored through the same intake
        (`apply_doc`: the record-document check, revocation, plausible dates, signatures)."""
        held = self._docs.get(doc_id)
        if held is not None and set(held.get_heads()) != self._stored_heads(doc_id):
            base = held.save()
        else:
            base = self.store.stored_doc(doc_id)[0]
        data = bytes(base) + raw
        try:
            _foreign(self.store.check_document, doc_id, data)
        except DocumentOverBudget as e:
            self._over_budget.add(doc_id)
            self._docs.pop(doc_id, None)
            self._sync_held.pop(doc_id, None)
            self.report.errors.append(e.message)
            return []
        except ForeignDocument:
            raise _unreadable() from None
        self._docs[doc_id] = _foreign(Document.load, data)
        self._sync_states.setdefault(doc_id, SyncState())
        self._sync_held[doc_id] = self._sync_held.get(doc_id, 0) + len(raw)
        return self._let_go_now() if self._over_hold() else []

    def _on_turn_frame(self, frame: Frame) -> list[Frame]:
        if frame.type == FrameType.CHANGES:
            doc_id, raw = decode_sync(frame.payload)
            if doc_id not in self._by_changes or doc_id in self._changes_in:
                raise ProtocolError("The other device sent data for a document outside this sync.")
            self._changes_in.add(doc_id)
            self._frames_this_turn += 1
            if doc_id in self._over_budget:
                return []  # refused whole: nothing more of it is received
            return self._receive_changes(doc_id, raw)
        if frame.type == FrameType.WHOLE:
            doc_id, raw = decode_sync(frame.payload)
            if doc_id not in self._expect_whole or doc_id in self._whole_seen:
                raise ProtocolError("The other device sent data for a document outside this sync.")
            out: list[Frame] = []
            if self._whole_in and self._held + len(raw) > self._hold_bytes:
                out = self._store_whole_now()  # what is held goes to the store now
            self._whole_seen.add(doc_id)
            self._whole_in[doc_id] = raw  # checked and stored in bulk (apply_snapshots)
            self._held += len(raw)
            self._frames_this_turn += 1
            if len(self._whole_in) >= self._store_every:
                out = self._store_whole_now()  # stored while the rest arrives
            return out
        if frame.type == FrameType.SYNC:
            doc_id, raw = decode_sync(frame.payload)
            if (doc_id not in self._differ or doc_id in self._send_whole or doc_id in self._expect_whole
                    or doc_id in self._by_changes):
                raise ProtocolError("The other device sent data for a document outside this sync.")
            if not self._within_budget(doc_id, raw):
                self._frames_this_turn += 1
                return []  # refused whole: nothing of it is received, applied or answered
            doc = self._doc(doc_id)
            message = _foreign(Message.decode, raw)
            _foreign(doc.receive_sync_message, self._sync_states[doc_id], message)
            self._sync_held[doc_id] = self._sync_held.get(doc_id, 0) + len(raw)
            self._received_this_turn.append(doc_id)
            self._frames_this_turn += 1
            # What one session holds is capped (sync/limits.py): past it, what changed is
            # stored now and kept, so a large first sync completes and one cut short resumes.
            return self._let_go_now() if self._over_hold() else []
        if frame.type != FrameType.TURN_END:
            raise ProtocolError("The other device sent an unexpected message during the sync.")
        count = read_turn_end(frame)
        if count != self._frames_this_turn:
            raise ProtocolError("The other device's message count does not match what arrived.")
        self._frames_this_turn = 0
        self._turns += 1
        received = self._received_this_turn
        self._received_this_turn = []
        if count == 0 and self._my_last_count == 0:
            return self._run_steps(self._finish())
        # Only documents that just heard from the peer, or that spoke last turn, can have more
        # to say; the rest already returned "nothing to send" and nothing changed for them.
        candidates = sorted(set(received) | self._sent_last_turn)
        return self._run_steps(self._turn_then_maybe_finish(candidates, count))

    def _turn_then_maybe_finish(self, candidates: list[str], count: int) -> Iterator[list[Frame]]:
        yield from self._my_turn(candidates)
        if count == 0 and self._my_last_count == 0:
            yield from self._finish()

    # -- finish

    def _finish(self) -> Iterator[list[Frame]]:
        """In steps: the documents held are stored (batches, progress between them), then
        DONE with the digest of the final heads."""
        self._refuse_revoked_peer()
        if DEVICE_LIST_ID in self._whole_in:
            yield from self._store_whole(len(self._applied) + len(self._whole_stored), only=DEVICE_LIST_ID)
        yield from self._let_go()
        yield from self._store_whole(len(self._applied) + len(self._whole_stored))
        self._refuse_revoked_peer()
        final: dict[str, list[bytes]] = {}
        for doc_id in self._differ:
            if doc_id in self._send_whole:
                final[doc_id] = sorted(self._whole_out_heads.get(doc_id, ()))
            elif doc_id in self._expect_whole:
                final[doc_id] = self._whole_stored.get(doc_id, [])
            else:
                # What is stored now: merged, or ours as it was when the peer's was refused.
                final[doc_id] = sorted(self._stored_heads(doc_id))
        changed_ids: set[str] = set(self._whole_stored)
        for doc_id in self._applied:
            changed_ids.add(doc_id)
            self.report.received += 1
            local, peer = self._local_heads.get(doc_id), self._peer_heads.get(doc_id)
            if local and peer and set(final[doc_id]) != peer:
                self.report.merged += 1
        self.report.changed_ids |= changed_ids
        self.report.conflicts = self.store.count_conflicts(changed_ids)
        self._final = final
        self._digest = heads_digest(final)
        self._progress(len(self._differ))
        self._state = "await-done"
        yield [done_frame(self.report.received, self._digest)]

    def _transaction(self):
        return self.store.transaction()

    def _refuse_revoked_peer(self) -> None:
        """Ends the session when its peer has been revoked since it began: here (`sync forget`,
        in any process) or by a revocation that just reached this device."""
        if PeerBook(self.store).is_revoked(self.peer_device_id):
            raise NotPaired("The other device has been revoked; the sync was stopped and nothing more from it was saved.")

    def _store_whole(self, progress_from: int, only: str | None = None) -> Iterator[list[Frame]]:
        """Stores the whole documents held (as they arrive, every `store_every`; when they
        reach `hold_bytes`; at the end): transactions of APPLY_BATCH, progress after each.
        The device list among them goes first, on its own, and a revocation in it is honoured
        before the rest; `only` stores just that document."""
        if DEVICE_LIST_ID in self._whole_in and only is None and len(self._whole_in) > 1:
            yield from self._store_whole(progress_from, only=DEVICE_LIST_ID)
            self._refuse_revoked_peer()
        if only is not None:
            whole = [(only, self._whole_in.pop(only))] if only in self._whole_in else []
            self._held -= sum(len(data) for _d, data in whole)
        else:
            whole = sorted(self._whole_in.items())
            self._whole_in, self._held = {}, 0
        if not whole:
            return
        self._refuse_revoked_peer()
        applied, refused = _foreign(lambda: self.store.apply_snapshots(
            whole, batch=APPLY_BATCH, on_batch=lambda done: self._progress(progress_from + done)))
        for doc_id, heads in applied.items():
            self._whole_stored[doc_id] = sorted(heads)
            self.report.received += 1
        for error in refused.values():
            self.report.errors.append(error.message)
        self._whole_settled += len(whole)
        yield self._progress_frames(force=True)

    def _store_whole_now(self) -> list[Frame]:
        frames: list[Frame] = []
        for step in self._store_whole(len(self._applied) + len(self._whole_stored)):
            frames = step or frames
        return frames


    # -- baseline: what both sides held at the end of their last complete sync

    @property
    def _baseline_key(self) -> str:
        return BASELINE_PREFIX + self.peer_device_id

    def _load_baseline(self) -> tuple[dict[str, set[bytes]], str | None]:
        raw = self.store.local_get(self._baseline_key)
        if raw is None:
            return {}, None
        try:
            baseline = decode_baseline(raw)
        except ValueError:
            return {}, None  # unreadable: fall back to a full manifest, which rewrites it
        return baseline, heads_digest(baseline)

    def _save_baseline(self) -> None:
        baseline: dict[str, list[bytes]] = {}
        for doc_id in set(self._local_heads) | set(self._peer_heads):
            if doc_id in self._final:
                heads = self._final[doc_id]
            elif self._local_heads.get(doc_id) == self._peer_heads.get(doc_id):
                heads = sorted(self._local_heads.get(doc_id) or ())
            else:
                continue
            if heads:
                baseline[doc_id] = heads
        self.store.local_put(self._baseline_key, encode_baseline(baseline))

    def _on_done(self, frame: Frame) -> list[Frame]:
        if frame.type != FrameType.DONE:
            raise ProtocolError("The other device sent an unexpected message at the end of the sync.")
        received, digest = read_done(frame)
        self.report.sent = max(0, min(received, len(self._differ)))
        if digest != self._digest:
            self.report.errors.append(
                "The two devices did not end with the same documents; sync again to finish."
            )
        if self.report.ok and not (self._delta and not self._differ):
            self._save_baseline()  # (unchanged when a delta sync found nothing to do)
        if self._live:
            self._start_live()
        else:
            self._state = "finished"
        return []

    # -- live mode: after DONE, each change is pushed as sync messages for that document

    def _start_live(self) -> None:
        self._docs = {}  # the first exchange's copies; live messages use the store's
        # What the peer is known to hold now: the synced documents' final heads, the rest as
        # listed. The first look compares everything with it, so an edit made here during
        # the first exchange goes out too.
        known = {d: set(h) for d, h in self._local_heads.items()}
        known.update({d: set(h) for d, h in self._final.items() if h})
        self._known = known
        self._marker = None
        # The ids each of this process's commits wrote (store/replica.py): a local edit
        # pushes just those documents instead of a scan of every document's heads.
        self._pending: set[str] = set()
        self._pending_lock = threading.Lock()
        self.store.add_listener(self._committed)
        self._state = "live"

    def _committed(self, doc_ids: frozenset[str]) -> None:
        # Called in whichever thread committed; poll_local takes the ids in the store's thread.
        with self._pending_lock:
            self._pending |= doc_ids

    def wake_on_commit(self, wake: Callable[[], None]) -> None:
        """`wake()` after each of this process's commits, so the loop that drives the live
        session looks at once (sync/driver.py) instead of at its next interval."""
        self._wake = lambda _doc_ids: wake()
        self.store.add_listener(self._wake)

    def detach(self) -> None:
        """Stops hearing of this process's commits (the live session ended, however it ended)."""
        self.store.remove_listener(self._committed)
        if self._wake is not None:
            self.store.remove_listener(self._wake)
            self._wake = None

    def poll_local(self) -> list[Frame]:
        """Sync messages for the documents changed here since the last call (live mode).

        Cheap when nothing was written: one PRAGMA. Call it every few tens of milliseconds in
        the store's thread.
        """
        if self._state != "live":
            return []
        marker = self.store.change_marker()
        if marker == self._marker:
            return []
        # Another connection committed (data_version moved), or this is the first look: its
        # ids are unknown here, so every document's heads are compared. Otherwise only this
        # connection wrote, and its commits reported what they changed.
        scan = self._marker is None or marker[0] != self._marker[0]
        self._marker = marker
        # Something was written: a revocation of the peer (here, by another program, or
        # brought by another session) ends this one at once.
        self._refuse_revoked_peer()
        with self._pending_lock:
            pending, self._pending = self._pending, set()
        if scan:
            candidates = self.store.doc_heads().items()
        else:
            candidates = ((doc_id, self.store.doc_heads_of(doc_id)) for doc_id in sorted(pending))
        out: list[Frame] = []
        for doc_id, heads in candidates:
            heads = set(heads)
            if not heads or self._known.get(doc_id) == heads:
                continue
            self._known[doc_id] = heads
            self._docs.pop(doc_id, None)
            doc = self.store.load_doc(doc_id)
            state = self._sync_states.setdefault(doc_id, SyncState())
            message = _foreign(doc.generate_sync_message, state)
            if message is not None:
                out.append(sync_frame(doc_id, message.encode()))
                self.report.sent += 1
        return out

    def close(self) -> list[Frame]:
        """Ends a live session from this side: the BYE to send."""
        was_live = self._state == "live"
        self._finish_live()
        return [Frame(FrameType.BYE)] if was_live else []

    def _finish_live(self) -> None:
        if self._state == "live":
            self.detach()
        self._state = "finished"

    @staticmethod
    def ping() -> Frame:
        return Frame(FrameType.PING)

    @staticmethod
    def farewell(error: BaseException) -> list[Frame]:
        """What to send before closing on `error`: its code, so the other side can say why
        (a peer that stopped the sync itself gets nothing back)."""
        return [] if isinstance(error, PeerReportedError) else [error_frame(error)]

    def _on_live(self, frame: Frame) -> list[Frame]:
        if frame.type == FrameType.PING:
            return []
        if frame.type == FrameType.BYE:
            self._finish_live()
            return []
        if frame.type != FrameType.SYNC:
            raise ProtocolError("The other device sent an unexpected message during a live sync.")
        doc_id, raw = decode_sync(frame.payload)
        # Counted on from the first exchange (our copy then, and all the peer has brought
        # since), so a keystroke's message never re-reads a long note's stored copy.
        if not self._within_budget(doc_id, raw):
            self._sync_states.pop(doc_id, None)
            return []  # refused whole (named in the report); the live session goes on
        state = self._sync_states.setdefault(doc_id, SyncState())
        if doc_id in self._known:
            doc = self.store.load_doc(doc_id)  # a fork of ours, with every local edit
        else:
            doc = self._docs.setdefault(doc_id, Document())  # new here: built up message by message
        before = set(doc.get_heads())
        _foreign(doc.receive_sync_message, state, _foreign(Message.decode, raw))
        after = set(doc.get_heads())
        if after and after != before:
            try:
                changed = _foreign(self.store.apply_doc, doc_id, doc)
            except ForeignDocument as e:
                self.report.errors.append(e.message)
                changed = False
            if changed:
                self.report.received += 1
                self.report.changed_ids.add(doc_id)
                self.report.live_changed.add(doc_id)
                self._known[doc_id] = after
                self._docs.pop(doc_id, None)
                if doc_id == DEVICE_LIST_ID:
                    self._refuse_revoked_peer()
        reply = _foreign(doc.generate_sync_message, state)
        return [sync_frame(doc_id, reply.encode())] if reply is not None else []

    def _progress(self, done: int) -> None:
        if self.on_progress is not None:
            self.on_progress(max(0, min(done, len(self._differ))), len(self._differ))
