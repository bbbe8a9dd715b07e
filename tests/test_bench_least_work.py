"""The least a receiver can spend (bench/least_work.py) counts what it says it counts: every
object of a note read through the binding, and every signed entry's check. The growth tables
compare the sync and the mailbox import against it, so a bound that read less would flatter
nothing but make the comparison wrong. Real vault, real Automerge documents, real keys.
"""

from __future__ import annotations

import pytest
from automerge.core import ROOT, Document, ObjType

from bench.least_work import _read_every_object, least_cpu
from store import documents as D
from store.device_list import DeviceTrust
from store.models import ClinicianSettings
from store.synthetic import populate
from store.vault import KdfParams, Vault

FAST_KDF = KdfParams(memory_kib=8192, time_cost=1, parallelism=1)


@pytest.fixture(scope="module")
def sent(tmp_path_factory):
    """(the writing device's trust, [(doc_id, bytes)]) of a synthetic vault with signed notes, as a
    first sync sends them."""
    vault, _ = Vault.create(tmp_path_factory.mktemp("least") / "vault", "least work passphrase",
                            device_name="Least work laptop", kdf=FAST_KDF,
                            settings=ClinicianSettings(clinician_name="Dr. Least Example", credentials="LCSW"))
    try:
        populate(vault, clients=3, notes=24, seed=11)
        replica = vault.record.replica
        docs = [(doc_id, replica.stored_doc(doc_id)[0]) for doc_id in sorted(replica.doc_heads())]
        trust = replica.device_trust()  # the writing device trusts its own key, as a paired receiver does
    finally:
        vault.close()
    return trust, docs


class _Watched:
    """A loaded document whose reads are recorded; the reads themselves are the binding's."""

    def __init__(self, doc: Document) -> None:
        self.doc, self.texts, self.scalars, self.names, self.calls = doc, [], [], [], 0

    def keys(self, obj):
        self.calls += 1
        found = self.doc.keys(obj)
        self.names += found
        return found

    def values(self, obj):
        self.calls += 1
        found = self.doc.values(obj)
        self.scalars += [v for v, _id in found if not isinstance(v, ObjType)]
        return found

    def text(self, obj):
        self.calls += 1
        found = self.doc.text(obj)
        self.texts.append(found)
        return found


def _leaves(value) -> list[str]:
    """Every non-empty scalar of a dumped model, as text."""
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in _leaves(v)]
    return [] if value in ("", None) or isinstance(value, bool) else [str(value)]


def test_the_least_reads_every_section_and_fact_of_each_note(sent):
    _trust, docs = sent
    notes = 0
    for _doc_id, data in docs:
        doc = Document.load(data)
        if D.note_doc_kind(doc) != D.KIND_NOTE:
            continue
        notes += 1
        note = D.note_from_doc(doc)
        watched = _Watched(doc)
        calls = _read_every_object(watched, ROOT, ObjType.Map)
        assert calls == watched.calls
        for key in note.section_keys:
            if note.sections.get(key):
                assert note.sections[key] in watched.texts
        # A set (the diagnoses addressed, say) is stored as a map's keys.
        read = " ".join(map(str, [*watched.scalars, *watched.names]))
        assert note.client_id in read
        for fact in _leaves(note.facts.model_dump(mode="json", exclude_none=True)):
            assert fact in read
    assert notes == 24


def test_the_least_checks_every_signed_entry_once(sent):
    trust, docs = sent
    entries = sum(len(D.signed_entries(Document.load(data))) for _d, data in docs)
    least = least_cpu(docs, trust, rounds=1)
    assert entries > 0
    assert least["signatures"] == entries
    assert least["documents"] == len(docs)
    assert least["calls"] >= 3 * len(docs)


def test_an_untrusted_signer_is_not_counted_as_a_check(sent):
    _trust, docs = sent
    least = least_cpu(docs, DeviceTrust("receiver", {}), rounds=1)
    assert least["signatures"] == 0
