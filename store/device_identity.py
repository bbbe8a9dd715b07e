"""This device's identity: an Ed25519 key pair and a self-signed X.509 certificate.

The device id is the SHA-256 (hex) of the certificate's DER bytes, as in Syncthing: a peer
is trusted by that fingerprint, never by a name. The identity lives in the record database's
local key/value table (never synced), so it is encrypted at rest with the record.

    ensure_identity(record_store, device_name) -> DeviceIdentity   # create on first use
    load_identity(record_store) -> DeviceIdentity | None
    fingerprint(cert_pem_or_der) -> str

`record_store` is the record's sync intake (`record.replica`, store/replica.py), which holds
the device-local table (`local_get`, `local_put`) and the write transactions. A vault created before identities existed gets one the first
time `ensure_identity` runs on it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from store.errors import DamagedVault

IDENTITY_KEY = "device.identity.v1"

# Trust is by fingerprint, not by validity dates. A wide window keeps devices whose clocks
# disagree (or a laptop whose clock was reset) from failing the TLS date checks.
_NOT_BEFORE = datetime(2000, 1, 1, tzinfo=timezone.utc)
_NOT_AFTER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)


def _subject() -> x509.Name:
    # The name is kept out of the certificate so renaming a device does not change its id.
    # The subject must still be unique: OpenSSL finds a trust anchor by subject name, and with
    # two paired devices sharing one subject it would check against the wrong certificate.
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Notewell device {secrets.token_hex(16)}")])


@dataclass(frozen=True)
class DeviceIdentity:
    device_id: str  # SHA-256 hex of cert DER
    name: str
    cert_pem: str
    key_pem: str = field(repr=False)

    @property
    def cert_der(self) -> bytes:
        return x509.load_pem_x509_certificate(self.cert_pem.encode("ascii")).public_bytes(
            serialization.Encoding.DER
        )

    @property
    def short_id(self) -> str:
        return short_id(self.device_id)

    def private_key(self) -> ed25519.Ed25519PrivateKey:
        key = serialization.load_pem_private_key(self.key_pem.encode("ascii"), password=None)
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        return key


def short_id(device_id: str) -> str:
    """The prefix shown to people (and accepted by `sync forget`)."""
    return device_id[:16]


def fingerprint(cert: str | bytes) -> str:
    """SHA-256 hex of a certificate given as PEM (str or bytes) or DER bytes."""
    if isinstance(cert, str):
        cert = cert.encode("ascii")
    if cert.lstrip().startswith(b"-----BEGIN"):
        cert = x509.load_pem_x509_certificate(cert).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(cert).hexdigest()


def generate_identity(device_name: str) -> DeviceIdentity:
    key = ed25519.Ed25519PrivateKey.generate()
    subject = _subject()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, None)  # Ed25519 signs without a separate hash
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    return DeviceIdentity(fingerprint(cert_pem), device_name, cert_pem, key_pem)


def load_identity(record_store) -> DeviceIdentity | None:
    raw = record_store.local_get(IDENTITY_KEY)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        cert_pem, key_pem, name = data["cert_pem"], data["key_pem"], data["name"]
        identity = DeviceIdentity(fingerprint(cert_pem), name, cert_pem, key_pem)
        # The key must match the certificate, or every TLS handshake would fail later.
        pub = identity.private_key().public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        cert_pub = x509.load_pem_x509_certificate(cert_pem.encode("ascii")).public_key()
        if cert_pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) != pub:
            raise ValueError("key does not match certificate")
    except (ValueError, KeyError, TypeError, AssertionError, UnicodeError):
        raise DamagedVault("This device's sync identity in the vault is damaged.") from None
    return identity


def save_identity(record_store, identity: DeviceIdentity) -> None:
    """Store a freshly generated identity (vault creation makes it before the store exists)."""
    _save(record_store, identity)


def _save(record_store, identity: DeviceIdentity) -> None:
    payload = {"name": identity.name, "cert_pem": identity.cert_pem, "key_pem": identity.key_pem}
    record_store.local_put(IDENTITY_KEY, json.dumps(payload).encode("utf-8"))


def ensure_identity(record_store, device_name: str) -> DeviceIdentity:
    """This device's identity, created and stored on first use.

    An existing identity keeps its key and id; only its display name follows `device_name`.
    """
    identity = load_identity(record_store)
    if identity is not None and (not device_name or identity.name == device_name):
        return identity
    # Check again under the write lock: two processes upgrading the same vault at once must
    # end up with one identity, not each with its own.
    begin = getattr(record_store, "transaction", None)
    with begin() if begin is not None else contextlib.nullcontext():
        identity = load_identity(record_store)
        if identity is None:
            identity = generate_identity(device_name)
            _save(record_store, identity)
        elif device_name and identity.name != device_name:
            identity = DeviceIdentity(identity.device_id, device_name, identity.cert_pem, identity.key_pem)
            _save(record_store, identity)
    return identity
