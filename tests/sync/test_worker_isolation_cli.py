"""`notewell sync mailbox .` run from inside a shared folder holding a planted `store/`
package: the worker processes the command starts never run it (store/prepare_pool.py).
The installed `notewell` command, as a clinician runs it; a real pairing and mailbox run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from store.prepare_pool import default_workers
from tests.store.test_worker_isolation import plant
from tests.sync.conftest import PASSPHRASE, PROCESS_TIMEOUT


def test_a_mailbox_run_inside_a_planted_folder_never_runs_the_planted_package(make_vault, pair, tmp_path):
    if default_workers() == 0:
        pytest.skip("one core: a command starts no worker processes here")
    office, home = make_vault("office"), make_vault("home")
    pair(office, home)
    folder = plant(tmp_path / "shared-mailbox")
    script = Path(sys.executable).parent / "notewell"
    assert script.exists()
    env = {**os.environ, "NOTEWELL_PASSPHRASE": PASSPHRASE}
    env.pop("NOTEWELL_VAULT", None)
    done = subprocess.run(
        [str(script), "--vault", str(office.path), "sync", "mailbox", "."],
        cwd=folder, env=env, capture_output=True, text=True, timeout=PROCESS_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    assert "synced through the mailbox" in done.stdout
    assert not (folder / "loot").exists(), "the planted package ran as the clinician"
