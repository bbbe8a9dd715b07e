"""`notewell backup --auto` as a real process: what the app does when a backup is due, for cron
or launchd. Nothing when none is due; when due, a backup written, verified and the folder
thinned by the rule; a missing setting, a missing or read-only folder: one sentence, a
non-zero exit, earlier backups intact.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store.backup import BackupSource, record_backup, verify_backup  # noqa: E402
from store.last_backup import last_backup  # noqa: E402
from store.models import Client  # noqa: E402
from store.vault import Vault  # noqa: E402
from test_backup_cli import FAST_KDF, PASSPHRASE, notewell, refused  # noqa: E402
from vault_faults import small_disk  # noqa: E402


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    path = tmp_path / "vault"
    v, _ = Vault.create(path, PASSPHRASE, device_name="office laptop", kdf=FAST_KDF)
    try:
        v.record.create_client(Client(id="c1", display_name="Jordan Example"))
    finally:
        v.close()
    return path


def settings(tmp_path: Path, folder: Path, every: str = "daily") -> dict[str, str]:
    config = tmp_path / "config.toml"
    config.write_text(f'[backup]\nfolder = "{folder}"\nevery = "{every}"\n')
    return {"NOTEWELL_CONFIG": str(config)}


def backups(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.endswith(".nwbackup") and not p.name.startswith("."))


def test_auto_backs_up_when_due_and_not_again_until_the_interval(vault: Path, tmp_path: Path):
    drive = tmp_path / "drive"
    drive.mkdir()
    env = settings(tmp_path, drive)
    done = notewell("--vault", str(vault), "backup", "--auto", **env)
    assert done.returncode == 0, done.stderr
    assert "Backup written and verified:" in done.stdout
    [made] = backups(drive)
    done = notewell("--vault", str(vault), "backup", "--auto", **env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("No backup due: the last was made ") and backups(drive) == [made]
    verify_backup(made, passphrase=PASSPHRASE)


def test_auto_thins_the_folder_by_the_rule(vault: Path, tmp_path: Path):
    drive = tmp_path / "drive"
    drive.mkdir()
    with Vault.open(vault, PASSPHRASE) as v:
        source = BackupSource.of(v)
        # Two backups of one month long ago (the rule keeps the newer), the newer recorded as
        # this device's last: a backup is due.
        older = source.write(drive, now=datetime(2026, 1, 10, 8, 0, tzinfo=timezone.utc))
        newer = record_backup(v, source.write(drive, now=datetime(2026, 1, 10, 12, 0, tzinfo=timezone.utc)))
        assert last_backup(v).backup_id == newer.manifest.backup_id
    (drive / "README.txt").write_text("the practice's drive\n")
    done = notewell("--vault", str(vault), "backup", "--auto", **settings(tmp_path, drive))
    assert done.returncode == 0, done.stderr
    assert "Older backups removed by the thinning rule: 1; kept: 2." in done.stdout
    names = {p.name for p in drive.iterdir()}
    assert older.path.name not in names and newer.path.name in names and "README.txt" in names
    assert len(backups(drive)) == 2


def test_auto_without_a_folder_or_with_a_missing_one_says_so(vault: Path, tmp_path: Path):
    refused(notewell("--vault", str(vault), "backup", "--auto", NOTEWELL_CONFIG=str(tmp_path / "none.toml")),
            "No backup folder is set")
    refused(notewell("--vault", str(vault), "backup", "--auto", **settings(tmp_path, tmp_path / "unplugged")),
            "does not exist")
    bad = tmp_path / "bad.toml"
    bad.write_text('[backup]\nfolder = "/x"\nevery = "now and then"\n')
    refused(notewell("--vault", str(vault), "backup", "--auto", NOTEWELL_CONFIG=str(bad)), "every")


def test_auto_into_a_read_only_folder_leaves_the_earlier_backups_intact(vault: Path, tmp_path: Path):
    with small_disk(tmp_path / "drive", size="4m") as disk:
        with Vault.open(vault, PASSPHRASE) as v:
            # An earlier backup on the drive, never recorded here: a backup is due.
            BackupSource.of(v).write(disk.path, now=datetime(2026, 1, 10, 8, 0, tzinfo=timezone.utc))
        before = {p.name: p.read_bytes() for p in disk.path.iterdir()}
        remounted = subprocess.run(["mount", "-o", "remount,ro", str(disk.path)], capture_output=True, text=True)
        if remounted.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {remounted.stderr.strip()}")
        err = refused(notewell("--vault", str(vault), "backup", "--auto", **settings(tmp_path, disk.path)),
                      "cannot be written")
        assert "earlier backups are untouched" in err
        assert {p.name: p.read_bytes() for p in disk.path.iterdir()} == before
    assert not [p for p in vault.iterdir() if p.name.startswith(".backup-staging-")]
