"""Typed errors of the sync layer (pairing, direct sync, framing).

All are `NotewellError` subclasses: `message` is one user-facing sentence that never holds
note text, so the command line can print it and the app can show it as is.
"""

from __future__ import annotations

from store.errors import NotewellError


class SyncError(NotewellError):
    title = "Sync problem"


# --- pairing ---------------------------------------------------------------------------


class PairingFailed(SyncError):
    title = "Pairing failed"


class WrongPairingCode(PairingFailed):
    title = "Wrong pairing code"

    def __init__(self, message: str = "The pairing code was wrong; it is now void, so start pairing again for a new code.") -> None:
        super().__init__(message)


class RemotePairingError(PairingFailed):
    """The other device broke the pairing protocol: a message malformed, altered, replayed or
    out of order (its sentence says which). Nothing is stored on this side."""


class PairingCodeExpired(PairingFailed):
    title = "Pairing code expired"

    def __init__(self, message: str = "The pairing code has expired; start pairing again for a new code.") -> None:
        super().__init__(message)


# --- peers -----------------------------------------------------------------------------


class UnknownDevice(SyncError):
    title = "Unknown device"


class AmbiguousDevice(SyncError):
    title = "Ambiguous device"


class RevokedDevice(SyncError):
    """Pairing with a device that was revoked (here or by another device of the group)."""

    title = "Revoked device"


class NotPaired(SyncError):
    """The other side is not a paired, non-revoked device (or does not trust this one)."""

    title = "Device not paired"


# --- transport and protocol ------------------------------------------------------------


class PeerUnreachable(SyncError):
    title = "Device unreachable"


class ConnectionLost(SyncError):
    title = "Connection lost"


class ProtocolError(SyncError):
    """The other side sent something this protocol does not allow."""

    title = "Sync protocol error"


class MalformedFrame(ProtocolError):
    title = "Malformed sync message"


class FrameTooLarge(ProtocolError):
    title = "Sync message too large"


class MalformedSyncMessage(ProtocolError):
    """Automerge refused (or panicked on) data from the other device."""

    title = "Malformed document data"


class ProtocolVersionMismatch(ProtocolError):
    title = "Incompatible sync versions"


class ExchangeMisuse(SyncError):
    """This device's own code drove a pairing exchange out of order (a bug here, never the
    other device's doing): the remote side's faults are `ProtocolError` and `PairingFailed`."""

    title = "Internal sync error"


class PeerReportedError(SyncError):
    """The other device stopped the sync and said why (mapped to a local sentence)."""

    title = "Sync stopped by the other device"


class ServerFull(SyncError):
    """`sync serve` holds as many connections as it takes at once; one more was closed."""

    title = "Too many connections"
