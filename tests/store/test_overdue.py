"""The overdue queue at its edges: 23:59 is not yet 24 hours, 24:00 is."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from store.overdue import counts, overdue_from_rows

DAY = date(2026, 3, 2)
NAMES = {"c1": "Avery Ashdown", "c2": "Blake Birchwood"}


def draft(note_id="n1", client_id="c1", on=DAY, stop="10:50:00", status="draft"):
    return {"note_id": note_id, "client_id": client_id, "date_of_service": on.isoformat(),
            "stop_time": stop, "status": status}


def at(hours: int, minutes: int = 0) -> datetime:
    """`hours`:`minutes` after the draft's session ended (10:50 on DAY, local time)."""
    return datetime(2026, 3, 2, 10, 50) + timedelta(hours=hours, minutes=minutes)


@pytest.mark.parametrize(
    "now,band",
    [
        (at(0), None),
        (at(23, 59), None),
        (at(24), 24),
        (at(47, 59), 24),
        (at(48), 48),
        (at(71, 59), 48),
        (at(72), 72),
        (at(500), 72),
    ],
)
def test_draft_bands_at_the_edges(now, band):
    items = overdue_from_rows([draft()], NAMES, now)
    if band is None:
        assert items == []
    else:
        assert [(i.note_id, i.band) for i in items] == [("n1", band)]
        assert items[0].client_name == "Avery Ashdown"
        assert items[0].hours_overdue == int((now - at(0)).total_seconds() // 3600)


def test_configurable_thresholds():
    items = overdue_from_rows([draft()], NAMES, at(12), thresholds=(12, 36))
    assert [i.band for i in items] == [12]
    assert overdue_from_rows([draft()], NAMES, at(11, 59), thresholds=(12, 36)) == []
    with pytest.raises(ValueError):
        overdue_from_rows([draft()], NAMES, at(1), thresholds=(0, 24))


def test_signed_and_entered_in_error_are_never_overdue():
    rows = [draft("n1", status="signed"), draft("n2", status="entered_in_error")]
    assert overdue_from_rows(rows, NAMES, at(1000)) == []


def test_draft_without_stop_time_ages_from_the_end_of_its_day():
    row = draft(stop=None)
    end_of_day = datetime(2026, 3, 3, 0, 0)
    assert overdue_from_rows([row], NAMES, end_of_day + timedelta(hours=23, minutes=59)) == []
    assert [i.band for i in overdue_from_rows([row], NAMES, end_of_day + timedelta(hours=24))] == [24]


def test_process_note_day_without_progress_note_is_missing():
    end_of_day = datetime(2026, 3, 3, 0, 0)
    extra = [("c2", DAY), ("c1", DAY)]  # c1 has a signed note that day, c2 has nothing
    rows = [draft("n1", status="signed")]
    items = overdue_from_rows(rows, NAMES, end_of_day + timedelta(hours=48), extra_session_dates=extra)
    assert [(i.client_id, i.note_id, i.band, i.missing) for i in items] == [("c2", None, 48, True)]
    assert overdue_from_rows(rows, NAMES, end_of_day + timedelta(hours=23, minutes=59), extra_session_dates=extra) == []


def test_entered_in_error_note_does_not_document_the_session():
    end_of_day = datetime(2026, 3, 3, 0, 0)
    rows = [draft("n1", status="entered_in_error")]
    items = overdue_from_rows(rows, NAMES, end_of_day + timedelta(hours=24), extra_session_dates=[("c1", DAY)])
    assert [(i.client_id, i.note_id) for i in items] == [("c1", None)]


def test_a_draft_covers_its_day_once():
    # A draft on a process-note day is listed as the draft, not again as missing.
    items = overdue_from_rows([draft()], NAMES, at(30), extra_session_dates=[("c1", DAY)])
    assert [(i.note_id, i.band) for i in items] == [("n1", 24)]


def test_order_and_counts():
    rows = [
        draft("n1", on=DAY),
        draft("n2", client_id="c2", on=DAY - timedelta(days=3)),
        draft("n3", on=DAY + timedelta(days=1)),
        draft("n4", on=DAY + timedelta(days=3)),
    ]
    items = overdue_from_rows(rows, NAMES, at(49))
    assert [i.note_id for i in items] == ["n2", "n1", "n3"]
    assert counts(items) == {24: 1, 48: 1, 72: 1}
    assert counts([]) == {24: 0, 48: 0, 72: 0}


def test_aware_now_is_read_as_local_time():
    local = at(24).astimezone()  # the same instant, carrying this machine's offset
    assert [i.band for i in overdue_from_rows([draft()], NAMES, local)] == [24]


def test_queue_from_a_real_vault(tmp_path):
    from datetime import time

    from store.models import Client, ClinicianSettings, ProgressNote, SessionFacts
    from store.overdue import overdue
    from store.vault import KdfParams, Vault

    vault, _ = Vault.create(
        tmp_path / "vault", "correct horse battery staple", device_name="test",
        kdf=KdfParams(memory_kib=8192, time_cost=1, parallelism=1),
        settings=ClinicianSettings(clinician_name="Robin Quill", credentials="LCSW"),
    )
    try:
        r = vault.record
        r.create_client(Client(id="c1", display_name="Avery Ashdown"))
        r.create_client(Client(id="c2", display_name="Blake Birchwood"))
        for note_id, client_id, on in (("n1", "c1", DAY), ("n2", "c2", DAY + timedelta(days=1))):
            r.create_note(ProgressNote(id=note_id, client_id=client_id, format="DAP",
                                       facts=SessionFacts(date_of_service=on, start_time=time(10), stop_time=time(10, 50))))
        items = overdue(r, at(24), extra_session_dates=[("c2", DAY - timedelta(days=2))])
        assert [(i.client_name, i.note_id, i.band) for i in items] == [
            ("Blake Birchwood", None, 48), ("Avery Ashdown", "n1", 24)
        ]
        # A process-note day with a progress note is documented; the queue reads only drafts
        # and the days it is asked about (store/record.py documented_session_days).
        assert [i.note_id for i in overdue(r, at(24), extra_session_dates=[("c1", DAY)])] == ["n1"]
        r.mark_entered_in_error("n1", "duplicate")
        assert [i.note_id for i in overdue(r, at(24))] == []
        # ...and a note entered in error documents nothing: the day is missing its note again.
        later = overdue(r, at(72), extra_session_dates=[("c1", DAY)])
        assert ("Avery Ashdown", None) in [(i.client_name, i.note_id) for i in later]
    finally:
        vault.close()
