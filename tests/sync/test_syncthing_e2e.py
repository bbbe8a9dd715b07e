"""End to end through a real sync engine: two Syncthing instances carry the mailbox.

Vault A's watcher (`notewell sync mailbox DIR --watch`) uses Syncthing A's copy of the shared
folder, vault B's uses Syncthing B's; the two instances talk over 127.0.0.1 only
(tests/sync/syncthing_pair.py). A save in A arrives in B, and B's in A, with no Notewell
command run on either side other than its watcher. Skipped only where Syncthing is not
installed (`make test` installs it with the other tools).
"""

from __future__ import annotations

import pytest

from tests.sync.syncthing_pair import SyncthingPair, syncthing_binary
from tests.sync.test_mailbox_metadata import found_ids
from tests.sync.test_direct_sync import BASE_TEXT, EDIT, _heads, _seed
from tests.sync.test_mailbox_watch import _eventually, _has_all_of, _section_or_empty, _start_watch, _applied_counts

pytestmark = pytest.mark.skipif(
    syncthing_binary() is None,
    reason="Syncthing is not installed here (`make tools` installs Debian's syncthing package)",
)

WAIT = 180.0


def test_edits_travel_both_ways_through_two_syncthing_instances(make_vault, pair, start_notewell, in_vault, tmp_path):
    a, b = make_vault("office"), make_vault("home")
    pair(a, b)
    with SyncthingPair(tmp_path / "engines") as engines:
        folder_a, folder_b = engines.folders
        watch_a = _start_watch(start_notewell, a, folder_a)
        watch_b = _start_watch(start_notewell, b, folder_b)

        note = _seed(in_vault, a)["notes"][0]
        _eventually(lambda: _has_all_of(_heads(a), b), "A's note in B, carried by Syncthing", timeout=WAIT)
        assert _section_or_empty(b, note) == BASE_TEXT

        in_vault(b, EDIT, note, "0", "FROM HOME ")
        _eventually(lambda: _section_or_empty(a, note).startswith("FROM HOME "), "B's edit in A", timeout=WAIT)
        _eventually(lambda: _heads(a) == _heads(b), "both vaults the same", timeout=WAIT)

        # What the engine carried is ciphertext: no note text in any file of either copy.
        for folder in (folder_a, folder_b):
            for path in folder.rglob("*"):
                if path.is_file():
                    assert b"FROM HOME" not in path.read_bytes() and BASE_TEXT.encode() not in path.read_bytes()
            # Nor which computers wrote it: no piece of either device id in a name or a byte.
            assert found_ids(folder, [a.device_id, b.device_id]) == []

        for proc in (watch_a, watch_b):
            rc, out, err = proc.terminate()
            assert rc == 0, err
            assert _applied_counts(out.splitlines())[2] == 0, out
