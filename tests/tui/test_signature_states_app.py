"""The app computes signature states still pending (a vault made before they were stored)
off the first screen, in batches on the store thread, and labels each note as signed only
once its state is computed (store/signature_index.py)."""

from __future__ import annotations

from textual.widgets import OptionList, Static

from store.vault import Vault
from tui_data import CLIENT_A, PASSPHRASE, SIGNED_NOTE
from tui_helpers import unlock, wait_for


def _as_made_before_stored_states(path) -> None:
    with Vault.open(path, PASSPHRASE) as vault:
        conn = vault.record_conn
        conn.execute("DROP TABLE signature_states")
        conn.execute("DROP TABLE signature_signers")
        conn.execute("DELETE FROM local_kv WHERE key = 'signature_states.trust.v1'")
        conn.execute("CREATE TABLE signature_checks(note_id TEXT PRIMARY KEY, heads BLOB NOT NULL, "
                     "trust BLOB NOT NULL, status TEXT NOT NULL)")
        conn.execute("PRAGMA user_version = 3")


async def test_the_app_computes_pending_states_off_the_first_screen(seeded_vault, make_app):
    _as_made_before_stored_states(seeded_vault)
    with Vault.open(seeded_vault, PASSPHRASE) as vault:  # the migration marks them pending
        assert vault.record.pending_signature_states() >= 1
        assert vault.record.verified_statuses([SIGNED_NOTE]) == {SIGNED_NOTE: "pending"}
    app = make_app(seeded_vault)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: app.screen.client_id == CLIENT_A)
        timeline = app.screen.query_one("#timeline", OptionList)
        await wait_for(
            pilot, lambda: "[signed]" in str(timeline.get_option(f"progress:{SIGNED_NOTE}").prompt),
            what="the signed note labelled signed once its state is computed",
        )
        summary = app.screen.query_one("#todo-summary", Static)
        await wait_for(pilot, lambda: "being checked" not in str(summary.render()) and "To do" in str(summary.render()),
                       what="no signature left to check")
        assert await app.store.call(lambda v: v.record.pending_signature_states()) == 0


def test_a_pending_state_is_never_labelled_signed():
    from types import SimpleNamespace

    from tui.widgets.timeline import status_labels

    row = SimpleNamespace(status="signed", signature_conflict=False, signature_status="pending", late_entry=False)
    assert status_labels(row) == ["signature being checked"]
