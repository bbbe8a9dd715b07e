"""Protected exports through the real `notewell` command (issue 13).

`notewell export --encrypt`: the PDF carries the PDF standard's AES-256 encryption and opens
in pypdf only with the password; the JSON is sealed (store/sealed_export.py) and comes back
through `notewell import` with the same password and with nothing else. Neither holds a
process note, and a progress note's canary is in neither in the clear, raw or inflated from
any offset. Every export is owner-only (even under umask 0), reaches its name whole or not
at all (a process killed half-way leaves nothing under the name), and is in the audit trail
with its purpose. The password is never on the command line and never in any output.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import zlib
from datetime import date
from pathlib import Path
from time import monotonic

import pypdf
import pytest

from store.device_identity import ensure_identity
from store.keys import TEST_KDF_ENV
from store.models import Client, Diagnosis, Goal, ProcessNote, ProgressNote
from store.sealed_export import MAGIC
from store.vault import Vault
from tui_data import CLINICIAN, FAST_KDF, GOAL_A, complete_facts
from tui_helpers import folder_files, one_sentence

REPO = Path(__file__).resolve().parents[2]
PASSPHRASE = "vault passphrase for exports"
PASSWORD = "meadow lantern quartz ninety"
PROGRESS_CANARY = "PROGRESS-CANARY-5d1e"
PROCESS_CANARY = "PROCESS-CANARY-93b7"
SOAP = ("subjective", "objective", "assessment", "plan")
TIMEOUT = 120


def make_vault(folder: Path, *, notes: int = 2, filler: int = 0) -> Path:
    """A vault with client c1: `notes` signed progress notes (the first carries the progress
    canary; `filler` characters of invented text per section make a large export) and
    process notes carrying the process canary."""
    v, _ = Vault.create(folder, PASSPHRASE, device_name="export test", kdf=FAST_KDF, settings=CLINICIAN)
    try:
        ensure_identity(v.record.replica, v.device_name)
        r = v.record
        r.create_client(
            Client(
                id="c1",
                display_name="Avery Ashdown",
                diagnoses=[Diagnosis(code="F41.1", description="Generalized anxiety disorder")],
                goals=[Goal(id=GOAL_A, description="Reduce worry episodes", objective="Fewer than 3 a week")],
            )
        )
        words = ("river", "cobalt", "meadow", "signal", "harbour", "lattice", "ember", "quarry")
        for n in range(notes):
            marker = PROGRESS_CANARY if n == 0 else f"SESSION-{n}"
            pad = " ".join(words[(n * 7 + i * 3) % len(words)] + str(i) for i in range(filler // 8))
            r.create_note(
                ProgressNote(
                    id=f"n{n}",
                    client_id="c1",
                    format="SOAP",
                    sections={k: f"{marker} {k} text {pad}".strip() for k in SOAP},
                    facts=complete_facts(date(2026, 1, 1 + n % 28)),
                )
            )
            r.sign_note(f"n{n}")
        for on in (date(2026, 1, 1), date(2026, 1, 2)):
            v.private.create(ProcessNote(client_id="c1", session_date=on, body=f"{PROCESS_CANARY} reflections"))
    finally:
        v.close()
    return folder


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    return make_vault(tmp_path / "vault")


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "export-password.txt"
    path.write_text(PASSWORD + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("NOTEWELL_") or k == TEST_KDF_ENV}
    out["NOTEWELL_PASSPHRASE"] = PASSPHRASE
    return out


def notewell(vault: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    # umask 0: the export's mode must not depend on the caller's umask.
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", "--vault", str(vault), *args],
        cwd=REPO, env=env(), capture_output=True, text=True, timeout=TIMEOUT, umask=0, stdin=subprocess.DEVNULL, **kw,
    )


def ok(run: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert run.returncode == 0, run.stderr[-3000:]
    assert PASSWORD not in run.stdout + run.stderr
    return run


def refused(vault: Path, *args: str) -> str:
    """One sentence on stderr, a non-zero exit, the vault byte-identical, no password shown."""
    before = folder_files(vault)
    run = notewell(vault, *args)
    sentence = one_sentence(run)
    assert PASSWORD not in run.stdout + run.stderr
    assert folder_files(vault) == before
    return sentence


def export(vault: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return notewell(vault, "export", "--client", "c1", "--out", str(out), "--include-drafts", *extra)


def inflated(data: bytes):
    """Everything zlib, raw deflate or gzip can read starting at any offset of `data`."""
    view = memoryview(data)
    for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS, 16 + zlib.MAX_WBITS):
        for offset in range(len(data)):
            d = zlib.decompressobj(wbits)
            try:
                out = d.decompress(view[offset:], 1 << 20)
            except zlib.error:
                continue
            if out:
                yield out


def holds(data: bytes, text: str) -> bool:
    needle = text.encode()
    return needle in data or any(needle in out for out in inflated(data))


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


# --- the PDF ---------------------------------------------------------------------------------


def test_encrypted_pdf_opens_only_with_the_password(vault, tmp_path, password_file):
    out = tmp_path / "record.pdf"
    run = ok(export(vault, out, "--encrypt", "--password-file", str(password_file), "--purpose", "insurer"))
    assert "encrypted" in run.stdout
    assert mode(out) == 0o600
    reader = pypdf.PdfReader(str(out))
    assert reader.is_encrypted
    encrypt = reader.trailer["/Encrypt"]
    assert (encrypt["/V"], encrypt["/R"]) == (5, 6)  # AES-256, the PDF 2.0 handler
    assert encrypt["/CF"]["/StdCF"]["/CFM"] == "/AESV3"
    with pytest.raises(pypdf.errors.FileNotDecryptedError):
        reader.pages[0].extract_text()
    assert reader.decrypt(PASSWORD + "x") == pypdf.PasswordType.NOT_DECRYPTED
    reader = pypdf.PdfReader(str(out))
    assert reader.decrypt(PASSWORD) != pypdf.PasswordType.NOT_DECRYPTED
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert PROGRESS_CANARY in text and "SESSION-1" in text
    assert PROCESS_CANARY not in text
    assert reader.metadata.title == "Health record of Avery Ashdown"


def test_no_canary_in_the_clear_in_an_encrypted_pdf(vault, tmp_path, password_file):
    plain, sealed = tmp_path / "plain.pdf", tmp_path / "sealed.pdf"
    ok(export(vault, plain))
    ok(export(vault, sealed, "--encrypt", "--password-file", str(password_file)))
    # The scan finds the text of an unencrypted export (its page streams are deflated) ...
    assert holds(plain.read_bytes(), PROGRESS_CANARY)
    # ... and nothing of an encrypted one: not the note, the client's name in the title, nor a process note.
    data = sealed.read_bytes()
    for text in (PROGRESS_CANARY, "Avery Ashdown", PROCESS_CANARY, PASSWORD):
        assert not holds(data, text), text


# --- the JSON --------------------------------------------------------------------------------


def test_encrypted_json_round_trips_through_import(vault, tmp_path, password_file):
    out = tmp_path / "record.json.enc"
    ok(export(vault, out, "--encrypt", "--password-file", str(password_file), "--purpose", "continuity of care"))
    assert mode(out) == 0o600
    data = out.read_bytes()
    assert data.startswith(MAGIC)
    for text in (PROGRESS_CANARY, "Avery Ashdown", PROCESS_CANARY, PASSWORD, "notewell-import"):
        assert not holds(data, text), text

    other = tmp_path / "other"
    Vault.create(other, PASSPHRASE, device_name="other", kdf=FAST_KDF, settings=CLINICIAN)[0].close()
    run = ok(notewell(other, "import", str(out), "--password-file", str(password_file)))
    assert "Imported 1 clients, 2 progress notes and 0 process notes." in run.stdout

    v = Vault.open(other, PASSPHRASE)
    try:
        assert v.record.get_client("c1").display_name == "Avery Ashdown"
        assert v.record.get_note("n0").sections["plan"] == f"{PROGRESS_CANARY} plan text"
        assert v.record.get_note("n0").signature is not None
        assert v.private.for_client("c1") == []
    finally:
        v.close()
    # The same record, exported in the clear from both vaults, is the same file.
    mine, theirs = tmp_path / "mine.json", tmp_path / "theirs.json"
    ok(export(vault, mine))
    ok(export(other, theirs))
    assert json.loads(mine.read_bytes()) == json.loads(theirs.read_bytes())


def test_bad_encrypted_files_are_refused_and_import_nothing(vault, tmp_path, password_file):
    out = tmp_path / "record.json.enc"
    ok(export(vault, out, "--encrypt", "--password-file", str(password_file)))
    data = out.read_bytes()
    other = tmp_path / "other"
    Vault.create(other, PASSPHRASE, device_name="other", kdf=FAST_KDF, settings=CLINICIAN)[0].close()

    wrong = tmp_path / "wrong.txt"
    wrong.write_text("meadow lantern quartz ninety-one\n", encoding="utf-8")
    assert "password is wrong" in refused(other, "import", str(out), "--password-file", str(wrong))

    def variant(name: str, content: bytes) -> str:
        path = tmp_path / name
        path.write_bytes(content)
        return refused(other, "import", str(path), "--password-file", str(password_file))

    assert "cut short" in variant("half-header.enc", data[:40])
    assert "cut short" in variant("half-body.enc", data[: len(data) // 2])
    assert "cut short" in variant("no-tag.enc", data[:-1])
    assert "after its end" in variant("joined.enc", data + b"\n")
    body = bytearray(data)
    body[len(data) // 2] ^= 0x04
    assert "altered or damaged" in variant("tampered-body.enc", bytes(body))
    salt = bytearray(data)
    salt[25] ^= 0x10
    assert "password is wrong" in variant("tampered-header.enc", bytes(salt))
    # Without a password file and with no terminal to ask at: one sentence, nothing read.
    assert "--password-file" in refused(other, "import", str(out))

    v = Vault.open(other, PASSPHRASE)
    try:
        assert v.record.list_clients() == []
    finally:
        v.close()


# --- passwords ---------------------------------------------------------------------------------


def test_weak_or_missing_passwords_are_refused_before_anything_is_written(vault, tmp_path):
    out = tmp_path / "record.pdf"
    for text in ("", "short pw", "aaaaaaaaaaaaaaaa"):
        path = tmp_path / "weak.txt"
        path.write_text(text + "\n", encoding="utf-8")
        assert "password" in refused(vault, "export", "--client", "c1", "--out", str(out), "--encrypt", "--password-file", str(path))
    # No terminal to ask at, no file: refused, not written unencrypted.
    assert "--password-file" in refused(vault, "export", "--client", "c1", "--out", str(out), "--encrypt")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vault", "weak.txt"]


@pytest.mark.parametrize("form", [("--password", PASSWORD), (f"--password={PASSWORD}",), ("--password",)])
@pytest.mark.parametrize("command", ["export", "import"])
def test_a_password_on_the_command_line_is_refused_without_repeating_it(vault, tmp_path, form, command):
    args = ["--client", "c1", "--out", str(tmp_path / "x.pdf"), "--encrypt"] if command == "export" else [str(tmp_path / "x")]
    sentence = refused(vault, command, *args, *form)
    assert "never taken on the command line" in sentence
    assert list(tmp_path.iterdir()) == [vault]


def _in_terminal(args: list[str], answers: list[str]) -> tuple[int, str]:
    """Runs notewell on a pseudo-terminal, typing each answer at the next password prompt;
    returns the exit code and everything the terminal showed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: becomes notewell, with the terminal as its controlling tty
        os.chdir(REPO)
        os.execve(sys.executable, [sys.executable, "-m", "tui.cli", *args], env())
    shown, typed = b"", 0
    deadline = monotonic() + TIMEOUT
    try:
        while monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
            prompts = shown.count(b"assword")
            while typed < min(prompts, len(answers)) and shown.rstrip().endswith(b":"):
                os.write(fd, answers[typed].encode() + b"\n")
                typed += 1
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return os.waitstatus_to_exitcode(status), shown.decode("utf-8", "replace")


