"""The watched mailbox through two real Syncthing instances: save on A to brought in on B.

    python -m bench.mailbox_watch_bench [EDITS]

Two vaults, paired with the real command line; two Syncthing instances on 127.0.0.1 sharing
one folder (tests/sync/syncthing_pair.py: discovery, relays and NAT off, file-system watcher
on with its 1 s delay); a `notewell sync mailbox DIR --watch` process on each side. This
process edits a note in vault A (its own connection, as the app's store thread would) and
times the moment B's watcher prints that it brought a document in (B's record has it,
committed). Printed: p50 and max of that latency, the folder's size after the edits (no
collection yet), the CPU seconds the two watchers and the two Syncthings used during the
edits, and the CPU of an idle watcher (notifications, then polling) over a quiet minute;
each with the load average. Timing under load is distorted; CPU seconds are the steadier
figure. Needs `syncthing` (make tools).
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import load, pct

REPO = Path(__file__).resolve().parents[1]
PASSPHRASE = "bench watch passphrase"
IDLE_SECONDS = 60.0


def _env() -> dict[str, str]:
    env = dict(os.environ, NOTEWELL_PASSPHRASE=PASSPHRASE, PYTHONUNBUFFERED="1", NOTEWELL_TEST_KDF="1")
    env.pop("NOTEWELL_VAULT", None)
    return env


def _cli(vault: Path, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tui.cli", "--vault", str(vault), *args], cwd=REPO, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)


def _cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its (waited-for) children, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _tree_cpu(pid: int) -> float:
    """CPU of a process and every live descendant (Syncthing runs a monitor and a worker;
    a watcher its document-reading worker processes)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    tree, total = {pid}, 0.0
    changed = True
    while changed:
        grown = {p for p, parent in parents.items() if parent in tree} - tree
        changed = bool(grown)
        tree |= grown
    for p in tree:
        try:
            total += _cpu(p)
        except OSError:
            continue
    return total


class Lines:
    """A process's stdout lines, each with the monotonic time it was read."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.q = proc, queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.q.put((time.monotonic(), line.rstrip("\n")))

    def wait_for(self, predicate, timeout: float = 180.0) -> float:
        deadline = time.monotonic() + timeout
        while True:
            try:
                at, line = self.q.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise SystemExit(f"timed out; the watcher printed nothing matching in {timeout} s") from None
            if predicate(line):
                return at


def _make_vault(path: Path, name: str) -> None:
    from store.device_identity import ensure_identity
    from store.vault import KdfParams, Vault

    vault, _ = Vault.create(path, PASSPHRASE, device_name=name, kdf=KdfParams(memory_kib=8192, time_cost=1, parallelism=1))
    try:
        ensure_identity(vault.record.replica, vault.device_name)
    finally:
        vault.close()


def _pair(a: Path, b: Path) -> None:
    listener = _cli(a, "sync", "pair", "--listen", "--port", "0")
    lines = Lines(listener)
    port = code = None
    while code is None:
        _at, line = lines.q.get(timeout=60)
        if line.startswith("listening on"):
            port = line.rsplit(":", 1)[1]
        elif line.startswith("pairing code:"):
            code = line.split()[-1]
    joined = subprocess.run([sys.executable, "-m", "tui.cli", "--vault", str(b), "sync", "pair", f"127.0.0.1:{port}",
                             "--code", code], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=60)
    assert joined.returncode == 0, joined.stderr
    assert listener.wait(timeout=60) == 0


def main(edits: int = 15) -> None:
    from datetime import date

    from store.models import Client, ProgressNote, SessionFacts
    from store.vault import Vault
    from tests.sync.syncthing_pair import SyncthingPair, syncthing_binary

    if syncthing_binary() is None:
        raise SystemExit("syncthing is not installed (make tools)")
    os.environ["NOTEWELL_TEST_KDF"] = "1"
    with tempfile.TemporaryDirectory(prefix="nw-watch-bench-") as tmp:
        root = Path(tmp)
        a, b = root / "office", root / "home"
        _make_vault(a, "office")
        _make_vault(b, "home")
        _pair(a, b)
        with SyncthingPair(root / "engines") as engines:
            folder_a, folder_b = engines.folders
            watch_a = _cli(a, "sync", "mailbox", str(folder_a), "--watch")
            watch_b = _cli(b, "sync", "mailbox", str(folder_b), "--watch")
            lines_a, lines_b = Lines(watch_a), Lines(watch_b)
            for lines in (lines_a, lines_b):
                lines.wait_for(lambda line: line.startswith("watching the mailbox"))
            vault = Vault.open(a, PASSPHRASE)
            try:
                with vault.record.transaction():
                    client = vault.record.create_client(Client(display_name="Bench Synthetic"))
                    note = vault.record.create_note(ProgressNote(
                        client_id=client.id, format="DAP", facts=SessionFacts(date_of_service=date(2026, 3, 2))))
                    vault.record.set_section(note.id, "data", "synthetic session text")
                lines_b.wait_for(lambda line: "received " in line and "received 0," not in line)
                cpu_before = [_tree_cpu(p.pid) for p in (watch_a, watch_b, engines.a.proc, engines.b.proc)]
                latencies = []
                for i in range(edits):
                    vault.record.set_section(note.id, "data", f"synthetic session text, edit {i}")
                    saved = time.monotonic()
                    arrived = lines_b.wait_for(lambda line: "received " in line and "received 0," not in line)
                    latencies.append(arrived - saved)
                cpu_after = [_tree_cpu(p.pid) for p in (watch_a, watch_b, engines.a.proc, engines.b.proc)]
            finally:
                vault.close()
            size = sum(p.stat().st_size for p in folder_a.iterdir() if p.name.endswith(".nwb"))
            count = sum(1 for p in folder_a.iterdir() if p.name.endswith(".nwb"))
            print(f"save on A -> brought in on B through two Syncthings, {edits} edits: "
                  f"p50 {pct(latencies, 50):.2f} s, max {max(latencies):.2f} s ({load()})")
            used = [after - before for before, after in zip(cpu_before, cpu_after)]
            print(f"CPU during the edits: watcher A {used[0]:.2f} s, watcher B {used[1]:.2f} s, "
                  f"Syncthing A {used[2]:.2f} s, Syncthing B {used[3]:.2f} s ({load()})")
            print(f"folder after the edits: {count} bundles, {size / 1024:.1f} KiB (collection on; nothing is past its 7-day grace yet) ({load()})")

            idle_before = _tree_cpu(watch_a.pid)
            time.sleep(IDLE_SECONDS)  # a bench measures time; nothing is asserted on it
            idle = _tree_cpu(watch_a.pid) - idle_before
            print(f"idle watcher, notifications: {idle:.3f} CPU s per {IDLE_SECONDS:.0f} s "
                  f"({100 * idle / IDLE_SECONDS:.2f}% of a core) ({load()})")
            for proc in (watch_a, watch_b):
                proc.terminate()
                proc.wait(timeout=60)
            poll = _cli(a, "sync", "mailbox", str(folder_a), "--watch", "--poll")
            Lines(poll).wait_for(lambda line: line.startswith("watching the mailbox"))
            time.sleep(5)  # its first round over
            idle_before = _tree_cpu(poll.pid)
            time.sleep(IDLE_SECONDS)
            idle = _tree_cpu(poll.pid) - idle_before
            print(f"idle watcher, polling: {idle:.3f} CPU s per {IDLE_SECONDS:.0f} s "
                  f"({100 * idle / IDLE_SECONDS:.2f}% of a core) ({load()})")
            poll.terminate()
            poll.wait(timeout=60)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
