"""What the benchmarks share: percentiles, the load average printed beside each figure, the
timing of the key derivation inside an unlock, and the synthetic vault each builds once and
reuses."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import tui  # noqa: F401  (before textual: the app's frame rate is set as its package loads)
from store.models import ClinicianSettings
from store.synthetic import populate
from store.vault import Vault

OUT = Path(__file__).resolve().parent / "out"
PASSPHRASE = "bench-vault-passphrase"
SETTINGS = ClinicianSettings(clinician_name="Dr. Bench Marker", credentials="PhD", practice_name="Bench Practice")


def pct(values: list[float], p: float) -> float:
    """The p-th percentile by nearest rank."""
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))]


def load() -> str:
    """The 1-minute load average, printed beside a figure (the machine is shared)."""
    return f"load {os.getloadavg()[0]:.1f}"


@contextlib.contextmanager
def timed_kdf(cpu: list[float] | None = None) -> Iterator[list[float]]:
    """Within it, every passphrase key derivation's seconds are appended to the list it
    yields, so a figure can be given without it (the KDF costs the same at any vault size);
    and its CPU seconds to `cpu` when given: the deriving thread's own (Argon2id with one
    lane runs on the thread that calls it), since the app composes its main screen on another
    thread meanwhile (NotewellApp.unlock)."""
    from store import keys

    times: list[float] = []
    real = keys.passphrase_kek

    def timed(*a, **kw):
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return real(*a, **kw)
        finally:
            times.append(time.perf_counter() - t0)
            if cpu is not None:
                cpu.append(time.thread_time() - c0)

    keys.passphrase_kek = timed
    try:
        yield times
    finally:
        keys.passphrase_kek = real


def build_vault(path: Path, notes: int, clients: int, *, process_notes: int = 200) -> None:
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    vault, _ = Vault.create(path, PASSPHRASE, device_name="bench", settings=SETTINGS)
    try:
        populate(vault, clients=clients, notes=notes, process_notes=process_notes, seed=7)
    finally:
        vault.close()
    (path / "done").touch()  # a half-built vault (interrupted build) is rebuilt next time
    print(f"built {notes} notes / {clients} clients in {time.perf_counter() - t0:.1f} s")


def synthetic_vault(name: str, notes: int, clients: int, *, rebuild: bool = False) -> Path:
    """The cached vault `name` of `notes` notes across `clients` clients, built if needed in a
    child process, so the building's memory never counts in the caller's peak RSS. Each
    benchmark has its own (`name`): they add notes as they run, and must not see each other's."""
    path = OUT / f"{name}-vault-{notes}-{clients}"
    if rebuild or not (path / "done").exists():
        subprocess.run(
            [sys.executable, "-m", "bench.common", str(path), str(notes), str(clients)], check=True
        )
    return path


if __name__ == "__main__":
    build_vault(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
