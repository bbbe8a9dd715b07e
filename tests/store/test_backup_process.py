"""An automatic backup in a child process (store/backup_process.py), as the app runs it: the
same backup as in-process, progress reported and waited for, and the child's refusals as the
same typed error with the same one sentence."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from store.backup import BackupSource, verify_backup
from store.backup_process import run_in_child
from store.errors import BackupError
from store.models import Client
from tests.store.conftest import VAULT_PASSPHRASE as PASSPHRASE
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def vault(open_vault):
    open_vault.record.create_client(Client(id="c1", display_name="Sky Example"))
    return open_vault


def test_a_backup_made_in_a_child_process_verifies(vault, tmp_path: Path):
    folder = tmp_path / "drive"
    folder.mkdir()
    seen: list[tuple[int, int]] = []
    result = run_in_child(BackupSource.of(vault), folder, device_id=vault.device_id, now=NOW,
                          progress=lambda done, total: seen.append((done, total)))
    assert result.written.path.parent == folder and "20261203T120000Z" in result.written.path.name
    assert seen and seen[-1][0] == seen[-1][1] == seen[0][1]  # reported to the end
    assert verify_backup(result.written.path, passphrase=PASSPHRASE).counts.clients == 1
    assert result.thinned.kept == (result.written.path,)


def test_the_childs_refusal_is_the_same_sentence(vault, tmp_path: Path):
    missing = tmp_path / "unplugged"
    with pytest.raises(BackupError) as in_process:
        BackupSource.of(vault).write(missing, now=NOW)
    with pytest.raises(BackupError) as in_child:
        run_in_child(BackupSource.of(vault), missing, device_id=vault.device_id, now=NOW)
    assert in_child.value.message == in_process.value.message
    assert not missing.exists() and not [p for p in vault.path.iterdir() if p.name.startswith(".backup-staging-")]
