"""Reading documents received whole on more than one core.

A first sync onto a new laptop brings every document of the record whole. Before one is
stored it is loaded (Automerge) and read into its list and search rows (`prepare_whole`):
about 0.6 ms a document, all of it holding the interpreter lock, so threads cannot share it.
`PreparePool` hands chunks of that work to worker processes while the calling thread does
its own share of the same list (or, with `caller_helps=False`, only waits, unless the workers
are gone); the results are exactly what `prepare_whole_many` returns. The same workers build
the documents of a large import file's clients and progress notes (`work="import"`:
`store.importer.build_items`, JSON text in, documents and rows out), and read a vault's
stored documents into the rows and signature states `notewell check` compares
(`work="check"`, `work="states"`: store/check_reading.py).

Why it is safe to have:
- Workers are this interpreter started afresh on this module (`worker_command`: isolated
  mode, this installed package's folder, an environment without NOTEWELL_* variables), never
  a fork of a process that runs threads, and never whatever `store` the current folder holds.
- They see the record only (documents, or an import file's clients and progress notes;
  never a process note), bytes in, rows out; they hold nothing between chunks, write
  no file, disable their own core dumps, and their stderr goes nowhere, so nothing they
  meet can reach a log.
- A worker that is still starting, that dies or that stops answering costs only time:
  whatever it has not returned, the calling thread does. A worker exits when its input
  closes, which also happens when the process that started it dies.

    with PreparePool() as pool:            # or pool.close() when done
        record.replica.prepare_pool = pool  # the intake's apply_snapshots then uses it
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from store.projections import expected_rows_many, prepare_whole_many

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

CHUNK = 24  # documents per message: ~15 ms of work, so a round trip costs little
MIN_PARALLEL = 2 * CHUNK  # below this the calling thread alone is as quick
MAX_WORKERS = 3
IN_FLIGHT = 4  # chunks queued per worker, so it never waits for this process's lock
# How much lower a pool's workers run than the interface they work for (`caller_helps=False`):
# they take every core the interface leaves, and give it back whenever the interface wants it.
BACKGROUND_NICE = 10
STALL = 5.0  # seconds without an answer before a caller that does not help starts to anyway
_LENGTH = struct.Struct(">I")
_READY = b"ready"
_STOP_WAIT = 2.0

Items = list[tuple[str, bytes]]

# What a worker can be asked to do: read documents received whole (sync), build the
# documents of an import file's items (store/importer.py), or read stored documents into the
# rows or the signature states a check expects (store/check_reading.py). All are bytes in,
# rows out.
WORK = ("whole", "import", "check", "states")


def _do(work: str, items: list, late_hours: int, context: object) -> list:
    if work == "import":
        from store.importer import build_items

        return build_items(items, late_hours, context)
    if work == "check":
        return expected_rows_many(items, late_hours)
    if work == "states":
        from store.signature_index import states_of_stored

        return states_of_stored(items, context)  # context: the trusted keys
    return prepare_whole_many(items, late_hours, context)  # context: the trusted keys, or None


def default_workers(caller_helps: bool = True) -> int:
    """One worker per core beyond the caller's own, at most MAX_WORKERS. A caller that does
    not help (the app: its thread only waits and stores) leaves its core to one more worker;
    with one worker on two cores, the app's first sync read every document on one core
    while the other stood idle."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(0, min(MAX_WORKERS, cores - (1 if caller_helps else 0)))


# --- messages: a 4-byte length, then a pickle (only ever between this process and its own
# workers, over their private pipes) ---------------------------------------------------


def _send(stream: BinaryIO, obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


def _recv(stream: BinaryIO) -> object:
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        raise EOFError
    (length,) = _LENGTH.unpack(header)
    data = stream.read(length)
    if len(data) < length:
        raise EOFError
    return pickle.loads(data)


# --- the parent side ---------------------------------------------------------------------


# What a worker inherits of this process's environment: what the interpreter needs to run,
# nothing else (no NOTEWELL_* variable: the passphrase may be one).
_WORKER_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "LD_LIBRARY_PATH", "SYSTEMROOT")
# The worker's first line: this package's own folder first on the import path, then the
# worker. Run with -I, so nothing else decides what `store` is (see `worker_command`).
_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from store.prepare_pool import run_worker; run_worker()"


