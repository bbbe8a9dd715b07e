"""Any import file either imports completely or is refused with one sentence, the vault's
files byte-identical.

Files are the documented example with a few mutations each: wrong types, huge numbers, lone
surrogates, extreme dates, missing and extra keys, duplicated items and ids. The run is
derandomized and bounded (NOTEWELL_FUZZ_EXAMPLES, default 60) so CI sees the same files.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import vault_files
from store.errors import ImportFailed
from store.importer import apply_import, parse_import
from store.vault import KdfParams, Vault

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "import.json"
HUGE = "__HUGE_NUMBER__"  # replaced in the text by 5,000 digits (json.dumps cannot write them)
EXAMPLES = int(os.environ.get("NOTEWELL_FUZZ_EXAMPLES", "60"))

ODD_VALUES = st.sampled_from([
    None, True, False, 0, -1, 1.5, 1e308, 28, 2**63, HUGE, "", " ", "x" * 300, "\udfff", "a\ud800b",
    "9999-12-31", "0001-01-01", "1899-12-31", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+14:00",
    "2026-10-06T17:40:00", "2026-02-30", "25:61", "+90785", "F41.1", "client-avery-larkspur",
    [], {}, [None], {"x": 1}, ["therapy"],
])


def paths(value, here=()):
    """Every place in the document: (path to the container, key or index)."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield here, key
            yield from paths(child, here + (key,))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield here, i
            yield from paths(child, here + (i,))


def at(doc, path):
    for part in path:
        doc = doc[part]
    return doc


@st.composite
def mutated(draw):
    doc = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    for _ in range(draw(st.integers(1, 3))):
        places = list(paths(doc))
        if not places:
            break
        parent_path, key = draw(st.sampled_from(places))
        parent = at(doc, parent_path)
        action = draw(st.sampled_from(["replace", "replace", "delete", "extra", "duplicate", "share-id"]))
        if action == "replace":
            parent[key] = copy.deepcopy(draw(ODD_VALUES))
        elif action == "delete":
            del parent[key]
        elif action == "extra":
            target = parent[key] if isinstance(parent[key], dict) else parent
            if isinstance(target, dict):
                target[draw(st.sampled_from(["nickname", "id", "\udfff", "minutes", "kind"]))] = copy.deepcopy(draw(ODD_VALUES))
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        elif action == "share-id":
            items = [i for i in doc.get("clients", []) + doc.get("progress_notes", []) + doc.get("process_notes", [])
                     if isinstance(i, dict)] if isinstance(doc, dict) else []
            if len(items) >= 2:
                a, b = draw(st.sampled_from(list(itertools.permutations(range(len(items)), 2))))
                items[b]["id"] = items[a].get("id")
    return doc


_run = itertools.count()


def with_fresh_ids(doc, n: int):
    """Ids made unique to this example, so a file that imports does not collide with the last."""
    if isinstance(doc, dict):
        return {k: (f"{v}-f{n}" if k in ("id", "client_id", "goal_id") and isinstance(v, str) and v else with_fresh_ids(v, n))
                for k, v in doc.items()}
    if isinstance(doc, list):
        return [with_fresh_ids(v, n) for v in doc]
    return doc


def encode(doc) -> bytes:
    return json.dumps(doc).replace(json.dumps(HUGE), "9" * 5000).encode()


@pytest.fixture(scope="module")
def vault(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "vault"
    v, _ = Vault.create(path, "fuzz test passphrase", device_name="fuzz",
                        kdf=KdfParams(memory_kib=8192, time_cost=1, parallelism=1))
    try:
        # One import first: the audit log's tables exist from then on.
        apply_import(v, parse_import(encode(with_fresh_ids(json.loads(EXAMPLE.read_text()), 0))))
        yield v
    finally:
        v.close()


def counts(vault) -> tuple[int, int, int]:
    return len(vault.record.list_clients()), len(vault.record.list_notes()), vault.private.count()


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
@given(doc=mutated())
def test_any_file_imports_completely_or_is_refused_with_one_sentence(vault, doc):
    data = encode(with_fresh_ids(doc, next(_run) + 1))
    before_files, before = vault_files(vault.path), counts(vault)
    try:
        summary = apply_import(vault, parse_import(data))
    except ImportFailed as e:
        assert "\n" not in e.message and e.message.endswith("."), e.message
        assert "nothing was imported" in e.message
        assert vault_files(vault.path) == before_files
        assert counts(vault) == before
        return
    after = counts(vault)
    assert after == (before[0] + summary.clients, before[1] + summary.notes, before[2] + summary.process_notes)
    assert vault.check() == []
    # What was signed elsewhere is signed here over exactly what was imported.
    assert not any(row.signature_conflict for row in vault.record.list_notes())