def test_the_password_is_asked_twice_at_a_terminal_and_never_shown(vault, tmp_path):
    out = tmp_path / "record.pdf"
    base = ["--vault", str(vault), "export", "--client", "c1", "--out", str(out), "--encrypt"]
    code, shown = _in_terminal(base, [PASSWORD, PASSWORD + "typo"])
    assert code != 0 and "The two passwords differ; nothing was written." in shown
    assert not out.exists() and PASSWORD not in shown

    code, shown = _in_terminal([*base, "--purpose", "client request"], [PASSWORD, PASSWORD])
    assert code == 0, shown
    assert "Password for the encrypted export:" in shown and "Repeat the password:" in shown
    assert PASSWORD not in shown
    reader = pypdf.PdfReader(str(out))
    assert reader.decrypt(PASSWORD) != pypdf.PasswordType.NOT_DECRYPTED


# --- the file and the audit trail ---------------------------------------------------------------


def test_every_export_is_owner_only(vault, tmp_path, password_file):
    for name, extra in (
        ("plain.pdf", ()),
        ("plain.json", ()),
        ("sealed.pdf", ("--encrypt", "--password-file", str(password_file))),
        ("sealed.json.enc", ("--encrypt", "--password-file", str(password_file))),
    ):
        ok(export(vault, tmp_path / name, *extra))
        assert mode(tmp_path / name) == 0o600, name
    ok(export(vault, tmp_path / "plain.pdf", "--force"))
    assert mode(tmp_path / "plain.pdf") == 0o600