def worker_command(boot: str = _BOOT) -> tuple[list[str], dict[str, str], str]:
    """(argv, environment, working folder) of a worker process (`boot`: its first line, by
    default this pool's worker; store/backup_process.py passes its own).

    `python -m store.prepare_pool` would run whatever `store` the current folder holds (a
    shared mailbox folder the clinician is in, say): Python puts that folder first on the
    import path. Isolated mode (-I: no current folder, no user site-packages, no PYTHON*
    variables) and the explicit folder of this installed package leave no other choice; the
    worker also starts in that folder, with none of this process's secrets."""
    root = str(Path(__file__).resolve().parents[1])
    env = {name: os.environ[name] for name in _WORKER_ENVIRONMENT if name in os.environ}
    return [sys.executable, "-I", "-c", boot, root], env, root


# A worker's answer (a chunk of built documents and rows) is larger than a pipe's default
# 64 KiB: the worker blocked writing it until the feeder thread read, and the feeder reads only
# when it gets this process's interpreter lock, up to a switch interval (5 ms) per read while
# the caller builds. Pipes of 1 MiB (Linux's limit for anyone) take a whole answer at once.
PIPE_SIZE = 1 << 20


def _widen(*pipes: BinaryIO) -> None:
    setsize = getattr(fcntl, "F_SETPIPE_SZ", None) if fcntl is not None else None
    if setsize is None:
        return  # not Linux: the default pipes work, only slower
    for pipe in pipes:
        try:
            fcntl.fcntl(pipe.fileno(), setsize, PIPE_SIZE)
        except OSError:
            pass  # a lower limit set by the administrator: the default size works too


class _Worker:
    def __init__(self, nice: int = 0) -> None:
        argv, env, cwd = worker_command()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=env, cwd=cwd, close_fds=True,
        )
        _widen(self.proc.stdin, self.proc.stdout)
        if nice:
            try:
                os.setpriority(os.PRIO_PROCESS, self.proc.pid, os.getpriority(os.PRIO_PROCESS, 0) + nice)
            except (AttributeError, OSError):
                pass  # no priorities here: the worker runs at the caller's, as it did before
        self.lock = threading.Lock()  # one job drives a worker at a time
        self.ready = False
        self.dead = False

    def await_ready(self) -> bool:
        """Blocks (in the job's feeder thread) until the worker has started; False if it died."""
        if not self.ready and not self.dead:
            try:
                self.ready = _recv(self.proc.stdout) == _READY
            except (EOFError, OSError, pickle.UnpicklingError):
                self.ready = False
            self.dead = not self.ready
        return self.ready

    def close(self) -> None:
        self.dead = True
        if self.lock.locked():
            # A feeder is mid-conversation, perhaps blocked writing a chunk larger than the
            # pipe to a worker that reads nothing (stopped, hung): closing stdin would wait
            # for that write forever. Ending the worker breaks the pipe and frees the feeder.
            self.proc.kill()
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=_STOP_WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


