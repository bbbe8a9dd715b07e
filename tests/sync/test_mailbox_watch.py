"""The continuous mailbox (`notewell sync mailbox DIR --watch`) against a real folder.

Real vaults, paired with the real command line; real `notewell` watcher processes; the folder
is changed the way sync engines change it (temporary names, files growing under their final
name, conflict copies, deletions, duplicates, bundles out of order, a full disk, two devices
writing at once). Every wait is on a condition with a generous deadline, never on time.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.sync.conftest import REPO, _env
from tests.sync.test_direct_sync import BASE_TEXT, EDIT, _heads, _section, _seed
from tests.sync.test_live_sync import _eventually as eventually

WAIT = 90.0
BUNDLES_LINE = re.compile(r"bundles: read \d+ \(applied (\d+), already applied (\d+), rejected (\d+)\)")


def _eventually(check, what: str, timeout: float = WAIT):
    return eventually(check, what, timeout)  # the live-sync tests' wait, with a longer deadline


def _section_or_empty(ref, note_id) -> str:
    from store.errors import NotFound

    try:
        return _section(ref, note_id)
    except NotFound:
        return ""


def _has_all_of(theirs: dict, ours_ref) -> bool:
    ours = _heads(ours_ref)
    return all(ours.get(doc_id) == heads for doc_id, heads in theirs.items())


def _start_watch(start_notewell, ref, folder: Path, *extra: str):
    proc = start_notewell(ref, "sync", "mailbox", str(folder), "--watch", *extra)
    proc.wait_for("watching the mailbox")
    return proc


def _lines(proc) -> list[str]:
    """Every line the process has printed so far (without waiting)."""
    while True:
        try:
            line = proc._queue.get_nowait()
        except Exception:  # queue.Empty
            return proc.lines
        if line is not None:
            proc.lines.append(line)


def _wait_for_round(proc, predicate, what: str) -> str:
    """The first printed round's bundles line from now on that satisfies `predicate`."""
    deadline = time.monotonic() + WAIT
    while True:
        line = proc.wait_for("bundles:", timeout=max(1.0, deadline - time.monotonic()))
        if predicate(line):
            return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no round {what}")


def _wrote_documents(line: str) -> int:
    m = re.search(r"wrote \S+ \((\d+) documents?\)", line)
    return int(m.group(1)) if m else 0


def _applied_counts(lines: list[str]) -> tuple[int, int, int]:
    """(applied, already applied, rejected) summed over a watcher's printed rounds."""
    total = [0, 0, 0]
    for line in lines:
        m = BUNDLES_LINE.search(line)
        if m:
            total = [t + int(x) for t, x in zip(total, m.groups())]
    return tuple(total)


def _stage_bundles(notewell, ref, stage: Path) -> list[Path]:
    """`ref`'s bundle of what changed, written by the one-shot command into a folder nobody
    watches; the new bundle files."""
    stage.mkdir(exist_ok=True)
    before = set(stage.iterdir())
    done = notewell(ref, "sync", "mailbox", str(stage))
    assert done.returncode == 0, done.stderr
    # (the command also leaves its read-mark, `*.nwm`, sync/mailbox_collect.py)
    return sorted(p for p in set(stage.iterdir()) - before if p.name.endswith(".nwb"))


@pytest.fixture
def paired(make_vault, pair, tmp_path):
    a, b = make_vault("office"), make_vault("home")
    pair(a, b)
    folder = tmp_path / "Sync" / "notewell"
    folder.mkdir(parents=True)
    return a, b, folder


@pytest.mark.parametrize("mode", ["notifications", "poll"])
def test_watchers_carry_each_save_both_ways(paired, start_notewell, in_vault, mode):
    a, b, folder = paired
    extra = ("--poll",) if mode == "poll" else ()
    watch_a = _start_watch(start_notewell, a, folder, *extra)
    watch_b = _start_watch(start_notewell, b, folder, *extra)

    seeded = _seed(in_vault, a)  # a save on A, while both watch: no command run on B
    note = seeded["notes"][0]
    _eventually(lambda: _has_all_of(_heads(a), b), "A's new note on B")
    assert _section(b, note) == BASE_TEXT

    in_vault(b, EDIT, note, "0", "HOME ")  # and back
    _eventually(lambda: _section_or_empty(a, note).startswith("HOME "), "B's edit on A")
    _eventually(lambda: _heads(a) == _heads(b), "both vaults the same")

    for proc in (watch_a, watch_b):
        rc, out, err = proc.terminate()
        assert rc == 0, err
        assert "stopped watching the mailbox" in out
        assert _applied_counts(out.splitlines())[2] == 0, out


