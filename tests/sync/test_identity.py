"""Device identity: a key pair and self-signed certificate per vault; id = SHA-256 of the cert."""

from __future__ import annotations

import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from store.device_identity import (
    IDENTITY_KEY,
    ensure_identity,
    fingerprint,
    generate_identity,
    load_identity,
)
from store.errors import DamagedVault


def test_identity_is_created_once_and_survives_reopening(make_vault):
    ref = make_vault("laptop")
    vault = ref.open()
    try:
        first = load_identity(vault.record.replica)
        assert first is not None
        assert first.device_id == ref.device_id
        again = ensure_identity(vault.record.replica, "laptop")
        assert again == first
    finally:
        vault.close()
    vault = ref.open()
    try:
        assert load_identity(vault.record.replica) == first
    finally:
        vault.close()


def test_device_id_is_the_sha256_of_the_der_certificate():
    identity = generate_identity("office")
    cert = x509.load_pem_x509_certificate(identity.cert_pem.encode())
    der = cert.public_bytes(serialization.Encoding.DER)
    assert identity.device_id == hashlib.sha256(der).hexdigest()
    assert fingerprint(der) == fingerprint(identity.cert_pem) == identity.device_id
    # Self-signed, Ed25519, and the stored key is the certificate's key.
    assert cert.issuer == cert.subject
    assert isinstance(cert.public_key(), ed25519.Ed25519PublicKey)
    cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes)
    signature = identity.private_key().sign(b"probe")
    cert.public_key().verify(signature, b"probe")


def test_two_devices_get_different_ids():
    assert generate_identity("a").device_id != generate_identity("a").device_id


def test_renaming_keeps_the_key_and_the_id(make_vault):
    ref = make_vault("laptop")
    vault = ref.open()
    try:
        renamed = ensure_identity(vault.record.replica, "home laptop")
        assert renamed.device_id == ref.device_id
        assert load_identity(vault.record.replica).name == "home laptop"
    finally:
        vault.close()


def test_a_vault_without_an_identity_gets_one_on_first_use(make_vault):
    # An older vault has no identity entry; ensure_identity (run by every sync command) adds it.
    ref = make_vault("older", identity=False)
    vault = ref.open()
    try:
        before = load_identity(vault.record.replica)
        created = ensure_identity(vault.record.replica, "older")
        if before is not None:  # Vault.create already made one: then it is kept as is
            assert created == before
        assert load_identity(vault.record.replica) == created
    finally:
        vault.close()


def test_a_damaged_identity_is_reported_not_replaced(make_vault):
    ref = make_vault("laptop")
    vault = ref.open()
    try:
        vault.record.replica.local_put(IDENTITY_KEY, b'{"name": "x", "cert_pem": "not a cert", "key_pem": ""}')
        with pytest.raises(DamagedVault):
            ensure_identity(vault.record.replica, "laptop")
        # Still damaged, not silently replaced by a new identity (peers would stop trusting us).
        assert vault.record.replica.local_get(IDENTITY_KEY).startswith(b'{"name": "x"')
    finally:
        vault.close()


def test_repr_does_not_show_the_private_key():
    identity = generate_identity("laptop")
    assert "PRIVATE KEY" not in repr(identity)