class _Job:
    """A list of documents being prepared, in batches that the caller stores one after another.

    Chunks never straddle a batch. Workers take chunks in order and go on while the caller
    stores a batch. A caller that helps takes the first chunk nobody has; once all are taken,
    the last one sent to a worker that is still unanswered (most likely waiting in the
    worker's queue), so the two finish a batch together. Whichever answer comes first is kept.
    A caller that does not help (the app, whose interface shares this process's lock) only
    waits, unless no worker is left or none has answered for STALL seconds."""

    def __init__(self, items: Items, late_hours: int, batch: int, *, helps: bool, feeders: int,
                 work: str = "whole", context: object = None) -> None:
        self.late_hours = late_hours
        self.work, self.context = work, context
        self.chunks: list[Items] = []
        self.batch_ends: list[int] = []  # per batch, the index after its last chunk
        for start in range(0, len(items), batch):
            part = items[start:start + batch]
            self.chunks += [part[i:i + CHUNK] for i in range(0, len(part), CHUNK)]
            self.batch_ends.append(len(self.chunks))
        self.todo = deque(range(len(self.chunks)))
        self.results: list[list | None] = [None] * len(self.chunks)
        self.held: dict[int, _Worker] = {}  # sent to a worker, not answered yet
        self.doubled: set[int] = set()  # held chunks the caller does as well
        self.helps = helps
        self.feeders = feeders  # feeder threads still running
        self.last_answer = time.monotonic()
        self.stopped = False
        self.cond = threading.Condition()

    def take(self, worker: _Worker) -> int | None:
        with self.cond:
            if self.stopped or not self.todo:
                return None
            index = self.todo.popleft()
            self.held[index] = worker
            return index

    def answer(self, index: int, result: list) -> None:
        with self.cond:
            if self.results[index] is None:
                self.results[index] = result
            self.held.pop(index, None)
            self.last_answer = time.monotonic()
            self.cond.notify_all()

    def feeder_done(self) -> None:
        with self.cond:
            self.feeders -= 1
            self.cond.notify_all()

    def give_back(self, indexes) -> None:
        """A worker died holding these: someone else does them."""
        with self.cond:
            for index in indexes:
                if self.held.pop(index, None) is not None and self.results[index] is None:
                    self.todo.appendleft(index)
            self.cond.notify_all()

    def next_for_caller(self, lo: int, hi: int, meanwhile: Callable[[], bool] | None = None) -> int | None:
        """The caller's next chunk while batch [lo, hi) is unfinished; None once it is done.

        Once every chunk is taken, a helping caller does the workers' too, newest first,
        rather than wait: so a worker that stops answering (a document that makes the
        reader hang) holds up nothing. A caller that does not help does `meanwhile()`
        (without the lock) while it would wait, until that says there is nothing left to do;
        from then on it helps."""
        with self.cond:
            while any(self.results[i] is None for i in range(lo, hi)):
                if not self.helps and meanwhile is not None:
                    self.cond.release()
                    try:
                        more = meanwhile()
                    finally:
                        self.cond.acquire()
                    if not more:
                        self.helps, meanwhile = True, None
                    continue
                if not self.helps and (self.feeders == 0 or time.monotonic() - self.last_answer > STALL):
                    self.helps = True  # nobody left to wait for
                if self.helps:
                    if self.todo:
                        return self.todo.popleft()
                    spare = [i for i in self.held if lo <= i < hi and i not in self.doubled and self.results[i] is None]
                    if spare:
                        self.doubled.add(max(spare))
                        return max(spare)
                self.cond.wait(0.1)
            return None

    def batch(self, lo: int, hi: int) -> list:
        with self.cond:
            return [r for chunk in self.results[lo:hi] for r in chunk]

    def release(self, lo: int, hi: int) -> None:
        """Forgets the results of chunks [lo, hi), already handed to the caller (an answer
        that comes late for one of them is dropped, as any second answer is)."""
        with self.cond:
            for i in range(lo, hi):
                self.results[i] = []

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.todo.clear()


def _feed(worker: _Worker, job: _Job) -> None:
    """Runs in a thread per worker and job: keeps the worker busy with chunks of the job."""
    if not worker.lock.acquire(timeout=1.0):
        job.feeder_done()
        return  # still held by a feeder stuck on a worker that never started: skip it
    in_flight: deque[int] = deque()
    try:
        if not worker.await_ready():
            return
        while True:
            while len(in_flight) < IN_FLIGHT:
                index = job.take(worker)
                if index is None:
                    break
                in_flight.append(index)  # before sending: a failed send gives it back
                _send(worker.proc.stdin, (job.late_hours, job.chunks[index], job.work, job.context))
            if not in_flight:
                return
            result = _recv(worker.proc.stdout)
            if not isinstance(result, list) or len(result) != len(job.chunks[in_flight[0]]):
                raise EOFError  # not an answer to what was asked: treat the worker as gone
            job.answer(in_flight.popleft(), result)
    except (EOFError, OSError, ValueError, pickle.PickleError):
        worker.dead = True
    except Exception:  # an answer that does not unpickle as one (TypeError...): the same
        worker.dead = True
    finally:
        if in_flight:
            job.give_back(in_flight)
        worker.lock.release()
        job.feeder_done()


