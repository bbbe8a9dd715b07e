"""The app's keystrokes while an automatic backup of a 10,000-note vault runs, and without.

    python -m bench.auto_backup_bench [--notes 10000] [--clients 200] [--rounds 5]

One app on the synthetic vault (bench/common.py), the progress-note editor open, typing in
bursts as bench/tui_bench.py does (the same timing: a key event entering the app to the end
of the refresh that shows it). The app's own automatic backups (tui/auto_backups.py) write
into a temporary folder; the app's clock is moved a day on before each backup so that one
is due, and `check_backups` starts it as the minute timer would. Each round types while a
backup runs in a child process (the app's way), while one runs in the app's worker thread
(the way it was first built), and while none runs, so all three alternate in the same
process; a backup is the snapshot, the sealed file, its full verification and thinning.
Then, without the app, a loop of 2 ms sleeps beside a backup in a thread, in a child process
or none, alternating: how late it wakes shows what the backup takes from a waiting loop. Also timed: a save through the
store thread (the editor's own path, `set_section`) every 20 keys, to show whether the
backup's snapshot holds up the clinician's writes. Prints figures with the load average;
asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench.common import PASSPHRASE, pct, synthetic_vault
from bench.tui_bench import TYPED, new_draft, time_key, wait_until


def load() -> float:
    return os.getloadavg()[0]


def figures(times: list[float]) -> str:
    if not times:
        return "no keys"
    return (f"{len(times)} keys: p50 {pct(times, 50) * 1000:.2f} ms, p99 {pct(times, 99) * 1000:.2f} ms, "
            f"max {max(times) * 1000:.2f} ms")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 3, 9, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


async def measure(path: Path, rounds: int, folder: Path) -> None:
    from textual.widgets import TextArea

    from tui.app import NotewellApp
    from tui.config import AppConfig, BackupConfig
    from tui.screens.main import MainScreen
    from tui.screens.note_editor import NoteEditorScreen

    _client_id, note_id = new_draft(path)
    clock = Clock()
    config = AppConfig(backup=BackupConfig(folder=folder, every="daily"))
    app = NotewellApp(path, passphrase=PASSPHRASE, test_mode=True, idle_lock_seconds=3600, config=config, clock=clock)
    backups = app.auto_backups
    kinds = ("child", "thread", "without")
    keys: dict[str, list[float]] = {k: [] for k in kinds}
    saves: dict[str, list[float]] = {k: [] for k in kinds}
    loads: dict[str, list[float]] = {k: [] for k in kinds}
    durations: dict[str, list[float]] = {"child": [], "thread": []}
    typed = 0

    async def type_one(area, kind: str) -> None:
        nonlocal typed
        keys[kind].append(await time_key(app, area, TYPED[typed % len(TYPED)]))
        typed += 1
        if typed % 20 == 0:
            text = f"Plan revised {typed}."
            t0 = time.perf_counter()
            await app.store.call(lambda v: v.record.set_section(note_id, "plan", text))
            saves[kind].append(time.perf_counter() - t0)
        await asyncio.sleep(0.45 if typed % 40 == 0 else 0.03)

    async def while_backing_up(pilot, area, kind: str) -> int:
        backups.in_child = kind == "child"
        clock.now += timedelta(days=1)
        load_before, before = load(), len(keys[kind])
        app.check_backups()
        await wait_until(pilot, lambda: backups.running, timeout=60)
        started = time.perf_counter()
        while backups.running:
            await type_one(area, kind)
        durations[kind].append(time.perf_counter() - started)
        loads[kind].append((load_before + load()) / 2)
        if backups.error:
            raise RuntimeError(f"the backup failed: {backups.error}")
        return len(keys[kind]) - before

    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))
        # The vault has never been backed up, so opening starts one: let it finish first.
        await wait_until(pilot, lambda: backups.made == 1 and not backups.running, timeout=600)
        app.screen.open_note("progress", note_id)
        await wait_until(pilot, lambda: isinstance(app.screen, NoteEditorScreen) and app.screen.loaded)
        area = app.screen.query_one("#section-subjective", TextArea)
        area.focus()
        await pilot.pause()
        for r in range(1, rounds + 1):
            # Alternating: a backup in a child process, one in the worker thread, none.
            counts = [await while_backing_up(pilot, area, kind) for kind in ("child", "thread")]
            load_before, without = load(), len(keys["without"])
            for _ in range(sum(counts) // 2):
                await type_one(area, "without")
            loads["without"].append((load_before + load()) / 2)
            print(f"round {r}: " + "; ".join(
                f"{kind} {figures(keys[kind][-n:] if n else [])} (load {loads[kind][-1]:.1f})"
                for kind, n in zip(kinds, [*counts, len(keys["without"]) - without])
            ), flush=True)
        await app.screen.flush()
        await pilot.press("ctrl+q")

    print()
    described = {
        "child": "while an automatic backup runs in a child process (the app's way)",
        "thread": "while an automatic backup runs in the app's worker thread",
        "without": "without a backup",
    }
    for kind in kinds:
        print(f"keystroke to screen {described[kind]}: {figures(keys[kind])}, "
              f"load average {sum(loads[kind]) / len(loads[kind]):.1f}")
    for kind, runs in durations.items():
        print(f"a whole automatic backup ({kind}; snapshot, file, verification, thinning): "
              f"median {sorted(runs)[len(runs) // 2]:.1f} s (runs {min(runs):.1f}-{max(runs):.1f})")
    for kind in kinds:
        s = saves[kind]
        if s:
            print(f"a save through the store thread, {described[kind]}: {len(s)} saves, "
                  f"p50 {pct(s, 50) * 1000:.1f} ms, max {max(s) * 1000:.1f} ms")


def probe(path: Path, repeats: int = 2) -> None:
    """Without the app: a loop that sleeps 2 ms at a time, as the UI loop waits for events,
    beside a backup run in a thread of this process, in a child process (the app's way), or
    none, alternating. How late the loop wakes shows what the backup takes from it."""
    import sys
    import threading

    from store.automatic_backup import run_automatic_backup
    from store.backup import BackupSource
    from store.backup_process import run_in_child
    from store.vault import Vault

    sys.setswitchinterval(0.001)  # as the app sets it
    vault = Vault.open(path, PASSPHRASE)
    try:
        source, device_id = BackupSource.of(vault), vault.device_id
    finally:
        vault.close()
    late: dict[str, list[float]] = {"none": [], "thread": [], "child": []}
    wakes: dict[str, float] = {k: 0.0 for k in late}
    seconds: dict[str, float] = {k: 0.0 for k in late}
    loads: dict[str, list[float]] = {k: [] for k in late}
    for _ in range(repeats):
        for kind in late:
            with tempfile.TemporaryDirectory(prefix="nw-auto-backup-probe-") as folder:
                load_before = load()
                if kind == "none":
                    end = time.monotonic() + 8
                    running = lambda: time.monotonic() < end  # noqa: E731
                    worker = None
                else:
                    run = run_automatic_backup if kind == "thread" else run_in_child
                    worker = threading.Thread(target=run, args=(source, Path(folder)),
                                              kwargs={"device_id": device_id, "now": datetime.now(timezone.utc)})
                    worker.start()
                    running = worker.is_alive
                started = time.monotonic()
                while running():
                    t0 = time.perf_counter()
                    time.sleep(0.002)
                    late[kind].append(time.perf_counter() - t0 - 0.002)
                    wakes[kind] += 1
                seconds[kind] += time.monotonic() - started
                loads[kind].append((load_before + load()) / 2)
    for kind, values in late.items():
        print(f"2 ms sleeps beside {'no backup' if kind == 'none' else 'a backup in a ' + kind + (' process' if kind == 'child' else '')}: "
              f"late p50 {pct(values, 50) * 1000:.2f} ms, p99 {pct(values, 99) * 1000:.2f} ms, "
              f"{wakes[kind] / seconds[kind]:.0f} wake-ups a second, load average {sum(loads[kind]) / len(loads[kind]):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notes", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    path = synthetic_vault("auto-backup", args.notes, args.clients)
    print(f"load average at start: {load():.1f} (2 cores)")
    if args.rounds:  # --rounds 0: the probe alone
        with tempfile.TemporaryDirectory(prefix="nw-auto-backup-") as folder:
            asyncio.run(measure(path, args.rounds, Path(folder)))
        print()
    probe(path)


if __name__ == "__main__":
    main()
