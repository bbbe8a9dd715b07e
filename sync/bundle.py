"""Mailbox bundles: the file format, on its own (no folder, no store).

A bundle carries record documents from one device to the others of its sync group through a
folder nobody needs to trust. `encode` builds one; `read_header` parses its structure;
`verify` checks the sender's signature; `decrypt` opens the payload. `decode` does all three.
The layout is specified in docs/mailbox-format.md; keep the two in step.

Order of checks on the way in, so the reason given is the first thing that is wrong:
structure (truncated, not a bundle, newer format) -> signature (tampered) -> group key id
(another sync group) -> authenticated decryption -> decompression and payload limits.
Nothing here touches a document; callers apply entries only after `decode` succeeded.

Three formats. 3 (`encode_named`, the one written) is 2 without a device id in the clear:
the header names the writer by its pseudonym in the group (sync/pseudonyms.py), which the
reader maps back to a device before it checks the signature with that device's key, and
the recipients' stanzas name nobody (each reader tries them with its own key). 2 (written
since revocation, issue 12: `encode_for`, `decode_for`) encrypts each bundle under a fresh
key wrapped to every device trusted when it was written (sync/recipients.py), so a device
revoked before then cannot read it, and names the sender and the recipients by device id;
1 (`encode`, `decode`) encrypted every bundle under the sync-group key. Bundles of formats
1 and 2 from a trusted sender are still read (devices updated at different times keep
exchanging, and folders hold them); they are never written any more.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import time
import zlib
from collections.abc import Collection
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography import x509

from store.errors import NotewellError
from sync import recipients as keys

MAGIC = b"NWBUNDLE"
FORMAT_VERSION = 3  # the newest this version reads and the one it writes: pseudonyms, no ids
RECIPIENTS_FORMAT = 2  # recipients' stanzas, sender and recipients by device id (read, never written)
GROUP_KEY_FORMAT = 1  # every bundle under the sync-group key (read, never written)
SUFFIX = ".nwb"

# magic, version, sender id or (format 3) pseudonym (32), sequence, created (ms), group key id (8), nonce (12), ct length
_HEADER = struct.Struct(">8sH32sQQ8s12sQ")
HEADER_SIZE = _HEADER.size  # 86
MAX_SEQ = 2**64 - 1  # the header's u64
_SIG_LEN = struct.Struct(">H")

# Limits that keep a hostile or damaged file from exhausting memory.
MAX_BUNDLE_BYTES = 512 * 1024 * 1024
MAX_PAYLOAD_BYTES = 1024 * 1024 * 1024
MAX_SIGNATURE_BYTES = 512

# The entry's data is the whole document: what `Document.load` restores (a save, or the
# stored bytes of a save followed by changes, which load the same way).
ENTRY_FULL_DOCUMENT = 1


# --- errors --------------------------------------------------------------------------


class BundleRejected(NotewellError):
    """A bundle that was not applied. `reason` is a short stable word for reports and tests."""

    title = "Bundle rejected"
    reason = "rejected"

    def __init__(self, message: str) -> None:
        super().__init__(message)


class BundleTruncated(BundleRejected):
    reason = "truncated"


class NotABundle(BundleRejected):
    reason = "not-a-bundle"


class UnsupportedBundle(BundleRejected):
    reason = "newer-format"


class BundleTampered(BundleRejected):
    reason = "tampered"


class ForeignBundle(BundleRejected):
    reason = "foreign"


class RevokedSender(BundleRejected):
    reason = "revoked"


class ReplayedBundle(BundleRejected):
    reason = "replayed"


class WrongSyncGroup(BundleRejected):
    reason = "other-group"


class MalformedBundle(BundleRejected):
    reason = "malformed"


class NotForThisDevice(BundleRejected):
    reason = "not-a-recipient"


# --- values --------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleHeader:
    version: int
    # 64 lowercase hex characters: the sender's device id. In format 3 the header holds the
    # sender's pseudonym (`named`), and a reader puts here the device it stands for
    # (sync/mailbox.py) once it has resolved it; until then it is the pseudonym too.
    sender_id: str
    seq: int
    created_ms: int
    key_id: bytes
    nonce: bytes
    ciphertext_length: int
    # Formats 2 and 3: the recipients section between the header and the ciphertext (its length).
    recipients_length: int = 0
    named: str = ""  # the header's sender field as written: device id (formats 1, 2) or pseudonym (3)

    @property
    def payload_at(self) -> int:
        """Where the ciphertext starts: after the header and the recipients section."""
        return HEADER_SIZE + self.recipients_length

    def pack(self) -> bytes:
        return _HEADER.pack(
            MAGIC,
            self.version,
            bytes.fromhex(self.sender_id),
            self.seq,
            self.created_ms,
            self.key_id,
            self.nonce,
            self.ciphertext_length,
        )


@dataclass(frozen=True)
class Bundle:
    header: BundleHeader
    entries: list[tuple[str, bytes]]  # (doc_id, the whole document's bytes)
    digest: str  # sha256 hex of the whole file: tells an identical copy from a different one


def key_id(group_key: bytes) -> bytes:
    """A short public tag of the group key, so another group's bundle is named as such."""
    return hashlib.sha256(b"notewell mailbox key id\x00" + group_key).digest()[:8]