class PreparePool:
    """Worker processes for `prepare_whole_many`; see the module docstring."""

    def __init__(self, workers: int | None = None, *, caller_helps: bool = True) -> None:
        """`caller_helps=False`: the calling thread leaves the reading to the workers while
        they answer (the app: its interface needs this process's lock more than the sync
        needs the second core's share); its core's share goes to one more worker, and the
        workers run BACKGROUND_NICE below the caller, so the interface still gets a core."""
        self.caller_helps = caller_helps
        count = default_workers(caller_helps) if workers is None else workers
        self._workers: list[_Worker] = []
        for _ in range(count if sys.executable else 0):  # an embedded interpreter has none to start
            try:
                self._workers.append(_Worker(0 if caller_helps else BACKGROUND_NICE))
            except OSError:
                break  # no process to be had: the calling thread does it all
        self._closed = False

    def __enter__(self) -> "PreparePool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def worker_count(self) -> int:
        """Workers not known to have died."""
        return sum(1 for w in self._workers if not w.dead)

    def wait_ready(self, timeout: float = 5.0) -> bool:
        """Waits until every worker has started (a server does this before it listens)."""
        done = threading.Event()

        def wait_all() -> None:
            for worker in self._workers:
                with worker.lock:
                    worker.await_ready()
            done.set()

        threading.Thread(target=wait_all, name="notewell-prepare-wait", daemon=True).start()
        return done.wait(timeout) and self.worker_count == len(self._workers)

    def prepare_batches(self, items: Items, late_entry_hours: int, batch: int, *, work: str = "whole",
                        context: object = None, helps: bool | None = None,
                        meanwhile: Callable[[], bool] | None = None) -> Iterator[list[tuple | None]]:
        """`prepare_whole_many` (or the `work` named, see WORK) of each `batch` items in turn,
        with the workers' help; they work ahead while the caller stores what it was given.
        `helps`: whether the caller builds too (default: the pool's `caller_helps`).
        `meanwhile`: a caller's own work (an import's writing), done a step at a time while
        it would wait for the workers; it returns False once there is none left, and the
        caller then helps."""
        batch = max(1, batch)
        workers = [w for w in self._workers if not w.dead]
        if self._closed or not workers or len(items) < MIN_PARALLEL:
            for start in range(0, len(items), batch):
                yield _do(work, items[start:start + batch], late_entry_hours, context)
            return
        job = _Job(items, late_entry_hours, batch, helps=self.caller_helps if helps is None else helps,
                   feeders=len(workers),
                   work=work, context=context)
        for worker in workers:
            threading.Thread(target=_feed, args=(worker, job), name="notewell-prepare-feed", daemon=True).start()
        try:
            lo = 0
            for hi in job.batch_ends:
                while (index := job.next_for_caller(lo, hi, meanwhile)) is not None:
                    job.answer(index, _do(work, job.chunks[index], late_entry_hours, context))
                yield job.batch(lo, hi)
                job.release(lo, hi)  # handed over: a long job holds only what is ahead
                lo = hi
        finally:
            job.stop()  # also when the caller stops early: the workers take nothing more

    def prepare_many(self, items: Items, late_entry_hours: int, *, work: str = "whole",
                     context: object = None) -> list[tuple | None]:
        """`prepare_whole_many(items, late_entry_hours)` (or the `work` named), with the workers' help."""
        return [r for part in self.prepare_batches(items, late_entry_hours, len(items), work=work, context=context)
                for r in part]

    def close(self) -> None:
        self._closed = True
        for worker in self._workers:
            worker.close()


# --- the worker side ---------------------------------------------------------------------


def _worker_main() -> int:
    """Reads (late_entry_hours, items) messages; answers each with its prepared list.

    Requests are read in a thread of their own, so the parent's writes never wait on this
    process's answers (each side may be writing at once)."""
    import queue

    try:  # it holds decrypted record documents: no core dump, whoever started it
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing stray may land in the answer stream
    requests: queue.Queue = queue.Queue()

    def read() -> None:
        try:
            while True:
                requests.put(_recv(stdin))
        except (EOFError, OSError, pickle.PickleError):
            requests.put(None)

    threading.Thread(target=read, daemon=True).start()
    _send(stdout, _READY)
    while (request := requests.get()) is not None:
        late_hours, items, work, context = request
        if work not in WORK:
            break  # not a request this process understands: its parent is not ours
        _send(stdout, _do(work, items, late_hours, context))
    return 0


def run_worker() -> None:
    """A worker process's whole life (started by `worker_command`)."""
    try:
        sys.exit(_worker_main())
    except (KeyboardInterrupt, BrokenPipeError):
        sys.exit(0)  # Ctrl-C in the terminal, or the parent went away: nothing to say
