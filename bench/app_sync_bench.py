"""App responsiveness during a sync (issue 4: "Sync runs off the UI loop; the app stays
responsive during a 1,000-note sync").

    python -m bench.app_sync_bench [--notes 1000] [--clients 50] [--runs 5] [--rebuild]

Prints figures; asserts nothing. The set-up:

- a server vault with N synthetic progress notes (store/synthetic.py `populate`), built once
  into bench/out/ and copied to a temporary folder for each run (pairing writes to it);
- an empty app vault in the same temporary folder, paired with the server through the real
  CLI (`notewell sync pair --listen` on the server vault, `notewell sync pair ADDR --code`
  on the app vault), then the server vault runs `notewell sync serve --port 0` as its own
  process on 127.0.0.1;
- the real NotewellApp, headless (`App.run_test()`), unlocked, with the Devices screen open;
  the sync is started with the screen's own action (`action_sync_now`), which runs it in a
  thread worker of the app's sync service (tui/sync_jobs.py).

While the sync runs, two probes run on the app's event loop:

- UI-loop lag: `asyncio.sleep(0.010)` over and over; each wake-up's lateness (actual elapsed
  minus 10 ms) is one sample. A loop blocked by the sync (GIL held, callbacks flooding it)
  shows up here.
- store-call latency: `await app.store.call(lambda v: v.record.list_clients())` every 50 ms,
  the kind of read a screen makes while the clinician keeps working; this goes through the
  store thread, which the sync must not occupy.

Then, with the sync finished and nothing else running, the same two probes run for the same
length of time (the baseline), and the ratios sync / baseline are printed. Each of --runs
runs is a fresh copy of the server vault and a fresh empty app vault; samples are pooled
across runs (a 1,000-note sync takes about a second, too few samples for a p99 on its own).
The baseline's store call lists every client that arrived; during the sync the list grows
from zero, so the store call itself is, if anything, cheaper there.

Sync wall time is from the action until the screen holds the result (the worker's result
reaching the UI included; vault unlock and pairing excluded).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import pct
from store.device_identity import ensure_identity
from store.keys import KdfParams, allow_test_kdf
from store.models import ClinicianSettings
from store.synthetic import populate
from store.vault import Vault

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
SERVER_PASSPHRASE = "app sync bench server passphrase"
APP_PASSPHRASE = "app sync bench app passphrase"
FAST_KDF = KdfParams(memory_kib=8192, time_cost=1)
allow_test_kdf()  # the bench's vaults use the cheap test KDF (store/keys.py)
SETTINGS = ClinicianSettings(clinician_name="Dr. Bench Example", credentials="PhD")
TICK = 0.010  # the lag probe's sleep
STORE_EVERY = 0.050  # between store calls
WAIT = 120.0
PILOT_WAIT = False  # --pilot-wait: wait for the sync as this bench did before 2026-12-03 (see wait_until)


def log(msg: str) -> None:
    print(msg, flush=True)


# --- set-up ------------------------------------------------------------------------------


def build_server(path: Path, notes: int, clients: int) -> None:
    if path.exists():
        shutil.rmtree(path)
    t0 = time.perf_counter()
    vault, _ = Vault.create(path, SERVER_PASSPHRASE, device_name="bench server", settings=SETTINGS, kdf=FAST_KDF)
    try:
        populate(vault, clients=clients, notes=notes, seed=11)
        ensure_identity(vault.record.replica, vault.device_name)
    finally:
        vault.close()
    log(f"built server vault: {notes} notes / {clients} clients in {time.perf_counter() - t0:.1f} s")


def make_app_vault(path: Path) -> None:
    vault, _ = Vault.create(path, APP_PASSPHRASE, device_name="bench app", settings=SETTINGS, kdf=FAST_KDF)
    try:
        ensure_identity(vault.record.replica, vault.device_name)
    finally:
        vault.close()


def cli(vault: Path, passphrase: str, *args: str) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ, NOTEWELL_PASSPHRASE=passphrase, PYTHONUNBUFFERED="1")
    env.pop("NOTEWELL_VAULT", None)
    return [sys.executable, "-m", "tui.cli", "--vault", str(vault), *args], env


def start(vault: Path, passphrase: str, *args: str) -> subprocess.Popen:
    argv, env = cli(vault, passphrase, *args)
    return subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, start_new_session=True)


def read_until(proc: subprocess.Popen, prefix: str) -> str:
    # Blocking reads are fine here: nothing else runs yet, and the process prints promptly.
    for line in proc.stdout:
        if line.startswith(prefix):
            return line.strip()
    raise RuntimeError(f"`notewell` ended (rc {proc.wait()}) before printing {prefix!r}")


def pair(server: Path, app_vault: Path) -> None:
    listener = start(server, SERVER_PASSPHRASE, "sync", "pair", "--listen", "--port", "0")
    try:
        address = read_until(listener, "listening on").split()[-1]
        code = read_until(listener, "pairing code:").split(":", 1)[1].strip()
        argv, env = cli(app_vault, APP_PASSPHRASE, "sync", "pair", address, "--code", code)
        joined = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=WAIT)
        if joined.returncode != 0:
            raise RuntimeError(f"pairing failed: {joined.stderr.strip()[-500:]}")
        listener.wait(timeout=WAIT)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()


# --- the probes ----------------------------------------------------------------------------


async def lag_probe(stop: asyncio.Event, lags: list[float]) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        await asyncio.sleep(TICK)
        lags.append(time.perf_counter() - t0 - TICK)


async def store_probe(app, stop: asyncio.Event, latencies: list[float]) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        await app.store.call(lambda v: v.record.list_clients())
        latencies.append(time.perf_counter() - t0)
        await asyncio.sleep(STORE_EVERY)


def start_probes(app) -> tuple[asyncio.Event, list[asyncio.Task], list[float], list[float]]:
    stop = asyncio.Event()
    lags: list[float] = []
    latencies: list[float] = []
    tasks = [asyncio.create_task(lag_probe(stop, lags)), asyncio.create_task(store_probe(app, stop, latencies))]
    return stop, tasks, lags, latencies


async def wait_until(pilot, predicate, what: str, timeout: float = WAIT, *, quiet: bool = False) -> None:
    """`quiet`: poll with a plain sleep. `pilot.pause` posts a callback to every widget on the
    screen and waits for each (about 24 on the Devices screen: 10,000 messages over a sync
    polled every 20 ms, half the UI thread's CPU during it), which the lag probe then
    measured as the app's own lag; nothing in the app polls so."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        if quiet:
            await asyncio.sleep(0.02)
        else:
            await pilot.pause(0.02)


# --- the run -----------------------------------------------------------------------------


async def run_app(app_vault: Path, address: str) -> dict:
    from textual.widgets import Input

    from tui.app import NotewellApp
    from tui.config import AppConfig
    from tui.screens.devices import DevicesScreen
    from tui.screens.main import MainScreen
    from tui.screens.unlock import UnlockScreen

    app = NotewellApp(app_vault, config=AppConfig(), test_mode=False, kdf=FAST_KDF, idle_lock_seconds=3600)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, UnlockScreen), "unlock screen")
        app.screen.query_one("#passphrase", Input).value = APP_PASSPHRASE
        await pilot.press("enter")
        await wait_until(pilot, lambda: any(isinstance(s, MainScreen) for s in app.screen_stack), "main screen")
        screen = DevicesScreen()
        app.push_screen(screen)
        await wait_until(pilot, lambda: app.screen is screen and screen.identity is not None, "devices screen")
        await pilot.pause(0.2)  # let mounting settle so it is not counted as sync lag

        screen.query_one("#address", Input).value = address
        stop, tasks, lags, latencies = start_probes(app)
        t0 = time.perf_counter()
        screen.action_sync_now()
        await wait_until(pilot, lambda: screen.last_result is not None or screen.last_error is not None, "sync",
                         quiet=not PILOT_WAIT)
        wall = time.perf_counter() - t0
        stop.set()
        await asyncio.gather(*tasks)
        if screen.last_error is not None:
            raise RuntimeError(f"sync failed: {screen.last_error.message}")
        report = screen.last_result
        await wait_until(pilot, lambda: screen.jobs.busy is None, "the sync job to end")

        # Baseline: the same screen, nothing running, the same length of time.
        await pilot.pause(0.5)
        stop, tasks, base_lags, base_latencies = start_probes(app)
        await asyncio.sleep(wall)
        stop.set()
        await asyncio.gather(*tasks)
        clients = len(await app.store.call(lambda v: v.record.list_clients()))
    return {
        "wall": wall, "report": report, "clients": clients,
        "lags": lags, "latencies": latencies, "base_lags": base_lags, "base_latencies": base_latencies,
    }