def test_debris_partial_files_and_conflict_copies_apply_once(paired, start_notewell, notewell, in_vault, tmp_path):
    """Temporary names are never read; a bundle growing slowly under its final name is
    applied once it is whole, never named as bad meanwhile; a Syncthing conflict copy and a
    Dropbox "conflicted copy" of it are already applied, never applied twice or refused."""
    a, b, folder = paired
    _seed(in_vault, b)
    (bundle,) = _stage_bundles(notewell, b, tmp_path / "stage")
    data = bundle.read_bytes()
    watch_a = _start_watch(start_notewell, a, folder)

    stem = bundle.name.removesuffix(".nwb")
    (folder / f".syncthing.{bundle.name}.tmp").write_bytes(data[: len(data) // 2])
    (folder / f"~{bundle.name}").write_bytes(data[: len(data) // 3])
    # A slow disk or a slow engine: the bundle grows under its own name, a piece at a time.
    slow = subprocess.run(
        [sys.executable, "-c", (
            "import sys, time\n"
            "data = open(sys.argv[1], 'rb').read()\n"
            "with open(sys.argv[2], 'wb') as f:\n"
            "    for i in range(0, len(data), max(1, len(data) // 5)):\n"
            "        f.write(data[i:i + max(1, len(data) // 5)]); f.flush(); time.sleep(0.4)\n"
        ), str(bundle), str(folder / bundle.name)],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=WAIT,
    )
    assert slow.returncode == 0, slow.stderr
    _eventually(lambda: _has_all_of(_heads(b), a), "B's bundle applied on A")
    shutil.copy(bundle, folder / f"{stem}.sync-conflict-20260302-101500-ABCDEFG.nwb")
    shutil.copy(bundle, folder / f"{stem} (Home's conflicted copy 2026-03-02).nwb")
    _eventually(lambda: _applied_counts(_lines(watch_a))[1] >= 2 or None, "both copies recognised")

    rc, out, err = watch_a.terminate()
    assert rc == 0, err
    assert _applied_counts(out.splitlines()) == (1, 2, 0), out
    assert "rejected" not in out.replace("rejected 0", ""), out
    assert err == "", err


def test_bundles_out_of_order_and_twice_apply_once_each(paired, start_notewell, notewell, in_vault, tmp_path):
    a, b, folder = paired
    note = _seed(in_vault, b)["notes"][0]
    stage = tmp_path / "stage"
    staged = _stage_bundles(notewell, b, stage)
    for word in ("SECOND ", "THIRD "):
        in_vault(b, EDIT, note, "0", word)
        staged += _stage_bundles(notewell, b, stage)
    assert len(staged) == 3
    watch_a = _start_watch(start_notewell, a, folder)

    # The newest first, then the oldest, then the middle one twice (a cloud drive's "(1)").
    shutil.copy(staged[2], folder / staged[2].name)
    _eventually(lambda: _section_or_empty(a, note).startswith("THIRD SECOND "), "the newest bundle applied")
    shutil.copy(staged[0], folder / staged[0].name)
    shutil.copy(staged[1], folder / staged[1].name)
    shutil.copy(staged[1], folder / (staged[1].name.removesuffix(".nwb") + " (1).nwb"))
    _eventually(lambda: sum(_applied_counts(_lines(watch_a))[:2]) >= 4 or None, "every file read")

    rc, out, err = watch_a.terminate()
    assert rc == 0, err
    assert _applied_counts(out.splitlines()) == (3, 1, 0), out
    assert _heads(a) == _heads(b) or _has_all_of(_heads(b), a)
    assert _section(a, note) == _section(b, note)


def test_own_bundle_deleted_before_it_was_read_is_written_again(paired, start_notewell, notewell, in_vault):
    """An engine (or a person) deletes this device's bundle before the other device read it:
    the watcher notices and its next bundle carries everything, so nothing is lost."""
    a, b, folder = paired
    watch_a = _start_watch(start_notewell, a, folder)
    _seed(in_vault, a, count=3)
    _wait_for_round(watch_a, lambda line: _wrote_documents(line) >= 4, "writing the new notes")
    for written in [p for p in folder.iterdir() if p.name.endswith(".nwb")]:
        written.unlink()
    _wait_for_round(watch_a, lambda line: _wrote_documents(line) >= 4, "writing them again")

    done = notewell(b, "sync", "mailbox", str(folder))  # B was away all along
    assert done.returncode == 0, done.stderr
    assert _has_all_of(_heads(a), b)
    rc, _out, err = watch_a.terminate()
    assert rc == 0, err


def test_a_full_mailbox_disk_is_said_once_and_the_watch_goes_on(make_vault, pair, start_notewell, notewell,
                                                               in_vault, tmp_path):
    from tests.vault_faults import small_disk

    from store.errors import DiskFull

    a, b = make_vault("office"), make_vault("home")
    pair(a, b)
    with small_disk(tmp_path / "cloud", size="1m") as disk:
        folder = disk.path
        watch_a = _start_watch(start_notewell, a, folder)
        disk.fill()
        _seed(in_vault, a)
        _seed(in_vault, a, count=2)  # a second save while the disk is still full
        _eventually(lambda: DiskFull().message in "".join(watch_a._stderr) or None, "the full disk said")
        assert watch_a.proc.poll() is None, "the watch stopped"
        disk.free()
        _eventually(lambda: any(p.name.endswith(".nwb") for p in folder.iterdir()) or None, "the bundle written")
        done = notewell(b, "sync", "mailbox", str(folder))
        assert done.returncode == 0, done.stderr
        assert _has_all_of(_heads(a), b)
        rc, _out, err = watch_a.terminate()
        assert rc == 0
        assert err.count(DiskFull().message) == 1, err  # said once, not every retry


def test_two_devices_saving_at_the_same_moment_converge(paired, start_notewell, in_vault, start_in_vault):
    a, b, folder = paired
    note = _seed(in_vault, a)["notes"][0]
    watch_a = _start_watch(start_notewell, a, folder)
    watch_b = _start_watch(start_notewell, b, folder)
    _eventually(lambda: _has_all_of(_heads(a), b), "the note on B")

    # Both save at once, both watchers write at once into the same folder.
    edits = [start_in_vault(a, EDIT, note, "0", "OFFICE "), start_in_vault(b, EDIT, note, "0", "HOME ")]
    for proc in edits:
        rc, _out, err = proc.finish()
        assert rc == 0, err
    _eventually(lambda: _heads(a) == _heads(b), "both vaults the same")
    text = _section(a, note)
    assert "OFFICE " in text and "HOME " in text
    for proc in (watch_a, watch_b):
        rc, out, err = proc.terminate()
        assert rc == 0, err
        assert _applied_counts(out.splitlines())[2] == 0, out


def test_one_shot_run_takes_a_conflict_copy_of_an_applied_bundle_as_applied(paired, notewell, in_vault, tmp_path):
    a, b, folder = paired
    _seed(in_vault, b)
    (bundle,) = _stage_bundles(notewell, b, folder)
    first = notewell(a, "sync", "mailbox", str(folder))
    assert first.returncode == 0, first.stderr
    shutil.copy(bundle, folder / (bundle.name.removesuffix(".nwb") + ".sync-conflict-20260302-101500-ABCDEFG.nwb"))
    again = notewell(a, "sync", "mailbox", str(folder))
    assert again.returncode == 0, again.stdout
    assert "rejected 0" in again.stdout


def test_poll_without_watch_is_one_sentence_and_changes_nothing(make_vault, notewell, tmp_path):
    a = make_vault("office")
    folder = tmp_path / "Sync"
    folder.mkdir()
    done = notewell(a, "sync", "mailbox", str(folder), "--poll")
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "add --watch" in lines[0] and "Traceback" not in done.stderr, done.stderr
    assert list(folder.iterdir()) == []
