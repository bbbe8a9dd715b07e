"""The least CPU any receiver of documents sent whole spends on them with the pinned Automerge
binding (automerge 0.2.0.dev4), measured in the same run as the sync or the import it bounds.

Three parts per document, none of which a receiver may skip:
- `Document.load`: parses the bytes and verifies every change's hash (the floor's load);
- every object of the document read once through the binding's own calls (`keys`, `values`,
  `text`): a note's list and search rows and its signature check need all of its content,
  and the binding has no call that reads more than one object;
- the Ed25519 check of each signed entry with the trusted device's key.

Nothing else is counted: no validation of what the values are, no rows built, no document
budget, nothing stored, no bytes moved between processes. Bytes from another device need all
of that too, so a real receiver can only be slower. Measured on one core, one after the other;
`least_on_cores` divides by the cores a receiver reads on (its own and its workers').
"""

from __future__ import annotations

import os
import statistics
import time

from automerge.core import ROOT, Document, ObjType

from store import documents as D
from store.device_list import DeviceTrust


def _read_every_object(doc: Document, obj: bytes, kind: ObjType) -> int:
    """Reads `obj` and everything under it with one call per object (two for a map: its
    keys name the values); returns the number of binding calls."""
    if kind == ObjType.Text:
        doc.text(obj)
        return 1
    calls = 1
    if kind == ObjType.Map:
        doc.keys(obj)
        calls += 1
    for value, child in doc.values(obj):
        if isinstance(value, ObjType):
            calls += _read_every_object(doc, child, value)
    return calls


def _signatures(docs: list[tuple[str, bytes]], trust: DeviceTrust) -> list[tuple[object, bytes, bytes]]:
    """(public key, signature, signed bytes) of every signed entry whose device `trust` knows,
    gathered outside the timing: only the check itself is counted."""
    checks = []
    for _doc_id, data in docs:
        doc = Document.load(data)
        for envelope in D.signed_entries(doc).values():
            parts = D.envelope_parts(envelope)
            if parts is None:
                continue
            payload, signed, signature = parts
            key = trust.public_key(payload.get("device_id"))
            if key is not None:
                checks.append((key, signature, signed))
    return checks


def least_cpu(docs: list[tuple[str, bytes]], trust: DeviceTrust, rounds: int = 3) -> dict:
    """CPU seconds on one core, each part the median of `rounds`: {"load", "reads",
    "verify", "total"}, with the counts {"documents", "calls", "signatures"}."""
    checks = _signatures(docs, trust)
    loads, reads, verifies = [], [], []
    calls = 0
    for _ in range(rounds):
        t = time.process_time()
        for _doc_id, data in docs:
            Document.load(data)
        loads.append(time.process_time() - t)

        calls = 0
        docs_loaded = [Document.load(data) for _doc_id, data in docs]
        t = time.process_time()
        for doc in docs_loaded:
            calls += _read_every_object(doc, ROOT, ObjType.Map)
        reads.append(time.process_time() - t)
        del docs_loaded

        t = time.process_time()
        for key, signature, signed in checks:
            key.verify(signature, signed)
        verifies.append(time.process_time() - t)
    load, read, verify = (statistics.median(xs) for xs in (loads, reads, verifies))
    return {"load": load, "reads": read, "verify": verify, "total": load + read + verify,
            "documents": len(docs), "calls": calls, "signatures": len(checks)}


def reading_cores() -> int:
    """The cores a receiver reads on: its own and one worker per further core
    (store/prepare_pool.py)."""
    return max(1, os.cpu_count() or 1)


def least_on_cores(least: dict, cores: int | None = None, *, plus: float = 0.0) -> float:
    """The least wall time of that CPU, and `plus` seconds of other work (the floor's
    transaction and TLS copy), spread perfectly over `cores`."""
    return (least["total"] + plus) / (cores or reading_cores())


def describe(least: dict, cores: int | None = None) -> str:
    n = least["documents"]
    cores = cores or reading_cores()
    return (f"least CPU any receiver spends with this binding: {least['total']:.2f} s on one core "
            f"(load {least['load']:.2f}, the binding's reads {least['reads']:.2f} in {least['calls'] / max(1, n):.0f} "
            f"calls a document, Ed25519 {least['verify']:.2f} for {least['signatures']:,} signatures; "
            f"{least['total'] / max(1, n) * 1e3:.2f} ms a document), {least_on_cores(least, cores):.2f} s on {cores} cores")