def figures(name: str, values: list[float]) -> tuple[float, float, float]:
    p50, p99, top = pct(values, 50) * 1000, pct(values, 99) * 1000, max(values) * 1000
    log(f"  {name:<34} n={len(values):<5} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  max {top:7.2f} ms")
    return p50, p99, top


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notes", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5, help="syncs, each into a fresh empty app vault")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--pilot-wait", action="store_true",
                        help="poll for the sync's end with pilot.pause, as earlier figures did (it inflates the lag)")
    args = parser.parse_args()
    global PILOT_WAIT
    PILOT_WAIT = args.pilot_wait

    cached = OUT / f"app-sync-server-{args.notes}-{args.clients}"
    if args.rebuild or not (cached / "vault.json").exists():
        OUT.mkdir(parents=True, exist_ok=True)
        build_server(cached, args.notes, args.clients)

    results = []
    for run in range(args.runs):
        results.append(one_run(cached))
        r = results[-1]
        log(f"run {run + 1}: sync {r['wall']:.2f} s, received {r['report'].received},"
            f" lag max {max(r['lags']) * 1000:.1f} ms, store call max {max(r['latencies']) * 1000:.1f} ms")
    report_figures(results, args)


def one_run(cached: Path) -> dict:
    """A fresh copy of the server vault, a fresh empty app vault, pairing, serving, the app."""
    with tempfile.TemporaryDirectory(prefix="notewell-app-sync-bench-") as tmp:
        server, app_vault = Path(tmp) / "server", Path(tmp) / "app"
        shutil.copytree(cached, server)
        make_app_vault(app_vault)
        pair(server, app_vault)
        serving = start(server, SERVER_PASSPHRASE, "sync", "serve", "--port", "0")
        try:
            address = read_until(serving, "listening on").split()[-1]
            return asyncio.run(run_app(app_vault, address))
        finally:
            if serving.poll() is None:
                serving.terminate()
                try:
                    serving.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    serving.kill()
                    serving.wait()


