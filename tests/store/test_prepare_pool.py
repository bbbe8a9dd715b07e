"""Worker processes that read documents received whole (store/prepare_pool.py).

Real worker processes throughout; the documents are synthetic notes from a real vault, plus
bytes that are not a document and a document filed under another id. What the pool returns
must be exactly what the calling thread alone returns, whatever happens to the workers.
"""

from __future__ import annotations

import os
import signal

import pytest

from store import prepare_pool
from store.prepare_pool import CHUNK, PreparePool
from store.projections import prepare_whole_many
from store.models import ClinicianSettings
from store.synthetic import populate
from store.vault import KdfParams, Vault

FAST_KDF = KdfParams(memory_kib=8192, time_cost=1, parallelism=1)
VAULT_PASSPHRASE = "pool test passphrase"
LATE_HOURS = 72


from store.device_list import DEVICE_LIST_ID  # noqa: E402

_SOURCE: dict = {}


def paired_with_source(vault) -> None:
    """The receiving vault trusts the device the items come from, as pairing leaves it
    (its addenda are signed by that device's key)."""
    me = _SOURCE["identity"]
    vault.record.replica.vouch_for(me.device_id, me.name, me.cert_pem)


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    """Every stored document of a synthetic vault, plus two that must be refused."""
    vault, _ = Vault.create(tmp_path_factory.mktemp("pool") / "vault", VAULT_PASSPHRASE,
                            device_name="Pool test laptop", kdf=FAST_KDF,
                            settings=ClinicianSettings(clinician_name="Dr. Pool Example", credentials="LCSW"))
    try:
        populate(vault, clients=6, notes=140, seed=11)
        _SOURCE["identity"] = vault.identity
        got = [(doc_id, vault.record.replica.stored_doc(doc_id)[0]) for doc_id in sorted(vault.record.replica.doc_heads())]
    finally:
        vault.close()
    some_doc = got[3][1]
    return got[:70] + [("not-a-document", b"\x85\x6f\x4a\x83 not automerge"), ("filed-elsewhere", some_doc)] + got[70:]


@pytest.fixture
def pool():
    with PreparePool(workers=2) as p:
        assert p.wait_ready(timeout=30), "the workers did not start"
        yield p


def _alone(items):
    return prepare_whole_many(items, LATE_HOURS)


def test_results_are_exactly_the_calling_threads(items, pool):
    expected = _alone(items)
    assert expected[70] is None and expected[71] is None  # refused either way
    assert sum(r is not None for r in expected) == len(items) - 2
    assert pool.prepare_many(items, LATE_HOURS) == expected
    for batch in (1, CHUNK - 1, CHUNK, 50, len(items) + 5):
        parts = list(pool.prepare_batches(items, LATE_HOURS, batch))
        assert [len(p) for p in parts] == [len(items[i:i + batch]) for i in range(0, len(items), batch)]
        assert [r for p in parts for r in p] == expected


def test_signature_states_read_with_keys_are_the_calling_threads(items, pool):
    """The trusted keys travel to the workers as bytes; the states they verify with them are
    those this thread computes, and the source's signed notes verify."""
    from store.device_list import DeviceTrust, TrustedDevice, _public_key
    from store.documents import KIND_NOTE
    from store.signature_index import worker_keys

    me = _SOURCE["identity"]
    trust = DeviceTrust("receiver", {me.device_id: TrustedDevice(me.device_id, me.name, _public_key(me.cert_pem, me.device_id))})
    keys = worker_keys(trust)
    expected = prepare_whole_many(items, LATE_HOURS, keys)
    assert pool.prepare_many(items, LATE_HOURS, context=keys) == expected
    states = [r[4] for r in expected if isinstance(r, tuple) and r[0] == KIND_NOTE]
    assert any(s is not None and s[0] == "verified" and s[2] == (me.device_id,) for s in states)
    assert all(s is None or s[0] == "verified" for s in states)
    # The rows are those read without keys.
    assert [r[:4] if isinstance(r, tuple) else r for r in expected] == [
        r[:4] if isinstance(r, tuple) else r for r in _alone(items)
    ]


def test_the_workers_do_a_share(items, pool, answers_by_thread):
    by_thread = answers_by_thread
    assert pool.prepare_many(items, LATE_HOURS) == _alone(items)
    assert by_thread.get("notewell-prepare-feed", 0) > 0


