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
same certificate write the same value). Nothing is ever removed.

Revocations (`notewell sync forget`) are entries of the same kind:

    root "revoke:<revoker>:<id>"  an envelope signed by <revoker> over
                                  {"v", "kind": "revoke", "revoker", "subject", "held"}

`held` is the revoker's cut: per document, the highest sequence number of the subject's
changes it held when it revoked. Those changes are work from before the revocation and are
kept wherever they arrive from; later ones are refused (store/replica.py, docs/security.md).

A revocation is final: a revoked device is never trusted again, whoever vouches for it (itself
included), and nothing it signs counts any more: its vouches make nobody trusted, and its own
revocations revoke nobody. Which revocations count is decided without any clock (a revoked
device could claim any time), by `revoked_devices`:

1. A revocation counts only when its signature verifies against the revoker's certificate.
2. This device's own revocations always count (it knows it made them), and so does every
   revocation it has already honoured: a device it holds as revoked stays revoked, and what
   that device signs, whenever it arrives, counts for nothing ("first heard" decides, per
   device, since nothing else can).
3. Then, repeatedly: a device reached from this one by vouches without passing any device
   still in question is standing, and its revocations count; a device whose every revoker is
   revoked (or is reached only through a revoked device, like a thief's new device vouched for
   by the stolen one) is cleared.
4. What is left in question is a circle of devices revoking each other, heard of at once (a
   stolen laptop that "revoked" the clinician's desktop before anyone heard of the desktop's
   revocation of it): every device in it is revoked. Cutting off one honest device too is the
   safe side; the clinician can see it and set that device up again as a new device.

So every device holding the same list, and having heard of its revocations in the same
order, reaches the same answer about the others, except where it is itself in such a circle
(it never revokes itself). The entries stay in the list
for ever; a merge that would remove one is overruled by the copy each device keeps of every
revocation it has seen (store/replica.py).
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
REVOKE_PREFIX = "revoke:"
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
        writes.append((key, _signed(voucher, vouch_payload(voucher.device_id, subject, name))))
    return put_entries(doc, dict(writes))


def _signed(signer: DeviceIdentity, payload: dict[str, Any]) -> str:
    """An envelope (store/signing.py form) of `payload` signed by `signer`."""
    data = canonical_json(payload)
    sig = signer.private_key().sign(data)
    return json.dumps({"v": 1, "payload": data.decode("utf-8"), "sig": sig.hex()}, sort_keys=True, separators=(",", ":"))


def revoke_payload(revoker: str, subject: str, held: Any = None) -> dict[str, Any]:
    """`held`: {document id: the highest sequence number of the subject's changes to it that
    the revoker held when it revoked} (its "cut"; see `DeviceTrust.cuts`)."""
    cut = held if isinstance(held, dict) and all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0 for k, v in held.items()
    ) else {}
    return {"v": 1, "kind": "revoke", "revoker": revoker, "subject": subject, "held": cut}


def revocation_entry(revoker: DeviceIdentity, subject: str, held: dict[str, int] | None = None) -> tuple[str, str]:
    """The device-list key and signed envelope of `revoker`'s revocation of `subject`, with
    what of the subject's work the revoker held (`held`, as `revoke_payload` says)."""
    return f"{REVOKE_PREFIX}{revoker.device_id}:{subject}", _signed(revoker, revoke_payload(revoker.device_id, subject, held or {}))


def revocation_entries(doc: Document | None) -> dict[str, str]:
    """Every "revoke:" entry of a device list (unverified; `trust_from` verifies them)."""
    if doc is None:
        return {}
    try:
        root = _MapView(doc, ROOT)
        return {k: v for k in root.keys() if k.startswith(REVOKE_PREFIX) and isinstance(v := root.scalar(k), str)}
    except Exception:
        return {}


def put_entries(doc: Document, entries: dict[str, str]) -> bool:
    """Writes the entries the list lacks or holds otherwise; False when it holds them all."""
    root = _MapView(doc, ROOT)
    present = set(root.keys())
    writes = [(k, v) for k, v in sorted(entries.items()) if k not in present or root.scalar(k) != v]
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
    # Devices revoked by a revocation that counts (never `me`), and the group this device
    # syncs with: itself and the devices trusted without passing through a revoked one.
    # `devices` keeps the revoked ones' keys, so signatures they made still verify.
    revoked: frozenset[str] = frozenset()
    group: frozenset[str] = frozenset()
    # Per revoked device: {document id: highest sequence number of its changes that a device
    # held when it revoked it}. Its changes up to there are work from before the revocation;
    # later ones are refused wherever they arrive from (store/replica.py).
    cuts: dict[str, dict[str, int]] = field(default_factory=dict)

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


def _verified(envelope: Any, expected: Any, key: ed25519.Ed25519PublicKey) -> dict[str, Any] | None:
    """The payload of a signed entry when it is exactly `expected(payload)` and its signature
    verifies against `key`; None otherwise."""
    parts = envelope_parts(envelope)
    if parts is None:
        return None
    payload, data, sig = parts
    if payload != expected(payload) or canonical_json(payload) != data:
        return None
    try:
        key.verify(sig, data)
    except Exception:
        return None
    return payload


