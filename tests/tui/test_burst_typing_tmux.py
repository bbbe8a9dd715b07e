"""Keys typed at burst speed (issue 16, finding 14) through the real `notewell` in a real
terminal (tmux): each burst is one `send-keys -l`, every byte written to the terminal at once,
as a paste-speed typist or a text expander would. Nothing may be lost or reordered: the
search box shows the query as typed, and a setup form typed in one burst (Tab between the
fields, Enter at the end) creates a vault holding exactly what was typed."""

from __future__ import annotations

import shutil
import sys
import uuid
from pathlib import Path

import pytest

from store.vault import Vault
from test_e2e_tmux import Tmux
from tui_data import PASSPHRASE

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]

QUERY = "tangerine worksheet"


def _start(tmux: Tmux, vault: Path, tmp_path: Path) -> None:
    notewell = Path(sys.executable).with_name("notewell")
    if not notewell.exists():
        pytest.skip("the notewell console script is not installed in this environment")
    env = {
        "NOTEWELL_VAULT": str(vault),
        "NOTEWELL_CONFIG": str(tmp_path / "no-config.toml"),
        "NOTEWELL_TEST_MODE": "1",
        "NOTEWELL_TEST_KDF": "1",
        "TERM": "xterm-256color",
    }
    exports = " ".join(f"{k}={v}" for k, v in env.items())
    tmux.run("new-session", "-d", "-s", "e2e", "-x", "120", "-y", "40",
             f"env {exports} {notewell}; echo NOTEWELL-EXITED-$?; sleep 60")


def test_a_burst_into_the_search_box_arrives_whole_and_in_order(seeded_vault: Path, tmp_path: Path):
    tmux = Tmux(f"notewell-burst-{uuid.uuid4().hex[:8]}")
    _start(tmux, seeded_vault, tmp_path)
    try:
        tmux.wait_for("Enter your passphrase")
        tmux.run("send-keys", "-t", "e2e", "-l", PASSPHRASE + "\r")
        tmux.wait_for("Casey Canary")
        # The key that opens the search and the query, in one burst: the query's first keys
        # arrive while the search screen is still being put up.
        tmux.run("send-keys", "-t", "e2e", "-l", "/" + QUERY)
        tmux.wait_for(QUERY)
        pane = tmux.wait_for("tangerine worksheet.")  # the hit: the seeded signed note's plan
        assert QUERY in pane
        tmux.run("send-keys", "-t", "e2e", "C-q")
        assert "NOTEWELL-EXITED-0" in tmux.wait_for("NOTEWELL-EXITED-")
    finally:
        tmux.run("kill-server")


def test_a_setup_form_typed_in_one_burst_keeps_every_key(vault_path: Path, tmp_path: Path):
    name, credentials, device = "Jordan Q. Burstwell-Example", "LCSW, PhD", "burst laptop 0123456789"
    passphrase = "burst typed passphrase 9d2c kiwi"
    tmux = Tmux(f"notewell-burst-{uuid.uuid4().hex[:8]}")
    _start(tmux, vault_path, tmp_path)
    try:
        tmux.wait_for_setup()
        tmux.run("send-keys", "-t", "e2e", "-l",
                 "\t".join([name, credentials, device, passphrase, passphrase]) + "\r")
        tmux.wait_for("Your recovery key", timeout=60)
        vault = Vault.open(vault_path, passphrase)  # every passphrase key, in order
        try:
            settings = vault.settings()
            assert (settings.clinician_name, settings.credentials, vault.device_name) == (name, credentials, device)
        finally:
            vault.close()
    finally:
        tmux.run("kill-server")
