"""The sync service's jobs do their work in their own threads, the code they run included:
a first sync's imports (the transports, the protocol, their codecs: about a tenth of a
second of the interpreter) made on the UI loop were a stall at the start of every first sync
(bench/app_sync_bench.py). Checked in a fresh process, where nothing has imported them yet."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from tui_data import PASSPHRASE
from tui_helpers import REPO

CHILD = r"""
import asyncio, json, sys, threading
from pathlib import Path

from tui.app import NotewellApp
from tui.sync_jobs import IMPORTED_IN_JOBS, SyncJobs

path, port, passphrase = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
on_loop, watching = [], [False]


class Watch:
    # Told of every import this process makes; records those made on the UI loop's thread.
    def find_spec(self, name, path=None, target=None):
        if watching[0] and threading.current_thread() is threading.main_thread():
            on_loop.append(name)
        return None


async def main():
    app = NotewellApp(path, test_mode=True, idle_lock_seconds=3600)
    async with app.run_test() as pilot:
        await app.store.open(path, passphrase)
        jobs = app.sync_jobs
        await jobs.prepare()
        before = [name for name in IMPORTED_IN_JOBS if name in sys.modules]
        finished = []
        post = jobs._post
        jobs._post = lambda message: (finished.append(message) if isinstance(message, SyncJobs.Finished) else None, post(message))
        sys.meta_path.insert(0, Watch())
        watching[0] = True
        started = jobs.sync_now("127.0.0.1", port)
        for _ in range(6000):
            if finished:
                break
            await asyncio.sleep(0.01)
        watching[0] = False
        await jobs.stop()
        await app.store.close()
    print(json.dumps({
        "started": started, "finished": bool(finished), "before": before,
        "after": [name for name in IMPORTED_IN_JOBS if name in sys.modules],
        "on_loop": on_loop,
    }))


asyncio.run(main())
"""


def test_a_sync_job_imports_what_it_runs_in_its_own_thread(seeded_vault):
    with socket.socket() as s:  # a port nobody listens on: the sync fails at once, as a refusal
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = subprocess.run([sys.executable, "-c", CHILD, str(seeded_vault), str(port), PASSPHRASE],
                         cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["started"] and seen["finished"]
    assert "sync.direct" not in seen["before"] and "sync.direct" in seen["after"]  # the job imported it
    assert not [name for name in seen["on_loop"] if name.startswith("sync.")], seen["on_loop"]
