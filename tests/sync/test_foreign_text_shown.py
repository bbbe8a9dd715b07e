"""Text from another device reaches the terminal printable: shown, never obeyed.

A shared mailbox folder is anyone's to write in, so a bundle's file name is foreign text; so
is a folder's name, quoted in an error sentence. Before, both were printed raw: the terminal
ran the escape sequences (clear the screen, set the window title, ring the bell). Real
`notewell` processes, a real pairing and real bundles.
"""

from __future__ import annotations

from tests.sync.conftest import PROCESS_TIMEOUT

HOSTILE = "evil\x1b[2J\x1b]0;owned\x07[bold red]x\u202egnp\r"
RAW = ("\x1b", "\x07", "\u202e", "\r")


def _raw(text: str) -> list[str]:
    return [ch for ch in RAW if ch in text]


def test_a_hostile_bundle_file_name_is_printed_as_escapes(make_vault, pair, notewell, tmp_path):
    office, home = make_vault("office"), make_vault("home")
    pair(office, home)
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / f"{HOSTILE}-00000001.nwb").write_bytes(b"not a bundle at all")

    done = notewell(office, "sync", "mailbox", str(folder), timeout=PROCESS_TIMEOUT)
    assert done.returncode == 3, done.stderr  # some bundle was rejected
    assert not _raw(done.stdout) and not _raw(done.stderr)
    assert "evil\\x1b[2J\\x1b]0;owned\\x07[bold red]x\\u202egnp\\x0d-00000001.nwb" in done.stdout
    assert "rejected 1" in done.stdout


def test_an_error_sentence_quoting_a_foreign_name_is_printed_as_escapes(make_vault, notewell, tmp_path):
    office = make_vault("office")
    missing = tmp_path / HOSTILE.replace("/", "")
    done = notewell(office, "sync", "mailbox", str(missing))
    assert done.returncode != 0
    assert not _raw(done.stderr) and done.stderr.count("\n") == 1
    assert "evil\\x1b[2J" in done.stderr
