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
