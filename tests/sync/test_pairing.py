"""Pairing: real `notewell sync pair` processes on 127.0.0.1, plus the protocol in-process.

A code works once: a wrong code burns it (the right code then fails too), an expired code is
refused, and nothing is stored on either side unless pairing completed.
"""

from __future__ import annotations

import socket
import threading

import pytest

from store.device_identity import load_identity
from sync.errors import (
    AmbiguousDevice,
    PairingCodeExpired,
    PairingFailed,
    RevokedDevice,
    UnknownDevice,
    WrongPairingCode,
)
from sync.pairing import listen_for_pairing, normalise_code, pair_over, pair_with
from sync.peers import PeerBook, group_key, set_group_key


def _peers(ref):
    vault = ref.open()
    try:
        return PeerBook(vault.record.replica).all(), group_key(vault.record.replica)
    finally:
        vault.close()


def _listen(start_notewell, ref, *extra):
    proc = start_notewell(ref, "sync", "pair", "--listen", "--port", "0", *extra)
    port = int(proc.wait_for("listening on").rsplit(":", 1)[1])
    code = proc.wait_for("pairing code:").split()[-1]
    return proc, port, code


# --- through the command line ----------------------------------------------------------


def test_pairing_stores_each_device_on_the_other(make_vault, start_notewell, notewell):
    a, b = make_vault("office"), make_vault("home")
    proc, port, code = _listen(start_notewell, a)
    joined = notewell(b, "sync", "pair", f"127.0.0.1:{port}", "--code", code)
    assert joined.returncode == 0, joined.stderr
    assert "Paired with office" in joined.stdout
    rc, out, err = proc.finish()
    assert rc == 0, err
    assert "Paired with home" in out

    peers_a, key_a = _peers(a)
    peers_b, key_b = _peers(b)
    assert [(p.device_id, p.name, p.revoked) for p in peers_a] == [(b.device_id, "home", False)]
    assert [(p.device_id, p.name, p.revoked) for p in peers_b] == [(a.device_id, "office", False)]
    assert key_a is not None and key_a == key_b and len(key_a) == 32

    listed = notewell(a, "sync", "devices")
    assert listed.returncode == 0
    assert a.device_id in listed.stdout  # this device, full id
    assert "home" in listed.stdout and b.device_id[:16] in listed.stdout and "never synced" in listed.stdout


def test_a_wrong_code_burns_the_code(make_vault, start_notewell, notewell):
    a, b = make_vault("office"), make_vault("home")
    proc, port, code = _listen(start_notewell, a)
    wrong = "0000-0000" if normalise_code(code) != "00000000" else "1111-1111"
    attempt = notewell(b, "sync", "pair", f"127.0.0.1:{port}", "--code", wrong)
    assert attempt.returncode != 0
    assert "not accepted" in attempt.stderr and "Traceback" not in attempt.stderr
    rc, _out, err = proc.finish()
    assert rc != 0 and "wrong pairing code" in err and "Traceback" not in err
    retry = notewell(b, "sync", "pair", f"127.0.0.1:{port}", "--code", code)
    assert retry.returncode != 0
    assert _peers(a) == ([], None)
    assert _peers(b) == ([], None)


def test_an_expired_code_is_refused(make_vault, start_notewell, notewell):
    a, b = make_vault("office"), make_vault("home")
    proc, port, code = _listen(start_notewell, a, "--code-ttl", "1")
    rc, _out, err = proc.finish()  # waits for the listener to give up on its own
    assert rc != 0 and "expired" in err
    late = notewell(b, "sync", "pair", f"127.0.0.1:{port}", "--code", code)
    assert late.returncode != 0
    assert _peers(a) == ([], None) and _peers(b) == ([], None)


def test_a_mistyped_code_fails_before_connecting(make_vault, notewell):
    b = make_vault("home")
    done = notewell(b, "sync", "pair", "127.0.0.1:9", "--code", "12-34")
    assert done.returncode != 0 and "8 digits" in done.stderr


# --- in-process, with the listener in its own thread (each thread opens its own vault) ---


class _Listener(threading.Thread):
    def __init__(self, ref, **kwargs) -> None:
        super().__init__(daemon=True)
        self.ref, self.kwargs = ref, kwargs
        self.ready = threading.Event()
        self.result = self.error = None

    def on_ready(self, host, port, code) -> None:
        self.address, self.code = (host, port), code
        self.ready.set()

    def run(self) -> None:
        vault = self.ref.open()
        try:
            identity = load_identity(vault.record.replica)
            self.result = listen_for_pairing(vault.record.replica, identity, "127.0.0.1", 0, on_ready=self.on_ready, **self.kwargs)
        except Exception as e:  # handed to the test thread
            self.error = e
        finally:
            vault.close()
            self.ready.set()


def test_a_code_tried_after_expiry_is_refused_with_a_clear_message(make_vault):
    a, b = make_vault("office"), make_vault("home")
    now = [0.0]
    listener = _Listener(a, clock=lambda: now[0], ttl=300)
    listener.start()
    assert listener.ready.wait(30)
    conn = socket.create_connection(listener.address, timeout=30)
    now[0] = 301.0  # the code expires while the other device is typing it
    vault = b.open()
    try:
        with conn, pytest.raises(PairingCodeExpired):
            pair_over(conn, vault.record.replica, load_identity(vault.record.replica), listener.code)
    finally:
        vault.close()
    listener.join(30)
    assert isinstance(listener.error, PairingCodeExpired)
    assert _peers(a) == ([], None) and _peers(b) == ([], None)


