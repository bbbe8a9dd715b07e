"""A large import builds its documents on worker processes (store/prepare_pool.py) as well as
in the importing process, and stores exactly what one process alone would: the same notes,
each signed note's signature sealed by this device's key in the importing process (the key
never goes to a worker) and verifying. A worker that dies mid-import costs only time.

Real vaults, real worker processes, the documented example file's notes copied many times.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from store import prepare_pool
from tests.store.conftest import FEEDER
from store.importer import apply_import, parse_import
from store.models import NoteStatus
from store.prepare_pool import CHUNK, PreparePool
from store.vault import KdfParams, Vault

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "import.json"
NOW = datetime(2026, 11, 27, tzinfo=timezone.utc)
FAST_KDF = KdfParams(memory_kib=8192, time_cost=1, parallelism=1)
PASSPHRASE = "correct horse battery staple"


def many_notes(count: int) -> bytes:
    """The example's clients and process notes, and `count` copies of its notes in turn
    (drafts, signed with and without addenda), each with ids of its own."""
    data = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    notes = data["progress_notes"]
    out = []
    for i in range(count):
        note = copy.deepcopy(notes[i % len(notes)])
        note["id"] = f"{note['id']}-{i:04d}"
        for a in note.get("addenda", []):
            if a.get("id"):
                a["id"] = f"{a['id']}-{i:04d}"
        out.append(note)
    data["progress_notes"] = out
    return json.dumps(data).encode()


@pytest.fixture
def new_vault(tmp_path):
    made = []

    def make(name: str) -> Vault:
        vault, _ = Vault.create(tmp_path / name, PASSPHRASE, device_name=name, kdf=FAST_KDF)
        made.append(vault)
        return vault

    yield make
    for vault in made:
        vault.close()


def content(vault: Vault) -> dict:
    """What a clinician sees of each note, and of its signature, without what differs from
    one vault to another (device ids, the signature's entry and heads, the time a note given
    without one was made)."""
    out = {}
    for row in vault.record.list_notes():
        note = vault.record.get_note(row.note_id)
        sig = note.signature
        out[note.id] = (
            note.model_dump(exclude={"signature", "addenda", "created_at", "updated_at"}),
            None if sig is None else (sig.signer, sig.credentials, sig.signed_at, sig.content_hash),
            [(a.id, a.text, a.reason, a.signer, a.signed_at, a.content_hash) for a in note.addenda],
        )
    return out


def assert_signed_here_and_whole(vault: Vault, count: int) -> None:
    record = vault.record
    rows = record.list_notes()
    assert len(rows) == count
    signed = [r.note_id for r in rows if r.status == NoteStatus.SIGNED]
    assert signed
    for note_id in signed:
        assert record.signature_state(note_id).signed, note_id
        assert record.get_note(note_id).signature.device_id == vault.device_id
    assert vault.check() == []


def test_an_import_builds_on_the_workers_and_stores_what_one_process_does(
        new_vault, answers_by_thread, caller_after_a_worker):
    count = 8 * CHUNK
    answers = answers_by_thread
    data = many_notes(count)
    alone = new_vault("alone")
    apply_import(alone, parse_import(data, now=NOW))
    assert FEEDER not in answers  # no pool: the importing process did it all

    pooled = new_vault("pooled")  # its importing process waits for the worker's first answer
    with PreparePool(workers=1) as pool:
        assert pool.wait_ready(timeout=120), "the worker did not start"
        pooled.record.replica.prepare_pool = pool  # as `notewell import` does
        summary = apply_import(pooled, parse_import(data, now=NOW))
    assert summary.notes == count
    assert answers.get(FEEDER, 0) > 0  # the worker built a share of the notes
    assert_signed_here_and_whole(pooled, count)
    assert content(pooled) == content(alone)


def test_a_worker_killed_mid_import_costs_only_time(new_vault, monkeypatch):
    count = 8 * CHUNK
    data = many_notes(count)
    vault = new_vault("killed")
    with PreparePool(workers=1) as pool:
        assert pool.wait_ready(timeout=120), "the worker did not start"
        worker = pool._workers[0].proc
        take = prepare_pool._Job.take
        taken = []

        def kill_once_it_holds_a_chunk(job, for_worker):
            # The feeder's second take comes right after it sent the first chunk: the worker
            # is killed mid-import with that chunk in its hands, whatever the timing (killing
            # after its first answer raced the importing process, which may do every chunk
            # itself before the worker answers one).
            if threading.current_thread().name == FEEDER:
                taken.append(1)
                if len(taken) == 2 and worker.poll() is None:
                    os.kill(worker.pid, signal.SIGKILL)
                    worker.wait(timeout=30)
            return take(job, for_worker)

        monkeypatch.setattr(prepare_pool._Job, "take", kill_once_it_holds_a_chunk)
        vault.record.replica.prepare_pool = pool
        summary = apply_import(vault, parse_import(data, now=NOW))
        assert pool.worker_count == 0
    assert worker.returncode == -signal.SIGKILL
    assert summary.notes == count
    assert_signed_here_and_whole(vault, count)


def test_the_workers_start_on_the_next_window_before_the_last_round_is_sealed(new_vault, monkeypatch):
    """The workers get a window of rounds at a time; the importing process seals each round
    they built. It sealed a window's last round before it handed them the next window, so
    they stood idle meanwhile, once per window (33 times at 100,000 notes). Now nothing is
    sealed between a window's last round being built and the next window being handed over.
    Counted in order of events, not timed: windows of 2 rounds of 2 chunks, 6 windows."""
    from store import importer

    monkeypatch.setattr(importer, "BUILD_BATCH", 2 * CHUNK)
    monkeypatch.setattr(importer, "BUILD_WINDOW", 4 * CHUNK)
    count = 24 * CHUNK
    events: list[tuple[str, int]] = []
    prepare, take = PreparePool.prepare_batches, importer._take_round

    def handed(pool, items, *args, **kwargs):
        if items[0][0] == "progress_notes":
            events.append(("window", items[0][1]))
        for results in prepare(pool, items, *args, **kwargs):
            if items[0][0] == "progress_notes":
                events.append(("built", len(results)))
            yield results

    def sealed(record, section, results, *args):
        if section == "progress_notes":
            events.append(("sealed", len(results)))
        return take(record, section, results, *args)

    monkeypatch.setattr(PreparePool, "prepare_batches", handed)
    monkeypatch.setattr(importer, "_take_round", sealed)
    vault = new_vault("windows")
    with PreparePool(workers=1) as pool:
        assert pool.wait_ready(timeout=120), "the worker did not start"
        vault.record.replica.prepare_pool = pool
        summary = apply_import(vault, parse_import(many_notes(count), now=NOW))
    assert summary.notes == count
    windows = [i for i, (what, _n) in enumerate(events) if what == "window"]
    assert len(windows) == 6
    for at in windows[1:]:
        # Back from the handing over of this window to the last round built before it.
        since_built = [what for what, _n in reversed(events[:at])]
        since_built = since_built[: since_built.index("built")]
        assert "sealed" not in since_built, events
    assert sum(n for what, n in events if what == "sealed") == count
    assert sum(n for what, n in events if what == "built") == count
    assert_signed_here_and_whole(vault, count)