def test_no_workers_and_small_lists_stay_in_this_thread(items):
    with PreparePool(workers=0) as none:
        assert none.worker_count == 0
        assert none.prepare_many(items, LATE_HOURS) == _alone(items)
    with PreparePool(workers=1) as one:
        small = items[:CHUNK]
        assert one.prepare_many(small, LATE_HOURS) == _alone(small)
        assert list(one.prepare_batches([], LATE_HOURS, 10)) == []


def test_a_worker_killed_before_or_during_a_job_costs_only_time(items, pool):
    expected = _alone(items)
    first = pool._workers[0].proc
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    assert pool.prepare_many(items, LATE_HOURS) == expected
    assert pool.worker_count == 1

    second = pool._workers[1].proc
    parts = pool.prepare_batches(items, LATE_HOURS, CHUNK)
    got = list(next(parts))  # the worker now holds chunks of the job
    os.kill(second.pid, signal.SIGKILL)
    for part in parts:
        got += part
    assert got == expected
    assert pool.worker_count == 0
    assert pool.prepare_many(items, LATE_HOURS) == expected  # no workers left: all here


def test_a_worker_that_stops_answering_holds_up_nothing(items):
    data = items
    pool = PreparePool(workers=2)
    try:
        assert pool.wait_ready(timeout=30)
        stuck = pool._workers[0].proc
        os.kill(stuck.pid, signal.SIGSTOP)  # alive, holding its pipes, answering nothing
        assert pool.prepare_many(data, LATE_HOURS) == _alone(data)
        assert pool.prepare_many(data, LATE_HOURS) == _alone(data)  # and again: it is skipped
    finally:
        pool.close()  # ends it, stopped or not
    assert stuck.poll() is not None


def test_a_caller_that_does_not_help_gets_the_same_and_is_never_stranded(items, monkeypatch, answers_by_thread):
    # A stall no busy machine reaches while the worker answers, so the caller only waits...
    monkeypatch.setattr(prepare_pool, "STALL", 120.0)
    by_thread = answers_by_thread
    expected = _alone(items)
    with PreparePool(workers=1, caller_helps=False) as pool:  # started cold: the caller waits
        assert [r for p in pool.prepare_batches(items, LATE_HOURS, 50) for r in p] == expected
        assert set(by_thread) == {"notewell-prepare-feed"}  # every chunk from the worker

        # ...and a short one once the worker can answer nothing: after it the caller starts.
        monkeypatch.setattr(prepare_pool, "STALL", 0.5)
        stuck = pool._workers[0].proc
        os.kill(stuck.pid, signal.SIGSTOP)
        by_thread.clear()
        assert pool.prepare_many(items, LATE_HOURS) == expected
        assert by_thread.get("MainThread", 0) > 0
        os.kill(stuck.pid, signal.SIGKILL)
        stuck.wait(timeout=10)
        assert pool.prepare_many(items, LATE_HOURS) == expected  # its worker gone: all here


def test_stopping_early_leaves_the_pool_usable(items, pool):
    parts = pool.prepare_batches(items, LATE_HOURS, CHUNK)
    next(parts)
    parts.close()  # e.g. a sync cancelled between two batches
    assert pool.prepare_many(items, LATE_HOURS) == _alone(items)
    assert pool.worker_count == 2


def test_workers_never_dump_core(pool):
    for worker in pool._workers:
        limits = open(f"/proc/{worker.proc.pid}/limits").read()
        core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
        assert core.split()[4:6] == ["0", "0"], core


def test_a_pool_for_an_interface_takes_every_core_at_a_lower_priority(items):
    """The app's pool (caller_helps=False: its thread only waits) starts one worker per core,
    not one per core beyond its own: with one worker on two cores, a first sync read every
    document on one core while the other stood idle. Those workers run below the caller's
    priority, so the interface gets a core whenever it wants one; a helping caller's run at
    its own."""
    cores = len(os.sched_getaffinity(0))
    own = os.getpriority(os.PRIO_PROCESS, 0)
    with PreparePool(caller_helps=False) as background, PreparePool() as helping:
        assert background.wait_ready(timeout=30) and helping.wait_ready(timeout=30)
        assert background.worker_count == min(prepare_pool.MAX_WORKERS, cores)
        assert helping.worker_count == min(prepare_pool.MAX_WORKERS, cores - 1)
        for worker in background._workers:
            assert os.getpriority(os.PRIO_PROCESS, worker.proc.pid) == own + prepare_pool.BACKGROUND_NICE
        for worker in helping._workers:
            assert os.getpriority(os.PRIO_PROCESS, worker.proc.pid) == own
        assert background.prepare_many(items, LATE_HOURS) == _alone(items)