def file_name(named: str, seq: int) -> str:
    """A bundle's name: the first 16 hex characters of how its header names the sender (the
    pseudonym; in formats 1 and 2 the device id) and its sequence number."""
    return f"{named[:16]}-{seq:08d}{SUFFIX}"


def parse_file_name(name: str) -> tuple[str, int] | None:
    """(sender id prefix, sequence) from a bundle's file name, or None if it is not one
    (a number outside 1..MAX_SEQ, which no header can hold, included)."""
    if not name.endswith(SUFFIX):
        return None
    stem = name[: -len(SUFFIX)]
    prefix, sep, seq = stem.rpartition("-")
    if not sep or not prefix or not seq.isascii() or not seq.isdigit() or len(seq) > len(str(MAX_SEQ)):
        return None
    number = int(seq)
    if not 1 <= number <= MAX_SEQ:
        return None
    return prefix, number


# The copies a folder-sync engine makes of a file when two versions meet: Syncthing's
# `NAME.sync-conflict-20260102-130405-ABCDEFG.nwb`, Dropbox's and Nextcloud's
# `NAME (Laptop's conflicted copy 2026-01-02).nwb`, a cloud drive's `NAME (1).nwb`.
_ENGINE_COPY = re.compile(
    r"^(?P<stem>.+?)(?:\.sync-conflict-\d{8}-\d{6}-[A-Za-z0-9]{7}| \([^()]*conflict[^()]*\)| \(\d{1,3}\))"
    + re.escape(SUFFIX) + r"$",
    re.IGNORECASE,
)


def original_name(name: str) -> str:
    """The bundle name an engine's conflict copy or duplicate was made from (the name itself
    when it is not such a copy). Its contents are checked against that name like any
    bundle's: a copy of a bundle already applied is recognised as such, never applied twice,
    and a different bundle under a copy's name is refused as ever."""
    match = _ENGINE_COPY.match(name)
    return match.group("stem") + SUFFIX if match else name


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- keys ----------------------------------------------------------------------------


def _private_key(key):
    if isinstance(key, (bytes, str)):
        key = serialization.load_pem_private_key(key.encode() if isinstance(key, str) else key, None)
    return key


def _public_key(cert):
    if isinstance(cert, (bytes, str)):
        cert = x509.load_pem_x509_certificate(cert.encode() if isinstance(cert, str) else cert)
    if isinstance(cert, x509.Certificate):
        return cert.public_key()
    return cert


def public_key_of(private_key):
    """The public key of a device key (PEM bytes or a key object), to check its own bundles."""
    return _private_key(private_key).public_key()


def _sign(key, data: bytes) -> bytes:
    key = _private_key(key)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    raise TypeError("device keys are Ed25519 or ECDSA")


def _verify(public_key, signature: bytes, data: bytes) -> bool:
    try:
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, data)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


# --- payload -------------------------------------------------------------------------