def report_figures(results: list[dict], args) -> None:
    def pooled(key: str) -> list[float]:
        return [v for r in results for v in r[key]]

    walls = sorted(r["wall"] for r in results)
    received = sorted({r["report"].received for r in results})
    errors = sum(len(r["report"].errors) for r in results)
    clients = sorted({r["clients"] for r in results})
    log(f"\nsync of {args.notes} notes / {args.clients} clients into an empty app vault, from the Devices"
        f" screen, {len(results)} runs (samples pooled):")
    log(f"  sync wall time                     median {walls[len(walls) // 2]:.2f} s"
        f"  (min {walls[0]:.2f}, max {walls[-1]:.2f})")
    log(f"  documents received                 {', '.join(map(str, received))} per run"
        f" (errors: {errors}; clients listed afterwards: {', '.join(map(str, clients))})")
    log("during the sync:")
    lag = figures("UI-loop lag (10 ms sleep)", pooled("lags"))
    store = figures("store call (list_clients)", pooled("latencies"))
    log("baseline, no sync, the same length of time after each sync:")
    base_lag = figures("UI-loop lag (10 ms sleep)", pooled("base_lags"))
    base_store = figures("store call (list_clients)", pooled("base_latencies"))

    def ratio(a: float, b: float) -> str:
        return f"{a / b:6.1f}x" if b > 0 else "   n/a"

    log("ratio sync / baseline:")
    log(f"  UI-loop lag                        p50 {ratio(lag[0], base_lag[0])}  p99 {ratio(lag[1], base_lag[1])}"
        f"  max {ratio(lag[2], base_lag[2])}")
    log(f"  store call                         p50 {ratio(store[0], base_store[0])}"
        f"  p99 {ratio(store[1], base_store[1])}  max {ratio(store[2], base_store[2])}")


if __name__ == "__main__":
    main()
