"""A full disk is this device's problem, said in one sentence, and nothing is half done.

A real tmpfs (mounted as root, tests/vault_faults.py) filled with a filler file: the store
API, `notewell init`, `notewell sync mailbox` (the folder full, or the vault's disk full while
a good bundle is imported) and a direct sync into a vault on a full disk. Each says "The disk
is full; nothing was lost. Free some space and try again." and never blames the other
device; after space is freed the same operation succeeds. Space is always freed before a
vault closes here: closing copies the write-ahead log into the main file, which needs space
of its own, and that moment is tested where the close-time checkpoint is.
"""

from __future__ import annotations

import contextlib
import secrets
import sys
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store.errors import DiskFull  # noqa: E402
from store.vault import Vault  # noqa: E402
from sync import bundle as fmt  # noqa: E402
from vault_faults import small_disk  # noqa: E402

FULL = f"notewell: {DiskFull().message}"
PEER_FULL = "notewell: The other device's disk is full; nothing was lost. Free some space there and try again."
EXIT_SOME_REJECTED = 3
# Enough for a vault to open (one -shm file per database), far too little for what arrives.
ROOM_TO_OPEN = 192 * 1024

# A client and notes whose text takes more than ROOM_TO_OPEN, whatever compression the
# document format applies (hex digits compress to about half).
SEED = """
from datetime import date
import secrets
from store.models import Client, ProgressNote, SessionFacts
with record.transaction():
    client = record.create_client(Client(display_name="Synthetic Person"))
    for i in range(int(sys.argv[2])):
        note = record.create_note(ProgressNote(
            client_id=client.id, format="DAP", facts=SessionFacts(date_of_service=date(2026, 3, 2))))
        record.set_section(note.id, "data", "synthetic " + secrets.token_hex(80_000))
print(client.id)
"""

COUNT = "print(len(record.replica.doc_heads()))"


@pytest.fixture
def small_disk_at(tmp_path):
    """`small_disk_at(name)`: a small tmpfs mounted at tmp_path/name (where `make_vault(name)`
    then puts its vault), unmounted after the test."""
    with contextlib.ExitStack() as stack:
        yield lambda name: stack.enter_context(small_disk(tmp_path / name, size="24m"))


def _vault_at(path: Path):
    """What the `notewell` fixture needs of a vault: where it is."""
    return SimpleNamespace(path=path)


def _assert_one_sentence(done, sentence: str) -> None:
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode != 0, done.stdout
    assert done.stderr.splitlines() == [sentence], done.stderr


def test_a_store_writer_gets_disk_full_and_keeps_every_earlier_write(small_disk_at, make_vault):
    from store.models import Client, ProgressNote, SessionFacts

    disk = small_disk_at("office")
    ref = make_vault("office")
    vault = ref.open()

    record = vault.record
    client = record.create_client(Client(display_name="Synthetic Person"))
    saved = {}
    for i in range(3):
        note = record.create_note(
            ProgressNote(client_id=client.id, format="DAP", facts=SessionFacts(date_of_service=date(2026, 3, 2)))
        )
        record.set_section(note.id, "data", f"acknowledged synthetic text {i}")
        saved[note.id] = f"acknowledged synthetic text {i}"
    disk.fill()
    big = "synthetic " + secrets.token_hex(10_000)
    with pytest.raises(DiskFull) as refused:
        # Growing notes: the first write that no longer fits is refused whole.
        for note_id in saved:
            record.set_section(note_id, "data", big)
    assert str(refused.value) == DiskFull().message
    # Every acknowledged write is still there, read through the same vault.
    for note_id, text in saved.items():
        assert record.get_note(note_id).sections["data"] in (text, big)
    disk.free()
    # The refused write can simply be made again.
    for note_id in saved:
        record.set_section(note_id, "data", big)
    vault.close()
    again = ref.open()
    try:
        assert again.check() == []
        assert {n: again.record.get_note(n).sections["data"] for n in saved} == {n: big for n in saved}
    finally:
        again.close()


@pytest.mark.parametrize("room", [0, 48 * 1024, 128 * 1024])
def test_init_on_a_full_disk_leaves_nothing_and_the_next_init_works(small_disk_at, notewell, room):
    disk = small_disk_at("disk")
    disk.fill(leave=room)
    target = _vault_at(disk.path / "vault")
    done = notewell(target, "init", "--device-name", "office")
    _assert_one_sentence(done, FULL)
    assert sorted(p.name for p in disk.path.iterdir()) == [disk.FILLER]
    disk.free()
    done = notewell(target, "init", "--device-name", "office")
    assert done.returncode == 0, done.stderr
    assert Vault.exists(target.path)


def test_mailbox_folder_on_a_full_disk_writes_no_bundle_and_skips_no_number(make_vault, pair, in_vault, notewell, small_disk_at):
    disk = small_disk_at("mailbox")
    a, b = make_vault("office"), make_vault("home")
    pair(a, b)
    in_vault(a, SEED, "1")
    disk.fill()
    done = notewell(a, "sync", "mailbox", str(disk.path))
    _assert_one_sentence(done, FULL)
    assert done.returncode != EXIT_SOME_REJECTED
    assert sorted(p.name for p in disk.path.iterdir()) == [disk.FILLER]  # not even a temp file
    disk.free()
    done = notewell(a, "sync", "mailbox", str(disk.path))
    assert done.returncode == 0, done.stderr
    (bundle,) = [p.name for p in disk.path.iterdir() if p.name.endswith(fmt.SUFFIX)]
    assert fmt.parse_file_name(bundle)[1] == 1  # the refused run used up no sequence number


def test_a_good_bundle_into_a_vault_on_a_full_disk_is_not_called_malformed(make_vault, pair, in_vault, notewell, small_disk_at, tmp_path):
    disk = small_disk_at("home")
    a, b = make_vault("office"), make_vault("home")
    pair(a, b)
    in_vault(a, SEED, "4")
    box = tmp_path / "mailbox"
    box.mkdir()
    assert notewell(a, "sync", "mailbox", str(box)).returncode == 0
    before = in_vault(b, COUNT)
    disk.fill(leave=ROOM_TO_OPEN)
    done = notewell(b, "sync", "mailbox", str(box))
    _assert_one_sentence(done, FULL)
    assert done.returncode != EXIT_SOME_REJECTED
    disk.free()
    assert in_vault(b, COUNT) == before  # nothing half applied
    done = notewell(b, "sync", "mailbox", str(box))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "applied 1," in done.stdout
    assert int(in_vault(b, COUNT)) == int(before) + 5


def test_a_direct_sync_into_a_vault_on_a_full_disk_says_so_on_both_sides(make_vault, pair, in_vault, notewell, serve, small_disk_at):
    disk = small_disk_at("home")
    a, b = make_vault("office"), make_vault("home")
    pair(a, b)
    in_vault(a, SEED, "4")
    before = in_vault(b, COUNT)
    server, port = serve(b)
    disk.fill(leave=ROOM_TO_OPEN)
    done = notewell(a, "sync", "now", f"127.0.0.1:{port}")
    _assert_one_sentence(done, PEER_FULL)
    disk.free()
    again = notewell(a, "sync", "now", f"127.0.0.1:{port}")
    assert again.returncode == 0, again.stderr
    rc, _out, err = server.terminate()
    assert "Traceback" not in err, err[-3000:]
    assert FULL in err.splitlines()
    assert "could not be read" not in err
    assert int(in_vault(b, COUNT)) == int(before) + 5