def _compress_entries(entries: Collection[tuple[str, bytes]]) -> bytes:
    """zlib(payload), the payload laid out as docs/mailbox-format.md says, fed one entry at a
    time: `entries` may be a lazy collection (sync/mailbox.py reads each document's stored
    bytes only when its turn comes), so the uncompressed payload is never held whole."""
    deflate = zlib.compressobj(6)
    count = len(entries)
    out = [deflate.compress(struct.pack(">I", count))]
    for doc_id, data in entries:
        raw_id = doc_id.encode("utf-8")
        entry_header = struct.pack(">H", len(raw_id)) + raw_id + struct.pack(">BI", ENTRY_FULL_DOCUMENT, len(data))
        out.append(deflate.compress(entry_header))
        out.append(deflate.compress(data))
        count -= 1
    if count:  # the count leads the payload: a collection that yields otherwise is a bug here
        raise ValueError("the bundle's entries did not match their count")
    out.append(deflate.flush())
    return b"".join(out)


def _unpack_entries(payload: bytes) -> list[tuple[str, bytes]]:
    bad = MalformedBundle("The bundle's contents are not in the expected layout; nothing was applied.")
    view = memoryview(payload)
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(view):
            raise bad
        chunk = bytes(view[pos : pos + n])
        pos += n
        return chunk

    (count,) = struct.unpack(">I", take(4))
    entries: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    for _ in range(count):
        (id_len,) = struct.unpack(">H", take(2))
        try:
            doc_id = take(id_len).decode("utf-8")
        except UnicodeDecodeError:
            raise bad from None
        kind, data_len = struct.unpack(">BI", take(5))
        if kind != ENTRY_FULL_DOCUMENT or not doc_id or doc_id in seen:
            raise bad
        seen.add(doc_id)
        entries.append((doc_id, take(data_len)))
    if pos != len(view):
        raise bad
    return entries


def _decompress(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_PAYLOAD_BYTES)
    except zlib.error:
        raise MalformedBundle("The bundle's contents could not be decompressed; nothing was applied.") from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise MalformedBundle("The bundle's contents exceed the size limit or are incomplete; nothing was applied.")
    return out


# --- encode --------------------------------------------------------------------------


def encode(
    entries: Collection[tuple[str, bytes]],
    *,
    sender_id: str,
    seq: int,
    group_key: bytes,
    private_key,
    created_ms: int | None = None,
) -> bytes:
    """A complete signed bundle in format 1, under the sync-group key: what earlier versions
    wrote (the mailbox writes `encode_for`'s format 2). `private_key` is PEM bytes or a key object."""
    if len(group_key) != 32:
        raise ValueError("the sync-group key is 256 bits")
    return _sealed(entries, GROUP_KEY_FORMAT, sender_id, seq, created_ms, key_id(group_key), group_key, b"", private_key)


def _sealed(entries: list[tuple[str, bytes]], version: int, sender_id: str, seq: int, created_ms: int | None,
            kid: bytes, key: bytes, section: bytes, private_key) -> bytes:
    """Header, `section` (format 2's recipients), the payload encrypted under `key` with both
    as associated data, and the signature over all of it."""
    if seq < 1:
        raise ValueError("sequence numbers start at 1")
    compressed = _compress_entries(entries)
    nonce = os.urandom(12)
    # The ciphertext length is known before encrypting: GCM adds a 16-byte tag.
    header = BundleHeader(
        version=version,
        sender_id=sender_id.lower(),
        seq=seq,
        created_ms=int(time.time() * 1000) if created_ms is None else created_ms,
        key_id=kid,
        nonce=nonce,
        ciphertext_length=len(compressed) + 16,
        recipients_length=len(section),
    )
    bound = header.pack() + section
    signed = bound + AESGCM(key).encrypt(nonce, compressed, bound)
    signature = _sign(private_key, signed)
    return signed + _SIG_LEN.pack(len(signature)) + signature


# --- decode --------------------------------------------------------------------------