def _closure(start: dict[str, TrustedDevice], vouches: list[tuple[str, str, Any]], certs: dict[str, Any],
             barred: frozenset[str] = frozenset()) -> dict[str, TrustedDevice]:
    """`start` and every device reachable from it by vouches that verify, never through or to
    a device in `barred`."""
    trusted = {k: v for k, v in start.items() if k not in barred}
    grew = True
    while grew:
        grew = False
        for voucher, subject, envelope in vouches:
            if subject in trusted or voucher not in trusted or subject in barred:
                continue
            payload = _verified(envelope, lambda p, v=voucher, s=subject: vouch_payload(v, s, str(p.get("name", ""))),
                                trusted[voucher].public_key)
            if payload is None:
                continue
            key = _public_key(certs.get(subject), subject)
            if key is None:
                continue
            trusted[subject] = TrustedDevice(subject, str(payload.get("name", "")), key)
            grew = True
    return trusted


def _verified_revocations(keys: dict[str, ed25519.Ed25519PublicKey],
                          revocations: dict[str, Any]) -> dict[tuple[str, str], dict[str, int]]:
    """(revoker, subject) -> the revoker's cut, for the entries whose signature verifies
    against a key in `keys`."""
    edges: dict[tuple[str, str], dict[str, int]] = {}
    for k, envelope in revocations.items():
        revoker, _, subject = k[len(REVOKE_PREFIX):].partition(":")
        key = keys.get(revoker)
        if key is None or not subject:
            continue
        payload = _verified(envelope, lambda p, r=revoker, s=subject: revoke_payload(r, s, p.get("held")), key)
        if payload is not None:
            edges[(revoker, subject)] = payload["held"]
    return edges


def revoked_devices(me: str, start: dict[str, TrustedDevice], vouches: list[tuple[str, str, Any]],
                    certs: dict[str, Any], edges: set[tuple[str, str]],
                    settled: frozenset[str] = frozenset()) -> frozenset[str]:
    """The devices revoked in the eyes of device `me` (the rules in the module docstring).
    `edges` are the verified revocations (revoker, subject); `settled` the devices this device
    already holds as revoked, whose revocations count for nothing."""
    edges = {e for e in edges if e[1] != me and e[0] not in settled}
    revoked = set(settled) | {s for r, s in edges if r == me}
    named = {s for _r, s in edges}
    cleared: set[str] = set()
    while True:
        # Standing: reached from this device without passing a device still in question.
        standing = _closure(start, vouches, certs, barred=frozenset((named - cleared) | revoked))
        newly = {s for r, s in edges if r in standing} - revoked
        revoked |= newly
        # A device is cleared when every revocation of it was signed by a revoked device, or by
        # one reached only through a revoked device (a thief's new device vouched for by the
        # stolen one).
        possible = _closure(start, vouches, certs, barred=frozenset(revoked))
        newly_cleared = {
            n for n in named - revoked - cleared
            if all(r in revoked or r not in possible for r, s in edges if s == n)
        }
        cleared |= newly_cleared
        if not newly and not newly_cleared:
            break
    # Still in question: devices revoking each other (and those they name). All revoked.
    revoked |= named - cleared
    revoked.discard(me)
    return frozenset(revoked)


def trust_from(doc: Document | None, me: DeviceIdentity, paired: dict[str, Any] | None = None,
               kept_revocations: dict[str, str] | None = None,
               settled: frozenset[str] = frozenset()) -> DeviceTrust:
    """The devices trusted here: this one, the devices it paired with and vouches for
    (`paired`: device id -> (certificate, name), kept on this device), and every device reachable
    from those by vouches in the list that verify; which of them are revoked (by the list's
    revocations, `kept_revocations`, the ones this device keeps, and `settled`, the devices it
    already holds as revoked), and the group without them. Unreadable or unverifiable entries
    are simply not trusted."""
    own = _public_key(me.cert_pem, me.device_id)
    start: dict[str, TrustedDevice] = {}
    if own is not None:
        start[me.device_id] = TrustedDevice(me.device_id, me.name, own)
    for device_id, (cert, name) in (paired or {}).items():
        key = _public_key(cert, device_id)
        if key is not None and device_id not in start:
            start[device_id] = TrustedDevice(device_id, str(name or ""), key)
    certs: dict[str, Any] = {}
    vouches: list[tuple[str, str, Any]] = []
    revocations = dict(kept_revocations or {})
    if doc is not None:
        try:
            root = _MapView(doc, ROOT)
            keys = root.keys()
            certs = {k[len(DEVICE_PREFIX):]: root.scalar(k) for k in keys if k.startswith(DEVICE_PREFIX)}
            for k in keys:
                if k.startswith(VOUCH_PREFIX):
                    voucher, _, subject = k[len(VOUCH_PREFIX):].partition(":")
                    vouches.append((voucher, subject, root.scalar(k)))
            revocations.update(revocation_entries(doc))
        except Exception:
            vouches = []
    trusted = _closure(start, vouches, certs)
    settled = frozenset(settled) - {me.device_id}
    if not revocations and not settled:
        return DeviceTrust(me.device_id, trusted, frozenset(), frozenset(trusted))
    edges = _verified_revocations({d: t.public_key for d, t in trusted.items()}, revocations)
    revoked = revoked_devices(me.device_id, start, vouches, certs, set(edges), settled)
    group = _closure(start, vouches, certs, barred=revoked)
    # The cut of each revoked device: the most any revoker of the group held of its work.
    cuts: dict[str, dict[str, int]] = {}
    for (revoker, subject), held in edges.items():
        if subject in revoked and revoker in group:
            cut = cuts.setdefault(subject, {})
            for doc_id, seq in held.items():
                cut[doc_id] = max(seq, cut.get(doc_id, 0))
    return DeviceTrust(me.device_id, trusted, revoked, frozenset(group), cuts)