def test_a_connection_that_says_nothing_does_not_consume_the_code(make_vault):
    a, b = make_vault("office"), make_vault("home")
    listener = _Listener(a)
    listener.start()
    assert listener.ready.wait(30)
    socket.create_connection(listener.address, timeout=30).close()  # a port probe
    vault = b.open()
    try:
        result = pair_with(vault.record.replica, load_identity(vault.record.replica), *listener.address, listener.code)
    finally:
        vault.close()
    listener.join(30)
    assert listener.error is None and result.peer.device_id == a.device_id


@pytest.mark.parametrize("listener_has, joiner_has", [(True, True), (False, True), (True, False), (False, False)])
def test_group_key_rule(make_vault, listener_has, joiner_has):
    a, b = make_vault("office"), make_vault("home")
    keys = {}
    for ref, has, key in ((a, listener_has, b"L" * 32), (b, joiner_has, b"J" * 32)):
        if has:
            vault = ref.open()
            try:
                set_group_key(vault.record.replica, key)
            finally:
                vault.close()
            keys[ref.name] = key
    listener = _Listener(a)
    listener.start()
    assert listener.ready.wait(30)
    vault = b.open()
    try:
        result = pair_with(vault.record.replica, load_identity(vault.record.replica), *listener.address, listener.code)
    finally:
        vault.close()
    listener.join(30)
    assert listener.error is None
    agreed = _peers(a)[1]
    assert _peers(b)[1] == agreed
    # The listener's key wins, else the joiner's, else a new one.
    expected = keys.get("office") or keys.get("home")
    if expected is not None:
        assert agreed == expected
    assert result.group_key_replaced == (listener_has and joiner_has)


def test_pairing_with_itself_is_refused(make_vault):
    a = make_vault("office")
    listener = _Listener(a)
    listener.start()
    assert listener.ready.wait(30)
    vault = a.open()
    try:
        with pytest.raises(PairingFailed, match="itself"):
            pair_with(vault.record.replica, load_identity(vault.record.replica), *listener.address, listener.code)
    finally:
        vault.close()
    listener.join(30)
    assert isinstance(listener.error, PairingFailed)
    assert _peers(a) == ([], None)


def test_wrong_code_in_process_raises_typed_errors_on_both_sides(make_vault):
    a, b = make_vault("office"), make_vault("home")
    listener = _Listener(a)
    listener.start()
    assert listener.ready.wait(30)
    wrong = "1234-5678" if normalise_code(listener.code) != "12345678" else "8765-4321"
    vault = b.open()
    try:
        with pytest.raises(WrongPairingCode):
            pair_with(vault.record.replica, load_identity(vault.record.replica), *listener.address, wrong)
    finally:
        vault.close()
    listener.join(30)
    assert isinstance(listener.error, WrongPairingCode)


# --- the peer list -----------------------------------------------------------------------


def test_peer_book_forget_revokes_but_keeps_listing(make_vault):
    from store.device_identity import generate_identity

    ref = make_vault("office")
    one, two, three = generate_identity("a"), generate_identity("b"), generate_identity("b")
    vault = ref.open()
    try:
        book = PeerBook(vault.record.replica)
        for ident in (one, two, three):
            book.add(ident.device_id, ident.name, ident.cert_pem)
        with pytest.raises(ValueError):
            book.add(one.device_id, "x", two.cert_pem)  # certificate must match the id
        with pytest.raises(AmbiguousDevice):
            book.find("b")
        with pytest.raises(UnknownDevice):
            book.find("nobody")
        revoked = book.forget(one.device_id[:8])
        assert revoked.revoked and book.trusted(one.device_id) is None
        assert book.trusted(two.device_id) is not None
        assert len(book.all()) == 3
        assert one.cert_pem not in book.trusted_certs()
        book.record_sync(two.device_id, ok=True, summary="received 1, sent 0, merged 0, conflicts 0",
                         transport="direct", received=1)
        assert book.get(two.device_id).last_sync_ok is True
        # Each change is on the audit trail: ids and counts, nothing else.
        events = [(e.event, e.details) for e in vault.audit.entries()]
        assert [e for e, _ in events].count("device_paired") == 3
        assert ("device_revoked", {"device": one.device_id[:16], "device_name": one.name}) in events
        session = next(d for e, d in events if e == "sync_session")
        assert session["transport"] == "direct" and session["received"] == 1
        # A revocation is final (docs/security.md): pairing with the device again is refused.
        with pytest.raises(RevokedDevice):
            book.add(one.device_id, one.name, one.cert_pem)
        assert book.trusted(one.device_id) is None
    finally:
        vault.close()


def test_forget_through_the_command_line(make_vault, pair, notewell):
    a, b = make_vault("office"), make_vault("home")
    pair(a, b)
    done = notewell(a, "sync", "forget", "home")
    assert done.returncode == 0 and "Revoked home" in done.stdout
    listed = notewell(a, "sync", "devices")
    assert "revoked" in listed.stdout
    unknown = notewell(a, "sync", "forget", "nobody")
    assert unknown.returncode != 0 and "No paired device" in unknown.stderr