def test_closing_ends_the_worker_processes():
    pool = PreparePool(workers=2)
    procs = [w.proc for w in pool._workers]
    pool.close()
    assert all(p.poll() is not None for p in procs)
    assert pool.prepare_many([], LATE_HOURS) == []


def test_a_worker_exits_when_the_process_that_started_it_is_gone(items):
    pool = PreparePool(workers=1)
    worker = pool._workers[0]
    assert pool.wait_ready(timeout=30)
    worker.proc.stdin.close()  # what the end of this process does to its pipe
    assert worker.proc.wait(timeout=10) == 0
    pool.close()


def test_apply_snapshots_with_a_pool_stores_the_same_rows(items, tmp_path):
    stores = {}
    for name, workers in (("alone", None), ("pooled", 2)):
        vault, _ = Vault.create(tmp_path / name, VAULT_PASSPHRASE, device_name=name, kdf=FAST_KDF)
        stores[name] = vault
        paired_with_source(vault)
        pool = PreparePool(workers=workers) if workers else None
        try:
            vault.record.replica.prepare_pool = pool
            done: list[int] = []
            applied, refused = vault.record.replica.apply_snapshots(items, batch=40, on_batch=done.append)
        finally:
            if pool is not None:
                pool.close()
        assert set(refused) == {"not-a-document", "filed-elsewhere"}
        assert len(applied) == len(items) - 2
        assert done == list(range(40, len(items), 40)) + [len(items)]
        assert vault.record.check() == []
    try:
        alone, pooled = stores["alone"].record, stores["pooled"].record
        def record_heads(r):  # each vault adds its own vouch to the device list it received
            return {k: v for k, v in r.replica.doc_heads().items() if k != DEVICE_LIST_ID}

        assert record_heads(pooled) == record_heads(alone)
        assert pooled.list_clients() == alone.list_clients()
        assert pooled.list_notes() == alone.list_notes()
        assert pooled.search("synthetic") == alone.search("synthetic")
    finally:
        for vault in stores.values():
            vault.close()


def test_a_callback_that_stops_keeps_the_batches_already_stored(items, tmp_path):
    class Stop(Exception):
        pass

    vault, _ = Vault.create(tmp_path / "v", VAULT_PASSPHRASE, device_name="v", kdf=FAST_KDF)
    paired_with_source(vault)
    try:
        with PreparePool(workers=1) as pool:
            vault.record.replica.prepare_pool = pool

            def stop_after_two(done: int) -> None:
                if done >= 60:
                    raise Stop

            with pytest.raises(Stop):
                vault.record.replica.apply_snapshots(items, batch=30, on_batch=stop_after_two)
            stored = len(vault.record.replica.doc_heads())
            assert stored == 60  # two batches of 30 (the refused two come later)
            assert vault.record.check() == []
            # The next sync brings the rest.
            applied, refused = vault.record.replica.apply_snapshots(items, batch=30)
            assert len(vault.record.replica.doc_heads()) == len(items) - 2 and vault.record.check() == []
    finally:
        vault.close()


@pytest.mark.skipif(not hasattr(__import__("fcntl"), "F_GETPIPE_SZ"), reason="pipe sizes are Linux's")
def test_a_workers_pipes_hold_a_whole_answer(items, pool):
    """A chunk of an import's notes, built, comes to 50-120 KiB (the example's notes, the
    bench's), as much as a default pipe holds (64 KiB) or more: the worker blocked writing it
    until the feeder thread, which waits for this process's interpreter lock between reads,
    had read it, and stood idle a tenth of a large import."""
    import fcntl

    for worker in pool._workers:
        for pipe in (worker.proc.stdin, worker.proc.stdout):
            assert fcntl.fcntl(pipe.fileno(), fcntl.F_GETPIPE_SZ) >= prepare_pool.PIPE_SIZE
