"""A new client's or note's document is built without reading it back as it is written
(store/documents.py, `fresh`): it must still be the very same document, operation for
operation, as the one the reading path built before, so documents already stored and
synced from older versions and new ones cannot differ. The digests below are those of the
documents the reading path built, for the same synthetic clients and notes."""

from __future__ import annotations

import hashlib
import random
from datetime import date, datetime, timezone

from store.documents import new_client_doc, new_note_doc
from store.synthetic import make_client, make_note

A = b"\x05" * 16
# Fixed times: the synthetic models otherwise carry the time they were made.
T = datetime(2026, 2, 1, 9, 30, tzinfo=timezone.utc)

BEFORE = [
    ("535c4808628d5d8c41ff571df1a5401b3e4922fb1fa4a095428e278171e3464b", "5a63aa73d858a22dd80396c89a5798f40bf7d50c36afcdab55af4c27d7ae186c"),
    ("6701ac1a74811dbbfd2a85e982fb62f02886e101ef3067d84ae52e5a8bfa8417", "8ca0b9cd23d6393e710ff3d66265c448f2f53ae2e0bb8e3ec8c6e8ebf2c37d47"),
    ("1478d5a6779747045183e3a8dbb8ced810afb140bc4853d7fab7eeece3a92816", "1b69d8caa384f3b5182c8e53bc0a0aacfac9ec09888cb2d3be0dad6aed2c5b4b"),
    ("7368f6e5e6137fad2a3c54e7a20e9dd1828bafd97cef0bda6bffe2440d85872c", "b78fa97a53194f93ccd2e3cd84dfbfba8d556d2088593bc303ed6c85a6e12dda"),
    ("2995df194527f68b50e035646cc6446d74fd02765156fdbf06d436ffe0b91d3b", "44550c8ca2cb2206f40f89d04ead5a0aa8905e49187b3281215f30eb4c900a7e"),
    ("df5c982f2e7f4aedcb482f0d29aa6cbf56da871fb16ba3524994c561bc0c7ce4", "e77fa56f46fa24d37769fce50057c0b14fbdefe179ad0e4bbf637954b337cad2"),
]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_new_documents_are_byte_for_byte_those_of_the_reading_path() -> None:
    rng = random.Random(11)
    for i, (client_digest, note_digest) in enumerate(BEFORE):
        client = make_client(rng, i).model_copy(update={"created_at": T})
        note = make_note(rng, client, i, date(2026, 3, 1 + i)).model_copy(update={"created_at": T, "updated_at": T})
        assert _digest(new_client_doc(client, A).save()) == client_digest
        assert _digest(new_note_doc(note, A).save()) == note_digest
