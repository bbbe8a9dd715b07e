"""Vault fixtures shared by the store's tests.

`fast_kdf` is a real Argon2id with a small cost (8 MiB, one pass), so tests create and open
real vaults quickly. `open_vault` is a fresh vault in tmp_path, open, closed after the test;
its passphrase is the `vault_passphrase` fixture. `snapshot(folder)` hashes every file in a
folder, to show that a failed operation left it byte-identical.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from store.vault import KdfParams, Vault

FAST_KDF = KdfParams(memory_kib=8192, time_cost=1, parallelism=1)
VAULT_PASSPHRASE = "correct horse battery staple"
DEVICE_NAME = "Test laptop"


@pytest.fixture
def fast_kdf() -> KdfParams:
    return FAST_KDF


@pytest.fixture
def vault_dir(tmp_path: Path) -> Path:
    return tmp_path / "vault"


@pytest.fixture
def vault_passphrase() -> str:
    return VAULT_PASSPHRASE


@pytest.fixture
def open_vault(vault_dir: Path, fast_kdf: KdfParams):
    vault, _recovery = Vault.create(
        vault_dir, VAULT_PASSPHRASE, device_name=DEVICE_NAME, kdf=fast_kdf
    )
    try:
        yield vault
    finally:
        vault.close()


@pytest.fixture
def snapshot():
    """`snapshot(folder)`: compare before and after to prove a failure changed nothing."""
    return folder_snapshot


def folder_snapshot(folder: Path) -> dict[str, str]:
    """Every file in `folder` (recursively) by name -> SHA-256, so presence counts too."""
    out = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            p = Path(root) / name
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def vault_files(folder: Path) -> dict[str, str]:
    """A vault's files byte for byte (name -> SHA-256); not the -shm index of the open
    connections, which SQLite rewrites on every read and rebuilds from the log when it opens
    a database."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.endswith("-shm")}


@pytest.fixture
def answers_by_thread(monkeypatch) -> dict[str, int]:
    """How many chunks each thread answered: the caller's own, or a worker's (its feeder)."""
    by_thread: dict[str, int] = {}
    from store import prepare_pool

    answer = prepare_pool._Job.answer

    def counted(job, index, result):
        name = threading.current_thread().name
        by_thread[name] = by_thread.get(name, 0) + 1
        return answer(job, index, result)

    monkeypatch.setattr(prepare_pool._Job, "answer", counted)
    return by_thread


FEEDER = "notewell-prepare-feed"  # the thread that talks to a worker (store/prepare_pool.py)


@pytest.fixture
def caller_after_a_worker(monkeypatch) -> threading.Event:
    """A pool's calling thread starts on its own chunks only once a worker has answered one:
    left to the timing, a fast caller may do every chunk itself (it doubles up on the
    workers' held chunks rather than wait), and the workers' share would be nothing. The
    event is set at the first answer a worker gives."""
    from store import prepare_pool

    worker_answered = threading.Event()
    answer, next_for_caller = prepare_pool._Job.answer, prepare_pool._Job.next_for_caller

    def answer_noted(job, index, result):
        answer(job, index, result)
        if threading.current_thread().name == FEEDER:
            worker_answered.set()

    def after_the_workers_first_answer(job, *args):
        assert worker_answered.wait(timeout=120), "the worker never answered"
        return next_for_caller(job, *args)

    monkeypatch.setattr(prepare_pool._Job, "answer", answer_noted)
    monkeypatch.setattr(prepare_pool._Job, "next_for_caller", after_the_workers_first_answer)
    return worker_answered
