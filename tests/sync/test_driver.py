"""The one driver (sync/driver.py) with real sockets: two pairing exchanges over a socket pair.

The exchanges decide; the driver reads with a deadline, frames, writes, and sends a refusal's
ERROR before it lets the error go.
"""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from store.device_identity import generate_identity
from sync import driver
from sync.driver import FrameChannel
from sync.errors import ConnectionLost, FrameTooLarge, WrongPairingCode
from sync.framing import FrameType
from sync.pairing import MAX_PAIR_FRAME
from sync.pairing_exchange import JoinerExchange, ListenerExchange, State


def _exchanges(joiner_code="2468-1357"):
    listener = ListenerExchange("2468-1357", generate_identity("office"), own_group_key=None,
                                commit=lambda paired: paired, expires_at=300.0, clock=lambda: 0.0)
    joiner = JoinerExchange(joiner_code, generate_identity("home"), own_group_key=None, commit=lambda paired: paired)
    return listener, joiner


def _run_both(listener, joiner):
    left, right = socket.socketpair()
    errors: dict[str, BaseException] = {}

    def side(name, sock, exchange):
        try:
            with sock:
                driver.run(FrameChannel(sock, MAX_PAIR_FRAME, timeout=30), exchange)
        except BaseException as e:  # handed to the test
            errors[name] = e

    threads = [threading.Thread(target=side, args=("listener", left, listener)),
               threading.Thread(target=side, args=("joiner", right, joiner))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    return errors


def test_two_exchanges_pair_through_the_driver():
    listener, joiner = _exchanges()
    assert _run_both(listener, joiner) == {}
    assert listener.state == State.PAIRED and joiner.state == State.PAIRED
    assert listener.result.group_key == joiner.result.group_key


def test_a_refusal_is_sent_before_the_error_is_raised():
    listener, joiner = _exchanges(joiner_code="1357-2468")
    errors = _run_both(listener, joiner)
    assert isinstance(errors["listener"], WrongPairingCode)
    assert isinstance(errors["joiner"], WrongPairingCode) and "not accepted" in errors["joiner"].message


def test_a_silent_peer_meets_the_deadline():
    listener, _ = _exchanges()
    left, right = socket.socketpair()
    with left, right:
        with pytest.raises(ConnectionLost, match="stopped answering"):
            driver.run(FrameChannel(left, MAX_PAIR_FRAME, timeout=0.2), listener)
    assert not listener.code_used


def test_an_oversized_frame_is_refused_from_its_header():
    listener, _ = _exchanges()
    left, right = socket.socketpair()
    with left, right:
        right.sendall(struct.pack(">IB", MAX_PAIR_FRAME + 1, FrameType.PAKE))
        with pytest.raises(FrameTooLarge):
            driver.run(FrameChannel(left, MAX_PAIR_FRAME, timeout=30), listener)
    assert not listener.code_used and listener.state == State.AWAIT_PAKE
