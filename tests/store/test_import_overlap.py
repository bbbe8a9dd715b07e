"""With worker processes, an import's write phase begins while they build its last notes
(store/importer.py WRITE_OVERLAP), so they do not idle through a write phase at the end; the
import stays all or nothing, and a bad note met after the writing began rolls it all back.

Real vaults, a real worker process, the documented example's notes copied many times; rounds
made small so that a few hundred notes make several.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from store import importer
from store.errors import ImportFailed
from store.importer import apply_import, parse_import, scan_import
from store.prepare_pool import CHUNK, PreparePool

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import vault_files  # noqa: E402
from test_import_workers import EXAMPLE, NOW, PASSPHRASE, assert_signed_here_and_whole, content, many_notes, new_vault  # noqa: E402,F401

ROUNDS = 8


@pytest.fixture
def small_rounds(monkeypatch):
    monkeypatch.setattr(importer, "BUILD_BATCH", CHUNK)
    monkeypatch.setattr(importer, "BUILD_WINDOW", 3 * CHUNK)


def events_of(vault, monkeypatch) -> list[tuple[str, int]]:
    """("taken", notes) for each round of notes built and taken, ("written", documents) for
    each insert into record.db, in the order they happen."""
    events: list[tuple[str, int]] = []
    take = importer._take_round

    def taken(record, section, results, summaries, built):
        if section == "progress_notes":
            events.append(("taken", len(results)))
        return take(record, section, results, summaries, built)

    insert = vault.record.replica.insert_prepared

    def written(docs, rows):
        events.append(("written", len(docs)))
        return insert(docs, rows)

    monkeypatch.setattr(importer, "_take_round", taken)
    monkeypatch.setattr(vault.record.replica, "insert_prepared", written)
    return events


def bad_last_note(good: bytes) -> bytes:
    """`good` with its last note's PHQ-9 given as text: only building that note finds it
    (scan_import does not), so with workers it is met after the writing began."""
    text = good.decode()
    at = text.rindex('"facts": {') + len('"facts": {')
    return (text[:at] + '"phq9": "many", ' + text[at:]).encode()


def test_with_workers_the_writing_begins_before_the_last_notes_are_built(new_vault, small_rounds, monkeypatch):
    count = ROUNDS * CHUNK
    data = many_notes(count)
    alone = new_vault("alone")
    apply_import(alone, parse_import(data, now=NOW))

    vault = new_vault("overlapped")
    events = events_of(vault, monkeypatch)
    with PreparePool(workers=1) as pool:
        assert pool.wait_ready(timeout=120), "the worker did not start"
        vault.record.replica.prepare_pool = pool
        plan = parse_import(data, now=NOW)
        summary = apply_import(vault, plan)
    assert summary.notes == count
    kinds = [kind for kind, _n in events]
    first_write = kinds.index("written")
    assert "taken" in kinds[first_write:]  # rounds were still being built once the writing began
    # ...but not before all but WRITE_OVERLAP of the notes were: the lock is held about as
    # long as writing everything at the end held it.
    taken_before = sum(n for kind, n in events[:first_write] if kind == "taken")
    assert count - taken_before <= count * importer.WRITE_OVERLAP
    assert sum(n for kind, n in events if kind == "written") == count + plan.count("clients")
    assert_signed_here_and_whole(vault, count)
    assert content(vault) == content(alone)


def test_without_workers_everything_is_built_before_anything_is_written(new_vault, small_rounds, monkeypatch):
    vault = new_vault("alone")
    events = events_of(vault, monkeypatch)
    apply_import(vault, parse_import(many_notes(ROUNDS * CHUNK), now=NOW))
    kinds = [kind for kind, _n in events]
    assert "taken" not in kinds[kinds.index("written"):]


def test_a_bad_note_met_after_the_writing_began_rolls_everything_back(new_vault, small_rounds, monkeypatch):
    count = ROUNDS * CHUNK
    good = many_notes(count)
    bad = bad_last_note(good)
    assert not scan_import(bad, now=NOW)[1]
    vault = new_vault("rolled back")
    events = events_of(vault, monkeypatch)
    with PreparePool(workers=1) as pool:
        assert pool.wait_ready(timeout=120), "the worker did not start"
        vault.record.replica.prepare_pool = pool
        plan, _problems = scan_import(bad, now=NOW)
        with pytest.raises(ImportFailed, match=rf"progress_notes\[{count - 1}\]\.facts\.phq9"):
            apply_import(vault, plan)
        assert ("written", CHUNK) in events  # the writing had begun when the bad note was met
        assert vault.record.list_notes() == [] and vault.record.list_clients() == []
        assert vault.check() == []
        apply_import(vault, parse_import(good, now=NOW))  # the same file, mended, imports whole
    assert_signed_here_and_whole(vault, count)


@pytest.mark.parametrize("imported_before", [False, True], ids=["new vault", "vault with an import"])
def test_a_file_refused_after_the_writing_began_leaves_the_vaults_files_byte_for_byte(
        new_vault, small_rounds, monkeypatch, imported_before):
    count = ROUNDS * CHUNK
    bad = bad_last_note(many_notes(count))
    vault = new_vault("refused late")
    if imported_before:  # the example under ids of its own
        earlier = json.loads(EXAMPLE.read_text(encoding="utf-8"))
        ids = [item["id"] for section in ("clients", "progress_notes", "process_notes") for item in earlier[section]]
        text_before = EXAMPLE.read_text(encoding="utf-8")
        for item_id in ids:
            text_before = text_before.replace(f'"{item_id}"', f'"{item_id}-earlier"')
        apply_import(vault, parse_import(text_before.encode(), now=NOW))
    events = events_of(vault, monkeypatch)
    before = vault_files(vault.path)
    with PreparePool(workers=1) as pool:
        assert pool.wait_ready(timeout=120), "the worker did not start"
        vault.record.replica.prepare_pool = pool
        with pytest.raises(ImportFailed, match=rf"progress_notes\[{count - 1}\]\.facts\.phq9"):
            apply_import(vault, scan_import(bad, now=NOW)[0])
    assert ("written", CHUNK) in events  # the writing had begun when the bad note was met
    assert vault_files(vault.path) == before


def test_pages_of_a_refused_import_spilled_to_the_log_are_gone_once_the_vault_closes(
        new_vault, small_rounds, monkeypatch):
    """With a page cache too small for the import's transaction, SQLite writes some of its
    pages to record.db's log before the bad note is met; closing the vault leaves its files
    as they were before it opened."""
    from store import replica
    from store.vault import Vault

    monkeypatch.setattr(replica, "BULK_CACHE_KIB", 64)  # spills within the first rounds
    count = ROUNDS * CHUNK
    bad = bad_last_note(many_notes(count))
    vault = new_vault("spilled")
    path = vault.path
    vault.close()
    before = vault_files(path)
    vault = Vault.open(path, PASSPHRASE)
    wal = Path(path) / "record.db-wal"
    try:
        sizes = []
        with PreparePool(workers=1) as pool:
            assert pool.wait_ready(timeout=120), "the worker did not start"
            vault.record.replica.prepare_pool = pool
            insert = vault.record.replica.insert_prepared

            def noting_the_log(docs, rows):
                insert(docs, rows)
                sizes.append(wal.stat().st_size if wal.exists() else 0)

            monkeypatch.setattr(vault.record.replica, "insert_prepared", noting_the_log)
            at_start = wal.stat().st_size if wal.exists() else 0
            with pytest.raises(ImportFailed, match=rf"progress_notes\[{count - 1}\]\.facts\.phq9"):
                apply_import(vault, scan_import(bad, now=NOW)[0])
        assert max(sizes) > at_start  # the rolled-back transaction had written to the log
    finally:
        vault.close()
    assert vault_files(path) == before
