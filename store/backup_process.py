"""An automatic backup run in a child process at a lower priority, beside the app.

    run_in_child(source, folder, device_id=, now=, progress=None) -> AutomaticBackup

What a backup takes from the clinician's typing is CPU (bench/README.md, "Keystrokes while
an automatic backup runs"): a backup in a thread of the app competes with the UI loop for the
cores and for the interpreter lock. The child runs the same `run_automatic_backup` at nice
10 (`NICENESS`), so the scheduler serves the app first; the thread that starts it only waits
on a pipe.

The child is started like store/prepare_pool.py's workers (`worker_command`: isolated mode,
this package's folder, none of the parent's NOTEWELL_* variables but a test's cheap-KDF
flag, no core dumps). The
parent hands it the vault's keys (`BackupSource`) over its private stdin pipe; the messages
are prepare_pool's (a length, then a pickle, only between this process and its own child).
The child reports progress and waits for the parent's go-ahead after each report, so a
parent that stops listening (killed, or a test holding the backup mid-way) holds the child
where it is; a parent that goes away ends it at its next report, and its partial file is
removed (store/backup.py).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from store import errors, keys
from store.automatic_backup import AutomaticBackup, run_automatic_backup
from store.backup import BackupSource
from store.errors import BackupError, NotewellError
from store.prepare_pool import _recv, _send, worker_command

_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from store.backup_process import child_main; child_main()"
_GO_ON = b"\x01"
_STOP_WAIT = 30.0
# The child's scheduling priority, lowered by this much (as a backup tool in the background
# would be): measured in bench/README.md against a backup at normal priority.
NICENESS = 10


def run_in_child(
    source: BackupSource, folder: Path, *, device_id: str, now: datetime,
    progress: Callable[[int, int], None] | None = None,
) -> AutomaticBackup:
    """`run_automatic_backup` in a child process; blocks the calling thread until it ends.
    Raises what the child raised (the same NotewellError class and sentence)."""
    argv, env, cwd = worker_command(_BOOT)
    if keys.TEST_KDF_ENV in os.environ:
        # The child reads vault.json's KDF parameters as this process does (a test's cheap KDF).
        env[keys.TEST_KDF_ENV] = os.environ[keys.TEST_KDF_ENV]
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env=env, cwd=cwd, close_fds=True,
    )
    try:
        _send(proc.stdin, (source, str(folder), device_id, now))
        while True:
            message = _recv(proc.stdout)
            if message[0] == "progress":
                if progress is not None:
                    progress(message[1], message[2])
                proc.stdin.write(_GO_ON)
                proc.stdin.flush()
            elif message[0] == "done":
                return message[1]
            else:
                raise _error(message[1], message[2])
    except (EOFError, OSError, pickle.PickleError, IndexError, TypeError):
        raise BackupError(
            "The backup stopped before it finished; it does not count as made, and earlier backups are untouched."
        ) from None
    finally:
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=_STOP_WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _error(name: str, message: str) -> NotewellError:
    """The child's typed error, as the same class with the same sentence."""
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, NotewellError)):
        cls = BackupError
    error = NotewellError.__new__(cls)
    NotewellError.__init__(error, message)
    return error


def child_main() -> None:
    """The child's whole life (started by `run_in_child`)."""
    try:  # it holds the vault's keys: no core dump, whoever started it
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass
    try:  # background work: the clinician's typing comes first when the cores are busy
        os.nice(NICENESS)
    except (AttributeError, OSError):
        pass
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing stray may land in the answer stream

    def report(done: int, total: int) -> None:
        _send(stdout, ("progress", done, total))
        if stdin.read(1) != _GO_ON:
            raise BrokenPipeError  # the parent went away: stop (the partial file is removed)

    try:
        source, folder, device_id, now = _recv(stdin)
        try:
            result = run_automatic_backup(source, Path(folder), device_id=device_id, now=now, progress=report)
        except NotewellError as e:
            _send(stdout, ("error", type(e).__name__, e.message))
        else:
            _send(stdout, ("done", result))
    except (KeyboardInterrupt, BrokenPipeError, EOFError, OSError):
        pass
    sys.exit(0)
