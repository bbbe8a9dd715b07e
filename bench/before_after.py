"""Benchmarks of an earlier revision and of this tree, in turn, in one run of the machine.

    python -m bench.before_after REV [--benches store,sync,app_sync,tui,live_edit,mailbox]

A figure measured on another day says little on a shared machine whose speed drifts; a
before/after claim is only worth making when both sides ran back to back. This checks REV
out into a temporary detached worktree, then runs each named benchmark there ("before") and
here ("after"), one after the other, printing both outputs in full with the load average
at the start of each. A benchmark script the older revision lacks is copied from this tree
(it must only use interfaces the older code has; it says so if not). Each side builds its
own synthetic vaults under its own bench/out. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

# name -> (module, extra arguments); the defaults are each script's own.
BENCHES = {
    "store": ("bench.store_bench", []),
    "sync": ("bench.sync_bench", []),
    "app_sync": ("bench.app_sync_bench", []),
    "tui": ("bench.tui_bench", []),
    "live_edit": ("bench.live_edit_bench", []),
    # Both sides copy this tree's synthetic records (built once; 10,000 notes take minutes).
    "mailbox": ("bench.mailbox_bench", ["--vaults", str(HERE / "bench" / "out")]),
}


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (5 min {five:.2f})"


def _run(tree: Path, module: str, args: list[str]) -> int:
    # The tree's own packages come first on the path, ahead of the installed (editable) copy,
    # so the same interpreter and dependencies run either revision's code.
    env = dict(os.environ, PYTHONPATH=str(tree))
    probe = subprocess.run(
        [sys.executable, "-c", "import store, sys; sys.stdout.write(store.__file__)"],
        cwd=tree, env=env, capture_output=True, text=True, check=True,
    )
    if not probe.stdout.startswith(str(tree)):
        raise SystemExit(f"the code under test is not the tree's own: {probe.stdout}")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=tree, env=env).returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the earlier revision (a commit, tag or branch)")
    parser.add_argument("--benches", default=",".join(BENCHES), help="comma-separated: " + ", ".join(BENCHES))
    args = parser.parse_args()
    names = [n for n in args.benches.split(",") if n]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        raise SystemExit(f"unknown benchmark: {', '.join(unknown)}")
    before = Path(tempfile.mkdtemp(prefix="nw-before-")) / "tree"
    subprocess.run(["git", "-C", str(HERE), "worktree", "add", "--detach", "-q", str(before), args.rev], check=True)
    try:
        modules = HERE / "bench" / "js_baseline" / "node_modules"
        if modules.is_dir():  # the same baseline packages serve both sides
            (before / "bench" / "js_baseline" / "node_modules").symlink_to(modules)
        for name in names:
            module, extra = BENCHES[name]
            script = Path(*module.split(".")).with_suffix(".py")
            if not (before / script).exists():
                shutil.copy2(HERE / script, before / script)
                print(f"({script} is not in {args.rev}; this tree's copy runs there)")
            for label, tree in (("before", before), ("after", HERE)):
                print(f"\n=== {name}: {label} ({args.rev if label == 'before' else 'this tree'}), {_load()} ===", flush=True)
                code = _run(tree, module, extra)
                if code:
                    print(f"=== {name}: {label} exited {code} ===")
    finally:
        subprocess.run(["git", "-C", str(HERE), "worktree", "remove", "--force", str(before)], check=False)
        shutil.rmtree(before.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
