"""The layering rules, proved rather than remembered.

tui -> sync -> store. store imports neither sync, tui nor textual; sync never imports
textual, and nothing under sync/ (nor the export code) can reach process notes: it does
not import store.private, and does not name private.db.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Code that must never reach private.db: the sync layer and the record export.
PRIVATE_FREE = [*sorted((ROOT / "sync").rglob("*.py")), ROOT / "store" / "export.py", ROOT / "store" / "export_pdf.py"]


def modules_in(package: str) -> list[str]:
    names = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def imported_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    names.add(arg.value)
    return names


def _top(name: str) -> str:
    return name.split(".")[0]


def test_store_imports_neither_sync_tui_nor_textual_statically():
    offenders = {}
    for path in (ROOT / "store").rglob("*.py"):
        bad = {n for n in imported_names(path) if _top(n) in {"sync", "tui", "textual"}}
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}


def test_sync_imports_no_textual_or_tui_statically():
    offenders = {}
    for path in (ROOT / "sync").rglob("*.py"):
        bad = {n for n in imported_names(path) if _top(n) in {"tui", "textual"}}
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}


@pytest.mark.parametrize("path", PRIVATE_FREE, ids=lambda p: str(p.relative_to(ROOT)))
def test_sync_and_export_cannot_reach_process_notes(path: Path):
    if not path.exists():
        pytest.skip("module not present")
    names = imported_names(path)
    assert not any(n == "store.private" or n.startswith("store.private.") for n in names)
    assert not any(n in ("store.vault", "store.vault.Vault") for n in names), (
        "sync and export take a RecordStore, never a Vault (which holds private.db)"
    )
    # Backups copy the whole device, private.db included, at the store's level: never
    # through sync or export (docs/backup.md).
    assert not any(n == "store.backup" or n.startswith("store.backup.") for n in names)
    text = path.read_text(encoding="utf-8")
    assert "private.db" not in text
    assert "PrivateStore" not in text


def _loaded_after_importing(modules: list[str]) -> list[str]:
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)


def test_store_loads_no_textual_sync_or_tui_at_runtime():
    loaded = _loaded_after_importing(modules_in("store"))
    assert [m for m in loaded if _top(m) in {"textual", "sync", "tui"}] == []


def test_sync_loads_no_textual_or_private_store_at_runtime():
    sync_modules = modules_in("sync")
    loaded = _loaded_after_importing(sync_modules)
    assert [m for m in loaded if _top(m) in {"textual", "tui"}] == []
    assert "store.private" not in loaded
    assert "store.vault" not in loaded


# --- no circles of imports -----------------------------------------------------------------

PACKAGES = ("store", "sync", "tui", "bench")


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, level: int, importer: str, is_package: bool) -> str:
    """The absolute name behind `from .x import y` (level dots) in `importer`."""
    if level == 0:
        return module
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def import_graph() -> dict[str, set[str]]:
    """Every module of the project and the project modules it imports, anywhere in its source
    (a function-level import closes a circle just as surely: it only runs later)."""
    paths = {_module_of(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node.module or "", node.level, name, is_package)
                # `from pkg import mod` imports the module pkg.mod when there is one.
                candidates = [base, *(f"{base}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__",
            ):
                candidates = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            else:
                continue
            for candidate in candidates:
                # The most specific project module the name denotes (a.b.c -> a.b when c is a class).
                while candidate and candidate not in paths:
                    candidate = candidate.rpartition(".")[0]
                if candidate and candidate != name:
                    targets.add(candidate)
        # A package's own __init__ is imported with it, but is no edge of its own here.
        graph[name] = {t for t in targets if not name.startswith(t + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports, as the list of modules around it, or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = GREY
        stack.append(node)
        for nxt in sorted(graph[node]):
            if colour[nxt] == GREY:
                return [*stack[stack.index(nxt):], nxt]
            if colour[nxt] == WHITE:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        colour[node] = BLACK
        return None

    for node in sorted(graph):
        if colour[node] == WHITE:
            found = visit(node)
            if found:
                return found
    return None


def test_the_import_graph_finds_a_circle_when_there_is_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert _resolve("x", 1, "tui.screens.main", False) == "tui.screens.x"
    assert _resolve("", 1, "tui.screens", True) == "tui.screens"


def test_the_import_graph_sees_the_project():
    graph = import_graph()
    assert "tui.screens.devices" in graph["tui.screens.main"]  # a function-level import counts
    assert "store.vault" in graph["tui.storeworker"] or "store.errors" in graph["tui.storeworker"]


def test_no_circles_of_imports_anywhere_in_the_tree():
    cycle = find_cycle(import_graph())
    assert cycle is None, "a circle of imports: " + " -> ".join(cycle)


# What sync/ may take from store/: the declared intake interface (store/replica.py), the
# one document-id rule and the one panic guard, this device's identity, and the errors it
# raises or translates. Anything else of the store is reached through `RecordReplica` or not
# at all; a new need is added here, on purpose.
SYNC_MAY_IMPORT_FROM_STORE = {
    "store.replica": {"RecordReplica", "ProgressCallback"},
    "store.doc_ids": {"DOC_ID_PATTERN"},
    "store.device_list": {"DEVICE_LIST_ID", "REVOKE_PREFIX"},
    "store.automerge_guard": {"panics_as"},
    "store.device_identity": {"DeviceIdentity", "fingerprint", "short_id"},
    "store.errors": {"NotewellError", "VaultError", "VaultBusy", "DiskFull", "DamagedVault", "ForeignDocument",
                     "DocumentOverBudget", "RevokedAuthor"},
    "store.write_access": {"translate"},
}


def _store_imports(path: Path) -> list[tuple[str, str | None]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if _top(a.name) == "store"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and _top(node.module) == "store":
            found += [(node.module, a.name) for a in node.names]
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "sync").rglob("*.py")), ids=lambda p: p.name)
def test_sync_imports_from_store_only_the_declared_interface_and_listed_names(path: Path):
    unlisted = [
        f"{module}.{name}" if name else module
        for module, name in _store_imports(path)
        if name is None or name not in SYNC_MAY_IMPORT_FROM_STORE.get(module, set())
    ]
    assert unlisted == [], f"{path.name} imports from store what sync/ may not: {unlisted}"


@pytest.mark.parametrize("path", sorted((ROOT / "sync").rglob("*.py")), ids=lambda p: p.name)
def test_sync_probes_no_store_object_with_getattr(path: Path):
    # The store is typed (RecordReplica): no feature-testing an untyped object.
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    probes = [n.lineno for n in ast.walk(tree)
              if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("getattr", "hasattr")]
    assert probes == [], f"{path.name} probes with getattr/hasattr at lines {probes}"



# The record keeps the clinician's operations; the sync intake is `record.replica` alone.
# Both share the write transactions and the audit log, so those two names are on both.
SHARED_WITH_THE_INTAKE = {"transaction", "audit"}


def _intake_names() -> set[str]:
    """What sync/ is declared to use, and every other public name of the intake itself."""
    from store.replica import RecordReplica, Replica

    declared = set(RecordReplica.__annotations__)
    for cls in (RecordReplica, Replica):
        declared |= {name for name, value in vars(cls).items() if callable(value) and not name.startswith("_")}
    return declared - SHARED_WITH_THE_INTAKE


def test_the_intake_declares_what_sync_uses():
    assert {"doc_heads", "apply_doc", "apply_snapshots", "insert_prepared", "local_get", "add_listener",
            "prepare_pool"} <= _intake_names()


def test_the_record_store_exposes_none_of_the_intake_names(tmp_path: Path):
    from store.record import RecordStore
    from store.vault import KdfParams, Vault

    exposed = sorted(name for name in _intake_names() if hasattr(RecordStore, name))
    assert exposed == [], f"RecordStore still exposes the intake's {exposed}; use record.replica"
    vault, _ = Vault.create(tmp_path / "v", "synthetic passphrase", device_name="desk",
                            kdf=KdfParams(memory_kib=8192, time_cost=1, parallelism=1))
    try:
        assert [name for name in _intake_names() if hasattr(vault.record, name)] == []
        assert all(hasattr(vault.record.replica, name) for name in _intake_names())
    finally:
        vault.close()
