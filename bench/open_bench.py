"""Opening, unlocking and checking as the record grows: the growth table of bench/README.md.

For each vault size (1,000, 10,000 and 50,000 notes by default; one client per 50 notes):

1. open + list a client's notes, without the key derivation (as bench/store_bench.py):
   the app's way (`pages_after_open`: every page verified after the first screen, on a
   thread of its own) and the command line's (every page verified before opening);
2. the app: Enter on the unlock screen -> the first client's timeline on screen (Pilot,
   headless), the key derivation included, printed beside it;
3. `notewell check` as a real process: `--full` (which also records what it verified), then
   the default check (incremental: only what changed since is read again), then the default
   check after one note was edited.

The load average (1 minute) is printed beside every figure: the machine is shared.

    python -m bench.open_bench [--sizes 1000,10000,50000] [--runs 3]

Vaults are built once into bench/out/ (`open-vault-N-C`) and reused: by bench/common.py,
or, for a size given in --import-sizes (default 50000), by `notewell import` of a synthetic
file (bench/import_bench.py), which builds 50,000 notes in minutes rather than an hour.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import OUT, PASSPHRASE, synthetic_vault, timed_kdf
from store.vault import Vault

REPO = Path(__file__).resolve().parents[1]


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def vault_for(notes: int, imported: bool) -> Path:
    clients = max(1, notes // 50)
    if not imported:
        return synthetic_vault("open", notes, clients)
    path = OUT / f"open-vault-{notes}-{clients}"
    if (path / "done").exists():
        return path
    from bench.import_bench import _new_vault, _notewell, write_import_file

    file = OUT / f"open-import-{notes}.json"
    write_import_file(file, notes, clients=clients)
    _new_vault(path)
    secret = OUT / "open-passphrase"
    secret.write_text(PASSPHRASE + "\n", encoding="utf-8")
    run, _ = _notewell(path, secret, "import", str(file))
    file.unlink()
    if run.returncode != 0:
        raise SystemExit(f"building the {notes}-note vault failed: {run.stderr.strip()}")
    (path / "done").touch()
    return path


def open_and_list(path: Path, runs: int, *, after_open: bool) -> tuple[float, float]:
    """Median open + list seconds without the key derivation, and the median derivation."""
    totals = []
    with timed_kdf() as kdf_times:
        for _ in range(runs):
            t0 = time.perf_counter()
            vault = Vault.open(path, PASSPHRASE, pages_after_open=after_open)
            clients = vault.record.list_clients()
            vault.record.notes_for_client(clients[len(clients) // 2].client_id)
            totals.append(time.perf_counter() - t0)
            if after_open:
                vault.page_check.wait()  # not timed: it runs after the first screen
            vault.close()
    kdf = statistics.median(kdf_times)
    return statistics.median(totals) - kdf, kdf


async def unlock_to_timeline(path: Path) -> tuple[float, float]:
    """Seconds from Enter on the unlock screen to the first client's timeline on screen,
    and the key derivation inside it."""
    from textual.widgets import Input, OptionList

    from tui.app import NotewellApp
    from tui.screens.main import MainScreen
    from tui.screens.unlock import UnlockScreen

    app = NotewellApp(path, test_mode=True, idle_lock_seconds=3600)
    with timed_kdf() as kdf_times:
        async with app.run_test(size=(120, 40)) as pilot:
            while not isinstance(app.screen, UnlockScreen):
                await pilot.pause(0.01)
            app.screen.query_one("#passphrase", Input).value = PASSPHRASE
            t0 = time.perf_counter()
            await pilot.press("enter")

            def drawn() -> bool:
                main = next((s for s in app.screen_stack if isinstance(s, MainScreen)), None)
                return bool(main and main.client_id and main.query_one("#timeline", OptionList).option_count)

            while not drawn():
                await asyncio.sleep(0.002)
            elapsed = time.perf_counter() - t0
            check = await app.store.call(lambda vault: vault.page_check)
            await asyncio.to_thread(check.wait)  # let it finish before the vault closes
    return elapsed, kdf_times[-1] if kdf_times else 0.0


def run_check(path: Path, *args: str) -> tuple[float, str]:
    env = {**os.environ, "NOTEWELL_PASSPHRASE": PASSPHRASE}
    env.pop("NOTEWELL_TEST_KDF", None)
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "tui.cli", "--vault", str(path), "check", *args],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=3600)
    wall = time.perf_counter() - t0
    if run.returncode != 0:
        raise SystemExit(f"check failed: {run.stderr.strip()[-400:]}")
    said = run.stderr.strip().splitlines()[0] if args else run.stdout.strip().splitlines()[0]
    return wall, said


def edit_one_note(path: Path) -> None:
    vault = Vault.open(path, PASSPHRASE)
    try:
        draft = vault.record.list_notes(status="draft")[0]
        note = vault.record.get_note(draft.note_id)
        key = note.section_keys[0]
        vault.record.set_section(note.id, key, note.sections.get(key, "") + " Edited for the bench.")
    finally:
        vault.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--import-sizes", default="50000")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    imported = {int(n) for n in args.import_sizes.split(",") if n}
    for notes in (int(n) for n in args.sizes.split(",")):
        path = vault_for(notes, notes in imported)
        size_mb = sum((path / n).stat().st_size for n in ("record.db", "private.db")) / 1e6
        how = "imported" if notes in imported else "bench.common"
        print(f"== {notes:,} notes, {max(1, notes // 50):,} clients ({how}; {size_mb:.0f} MB of databases)", flush=True)
        # The app's way and the command line's, alternating.
        after, before = [], []
        for _ in range(args.runs):
            after.append(open_and_list(path, 1, after_open=True)[0])
            before.append(open_and_list(path, 1, after_open=False)[0])
        print(f"open + list (no KDF), pages verified after the first screen: {statistics.median(after) * 1000:.0f} ms  ({load()})")
        print(f"open + list (no KDF), every page verified first (commands):  {statistics.median(before) * 1000:.0f} ms  ({load()})")
        unlocks = [asyncio.run(unlock_to_timeline(path)) for _ in range(args.runs)]
        total = statistics.median(u[0] for u in unlocks)
        kdf = statistics.median(u[1] for u in unlocks)
        print(f"app: Enter on unlock -> first client's timeline: {total:.2f} s (KDF {kdf:.2f} s inside)  ({load()})")
        full, said = run_check(path, "--full")
        print(f"notewell check --full: {full:.1f} s  ({load()}); it said first: {said}")
        default, said = run_check(path)
        print(f"notewell check (nothing changed since): {default:.2f} s  ({load()}); {said}")
        edit_one_note(path)
        edited, said = run_check(path)
        print(f"notewell check (one note edited since): {edited:.2f} s  ({load()}); {said}", flush=True)


if __name__ == "__main__":
    main()
