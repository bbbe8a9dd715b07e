"""`notewell demo`: the demo vault's contents, its path, and opening it already unlocked."""

from __future__ import annotations

import argparse
from collections import Counter

from tui_data import FAST_KDF
from tui_helpers import wait_for
from store.models import NoteStatus
from store.vault import Vault
from tui.commands.app_command import DEMO_PASSPHRASE, create_demo_vault, demo_vault_path
from tui.screens.main import MainScreen


def test_demo_vault_has_every_format_and_status(tmp_path):
    path = tmp_path / "demo"
    create_demo_vault(path, kdf=FAST_KDF)
    vault = Vault.open(path, DEMO_PASSPHRASE)
    try:
        clients = vault.record.list_clients()
        assert len(clients) == 12
        rows = [r for c in clients for r in vault.record.notes_for_client(c.client_id)]
        assert len(rows) == 200
        assert {r.format for r in rows} == {"SOAP", "DAP", "BIRP", "GIRP", "PIRP"}
        statuses = Counter(r.status for r in rows)
        assert set(statuses) == {NoteStatus.DRAFT, NoteStatus.SIGNED, NoteStatus.ENTERED_IN_ERROR}
        assert any(r.late_entry for r in rows) and any(r.addenda_count for r in rows)
        assert sum(len(vault.private.for_client(c.client_id)) for c in clients) == 8
    finally:
        vault.close()


def test_demo_vault_path(tmp_path, monkeypatch):
    from tui.cli import default_vault_path

    monkeypatch.delenv("NOTEWELL_VAULT", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert demo_vault_path(argparse.Namespace(vault=default_vault_path())).name == "demo-vault"
    assert demo_vault_path(argparse.Namespace(vault=tmp_path / "mine")) == tmp_path / "mine"
    monkeypatch.setenv("NOTEWELL_VAULT", str(tmp_path / "env"))
    assert demo_vault_path(argparse.Namespace(vault=default_vault_path())) == tmp_path / "env"


async def test_demo_opens_unlocked(tmp_path, make_app):
    path = tmp_path / "demo"
    create_demo_vault(path, kdf=FAST_KDF, notes=20, clients=3)
    app = make_app(path, passphrase=DEMO_PASSPHRASE)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen) and app.screen.client_id, what="main screen")
        assert app.store.is_open
