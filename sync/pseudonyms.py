"""How a device is named in a mailbox folder, so that whoever carries the folder (a sync
engine, a cloud host) cannot tell which computer wrote a file (docs/mailbox-format.md,
"Names in the folder").

A device's id is the same everywhere: in its TLS certificate in direct sync, in every other
group it belongs to. In the folder it goes by a **pseudonym** instead: HMAC-SHA256 of its
device id, keyed by the sync-group key every device of the group received at pairing
(sync/peers.py). It is stable within the group (a device's files must be recognisable as one
device's, to itself for collection and to the others for read-marks) and says nothing to
anyone without the group key. File names carry its first 16 hex characters, the bundle header
all 32 bytes.

A reader maps a pseudonym back through its own devices: a handful of HMACs, one per device
and per group key it has held, in a dictionary (`Names.resolve`). Keys it held before (a
device that joined another group adopts that group's key) stay in the dictionary, so bundles
named under them are still read and still recognised as its own.

    pseudonym(group_key, device_id) -> 64 hex characters
    Names.build(me, devices, keys) -> Names; .resolve(named) -> device id or None
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

_LABEL = b"notewell mailbox pseudonym v1\x00"
PREFIX_CHARS = 16  # of the pseudonym (or, in names written before, of the device id) in a file name


def pseudonym(group_key: bytes, device_id: str) -> str:
    """The name `device_id` goes by in the folders of the group whose key is `group_key`."""
    return hmac.new(group_key, _LABEL + bytes.fromhex(device_id), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Names:
    """The names of one device's group, both ways. `current` is this device's own pseudonym
    under the group key it holds now (what it writes under); `own` the name prefixes its
    files may have: under every group key it has held, and its device id (files written
    before pseudonyms)."""

    me: str
    current: str
    own: frozenset[str]
    table: dict[str, str]  # pseudonym (64 hex) -> device id

    @classmethod
    def build(cls, me: str, devices: Iterable[str], keys: list[bytes]) -> Names:
        """`keys`: the current group key first, then those held before."""
        table: dict[str, str] = {}
        for key in reversed(keys):  # the current key's names win, should two ever meet
            for device_id in {me, *devices}:
                table[pseudonym(key, device_id)] = device_id
        own = frozenset({me[:PREFIX_CHARS]} | {p[:PREFIX_CHARS] for p, d in table.items() if d == me})
        return cls(me, pseudonym(keys[0], me), own, table)

    @property
    def prefix(self) -> str:
        """The start of this device's file names from now on."""
        return self.current[:PREFIX_CHARS]

    def resolve(self, named: str) -> str | None:
        """The device a pseudonym stands for, or None when it stands for none known here."""
        return self.table.get(named)
