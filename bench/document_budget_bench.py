"""The document budget (store/document_budget.py): what refusing a bomb costs, against what
loading it would have cost, and what the budget costs an honest large note.

    python -m bench.document_budget_bench

Every load is measured in a fresh process of its own (time, and peak memory as the growth of
its maximum resident set), so one figure's memory never hides inside another's.
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from store import document_budget as budget
from store import documents as D
from store import synthetic

ROOT_DIR = Path(__file__).resolve().parents[1]

# Loads (or checks) the document in file argv[2] in a fresh process; prints seconds and MB.
_IN_A_PROCESS = r"""
import resource, sys, time
from automerge.core import Document
from store import document_budget
from store.errors import DocumentOverBudget
data = open(sys.argv[2], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
if sys.argv[1] == "load":
    Document.load(data)
else:
    try:
        document_budget.check("bench", data)
        outcome = "within"
    except DocumentOverBudget:
        outcome = "refused"
took = time.perf_counter() - t0
grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(f"{took:.4f} {grew:.1f}")
"""


def in_a_process(what: str, path: Path) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", _IN_A_PROCESS, what, str(path)], cwd=ROOT_DIR,
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def median_of(fn, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def a_note(index: int) -> tuple[bytes, str, object]:
    rng = random.Random(index)
    client = synthetic.make_client(rng, index)
    note = synthetic.make_note(rng, client, index, date(2026, 1, 5))
    doc = D.new_note_doc(note, D.actor_for("bench"))
    return doc.save(), note.section_keys[0], doc


def crafted_columns(col_type: int, values: int, columns: int) -> bytes:
    """A document chunk whose operation columns each hold one literal run of `values`
    one-byte values: the most work per byte for the header reader, which reads each column
    up to the budget's operations (Automerge itself refuses it)."""
    if col_type == 4:  # boolean: run lengths of one each, one of two bytes (no shortcut)
        column = b"\x81\x00" + b"\x00" * (values - 1)
    else:
        column = synthetic.leb128(-values, signed=True) + (b"\x00" if col_type == 5 else b"\x01") * values
    return synthetic.crafted_chunk([((i << 4) | col_type, column) for i in range(columns)])


def main() -> None:
    out = ROOT_DIR / "bench" / "out" / "budget"
    out.mkdir(parents=True, exist_ok=True)
    limits = budget.DEFAULT_BUDGET
    print(f"budget: {limits.max_ops:,} operations, {limits.max_changes:,} changes, "
          f"{limits.max_bytes // 2**20} MB received, {limits.max_inflated_bytes // 2**20} MB decompressed; "
          f"guarded load above {limits.guard_above_ops:,} operations / {limits.guard_above_changes:,} changes / "
          f"{limits.guard_above_inflated // 2**20} MB, with {limits.load_memory_bytes // 2**20} MB and "
          f"{limits.load_cpu_seconds} CPU seconds")

    # An everyday note.
    small, _key, _doc = a_note(1)
    size = budget.measure(small)
    print(f"everyday note: {len(small):,} bytes, {size.ops} operations, {size.changes} changes; "
          f"check {median_of(lambda: budget.check('n', small), 50) * 1e6:.0f} us")

    # What a first sync pays: 1,000 notes and 50 clients, each checked once.
    rng = random.Random(5)
    clients = [synthetic.make_client(rng, i) for i in range(50)]
    first_sync = [D.new_client_doc(c, D.actor_for("bench")).save() for c in clients]
    first_sync += [D.new_note_doc(synthetic.make_note(rng, clients[i % 50], i, date(2026, 1, 5)),
                                  D.actor_for("bench")).save() for i in range(1000)]
    checked = median_of(lambda: [budget.check("n", data) for data in first_sync])
    loaded = median_of(lambda: [D.Document.load(data) for data in first_sync])
    print(f"a first sync's 1,050 documents: checked in {checked * 1000:.0f} ms "
          f"(Document.load of the same: {loaded * 1000:.0f} ms)")

    # An honest large note: a year of daily edits.
    _data, key, doc = a_note(2)
    t0 = time.perf_counter()
    synthetic.a_year_of_daily_edits(doc, key)
    year = doc.save()
    built = time.perf_counter() - t0
    (out / "year.bin").write_bytes(year)
    size = budget.measure(year)
    print(f"a year of daily edits (built in {built:.1f} s): {len(year):,} bytes, {size.ops:,} operations, "
          f"{size.changes:,} changes, {size.inflated_bytes:,} bytes decompressed")
    print(f"  room: {limits.max_ops / size.ops:.1f}x operations, {limits.max_changes / size.changes:.1f}x changes, "
          f"{limits.max_inflated_bytes / size.inflated_bytes:.0f}x decompressed bytes")
    print(f"  check (headers only): {median_of(lambda: budget.check('year', year)) * 1000:.1f} ms")
    took, grew = in_a_process("load", out / "year.bin")
    print(f"  Document.load: {took * 1000:.0f} ms, {grew:.0f} MB")

    # Bombs: a note with one-character insertions, just over and far over the budget.
    base, key, _doc = a_note(3)
    for chars in (1_100_000, 3_000_000):
        path = out / f"bomb-{chars}.bin"
        if not path.exists():
            path.write_bytes(subprocess.run(
                [sys.executable, "-c", "import sys; from store.synthetic import inflated_note; "
                 "sys.stdout.buffer.write(inflated_note(sys.stdin.buffer.read(), sys.argv[1], int(sys.argv[2])))",
                 key, str(chars)], input=base, capture_output=True, check=True, cwd=ROOT_DIR).stdout)
        bomb = path.read_bytes()
        took, grew = in_a_process("check", path)
        load_took, load_grew = in_a_process("load", path)
        print(f"bomb of {chars:,} operations, {len(bomb):,} bytes: refused in {took * 1000:.1f} ms, "
              f"{grew:.1f} MB; loading it: {load_took:.2f} s, {load_grew:.0f} MB")

    # A large document within the counts: the guarded load's cost.
    path = out / "guarded-600000.bin"
    if not path.exists():
        path.write_bytes(subprocess.run(
            [sys.executable, "-c", "import sys; from store.synthetic import inflated_note; "
             "sys.stdout.buffer.write(inflated_note(sys.stdin.buffer.read(), sys.argv[1], 600000))",
             key], input=base, capture_output=True, check=True, cwd=ROOT_DIR).stdout)
    large = path.read_bytes()
    print(f"600,000 operations (within the counts, over the guard line): guarded load "
          f"{median_of(lambda: budget.guarded_load_problem(large), 3):.2f} s")

    # The header reader's worst case: the budget's decompressed bytes, all one-byte values,
    # in as many columns of the budget's operations as fit (strings written out one by one:
    # as many as a document may hold).
    for name, col_type in (("integer", 2), ("group", 0), ("boolean", 4), ("string", 5)):
        values = limits.max_ops // 10 if col_type == 5 else limits.max_ops
        columns = 1 if col_type == 5 else limits.max_inflated_bytes // (values + 16)
        crafted = crafted_columns(col_type, values, columns)
        t0 = time.perf_counter()
        try:
            budget.check("crafted", crafted)
        except Exception:  # refused either way: the figure is how long it took
            pass
        print(f"worst case for the header reader, {columns} {name} column(s) of {values:,} values "
              f"({len(crafted) / 2**20:.1f} MB): {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
