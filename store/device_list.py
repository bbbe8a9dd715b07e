"""The device list: the group's devices and their certificates, travelling with the record.

A signature is verified with the public key of the device that made it. Devices paired with
this one are known from pairing, but a group of three (A-B, B-C) has devices that never met:
C must verify what A signed. So the certificates travel as one record document of their own
kind (`device_list`, id `DEVICE_LIST_ID`), synced by both transports like every other record
document, and each entry is vouched for:

    root "device:<id>"            the device's certificate (PEM); <id> is its SHA-256
    root "vouch:<voucher>:<id>"   an envelope (store/signing.py form) signed by <voucher> over
                                  {"v", "kind": "vouch", "voucher", "subject", "name"}

Trust is computed, never read: this device trusts itself; a device is trusted when a device
already trusted vouches for it with a signature that verifies against the voucher's
certificate, and its certificate hashes to its id. Pairing makes mutual vouches (sync/peers.py
calls `Replica.vouch_for`): a device trusts the peers it paired with at once (kept on the
device) and writes its vouches into the list once there is one (its first signature, or the end
of a sync that brought one), so the group trusts, through their vouches, the peers they paired with. Until
anyone signs, pairing adds no document to the record.

Every entry is its own root key whose value never changes once written: concurrent
additions on several devices merge without loss (a map keyed by id; two devices writing the
same certificate write the same value). Nothing is ever removed. Signed revocations (issue 12)
belong here too, as further add-only keys ("revoke:<revoker>:<id>"), read by `trust_from`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from automerge.core import ROOT, Document, ScalarType
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519

from store.device_identity import DeviceIdentity, fingerprint
from store.documents import _MapView, canonical_json, envelope_parts

DEVICE_LIST_ID = "device-list"
KIND_DEVICE_LIST = "device_list"
DEVICE_PREFIX = "device:"
VOUCH_PREFIX = "vouch:"
MAX_CERT_CHARS = 8192
MAX_NAME_CHARS = 100


def is_device_list(doc_id: str, doc: Document) -> bool:
    """Whether `doc` is the device list stored under `doc_id` (any failure reading it: no)."""
    if doc_id != DEVICE_LIST_ID:
        return False
    try:
        root = _MapView(doc, ROOT)
        return root.scalar("type") == KIND_DEVICE_LIST and root.scalar("id") == DEVICE_LIST_ID
    except Exception:
        return False


def new_device_list_doc(actor: bytes) -> Document:
    doc = Document(actor)
    with doc.transaction() as tx:
        tx.put(ROOT, "type", ScalarType.Str, KIND_DEVICE_LIST)
        tx.put(ROOT, "id", ScalarType.Str, DEVICE_LIST_ID)
    return doc


def vouch_payload(voucher: str, subject: str, name: str) -> dict[str, Any]:
    return {"v": 1, "kind": "vouch", "voucher": voucher, "subject": subject, "name": name[:MAX_NAME_CHARS]}


def add_vouch(doc: Document, voucher: DeviceIdentity, subject_cert_pem: str, name: str) -> bool:
    """Writes `voucher`'s vouch for the device of `subject_cert_pem` (and both certificates
    when absent); False when the list already holds them all."""
    subject = fingerprint(subject_cert_pem)
    root = _MapView(doc, ROOT)
    present = set(root.keys())
    writes: list[tuple[str, str]] = []
    for device_id, cert in ((voucher.device_id, voucher.cert_pem), (subject, subject_cert_pem)):
        if DEVICE_PREFIX + device_id not in present:
            writes.append((DEVICE_PREFIX + device_id, cert))
    key = f"{VOUCH_PREFIX}{voucher.device_id}:{subject}"
    if key not in present:
        data = canonical_json(vouch_payload(voucher.device_id, subject, name))
        sig = voucher.private_key().sign(data)
        envelope = json.dumps({"v": 1, "payload": data.decode("utf-8"), "sig": sig.hex()}, sort_keys=True, separators=(",", ":"))
        writes.append((key, envelope))
    if not writes:
        return False
    with doc.transaction() as tx:
        for k, v in writes:
            tx.put(ROOT, k, ScalarType.Str, v)
    return True


@dataclass(frozen=True)
class TrustedDevice:
    device_id: str
    name: str
    public_key: ed25519.Ed25519PublicKey = field(repr=False)


@dataclass(frozen=True)
class DeviceTrust:
    """The devices whose signatures this device accepts, with the name each was vouched
    for under (for labels); `me` is this device."""

    me: str
    devices: dict[str, TrustedDevice]

    def public_key(self, device_id: str) -> ed25519.Ed25519PublicKey | None:
        found = self.devices.get(device_id)
        return None if found is None else found.public_key

    def name(self, device_id: str) -> str:
        found = self.devices.get(device_id)
        return found.name if found is not None and found.name else f"device {device_id[:16]}"

    def label(self, device_id: str) -> str:
        """How a device is named to the clinician looking at this one."""
        return "this device" if device_id == self.me else self.name(device_id)


_KEYS: dict[str, ed25519.Ed25519PublicKey | None] = {}


def _public_key(cert_pem: Any, device_id: str) -> ed25519.Ed25519PublicKey | None:
    """The Ed25519 key of a certificate that hashes to `device_id`; None otherwise. Cached
    by id: the same id is the same certificate."""
    if device_id in _KEYS:
        return _KEYS[device_id]
    key = None
    if isinstance(cert_pem, str) and len(cert_pem) <= MAX_CERT_CHARS:
        try:
            if fingerprint(cert_pem) == device_id:
                found = x509.load_pem_x509_certificate(cert_pem.encode("ascii")).public_key()
                key = found if isinstance(found, ed25519.Ed25519PublicKey) else None
        except (ValueError, TypeError, UnicodeError):
            key = None
    if key is not None:
        _KEYS[device_id] = key
    return key


def trust_from(doc: Document | None, me: DeviceIdentity, paired: dict[str, Any] | None = None) -> DeviceTrust:
    """The devices trusted here: this one, the devices it paired with and vouches for
    (`paired`: device id -> (certificate, name), kept on this device), and every device reachable
    from those by vouches in the list that verify. Unreadable or unverifiable entries are
    simply not trusted."""
    own = _public_key(me.cert_pem, me.device_id)
    trusted: dict[str, TrustedDevice] = {}
    if own is not None:
        trusted[me.device_id] = TrustedDevice(me.device_id, me.name, own)
    for device_id, (cert, name) in (paired or {}).items():
        key = _public_key(cert, device_id)
        if key is not None and device_id not in trusted:
            trusted[device_id] = TrustedDevice(device_id, str(name or ""), key)
    if doc is None:
        return DeviceTrust(me.device_id, trusted)
    try:
        root = _MapView(doc, ROOT)
        keys = root.keys()
        certs = {k[len(DEVICE_PREFIX):]: root.scalar(k) for k in keys if k.startswith(DEVICE_PREFIX)}
        vouches: list[tuple[str, str, Any]] = []
        for k in keys:
            if k.startswith(VOUCH_PREFIX):
                voucher, _, subject = k[len(VOUCH_PREFIX):].partition(":")
                vouches.append((voucher, subject, root.scalar(k)))
    except Exception:
        return DeviceTrust(me.device_id, trusted)
    names: dict[str, str] = {}
    grew = True
    while grew:
        grew = False
        for voucher, subject, envelope in vouches:
            if subject in trusted or voucher not in trusted:
                continue
            parts = envelope_parts(envelope)
            if parts is None:
                continue
            payload, data, sig = parts
            if payload != vouch_payload(voucher, subject, str(payload.get("name", ""))) or canonical_json(payload) != data:
                continue
            try:
                trusted[voucher].public_key.verify(sig, data)
            except Exception:
                continue
            key = _public_key(certs.get(subject), subject)
            if key is None:
                continue
            names[subject] = str(payload.get("name", ""))
            trusted[subject] = TrustedDevice(subject, names[subject], key)
            grew = True
    return DeviceTrust(me.device_id, trusted)
