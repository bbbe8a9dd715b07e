"""Pairing refuses a SPAKE2 message that is no point on the curve with a sentence, not a crash.

`spake2` raises `NotOnCurve` (a plain Exception) for such bytes; both sides used to let it
through: the listening command died with a traceback and sent the other device nothing.
Real processes and sockets on 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import threading

import pytest

from store.device_identity import load_identity
from sync.errors import PairingFailed
from sync.framing import Frame, FrameType, recv_frame, send_frame
from sync.pairing import pair_with

OFF_CURVE = b"\x02" * 32  # 32 bytes that decode to no point of Ed25519


def test_the_listener_refuses_an_off_curve_message_with_a_sentence(make_vault, start_notewell):
    a = make_vault("office")
    proc = start_notewell(a, "sync", "pair", "--listen", "--port", "0")
    port = int(proc.wait_for("listening on").rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        send_frame(conn, Frame(FrameType.PAKE, b"\x01A" + OFF_CURVE))
        answer = recv_frame(conn)
    assert answer.type == FrameType.ERROR and json.loads(answer.payload) == {"code": "protocol"}
    rc, _out, err = proc.finish()
    assert rc != 0 and "malformed pairing message" in err and "Traceback" not in err


def test_the_joiner_refuses_an_off_curve_answer_with_a_typed_error(make_vault):
    b = make_vault("home")
    server = socket.create_server(("127.0.0.1", 0))

    def fake_listener() -> None:
        conn, _ = server.accept()
        with conn:
            recv_frame(conn)  # the joiner's SPAKE2 message
            send_frame(conn, Frame(FrameType.PAKE, b"\x01B" + OFF_CURVE))
            try:
                recv_frame(conn)
            except Exception:
                pass  # the joiner hangs up: expected

    thread = threading.Thread(target=fake_listener, daemon=True)
    thread.start()
    vault = b.open()
    try:
        with server, pytest.raises(PairingFailed, match="malformed pairing message"):
            pair_with(vault.record.replica, load_identity(vault.record.replica), *server.getsockname()[:2], "1234-5678")
    finally:
        vault.close()
    thread.join(30)
