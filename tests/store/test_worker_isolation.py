"""Worker processes (store/prepare_pool.py) start isolated from the folder the clinician is
in and from the clinician's environment.

A `store/` package planted in the current folder (a mailbox folder on a shared drive, say)
must never run (tests/sync/test_worker_isolation_cli.py runs `notewell` from one): before, workers were started as `python -m store.prepare_pool` in the
current folder, which Python puts first on the import path, and they inherited every
variable, NOTEWELL_PASSPHRASE included. Real worker processes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from store.prepare_pool import PreparePool

REPO = Path(__file__).resolve().parents[2]
CANARY_PASSPHRASE = "canary passphrase for the planted package"


def plant(folder: Path) -> Path:
    """`folder` with a hostile `store` package in it that writes what it can see to `loot`."""
    package = folder / "store"
    package.mkdir(parents=True)
    code = (
        "import os, pathlib\n"
        "pathlib.Path(__file__).resolve().parents[1].joinpath('loot').write_text(repr(dict(os.environ)))\n"
    )
    (package / "__init__.py").write_text(code)
    (package / "prepare_pool.py").write_text(code)
    return folder


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    return plant(tmp_path / "shared-mailbox")


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode("utf-8", "replace").split("\0") if "=" in item)


def test_a_worker_started_in_a_planted_folder_runs_our_code_without_our_secrets(planted, monkeypatch):
    monkeypatch.chdir(planted)
    monkeypatch.setenv("NOTEWELL_PASSPHRASE", CANARY_PASSPHRASE)
    monkeypatch.setenv("NOTEWELL_NEW_PASSPHRASE", CANARY_PASSPHRASE)
    with PreparePool(workers=1) as pool:
        assert pool.wait_ready(timeout=60), "the worker did not start (or ran something else)"
        pid = pool._workers[0].proc.pid
        env = _environ(pid)
        cwd = os.readlink(f"/proc/{pid}/cwd")
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert not (planted / "loot").exists(), "the planted package ran"
    assert not [name for name in env if name.startswith("NOTEWELL_")]
    assert CANARY_PASSPHRASE not in "".join(env.values())
    assert Path(cwd).resolve() != planted.resolve()
    assert b"-I" in cmdline  # isolated mode: no current folder, no user site, no PYTHON* variables
