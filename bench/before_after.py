"""Benchmarks of an earlier revision and of this tree, in turn, in one run of the machine.

    python -m bench.before_after REV [--benches store,sync,app_sync,tui,live_edit,mailbox] [--rounds N]

A figure measured on another day says little on a shared machine whose speed drifts; a
before/after claim is only worth making when both sides ran back to back. This checks REV
out into a temporary detached worktree, then runs each named benchmark there ("before") and
here ("after"), one after the other, printing both outputs in full with the load average
at the start of each. A benchmark script the older revision lacks is copied from this tree
(it must only use interfaces the older code has; it says so if not). Each side builds its
own synthetic vaults under its own bench/out. Prints figures; asserts nothing.

One run of each side is not enough to call a difference of 20% a regression: the machine's
speed drifts within minutes. With --rounds N each benchmark runs N times on each side,
alternating which side goes first (before-after, after-before, ...), so drift falls on both
sides alike; at the end, every output line that has the same words in every run is printed
again with the median of each of its numbers, before beside after.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
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


def _run(tree: Path, module: str, args: list[str]) -> tuple[int, str]:
    # The tree's own packages come first on the path, ahead of the installed (editable) copy,
    # so the same interpreter and dependencies run either revision's code.
    env = dict(os.environ, PYTHONPATH=str(tree))
    probe = subprocess.run(
        [sys.executable, "-c", "import store, sys; sys.stdout.write(store.__file__)"],
        cwd=tree, env=env, capture_output=True, text=True, check=True,
    )
    if not probe.stdout.startswith(str(tree)):
        raise SystemExit(f"the code under test is not the tree's own: {probe.stdout}")
    # Shown as it comes and kept, so that repeated rounds can be summarised at the end.
    child = subprocess.Popen([sys.executable, "-m", module, *args], cwd=tree, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in child.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        lines.append(line)
    return child.wait(), "".join(lines)


NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?|(?<=[a-z])\d+")


def _shape(line: str) -> str:
    # Spaces collapsed: a figure's width moves the padding after it from run to run.
    return NUMBER.sub("#", " ".join(line.split()))


def _numbers(line: str) -> list[float]:
    return [float(n.replace(",", "")) for n in NUMBER.findall(line)]


def _median_line(lines: list[str]) -> str:
    """The line with each of its numbers replaced by that number's median over the runs."""
    columns = list(zip(*(_numbers(line) for line in lines)))
    medians = iter(statistics.median(c) for c in columns)

    def shown(value: float) -> str:
        return f"{value:,.0f}" if value == int(value) and abs(value) >= 1000 else f"{value:.4g}"

    return NUMBER.sub(lambda m: shown(next(medians)), lines[0].rstrip())


def summarise(name: str, outputs: dict[str, list[str]]) -> None:
    """For each line shape found in every run of both sides, the medians side by side. A shape
    printed more than once in a run (the same figures during a sync and without one) is
    matched by its place among those lines: the first with the first, and so on. Lines whose
    words differ between runs, or that carry no number, are left out."""
    runs = {label: [text.splitlines() for text in texts] for label, texts in outputs.items()}
    if not all(runs.values()):
        return

    def keyed(text: list[str]) -> dict[tuple[str, int], str]:
        seen: dict[str, int] = {}
        out = {}
        for line in text:
            if NUMBER.search(line):
                shape = _shape(line)
                out[(shape, seen.get(shape, 0))] = line
                seen[shape] = seen.get(shape, 0) + 1
        return out

    keyed_runs = {label: [keyed(text) for text in texts] for label, texts in runs.items()}
    print(f"\n=== {name}: medians over {len(runs['before'])} rounds per side ===")
    for key in keyed_runs["before"][0]:
        if all(key in run for texts in keyed_runs.values() for run in texts):
            for label in ("before", "after"):
                print(f"  {label + ':':7} {_median_line([run[key] for run in keyed_runs[label]]).strip()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the earlier revision (a commit, tag or branch)")
    parser.add_argument("--benches", default=",".join(BENCHES), help="comma-separated: " + ", ".join(BENCHES))
    parser.add_argument("--rounds", type=int, default=1, help="runs of each side, alternating which goes first")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="check REV out into DIR and keep it (with the vaults it built) for the next run")
    args = parser.parse_args()
    names = [n for n in args.benches.split(",") if n]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        raise SystemExit(f"unknown benchmark: {', '.join(unknown)}")
    if args.keep:
        before = args.keep.resolve()
        if not before.exists():
            subprocess.run(["git", "-C", str(HERE), "worktree", "add", "--detach", "-q", str(before), args.rev], check=True)
        head = subprocess.run(["git", "-C", str(before), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        wanted = subprocess.run(["git", "-C", str(HERE), "rev-parse", args.rev], capture_output=True, text=True).stdout.strip()
        if head != wanted:
            raise SystemExit(f"{before} holds {head[:12]}, not {args.rev}")
    else:
        before = Path(tempfile.mkdtemp(prefix="nw-before-")) / "tree"
        subprocess.run(["git", "-C", str(HERE), "worktree", "add", "--detach", "-q", str(before), args.rev], check=True)
    try:
        modules = HERE / "bench" / "js_baseline" / "node_modules"
        if modules.is_dir() and not (before / "bench" / "js_baseline" / "node_modules").exists():
            # the same baseline packages serve both sides
            (before / "bench" / "js_baseline" / "node_modules").symlink_to(modules)
        for name in names:
            module, extra = BENCHES[name]
            script = Path(*module.split(".")).with_suffix(".py")
            if not (before / script).exists():
                shutil.copy2(HERE / script, before / script)
                print(f"({script} is not in {args.rev}; this tree's copy runs there)")
            outputs: dict[str, list[str]] = {"before": [], "after": []}
            sides = [("before", before), ("after", HERE)]
            for round_ in range(args.rounds):
                for label, tree in sides if round_ % 2 == 0 else sides[::-1]:
                    print(f"\n=== {name}: {label} ({args.rev if label == 'before' else 'this tree'}),"
                          f" round {round_ + 1} of {args.rounds}, {_load()} ===", flush=True)
                    code, text = _run(tree, module, extra)
                    if code:
                        print(f"=== {name}: {label} exited {code} ===")
                    else:
                        outputs[label].append(text)
            if args.rounds > 1:
                summarise(name, outputs)
    finally:
        if not args.keep:
            subprocess.run(["git", "-C", str(HERE), "worktree", "remove", "--force", str(before)], check=False)
            shutil.rmtree(before.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
