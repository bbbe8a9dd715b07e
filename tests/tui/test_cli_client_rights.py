"""The client's rights through the real command (`python -m tui.cli`): the disclosure log
and its accounting, an access request fulfilled by an export, an amendment denied with the
client's statement and a rebuttal; exports carry them, `notewell import` reads the export
back, and no process-note text reaches any output or file."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pypdf
import pytest

from store.vault import Vault
from test_cli_bad_inputs import FAST_KDF, PASSPHRASE, notewell, refused
from tests.rights_data import CANARY, SETTINGS, make_vault

TODAY = date.today()


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    return make_vault(tmp_path / "vault", PASSPHRASE, FAST_KDF)


def ok(vault: Path, *args: str) -> str:
    run = notewell(vault, *args)
    assert run.returncode == 0, run.stderr
    assert CANARY not in run.stdout + run.stderr
    return run.stdout


def test_exports_to_others_are_logged_and_accounted_for_six_years(vault, tmp_path):
    ok(vault, "export", "--client", "Avery", "--out", str(tmp_path / "court.pdf"), "--purpose", "subpoena",
       "--recipient", "County Court", "--basis", "court-order")
    ok(vault, "export", "--client", "Avery", "--out", str(tmp_path / "insurer.pdf"), "--purpose", "claim review",
       "--recipient", "Acme Health Plan", "--basis", "payment")
    ok(vault, "export", "--client", "Avery", "--out", str(tmp_path / "own.pdf"), "--purpose", "client request")
    ok(vault, "disclose", "--client", "c-rights-1", "--recipient", "State Health Dept", "--basis", "public-health",
       "--purpose", "reportable condition", "--what", "diagnosis", "--on", (TODAY - timedelta(days=3)).isoformat())
    old = TODAY.replace(year=TODAY.year - 6) - timedelta(days=1)
    ok(vault, "disclose", "--client", "Avery", "--recipient", "Old Court", "--basis", "court-order",
       "--purpose", "subpoena", "--what", "notes", "--on", old.isoformat())
    out = ok(vault, "disclosures", "--client", "Avery A")
    lines = [line for line in out.splitlines() if line.startswith(("19", "20"))]
    assert len(lines) == 2
    assert "County Court" in lines[0] and "court-order" in lines[0] and "subpoena" in lines[0]
    assert "2 progress notes" in lines[0]
    assert "State Health Dept" in lines[1]
    assert "Acme" not in out and "Old Court" not in out
    assert "Left out: 1 disclosure the rule exempts" in out


def test_a_recipient_without_a_basis_is_refused_and_writes_nothing(vault, tmp_path):
    sentence = refused(vault, "export", "--client", "Avery", "--out", str(tmp_path / "x.pdf"),
                       "--recipient", "County Court")
    assert "--basis" in sentence
    assert not (tmp_path / "x.pdf").exists()


def test_access_request_from_receipt_to_fulfilment(vault, tmp_path):
    received = TODAY - timedelta(days=20)
    out = ok(vault, "access", "--client", "Avery", "--received", received.isoformat(), "--requester", "Avery Ashdown",
             "--form-format", "PDF by encrypted e-mail", "--recipient", "Dr. Lane, new therapist")
    assert f"due {(received + timedelta(days=30)).isoformat()}" in out
    request_id = out.split()[2]
    listed = ok(vault, "requests")
    assert request_id in listed and "access request, due in 10 days" in listed
    ok(vault, "extend", request_id[:8], "--reason", "archived records are being retrieved")
    assert "extended" in ok(vault, "requests")
    sent = tmp_path / "copy.pdf"
    ok(vault, "fulfil", request_id[:10], "--out", str(sent), "--how", "encrypted e-mail")
    assert sent.exists() and CANARY.encode() not in sent.read_bytes()
    assert "No open requests." in ok(vault, "requests")
    assert "fulfilled" in ok(vault, "requests", "--client", "Avery")
    # Sent to the therapist the client named: logged, and exempt from the accounting.
    assert "Left out: 1 disclosure" in ok(vault, "disclosures", "--client", "Avery")
    again = notewell(vault, "fulfil", request_id, "--out", str(tmp_path / "again.pdf"), "--how", "mail")
    assert again.returncode != 0 and "already been acted on" in again.stderr
    assert not (tmp_path / "again.pdf").exists()


def test_denied_amendment_travels_with_every_later_export_and_imports(vault, tmp_path):
    out = ok(vault, "amendment", "--client", "Avery", "--received", TODAY.isoformat(), "--requester", "Avery Ashdown",
             "--notes", "n-r1", "--change", "CHANGE-ASKED remove the worry episodes")
    request_id = out.split()[2]
    ok(vault, "amendment-deny", request_id, "--reason", "DENIAL-REASON the note is accurate and complete")
    ok(vault, "amendment-statement", request_id, "--text", "STATEMENT-CLIENT I disagree with the note")
    ok(vault, "amendment-rebuttal", request_id, "--text", "REBUTTAL-CLINICIAN the episodes were observed")
    pdf = tmp_path / "record.pdf"
    ok(vault, "export", "--client", "Avery", "--out", str(pdf))
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(str(pdf)).pages)
    for marker in ("CHANGE-ASKED", "DENIAL-REASON", "STATEMENT-CLIENT", "REBUTTAL-CLINICIAN"):
        assert marker in text
    assert CANARY not in text
    exported = tmp_path / "record.json"
    ok(vault, "export", "--client", "Avery", "--out", str(exported))
    data = json.loads(exported.read_text())
    (record,) = data["client_rights"]
    assert set(record["events"]) == {"opened", "denied", "statement", "rebuttal"}
    assert CANARY not in exported.read_text()
    # `notewell import` reads what export writes, into an empty vault.
    other = tmp_path / "other"
    v, _ = Vault.create(other, PASSPHRASE, device_name="other", kdf=FAST_KDF, settings=SETTINGS)
    v.close()
    assert "with 1 client's rights record(s)" in ok(other, "import", str(exported))
    v = Vault.open(other, PASSPHRASE)
    try:
        got = v.record.rights.get(request_id)
        assert got.data("statement").text == "STATEMENT-CLIENT I disagree with the note"
        assert all(v.record.rights.verified(got).values())
    finally:
        v.close()


def test_accepted_amendment_is_an_addendum_in_the_export(vault, tmp_path):
    out = ok(vault, "amendment", "--client", "Avery", "--received", TODAY.isoformat(), "--requester", "Avery Ashdown",
             "--notes", "n-r1,n-r2", "--change", "the move was in May")
    request_id = out.split()[2]
    ok(vault, "amendment-accept", request_id, "--text", "AMENDMENT-MAY the move was in May, not June")
    exported = tmp_path / "record.json"
    ok(vault, "export", "--client", "Avery", "--out", str(exported))
    data = json.loads(exported.read_text())
    for note in data["progress_notes"]:
        if note["id"] in ("n-r1", "n-r2"):
            assert note["addenda"][-1]["text"] == "AMENDMENT-MAY the move was in May, not June"
    assert data["client_rights"][0]["events"]["accepted"]["data"]["addenda"].keys() == {"n-r1", "n-r2"}


def test_bad_requests_are_one_sentence_and_change_nothing(vault):
    assert "n-zz" in refused(vault, "amendment", "--client", "Avery", "--received", TODAY.isoformat(),
                             "--requester", "A", "--notes", "n-zz", "--change", "x")
    assert "No request matches" in refused(vault, "extend", "nope", "--reason", "x")
    assert "future" in refused(vault, "access", "--client", "Avery", "--received",
                               (TODAY + timedelta(days=2)).isoformat(), "--requester", "A", "--form-format", "pdf")


def test_an_import_file_with_a_bad_rights_record_is_refused_whole(vault, tmp_path):
    out = ok(vault, "amendment", "--client", "Avery", "--received", TODAY.isoformat(), "--requester", "Avery Ashdown",
             "--notes", "n-r1", "--change", "x")
    ok(vault, "amendment-deny", out.split()[2], "--reason", "accurate")
    exported = tmp_path / "record.json"
    ok(vault, "export", "--client", "Avery", "--out", str(exported))
    data = json.loads(exported.read_text())
    other = tmp_path / "other"
    v, _ = Vault.create(other, PASSPHRASE, device_name="other", kdf=FAST_KDF, settings=SETTINGS)
    v.close()
    for broken in ({"accepted": data["client_rights"][0]["events"]["denied"]},   # an acceptance needs its text
                   {"fulfilled": data["client_rights"][0]["events"]["denied"]}):  # no step of an amendment
        bad = json.loads(json.dumps(data))
        bad["client_rights"][0]["events"].update(broken)
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))
        assert "client_rights[0]" in refused(other, "import", str(path))