def test_the_audit_trail_has_each_export_with_its_purpose(vault, tmp_path, password_file):
    ok(export(vault, tmp_path / "a.pdf", "--encrypt", "--password-file", str(password_file), "--purpose", "insurer"))
    ok(export(vault, tmp_path / "b.json", "--purpose", "  client   request "))
    ok(export(vault, tmp_path / "c.pdf"))
    assert "purpose" in refused(vault, "export", "--client", "c1", "--out", str(tmp_path / "d.pdf"), "--purpose", " ")

    printed = ok(notewell(vault, "audit", "--client", "c1")).stdout
    lines = [line for line in printed.splitlines() if "record exported" in line]
    assert len(lines) == 3
    assert "purpose=insurer" in lines[0] and "encrypted=True" in lines[0] and "file=a.pdf" in lines[0]
    assert "purpose=client request" in lines[1] and "encrypted=False" in lines[1]
    assert "purpose=not stated" in lines[2]
    assert "chain intact" in printed and PASSWORD not in printed


# --- killed half-way ----------------------------------------------------------------------------


def _temporaries(folder: Path, name: str) -> list[str]:
    return [n for n in os.listdir(folder) if n.startswith(f".{name}.") and n.endswith(".tmp")]


def _exported_files(vault: Path) -> list[str]:
    v = Vault.open(vault, PASSPHRASE)
    try:
        return [e.details["file"] for e in v.audit.entries(client_id="c1") if e.event == "export"]
    finally:
        v.close()


