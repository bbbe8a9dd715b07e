"""The client's rights records travel like progress notes: two paired vaults exchange them
through a mailbox folder with the real command, edits made on both sides meanwhile merge,
every event's signature verifies on the other device, and the folder never holds a
process note's text."""

from __future__ import annotations

import json

from tests.leak_scan import leaks
from tests.rights_data import CANARY

SEED = """
from tests.rights_data import SETTINGS, seed
vault.update_settings(**SETTINGS.model_dump(include={"clinician_name", "credentials", "practice_name"}))
seed(vault)
"""

OPEN = """
from datetime import date, timedelta
rights = record.rights
today = rights.today()
a = rights.open_access_request("c-rights-1", received_on=today - timedelta(days=5), requester="Avery Ashdown",
                               form_format="PDF")
m = rights.open_amendment_request("c-rights-1", received_on=today, requester="Avery Ashdown", note_ids=["n-r1"],
                                  requested_change="AMEND-ASKED")
rights.deny_amendment(m.id, "DENIED-BECAUSE accurate")
print(json.dumps({"access": a.id, "amendment": m.id}))
"""

ON_A = """
rights = record.rights
rights.extend(sys.argv[2], "records in storage")
rights.record_disclosure("c-rights-1", disclosed_on=rights.today(), recipient="County Court", purpose="subpoena",
                         what="notes", basis="court-order")
"""

ON_B = """
rights = record.rights
rights.add_statement(sys.argv[2], "STATEMENT-FROM-B I disagree")
rights.record_disclosure("c-rights-1", disclosed_on=rights.today(), recipient="State Health Dept",
                         purpose="reportable condition", what="diagnosis", basis="public-health")
"""

READ = """
from store.client_rights import due_on
rights = record.rights
out = {}
for r in rights.all():
    out[r.id] = {"kind": r.kind.value, "events": sorted(r.events), "verified": all(rights.verified(r).values()),
                 "due": str(due_on(r))}
out["accounting"] = [r.data("opened").recipient for r in rights.accounting("c-rights-1", rights.today()).listed]
out["heads"] = sorted(k for k in record.replica.doc_heads())
print(json.dumps(out, sort_keys=True))
"""


def test_rights_records_sync_merge_and_verify_between_two_vaults(make_vault, pair, notewell, in_vault, tmp_path):
    a, b = make_vault("office"), make_vault("home")
    pair(a, b)
    in_vault(a, SEED)
    in_vault(b, "vault.update_settings(clinician_name='Robin Quill', credentials='LCSW')")
    ids = json.loads(in_vault(a, OPEN))
    box = tmp_path / "mailbox"
    box.mkdir()

    def exchange(*refs):
        for ref in refs:
            done = notewell(ref, "sync", "mailbox", str(box))
            assert done.returncode == 0, done.stderr

    exchange(a, b)
    seen_b = json.loads(in_vault(b, READ))
    assert seen_b[ids["amendment"]]["events"] == ["denied", "opened"]
    assert seen_b[ids["amendment"]]["verified"] and seen_b[ids["access"]]["verified"]

    # Both devices change the same records before they next sync.
    in_vault(a, ON_A, ids["access"])
    in_vault(b, ON_B, ids["amendment"])
    exchange(a, b, a)
    seen_a, seen_b = json.loads(in_vault(a, READ)), json.loads(in_vault(b, READ))
    assert seen_a == seen_b
    assert seen_a[ids["access"]]["events"] == ["extended", "opened"]
    assert seen_a[ids["amendment"]]["events"] == ["denied", "opened", "statement"]
    assert all(v["verified"] for k, v in seen_a.items() if isinstance(v, dict))
    assert sorted(seen_a["accounting"]) == ["County Court", "State Health Dept"]
    # A rebuttal on B after the merge answers the statement that came from B itself.
    in_vault(b, "record.rights.add_rebuttal(sys.argv[2], 'REBUTTAL-B the note stands')", ids["amendment"])
    exchange(b, a)
    assert json.loads(in_vault(a, READ))[ids["amendment"]]["events"] == ["denied", "opened", "rebuttal", "statement"]
    for bundle in box.iterdir():
        assert not leaks(bundle.read_bytes(), [CANARY, "AMEND-ASKED", "STATEMENT-FROM-B"])
