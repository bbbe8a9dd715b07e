"""Paired devices and the sync-group key, kept in the record database's local table.

Nothing here is synced: each device keeps its own list of who it trusts. A peer is known by
its device id (the SHA-256 of its certificate) and keeps its full certificate (for TLS trust
and for verifying signed mailbox bundles). Forgetting a device revokes it: it stays listed as
revoked so `sync devices` shows it and every connection or bundle from it is refused, and a
revocation signed by this device goes into the device list that travels with the record
(store/device_list.py), so every device of the group refuses it too once it hears of it. A
device revoked by another device of the group is shown and refused here as revoked as well.
A revocation is final: pairing with a revoked device again is refused (docs/security.md).

    book = PeerBook(record_store)
    book.all() / book.get(device_id) / book.trusted(device_id) / book.trusted_certs()
    book.add(device_id, name, cert_pem) / book.find(ref) / book.forget(ref)
    book.record_sync(device_id, ok=True, summary="received 2, sent 1")
    book.addresses() / book.last_address() / book.remember_address(device_id, "host:port")
    group_key(record_store) / set_group_key(record_store, key) / ensure_group_key(record_store)
    former_group_keys(record_store)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone

from store.device_identity import fingerprint, short_id
from store.errors import DamagedVault
from store.replica import RecordReplica
from sync.errors import AmbiguousDevice, RevokedDevice, UnknownDevice

PEERS_KEY = "sync.peers.v1"
# What `revoked_at` says of a device another device of the group revoked (this one did not).
REVOKED_ELSEWHERE = "by another device"
# {device_id: "host:port"} and "" for the last one used. The name is from when the app kept
# them; it stays, so addresses remembered then are still found.
ADDRESSES_KEY = "tui.sync.addresses.v1"
GROUP_KEY = "sync.group_key.v1"
# The group keys this device held before its current one (newest first, 32 bytes each): the
# mailbox still resolves the names its devices wrote under them (sync/pseudonyms.py).
FORMER_GROUP_KEYS = "sync.group_key.former.v1"
MAX_FORMER_GROUP_KEYS = 8
LISTEN_KEY = "tui.sync.listen.v1"  # where this device last listened for syncs: "host:port" as typed
GROUP_KEY_BYTES = 32


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class Peer:
    device_id: str
    name: str
    cert_pem: str
    paired_at: str
    revoked_at: str | None = None
    last_sync_at: str | None = None
    last_sync_ok: bool | None = None
    last_sync_summary: str | None = None  # counts or an error sentence; never note text

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def short_id(self) -> str:
        return short_id(self.device_id)


class PeerBook:
    """The paired devices of one vault. Reads and writes go straight to the local table."""

    def __init__(self, record_store: RecordReplica) -> None:
        self._store = record_store

    # -- storage

    def _load(self) -> dict[str, Peer]:
        raw = self._store.local_get(PEERS_KEY)
        if raw is None:
            return {}
        try:
            data = json.loads(raw)
            return {device_id: Peer(**fields) for device_id, fields in data.items()}
        except (ValueError, TypeError):
            raise DamagedVault("The list of paired devices in the vault is damaged.") from None

    def _revoked_in_list(self) -> frozenset[str]:
        """The devices the device list shows as revoked (store/device_list.py)."""
        return self._store.device_trust().revoked

    def _with_list_revocations(self, peers: dict[str, Peer]) -> dict[str, Peer]:
        revoked = self._revoked_in_list()
        return {d: (replace(p, revoked_at=REVOKED_ELSEWHERE) if d in revoked and not p.revoked else p)
                for d, p in peers.items()}

    def is_revoked(self, device_id: str) -> bool:
        """Revoked here, or by a revocation of the group that this device has heard of."""
        peer = self._load().get(device_id)
        return (peer is not None and peer.revoked) or device_id in self._revoked_in_list()

    def _save(self, peers: dict[str, Peer]) -> None:
        data = {device_id: asdict(peer) for device_id, peer in peers.items()}
        self._store.local_put(PEERS_KEY, json.dumps(data, sort_keys=True).encode("utf-8"))

    def _audit(self, event: str, **details) -> None:
        # The vault's audit trail, inside the same transaction as the change it records.
        # A bare store (tests of sync alone) has none.
        audit = self._store.audit
        if audit is not None:
            audit.append(event, **details)

    def _write(self):
        """Read-modify-write under the database's write lock, so a `sync serve` recording a
        result cannot overwrite a pairing another process just stored."""
        return self._store.transaction()

    # -- queries

    def all(self) -> list[Peer]:
        """Every peer ever paired, revoked ones included (by this device or another), by name."""
        peers = self._with_list_revocations(self._load())
        return sorted(peers.values(), key=lambda p: (p.name.lower(), p.device_id))

    def get(self, device_id: str) -> Peer | None:
        found = self._load().get(device_id)
        return None if found is None else self._with_list_revocations({device_id: found})[device_id]

    def trusted(self, device_id: str) -> Peer | None:
        """The peer if it is paired and not revoked (here or in the device list), else None."""
        peer = self.get(device_id)
        return peer if peer is not None and not peer.revoked else None

    def trusted_certs(self) -> list[str]:
        return [p.cert_pem for p in self.all() if not p.revoked]

    def find(self, ref: str) -> Peer:
        """A peer by exact name, full id, or id prefix (at least 4 hex characters)."""
        ref = ref.strip()
        peers = self.all()
        matches = [p for p in peers if p.device_id == ref.lower()]
        if not matches:
            matches = [p for p in peers if p.name == ref]
        if not matches and len(ref) >= 4:
            matches = [p for p in peers if p.device_id.startswith(ref.lower())]
        if not matches:
            raise UnknownDevice(f"No paired device is called or starts with {ref!r}.")
        if len(matches) > 1:
            raise AmbiguousDevice(
                f"{len(matches)} paired devices match {ref!r}; give more of the device id."
            )
        return matches[0]

    # -- changes

    def add(self, device_id: str, name: str, cert_pem: str) -> Peer:
        """Store a newly paired device (or reinstate a revoked one). Keeps its sync history."""
        if fingerprint(cert_pem) != device_id:
            raise ValueError("certificate does not match device id")
        with self._write():
            peers = self._load()
            old = peers.get(device_id)
            if (old is not None and old.revoked) or device_id in self._revoked_in_list():
                raise RevokedDevice(
                    f"Device {short_id(device_id)} was revoked, and a revocation is final; "
                    "set that computer up as a new device to use it again."
                )
            peer = Peer(device_id=device_id, name=name, cert_pem=cert_pem, paired_at=_now())
            if old is not None:
                peer = replace(peer, last_sync_at=old.last_sync_at, last_sync_ok=old.last_sync_ok,
                               last_sync_summary=old.last_sync_summary)
            peers[device_id] = peer
            self._save(peers)
            # Into the device list that travels with the record (store/device_list.py): every
            # device of the group can then verify what this peer signs.
            self._store.vouch_for(device_id, name, cert_pem)
            self._audit("device_paired", device=short_id(device_id), device_name=name[:100])
        return peer

    def forget(self, ref: str) -> Peer:
        """Revoke a peer: it stays listed, and is refused from now on, here and (once the
        signed revocation reaches them) on every device of the group."""
        with self._write():
            peer = self.find(ref)
            stored = self._load()[peer.device_id]
            if not stored.revoked:
                peers = self._load()
                peer = replace(stored, revoked_at=_now())
                peers[peer.device_id] = peer
                self._save(peers)
                self._audit("device_revoked", device=peer.short_id, device_name=peer.name[:100])
            # Into the device list, signed by this device (again after a revocation by
            # another device, so the group hears it from this one too).
            self._store.revoke(peer.device_id)
        return peer

    def record_sync(
        self, device_id: str, *, ok: bool, summary: str, transport: str,
        received: int = 0, sent: int = 0, merged: int = 0, conflicts: int = 0,
    ) -> None:
        """The outcome of one sync session with a peer: shown in `sync devices` and the app,
        and written to the audit trail (counts and ids only)."""
        with self._write():
            peers = self._load()
            peer = peers.get(device_id)
            if peer is None:
                return
            peers[device_id] = replace(peer, last_sync_at=_now(), last_sync_ok=ok, last_sync_summary=summary)
            self._save(peers)
            # What the session changed here, by id (never content): the notes and clients
            # that arrived or were merged, and every signature finding among them.
            changes = self._store.take_sync_log()
            findings = self._store.signature_findings_among(frozenset(changes))
            self._audit(
                "sync_session", device=peer.short_id, transport=transport, ok=ok,
                received=received, sent=sent, merged=merged, conflicts=conflicts,
                arrived=_listed(sorted(i for i, how in changes.items() if how == "arrived")),
                merged_ids=_listed(sorted(i for i, how in changes.items() if how == "merged")),
                signature_findings=_listed([f"{i}: {status}" for i, status in sorted(findings.items())]),
            )

    # -- where each device was last reached (a convenience: the next sync needs one key)

    def _addresses(self) -> dict[str, str]:
        raw = self._store.local_get(ADDRESSES_KEY)
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            return {}  # only a convenience: start again rather than refuse
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}

    def addresses(self) -> dict[str, str]:
        """The address each device was last synced with, by device id."""
        return {device_id: address for device_id, address in self._addresses().items() if device_id}

    def last_address(self) -> str | None:
        """The address remembered last, for whichever device: offered first next time."""
        return self._addresses().get("")

    def remember_address(self, device_id: str, address: str) -> None:
        """`address` ("host:port") reached `device_id`: offered for it, and first, next time."""
        with self._write():
            data = self._addresses()
            data[device_id] = address
            data[""] = address
            self._store.local_put(ADDRESSES_KEY, json.dumps(data, sort_keys=True).encode("utf-8"))


# At most this many ids are named per list in a session's audit entry (the counts say the rest).
AUDIT_IDS = 100


def _listed(ids: list[str]) -> list[str]:
    return ids if len(ids) <= AUDIT_IDS else ids[:AUDIT_IDS] + [f"and {len(ids) - AUDIT_IDS} more"]


# --- the sync-group key (mailbox bundles are sealed with it) ---------------------------


def listen_address(record_store: RecordReplica) -> str | None:
    """Where this device last listened for syncs ("host:port"), offered again next time."""
    raw = record_store.local_get(LISTEN_KEY)
    try:
        return raw.decode("utf-8") if raw else None
    except UnicodeDecodeError:
        return None  # only a convenience: the default instead


def remember_listen_address(record_store: RecordReplica, address: str) -> None:
    with record_store.transaction():
        record_store.local_put(LISTEN_KEY, address.encode("utf-8"))


def group_key(record_store: RecordReplica) -> bytes | None:
    key = record_store.local_get(GROUP_KEY)
    if key is not None and len(key) != GROUP_KEY_BYTES:
        raise DamagedVault("The sync-group key in the vault is damaged.")
    return key


def set_group_key(record_store: RecordReplica, key: bytes) -> None:
    if len(key) != GROUP_KEY_BYTES:
        raise ValueError("group key must be 32 bytes")
    with record_store.transaction():
        try:
            old = group_key(record_store)
        except DamagedVault:
            old = None  # replaced below, as before
        if old is not None and old != key:
            kept = [old] + [k for k in former_group_keys(record_store) if k not in (old, key)]
            record_store.local_put(FORMER_GROUP_KEYS, b"".join(kept[:MAX_FORMER_GROUP_KEYS]))
        record_store.local_put(GROUP_KEY, bytes(key))


def former_group_keys(record_store: RecordReplica) -> list[bytes]:
    """The group keys this device held before its current one, newest first."""
    raw = record_store.local_get(FORMER_GROUP_KEYS) or b""
    if len(raw) % GROUP_KEY_BYTES:
        return []  # only widens what the mailbox recognises: start again rather than refuse
    return [raw[i:i + GROUP_KEY_BYTES] for i in range(0, len(raw), GROUP_KEY_BYTES)]


def ensure_group_key(record_store: RecordReplica) -> bytes:
    key = group_key(record_store)
    if key is None:
        key = os.urandom(GROUP_KEY_BYTES)
        set_group_key(record_store, key)
    return key
