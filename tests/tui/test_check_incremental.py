"""`notewell check` does not redo what an earlier check verified and nothing changed since;
`--full` redoes everything and says first how long it will take. Real processes on a real
vault (store/check_record.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from store.models import ClinicianSettings
from store.synthetic import populate
from store.vault import Vault
from tui_data import FAST_KDF

ROOT = Path(__file__).resolve().parents[2]
PASS = "incremental check passphrase"
COUNTS = re.compile(r"([\d,]+) document\(s\) read and compared, ([\d,]+) unchanged since an earlier check")


def _check(path: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NOTEWELL_PASSPHRASE": PASS}
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", "--vault", str(path), "check", *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )


def _counts(run: subprocess.CompletedProcess) -> tuple[int, int]:
    match = COUNTS.search(run.stdout)
    assert match, run.stdout + run.stderr
    return int(match.group(1).replace(",", "")), int(match.group(2).replace(",", ""))


def _vault(tmp_path: Path) -> tuple[Path, int]:
    path = tmp_path / "v"
    vault, _ = Vault.create(path, PASS, device_name="desk", kdf=FAST_KDF,
                            settings=ClinicianSettings(clinician_name="Dr. Check Er", credentials="PhD"))
    try:
        populate(vault, clients=3, notes=20, process_notes=3, seed=9)
        documents = len(vault.record.replica.doc_heads())
    finally:
        vault.close()
    return path, documents


def test_a_second_check_reads_only_what_changed_since_the_first(tmp_path):
    path, documents = _vault(tmp_path)

    first = _check(path)
    assert first.returncode == 0, first.stderr
    assert _counts(first) == (documents, 0)  # nothing recorded yet: every document read

    again = _check(path)
    assert again.returncode == 0, again.stderr
    assert _counts(again) == (0, documents)

    with Vault.open(path, PASS) as vault:
        draft = next(r for r in vault.record.list_notes() if r.status == "draft")
        vault.record.set_section(draft.note_id, draft_section(vault, draft.note_id), "An edit made after the check.")
    after_edit = _check(path)
    assert after_edit.returncode == 0, after_edit.stderr
    assert _counts(after_edit) == (1, documents - 1)  # the edited note, and only it


def draft_section(vault: Vault, note_id: str) -> str:
    return vault.record.get_note(note_id).section_keys[0]


def test_a_row_changed_behind_an_unchanged_document_is_still_found(tmp_path):
    """The record vouches for a document and its rows together: a list row changed by
    anything (here: written straight into record.db) is read and reported."""
    path, documents = _vault(tmp_path)
    assert _check(path).returncode == 0
    with Vault.open(path, PASS) as vault:
        note_id = vault.record.list_notes()[0].note_id
        with vault.record.transaction():
            vault.record_conn.execute("UPDATE notes_view SET minutes = 999 WHERE note_id = ?", (note_id,))
    found = _check(path)
    assert found.returncode == 1
    assert f"notes_view row of document {note_id} differs in: minutes" in found.stderr
    assert _counts(found) == (1, documents - 1)


def test_full_check_says_how_long_first_and_reads_everything(tmp_path):
    path, documents = _vault(tmp_path)
    assert _check(path).returncode == 0
    full = _check(path, "--full")
    assert full.returncode == 0, full.stderr
    estimate = full.stderr.splitlines()[0]
    assert estimate.startswith(f"A full check loads all {documents:,} documents again")
    assert re.search(r"about \d+ (s|min) on a quiet machine\.$", estimate), estimate
    assert f"all {documents:,} documents (full check)" in full.stdout
    assert "healthy" in full.stdout


def test_a_page_damaged_where_check_reads_is_named_without_a_traceback(tmp_path):
    """Pages are verified beside the comparison, so the comparison may meet the damaged page
    first: the check still ends with the damaged page named, in sentences."""
    path, _ = _vault(tmp_path)
    record = path / "record.db"
    raw = bytearray(record.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 32] = bytes(b ^ 0x5A for b in raw[middle : middle + 32])
    record.write_bytes(bytes(raw))
    found = _check(path)
    assert found.returncode == 1
    assert "Traceback" not in found.stderr
    assert re.search(r"record\.db: HMAC verification failed for page \d+", found.stderr), found.stderr
    assert record.read_bytes() == bytes(raw)  # nothing written to a damaged vault


def test_a_document_new_since_the_last_check_is_read_and_the_rest_skipped(tmp_path):
    from store.models import Client

    path, documents = _vault(tmp_path)
    assert _counts(_check(path)) == (documents, 0)
    with Vault.open(path, PASS) as vault:
        vault.record.create_client(Client(display_name="Newly Arrived Canary"))
        now = len(vault.record.replica.doc_heads())
    assert now > documents
    again = _check(path)
    assert again.returncode == 0, again.stderr
    assert _counts(again) == (now - documents, documents)  # the new documents only


def test_a_byte_flipped_under_documents_the_check_skips_is_still_found(tmp_path):
    """Skipping a document's comparison never skips its pages: a flipped byte anywhere in
    record.db fails the page check, even when every document is unchanged since the last
    check, and nothing is written (not even the record of what was verified)."""
    path, documents = _vault(tmp_path)
    assert _check(path).returncode == 0
    assert _counts(_check(path)) == (0, documents)
    record = path / "record.db"
    raw = bytearray(record.read_bytes())
    middle = (len(raw) // 4096 // 2) * 4096 + 2000  # inside a page in the middle of the file
    raw[middle] ^= 0x01
    record.write_bytes(bytes(raw))
    found = _check(path)
    assert found.returncode == 1
    assert "Traceback" not in found.stderr
    assert re.search(r"record\.db: HMAC verification failed for page \d+", found.stderr), found.stderr
    assert record.read_bytes() == bytes(raw)
