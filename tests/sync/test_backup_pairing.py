"""A vault restored from a backup is a new device: it keeps the list of paired devices it was
backed up with, none of them trusts it until it is paired, and once paired it syncs with the
old group over real TLS on 127.0.0.1, while the old laptop (which may still exist) keeps its
own identity and its own trust."""

from __future__ import annotations

from pathlib import Path

from store.device_identity import load_identity
from sync.peers import PeerBook, group_key
from tests.sync.conftest import VaultRef

ADD_NOTE = """
from datetime import date
from store.models import Client, ProgressNote, SessionFacts
if sys.argv[3] == "client":
    record.create_client(Client(id=sys.argv[2], display_name="Morgan Example"))
else:
    record.create_note(ProgressNote(id=sys.argv[2], client_id="c1", format="DAP",
                                    facts=SessionFacts(date_of_service=date(2026, 5, 5))))
"""


def _has(ref: VaultRef, doc_id: str) -> bool:
    vault = ref.open()
    try:
        return doc_id in vault.record.replica.doc_heads()
    finally:
        vault.close()


def test_a_restored_vault_pairs_with_the_old_group_and_syncs(make_vault, pair, serve, notewell, in_vault, tmp_path: Path):
    laptop, desktop = make_vault("laptop"), make_vault("desktop")
    in_vault(laptop, ADD_NOTE, "c1", "client")
    in_vault(laptop, ADD_NOTE, "before-backup", "note")
    pair(laptop, desktop)
    server, port = serve(laptop)
    assert notewell(desktop, "sync", "now", f"127.0.0.1:{port}").returncode == 0
    server.terminate()

    out = tmp_path / "drive"
    out.mkdir()
    done = notewell(laptop, "backup", "--to", str(out))
    assert done.returncode == 0, done.stderr
    [backup] = list(out.iterdir())
    new_path = tmp_path / "new-laptop"
    done = notewell(laptop, "restore", str(backup), "--vault", str(new_path), "--device-name", "new laptop")
    assert done.returncode == 0, done.stderr

    vault = VaultRef(new_path, "new laptop", "").open()
    try:
        identity = load_identity(vault.record.replica)
        peers = PeerBook(vault.record.replica).all()
        restored_group_key = group_key(vault.record.replica)
    finally:
        vault.close()
    new = VaultRef(new_path, "new laptop", identity.device_id)
    assert new.device_id not in (laptop.device_id, desktop.device_id)
    # The paired devices came back with the backup (and the group key) ...
    assert [p.device_id for p in peers] == [desktop.device_id]
    assert restored_group_key is not None
    # ... but the desktop trusts the old laptop's certificate, not this one's.
    server, port = serve(desktop)
    refused = notewell(new, "sync", "now", f"127.0.0.1:{port}")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    server.terminate()

    # Written on the desktop after the backup: it must reach the restored laptop.
    in_vault(desktop, ADD_NOTE, "after-backup", "note")
    pair(desktop, new)
    server, port = serve(desktop)
    synced = notewell(new, "sync", "now", f"127.0.0.1:{port}")
    assert synced.returncode == 0, synced.stderr
    assert _has(new, "after-backup") and _has(new, "before-backup")
    # And what the restored laptop writes reaches the desktop.
    in_vault(new, ADD_NOTE, "from-new-laptop", "note")
    assert notewell(new, "sync", "now", f"127.0.0.1:{port}").returncode == 0
    assert _has(desktop, "from-new-laptop")
    # The old laptop still exists and is still trusted under its own identity.
    assert notewell(laptop, "sync", "now", f"127.0.0.1:{port}").returncode == 0
    assert _has(laptop, "from-new-laptop")
    server.terminate()
    vault = desktop.open()
    try:
        trusted = {p.device_id for p in PeerBook(vault.record.replica).all() if not p.revoked}
    finally:
        vault.close()
    assert trusted == {laptop.device_id, new.device_id}