def read_header(data: bytes) -> BundleHeader:
    """The header, after checking the file's structure and exact length (unauthenticated)."""
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        if len(data) < len(MAGIC) and MAGIC.startswith(data):
            raise BundleTruncated("The bundle is cut short; nothing was applied.")
        raise NotABundle("The file is not a Notewell bundle; nothing was applied.")
    if len(data) < HEADER_SIZE:
        raise BundleTruncated("The bundle is cut short; nothing was applied.")
    magic, version, sender, seq, created_ms, kid, nonce, ct_len = _HEADER.unpack_from(data)
    if version > FORMAT_VERSION:
        raise UnsupportedBundle(
            f"The bundle was written in format {version}, newer than this version of Notewell reads; update Notewell."
        )
    if version < 1:
        raise NotABundle("The file is not a Notewell bundle; nothing was applied.")
    if len(data) > MAX_BUNDLE_BYTES or ct_len > MAX_BUNDLE_BYTES:
        raise MalformedBundle("The bundle is larger than the size limit; nothing was applied.")
    recipients_length = 0
    if version >= RECIPIENTS_FORMAT:
        stanza = keys.STANZA_SIZE if version == RECIPIENTS_FORMAT else keys.UNNAMED_STANZA_SIZE
        found = keys.section_length(data, HEADER_SIZE, stanza)
        if found is None:
            if len(data) < HEADER_SIZE + keys.COUNT.size:
                raise BundleTruncated("The bundle is cut short; nothing was applied.")
            raise BundleTampered("The bundle has been altered (its list of recipients is not valid); nothing was applied.")
        recipients_length = found
    sig_at = HEADER_SIZE + recipients_length + ct_len
    if len(data) < sig_at + _SIG_LEN.size:
        raise BundleTruncated("The bundle is cut short; nothing was applied.")
    (sig_len,) = _SIG_LEN.unpack_from(data, sig_at)
    end = sig_at + _SIG_LEN.size + sig_len
    if sig_len > MAX_SIGNATURE_BYTES or len(data) > end:
        # Lengths that do not add up mean a changed byte, not a short copy.
        raise BundleTampered("The bundle has been altered (its lengths do not match); nothing was applied.")
    if len(data) < end:
        raise BundleTruncated("The bundle is cut short; nothing was applied.")
    return BundleHeader(version, sender.hex(), seq, created_ms, kid, nonce, ct_len, recipients_length, sender.hex())


def verify(data: bytes, header: BundleHeader, sender_cert) -> None:
    """Check the signature over header (recipients) and ciphertext against the sender's certificate."""
    sig_at = header.payload_at + header.ciphertext_length
    signature = data[sig_at + _SIG_LEN.size :]
    if not _verify(_public_key(sender_cert), signature, data[:sig_at]):
        raise BundleTampered(
            "The bundle's signature does not match its sender; it was altered, and nothing was applied."
        )


def decrypt(data: bytes, header: BundleHeader, group_key: bytes) -> list[tuple[str, bytes]]:
    """The payload's entries of a format 1 bundle. Call after `verify`."""
    if header.version != GROUP_KEY_FORMAT:
        raise NotForThisDevice("The bundle is encrypted to its recipients, not under a group key; nothing was applied.")
    if header.key_id != key_id(group_key):
        raise WrongSyncGroup(
            "The bundle was encrypted for another sync group (the devices were paired separately); nothing was applied."
        )
    aad = data[:HEADER_SIZE]
    ciphertext = data[HEADER_SIZE : HEADER_SIZE + header.ciphertext_length]
    try:
        compressed = AESGCM(group_key).decrypt(header.nonce, ciphertext, aad)
    except InvalidTag:
        raise BundleTampered("The bundle could not be decrypted; it was altered, and nothing was applied.") from None
    return _unpack_entries(_decompress(compressed))


def decode(data: bytes, *, sender_cert, group_key: bytes) -> Bundle:
    header = read_header(data)
    verify(data, header, sender_cert)
    return Bundle(header, decrypt(data, header, group_key), digest(data))


# --- format 2: a fresh key per bundle, wrapped to each recipient ----------------------


