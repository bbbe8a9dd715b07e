"""Fixtures for the app's tests: real encrypted vaults in tmp_path, made with a fast KDF.

Every name and sentence is invented (tui_data.py). Ids and dates are fixed so snapshots are stable.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The test modules import tui_data and tui_helpers from this folder by name.
sys.path.insert(0, str(Path(__file__).parent))

from store.vault import Vault  # noqa: E402
from tui_data import CLINICIAN, FAST_KDF, PASSPHRASE, seed  # noqa: E402


@pytest.fixture
def vault_path(tmp_path: Path) -> Path:
    return tmp_path / "vault"


@pytest.fixture
def seeded_vault(vault_path: Path) -> Path:
    vault, _ = Vault.create(vault_path, PASSPHRASE, device_name="test device", settings=CLINICIAN, kdf=FAST_KDF)
    try:
        seed(vault)
    finally:
        vault.close()
    return vault_path


@pytest.fixture
def make_app():
    from tui.app import NotewellApp
    from tui.config import AppConfig

    def make(path: Path, **kwargs) -> NotewellApp:
        kwargs.setdefault("config", AppConfig())
        kwargs.setdefault("test_mode", True)
        kwargs.setdefault("kdf", FAST_KDF)
        kwargs.setdefault("idle_lock_seconds", 3600)
        return NotewellApp(path, **kwargs)

    return make
