"""The pairing code never has to be on the command line, where `ps` shows it to every user
of the machine: `notewell sync pair HOST:PORT` asks for it, or reads it from standard input.

Real `notewell sync pair` processes on 127.0.0.1.
"""

from __future__ import annotations

import subprocess

from tests.sync.conftest import PROCESS_TIMEOUT, REPO, _env, command


def _listen(start_notewell, ref):
    proc = start_notewell(ref, "sync", "pair", "--listen", "--port", "0")
    port = int(proc.wait_for("listening on").rsplit(":", 1)[1])
    code = proc.wait_for("pairing code:").split()[-1]
    return proc, port, code


def _join(ref, port: int, stdin_text: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(ref, "sync", "pair", f"127.0.0.1:{port}"), cwd=REPO, env=_env(), input=stdin_text,
        capture_output=True, text=True, timeout=PROCESS_TIMEOUT,
    )


def test_the_code_comes_from_standard_input_not_the_command_line(make_vault, start_notewell, notewell):
    office, home = make_vault("office"), make_vault("home")
    listener, port, code = _listen(start_notewell, office)
    joined = _join(home, port, code + "\n")
    assert joined.returncode == 0, joined.stderr
    assert "Paired with office" in joined.stdout
    assert listener.finish()[0] == 0
    listed = notewell(home, "sync", "devices")
    assert "office" in listed.stdout and "paired" in listed.stdout


def test_the_listener_shows_the_form_without_the_code_on_the_command_line(make_vault, start_notewell):
    office = make_vault("office")
    listener, port, code = _listen(start_notewell, office)
    before_code_line = listener.lines[:-1]
    assert any(f"notewell sync pair 127.0.0.1:{port}" in line for line in before_code_line), listener.lines
    assert not any("--code" in line for line in before_code_line), listener.lines
    listener.terminate()


def test_no_code_on_standard_input_is_one_sentence_and_connects_nowhere(make_vault, start_notewell):
    office, home = make_vault("office"), make_vault("home")
    listener, port, code = _listen(start_notewell, office)
    empty = _join(home, port, "")
    assert empty.returncode != 0
    assert empty.stderr.count("\n") == 1 and "pairing code" in empty.stderr and "Traceback" not in empty.stderr
    # Nothing reached the listener: its code still works.
    joined = _join(home, port, code + "\n")
    assert joined.returncode == 0, joined.stderr
    assert listener.finish()[0] == 0