def encode_for(
    entries: list[tuple[str, bytes]],
    *,
    sender_id: str,
    seq: int,
    recipients: dict[str, ed25519.Ed25519PublicKey],
    private_key,
    created_ms: int | None = None,
) -> bytes:
    """A complete signed bundle in format 2, which only `recipients` (device id -> Ed25519
    public key) can read, naming them and the sender by device id: what versions before
    format 3 wrote (the mailbox writes `encode_named`). `private_key` is the sender's, PEM
    bytes or a key object."""
    file_key = keys.new_file_key()
    # format 2 has no group key: its key id field is zero
    return _sealed(entries, RECIPIENTS_FORMAT, sender_id, seq, created_ms, bytes(8), file_key,
                   keys.wrap(file_key, recipients), private_key)


def encode_named(
    entries: Collection[tuple[str, bytes]],
    *,
    pseudonym: str,
    seq: int,
    recipients: dict[str, ed25519.Ed25519PublicKey],
    private_key,
    created_ms: int | None = None,
) -> bytes:
    """A complete signed bundle in format 3: only `recipients` (device id -> Ed25519 public
    key) can read it, and nothing in it names a device. The header holds the sender's
    `pseudonym` (64 hex characters, sync/pseudonyms.py) where format 2 held its id; the
    stanzas name no recipient. `private_key` is the sender's, PEM bytes or a key object."""
    file_key = keys.new_file_key()
    return _sealed(entries, FORMAT_VERSION, pseudonym, seq, created_ms, bytes(8), file_key,
                   keys.wrap_unnamed(file_key, [recipients[d] for d in sorted(recipients)]), private_key)


def recipients(data: bytes, header: BundleHeader) -> list[str]:
    """The device ids a format 2 bundle was written for (none for format 1, and for format
    3, which names nobody: see `recipient_count`)."""
    if header.version != RECIPIENTS_FORMAT:
        return []
    return keys.recipients_of(data[HEADER_SIZE:header.payload_at])


def recipient_count(data: bytes, header: BundleHeader) -> int:
    """How many devices a bundle of format 2 or 3 was written for (0 for format 1)."""
    return keys.unnamed_count(data[HEADER_SIZE:header.payload_at]) if header.version >= RECIPIENTS_FORMAT else 0


def open_payload(data: bytes, header: BundleHeader, *, device_id: str, private_key,
                 group_key: bytes | None = None) -> list[tuple[str, bytes]]:
    """The entries of a verified bundle, for the device `device_id` whose Ed25519 key is
    `private_key` (PEM bytes or a key object); a format 1 bundle opens with `group_key`."""
    if header.version == GROUP_KEY_FORMAT:
        if group_key is None:
            raise WrongSyncGroup("The bundle was encrypted for a sync group this device is not in; nothing was applied.")
        return decrypt(data, header, group_key)
    section = data[HEADER_SIZE:header.payload_at]
    try:
        if header.version == RECIPIENTS_FORMAT:
            file_key = keys.unwrap(section, device_id, _private_key(private_key))
        else:
            file_key = keys.unwrap_unnamed(section, _private_key(private_key))
    except keys.NotARecipient:
        raise NotForThisDevice(
            "The bundle was not written for this device (its writer did not trust this device then); nothing was applied."
        ) from None
    except ValueError:
        raise BundleTampered("The bundle's key for this device could not be opened; it was altered, and nothing was applied.") from None
    ciphertext = data[header.payload_at:header.payload_at + header.ciphertext_length]
    try:
        compressed = AESGCM(file_key).decrypt(header.nonce, ciphertext, data[:header.payload_at])
    except InvalidTag:
        raise BundleTampered("The bundle could not be decrypted; it was altered, and nothing was applied.") from None
    return _unpack_entries(_decompress(compressed))


def decode_for(data: bytes, *, sender_cert, device_id: str, private_key, group_key: bytes | None = None) -> Bundle:
    """`decode` for a recipient: either format, opened with this device's key (or the group key)."""
    header = read_header(data)
    verify(data, header, sender_cert)
    return Bundle(header, open_payload(data, header, device_id=device_id, private_key=private_key,
                                       group_key=group_key), digest(data))