def test_an_export_killed_mid_write_leaves_nothing_under_its_name(tmp_path, password_file):
    """SIGKILL of a real export the moment its temporary file (or anything under its name)
    appears (the process is first stopped, so what it had done is what the test sees). Whatever point it reached, the name
    asked for holds nothing, or the whole export with its audit entry; rounds go on until
    one was caught with the temporary file written and the name still empty."""
    vault = make_vault(tmp_path / "vault", notes=24, filler=4000)
    caught = rounds = 0
    while caught < 2 and rounds < 10:
        rounds += 1
        out = tmp_path / f"record-{rounds}.json.enc"
        proc = subprocess.Popen(
            [sys.executable, "-m", "tui.cli", "--vault", str(vault), "export", "--client", "c1", "--out", str(out),
             "--encrypt", "--password-file", str(password_file), "--purpose", "insurer"],
            cwd=REPO, env=env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = monotonic() + TIMEOUT
            while proc.poll() is None and monotonic() < deadline:
                if _temporaries(tmp_path, out.name) or out.exists():
                    os.kill(proc.pid, signal.SIGSTOP)
                    if _temporaries(tmp_path, out.name) and not out.exists():
                        caught += 1
                    os.kill(proc.pid, signal.SIGKILL)
                    break
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=TIMEOUT)
        if out.exists():
            # It got all the way: then it is whole, decrypts, and its audit entry is there.
            from store.sealed_export import unseal

            assert json.loads(unseal(out.read_bytes(), PASSWORD))["kind"] == "notewell-import"
            assert out.name in _exported_files(vault)
        for leftover in _temporaries(tmp_path, out.name):
            assert mode(tmp_path / leftover) == 0o600
        # And the vault opens, whole, after each kill (test_header_only_log.py: one did not).
        ok(notewell(vault, "check"))
    assert caught >= 1, f"no export was caught half-way in {rounds} rounds"
    # The vault is intact and its trail verifies.
    run = ok(notewell(vault, "audit", "--verify"))
    assert "chain intact" in run.stdout
    print(f"killed with the temporary file written and the name empty: {caught} of {rounds} rounds")


def test_an_export_whose_write_fails_half_way_leaves_nothing(tmp_path, password_file):
    """A write that stops part-way (the file-size limit of the process, as a full disk would):
    one sentence, no file under the name, no temporary file, no audit entry."""
    import resource

    vault = make_vault(tmp_path / "vault", notes=12, filler=4000)
    out = tmp_path / "record.json.enc"
    limit = 128 * 1024

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    before = ok(notewell(vault, "audit", "--client", "c1")).stdout.count("record exported")
    run = notewell(vault, "export", "--client", "c1", "--out", str(out), "--encrypt", "--password-file",
                   str(password_file), preexec_fn=small_files)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert [line for line in run.stderr.splitlines() if line.strip()] == [
        f"notewell: Cannot write {out}: File too large; nothing was written."
    ]
    assert not out.exists() and _temporaries(tmp_path, out.name) == []
    assert ok(notewell(vault, "audit", "--client", "c1")).stdout.count("record exported") == before
    ok(export(vault, out, "--encrypt", "--password-file", str(password_file)))
    assert out.stat().st_size > limit  # the same export fits without the limit: the limit cut it
