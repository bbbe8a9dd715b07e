"""The memory of `notewell sync serve` under 1,000 idle connections (prints figures).

A stranger on the network opens connections and sends nothing. The server (a real
`sync serve` process on 127.0.0.1, with a paired device so that it listens) is measured
idle, while the connections are open, and after them: resident memory (VmRSS, and the peak
VmHWM), threads and open file descriptors; whether it is still running; how many of the
connections it closed at once (over its cap) and how long until it had closed them all (the
rest at their handshake's deadline); and whether a paired device can sync afterwards.

    python -m bench.serve_idle_bench [--connections 1000] [--repo PATH]

`--repo` runs the server from another checkout (an earlier version, for a before figure);
the vaults are built by this checkout's code.
"""

from __future__ import annotations

import argparse
import os
import queue
import resource
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.common import OUT, PASSPHRASE
from store.device_identity import ensure_identity
from store.vault import KdfParams, Vault
from sync.peers import PeerBook, set_group_key

REPO = Path(__file__).resolve().parents[1]


def _paired_vaults(folder: Path) -> tuple[Path, Path]:
    """Two vaults that trust each other (as pairing leaves them), built fresh."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    paths, identities = [folder / "server", folder / "peer"], []
    for path in paths:
        vault, _ = Vault.create(path, PASSPHRASE, device_name=path.name,
                                kdf=KdfParams(memory_kib=65536, time_cost=2, parallelism=1))
        try:
            identities.append(ensure_identity(vault.record.replica, vault.device_name))
        finally:
            vault.close()
    for path, other in ((paths[0], identities[1]), (paths[1], identities[0])):
        vault = Vault.open(path, PASSPHRASE)
        try:
            PeerBook(vault.record.replica).add(other.device_id, other.name, other.cert_pem)
            set_group_key(vault.record, b"B" * 32)
        finally:
            vault.close()
    return paths[0], paths[1]


def _status(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            fields[key] = int(value.split()[0])
    fields["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return fields


def _show(label: str, s: dict[str, int]) -> None:
    print(f"{label:<34} RSS {s['VmRSS'] / 1024:7.1f} MB   peak {s['VmHWM'] / 1024:7.1f} MB   "
          f"threads {s['Threads']:5d}   fds {s['fds']:5d}")


def _closed(sock: socket.socket) -> bool:
    poller = select.poll()  # not select(): it takes no descriptor above 1023
    poller.register(sock, select.POLLIN)
    if not poller.poll(0):
        return False
    try:
        return sock.recv(1, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout the server runs from")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.connections + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.connections + 100), hard))

    server_vault, peer_vault = _paired_vaults(OUT / "serve-idle")
    env = dict(os.environ, NOTEWELL_PASSPHRASE=PASSPHRASE, PYTHONUNBUFFERED="1")
    # The server runs with the open-file limit a desktop session usually has.
    server = subprocess.Popen(
        ["prlimit", "--nofile=1024:1024", sys.executable, "-m", "tui.cli", "--vault", str(server_vault),
         "sync", "serve", "--port", "0"],
        cwd=args.repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in server.stdout], daemon=True).start()
    refusals: list[str] = []
    threading.Thread(target=lambda: [refusals.append(line) for line in server.stderr], daemon=True).start()
    idle: list[socket.socket] = []
    try:
        while not (line := lines.get(timeout=120)).startswith("listening on"):
            pass
        port = int(line.rsplit(":", 1)[1])
        _show("idle", _status(server.pid))

        t0 = time.monotonic()
        for _ in range(args.connections):
            try:
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            except OSError:
                break
        opened = time.monotonic() - t0
        time.sleep(2)  # let the server take them all
        alive = server.poll() is None
        held = _status(server.pid) if alive else None
        closed_at_once = sum(_closed(s) for s in idle)
        print(f"opened {len(idle)} idle connections in {opened:.2f} s; "
              f"{closed_at_once} closed by the server within 2 s")
        if held:
            _show(f"{len(idle)} idle connections open", held)
        else:
            print(f"the server exited (status {server.returncode}) while the connections were open")

        t1 = time.monotonic()
        closed = {s for s in idle if _closed(s)}
        while alive and len(closed) < len(idle) and time.monotonic() - t1 < 120:
            time.sleep(0.2)
            closed |= {s for s in idle if s not in closed and _closed(s)}
        print(f"the server closed {len(closed)} of {len(idle)} idle connections "
              f"within {time.monotonic() - t0:.1f} s of the first one's opening")
        alive = server.poll() is None
        if alive:
            _show("after", _status(server.pid))
            done = subprocess.run(
                [sys.executable, "-m", "tui.cli", "--vault", str(peer_vault), "sync", "now", f"127.0.0.1:{port}"],
                cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
            )
            print(f"a paired device's sync afterwards: exit {done.returncode} "
                  f"({(done.stdout or done.stderr).strip()[:100]})")
        else:
            print(f"the server had exited (status {server.returncode}): no sync possible")
        print(f"server stderr lines: {len(refusals)}; first: {refusals[0].strip()[:120] if refusals else '-'}")
    finally:
        for s in idle:
            s.close()
        if server.poll() is None:
            server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
