"""Snapshot of the client's rights screen: requests in each state (due, extended, overdue,
fulfilled, denied with statement and rebuttal) and the accounting of disclosures. A fixed
clock and theme, so nothing on screen depends on today. Regenerate after a deliberate change
with `pytest tests/tui/test_client_rights_snapshots.py --snapshot-update`."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from store.vault import Vault
from tests.rights_data import CLIENT_ID, make_vault
from tui.config import AppConfig
from tui.screens.client_rights import ClientRightsScreen
from tui.screens.main import MainScreen
from tui_data import CLINICIAN, FAST_KDF, PASSPHRASE
from tui_helpers import unlock, wait_for

SIZES = [(80, 24), (120, 40)]
CLOCK = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def rights_vault(tmp_path: Path) -> Path:
    path = make_vault(tmp_path / "vault", PASSPHRASE, FAST_KDF, CLINICIAN)
    v = Vault.open(path, PASSPHRASE)
    try:
        rights = v.record.rights
        rights.open_access_request(CLIENT_ID, received_on=date(2026, 11, 20), requester="Avery Ashdown",
                                   form_format="PDF by e-mail")
        late = rights.open_access_request(CLIENT_ID, received_on=date(2026, 10, 1), requester="Avery Ashdown",
                                          form_format="paper copy", recipient="Dr. Lane")
        rights.extend(late.id, "archived records", on=date(2026, 10, 20))
        done = rights.open_access_request(CLIENT_ID, received_on=date(2026, 9, 1), requester="Avery Ashdown",
                                          form_format="PDF")
        rights.fulfil_access(done.id, how="portal", what="full record", format="pdf", on=date(2026, 9, 15))
        denied = rights.open_amendment_request(CLIENT_ID, received_on=date(2026, 8, 3), requester="Avery Ashdown",
                                               note_ids=["n-r1"], requested_change="remove the episodes")
        rights.deny_amendment(denied.id, "accurate and complete", on=date(2026, 9, 1))
        rights.add_statement(denied.id, "I disagree", on=date(2026, 9, 10))
        rights.add_rebuttal(denied.id, "observed in session", on=date(2026, 9, 12))
        rights.record_disclosure(CLIENT_ID, disclosed_on=date(2026, 6, 2), recipient="County Court",
                                 purpose="subpoena", what="notes of 2026", basis="court-order")
        rights.record_disclosure(CLIENT_ID, disclosed_on=date(2026, 7, 1), recipient="Acme Health Plan",
                                 purpose="claim", what="notes", basis="payment")
    finally:
        v.close()
    return path


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "120x40"])
def test_client_rights_screen(snap_compare, rights_vault, make_app, size):
    app = make_app(rights_vault, config=AppConfig(theme="textual-dark"), clock=lambda: CLOCK)

    async def ready(pilot):
        await unlock(pilot, PASSPHRASE)
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen) and app.screen.client_id == CLIENT_ID)
        await pilot.press("g")
        await wait_for(pilot, lambda: isinstance(app.screen, ClientRightsScreen) and app.screen.view is not None)

    assert snap_compare(app, terminal_size=size, run_before=ready)
