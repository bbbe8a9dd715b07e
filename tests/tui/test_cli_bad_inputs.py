"""Bad input files and arguments through the real `notewell` command: each one ends in one
sentence on stderr, a non-zero exit and a vault whose files are byte-identical; never a
traceback, a hang, or an acceptance.

The import cases start from the documented example file (docs/examples/import.json) and break
one thing each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from store.keys import TEST_KDF_ENV
from store.device_identity import ensure_identity
from store.vault import KdfParams, Vault
from tui_helpers import folder_files, one_sentence

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "import.json"
PASSPHRASE = "bad input test passphrase"
FAST_KDF = KdfParams(memory_kib=8192, time_cost=1, parallelism=1)
TIMEOUT = 60


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    path = tmp_path / "vault"
    v, _ = Vault.create(path, PASSPHRASE, device_name="bad inputs", kdf=FAST_KDF)
    try:
        ensure_identity(v.record.replica, v.device_name)
    finally:
        v.close()
    return path


files = folder_files


def notewell(vault: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTEWELL_") or k == TEST_KDF_ENV}
    env["NOTEWELL_PASSPHRASE"] = PASSPHRASE
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", "--vault", str(vault), *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT,
    )


def refused(vault: Path, *args: str) -> str:
    """Runs the command and holds it to the rule; returns its one sentence."""
    before = files(vault)
    sentence = one_sentence(notewell(vault, *args))
    assert files(vault) == before
    return sentence


def example() -> dict:
    return json.loads(EXAMPLE.read_text(encoding="utf-8"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "import.json"
    path.write_text(text, encoding="utf-8")
    return path


# --- import files --------------------------------------------------------------------------

HUGE = "9" * 5000


@pytest.mark.parametrize(
    "where",
    [
        '"version": 1',
        '"phq9": 14',
        '"display_name": "Avery Larkspur"',
    ],
)
def test_an_integer_of_5000_digits_anywhere(tmp_path, vault, where):
    text = EXAMPLE.read_text(encoding="utf-8")
    assert where in text
    key = where.split(":")[0]
    path = write(tmp_path, text.replace(where, f"{key}: {HUGE}", 1))
    sentence = refused(vault, "import", str(path))
    assert "nothing was imported" in sentence
    assert HUGE[:50] not in sentence


def test_a_lone_surrogate_in_a_section(tmp_path, vault):
    data = example()
    data["progress_notes"][0]["sections"]["subjective"] = "Client reports \udfff sleeping better."
    path = write(tmp_path, json.dumps(data))  # ensure_ascii: written as the escape \udfff
    assert "\\udfff" in path.read_text(encoding="utf-8")
    assert "nothing was imported" in refused(vault, "import", str(path))


def test_a_lone_surrogate_in_an_identifier_key(tmp_path, vault):
    data = example()
    data["clients"][0]["identifiers"]["mrn\udfff"] = "EX-1"
    path = write(tmp_path, json.dumps(data))
    assert "nothing was imported" in refused(vault, "import", str(path))


def test_a_surrogate_pair_is_ordinary_text(tmp_path, vault):
    data = example()
    data["progress_notes"][0]["sections"]["subjective"] = "Client drew a sun \U0001F31E in session."
    path = write(tmp_path, json.dumps(data))
    assert "\\ud83c" in path.read_text(encoding="utf-8")
    run = notewell(vault, "import", str(path))
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("field", ["phq9", "gad7"])
def test_a_score_given_as_true(tmp_path, vault, field):
    data = example()
    data["progress_notes"][0]["facts"][field] = True
    path = write(tmp_path, json.dumps(data))
    sentence = refused(vault, "import", str(path))
    assert f"progress_notes[0].facts.{field}" in sentence


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["progress_notes"][1]["facts"].update(date_of_service="9999-12-31"),
        lambda d: d["progress_notes"][1]["facts"].update(date_of_service="0001-01-01"),
        lambda d: d["process_notes"][0].update(session_date="9999-12-31"),
        lambda d: d["clients"][0].update(date_of_birth="0001-01-01"),
        lambda d: d["clients"][0].update(created_at="9999-12-31T23:59:59Z"),
        lambda d: d["progress_notes"][0].update(created_at="0001-01-01T00:00:00+14:00"),
        lambda d: d["progress_notes"][0]["signature"].update(signed_at="9999-12-31T23:59:59Z"),
        lambda d: d["progress_notes"][0]["addenda"][0].update(signed_at="9999-12-31T23:59:59-12:00"),
    ],
    ids=["draft-dos-9999", "draft-dos-0001", "process-9999", "birth-0001", "client-created-9999",
         "note-created-0001", "signed-9999", "addendum-9999"],
)
def test_an_implausible_date(tmp_path, vault, change):
    data = example()
    change(data)
    path = write(tmp_path, json.dumps(data))
    sentence = refused(vault, "import", str(path))
    assert "nothing was imported" in sentence


def test_dev_zero_is_refused(vault):
    sentence = refused(vault, "import", "/dev/zero")
    assert "not a regular file" in sentence


def test_a_fifo_is_refused_without_waiting(tmp_path, vault):
    fifo = tmp_path / "import.fifo"
    os.mkfifo(fifo)
    sentence = refused(vault, "import", str(fifo))  # the timeout catches a hang
    assert "not a regular file" in sentence


def test_a_folder_is_refused(tmp_path, vault):
    folder = tmp_path / "folder"
    folder.mkdir()
    assert "not a regular file" in refused(vault, "import", str(folder))


def test_a_file_over_the_size_limit_is_refused(tmp_path, vault):
    from store.importer import MAX_FILE_BYTES

    big = tmp_path / "big.json"
    with big.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: no disk used
    sentence = refused(vault, "import", str(big))
    assert "larger than" in sentence


# --- sync and audit arguments --------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("sync", "serve", "--port", "99999"),
        ("sync", "serve", "--port", "-5"),
        ("sync", "serve", "--port", "http"),
        ("sync", "pair", "--listen", "--port", "99999"),
    ],
)
def test_a_port_out_of_range(vault, args):
    sentence = refused(vault, *args)
    assert "port" in sentence and "0-65535" in sentence


@pytest.mark.parametrize("folder", ["/proc", "/sys", "/dev", "/proc/self"])
def test_a_system_folder_is_no_mailbox(vault, folder):
    sentence = refused(vault, "sync", "mailbox", folder)
    assert folder in sentence


def test_a_mailbox_folder_that_cannot_be_written(tmp_path, vault):
    if os.geteuid() == 0:
        # Root writes through permissions; a read-only mount is the honest test.
        ro = tmp_path / "ro"
        ro.mkdir()
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True)
        if mounted.returncode != 0:
            pytest.skip("cannot mount a read-only tmpfs here")
        try:
            sentence = refused(vault, "sync", "mailbox", str(ro))
        finally:
            subprocess.run(["umount", str(ro)], check=False)
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            sentence = refused(vault, "sync", "mailbox", str(ro))
        finally:
            ro.chmod(0o700)
    assert "cannot be written" in sentence


def test_audit_for_an_unknown_client(vault):
    sentence = refused(vault, "audit", "--client", "client-nobody")
    assert "client-nobody" in sentence


def test_audit_for_a_known_client_still_works(tmp_path, vault):
    run = notewell(vault, "import", str(EXAMPLE))
    assert run.returncode == 0, run.stderr
    run = notewell(vault, "audit", "--client", "client-avery-larkspur")
    assert run.returncode == 0, run.stderr
