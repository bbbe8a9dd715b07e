"""Mailbox sync: exchanging record documents through a folder, with no network.

One run (`Mailbox.run`) first merges every other paired device's bundles found in the folder,
then writes one bundle of the documents that changed here since this device's last bundle
(including what it just merged, so a device relays for peers that are not paired with each
other). The format is in sync/bundle.py and docs/mailbox-format.md. A run returns the same
`SyncReport` as a direct sync (sync/report.py), with what it did with the bundles in `bundles`.

Each bundle entry is a whole document (its stored bytes, which `Document.load` restores), not a
list of changes: any bundle can be applied alone, in any order, after any gap, and a merge only
ever adds. Measured on the pinned automerge: a change whose dependencies are missing is held
inside `Document.load` but silently dropped by `merge`, so change-only bundles would need their
own holding area to survive gaps.

Names (sync/pseudonyms.py): a device writes under its pseudonym in the group, never its
device id, and resolves the other devices' pseudonyms through the devices it knows
(`Mailbox.names`, `writer_of`); bundles and marks named by device id (format 2) are still read.

Revocation (docs/security.md): each bundle is encrypted to the devices this device trusts
when it writes it (format 2, sync/recipients.py), so a device revoked before then cannot read
it; a device that gains a recipient gets a full bundle once, since it could not read the earlier
ones. A run reads the device lists of all the new bundles first and honours any revocation in
them before it applies anything else: a revoked sender's bundles are refused, and documents
carrying a revoked device's later changes are refused (named in the report) while the rest
of their bundle is applied.

What this module keeps in the record store's local (never synced) key/value table:
  sync.mailbox.seq.v1               the last sequence number this device wrote (ASCII integer)
  sync.mailbox.exported.v1          JSON {doc_id: [hex heads]} as of this device's last bundle
  sync.mailbox.recipients.v1        JSON [device id] that this device's last bundle was written for
  sync.mailbox.written.v1           JSON {folder: [seq]} of this device's bundles it has not removed itself
  sync.mailbox.seen.v1.<sender id>  JSON {seq: sha256 hex of the bundle file} of imported bundles
  sync.mailbox.partial.v1.<sender id>  JSON {seq: {"digest", "through"}} of bundles a run began
                                    to store in several transactions and did not finish
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from automerge.core import ROOT, Document

from store.automerge_guard import panics_as
from store.replica import ProgressCallback, RecordReplica
from store.device_list import DEVICE_LIST_ID, REVOKE_PREFIX
from store.errors import DocumentOverBudget, NotewellError, RevokedAuthor, VaultError
from store.write_access import translate
from sync import bundle as fmt
from sync import clock as clocks
from sync.pseudonyms import Names
from sync.report import BundleCounts, Rejection, SyncReport

# Named like the other sync keys (sync.peers.v1, sync.group_key.v1).
SEQ_KEY = "sync.mailbox.seq.v1"
EXPORTED_KEY = "sync.mailbox.exported.v1"
RECIPIENTS_KEY = "sync.mailbox.recipients.v1"
# Bundles read for their device list are kept decrypted for the run's second pass, up to this
# many bytes in all (beyond it they are read again: memory stays bounded).
OPENED_CACHE_BYTES = 64 * 1024 * 1024
SEEN_PREFIX = "sync.mailbox.seen.v1."
WRITTEN_KEY = "sync.mailbox.written.v1"
PARTIAL_PREFIX = "sync.mailbox.partial.v1."
# New documents stored per transaction: a large import holds the write lock for a second or
# so at a time, shows progress, and resumes where it stopped.
IMPORT_BATCH = 2000
STALE_TEMP_SECONDS = 3600


class MailboxError(NotewellError):
    title = "Mailbox folder problem"


class BundleOverBudget(fmt.MalformedBundle):
    """A bundle holding a document over the document budget (store/document_budget.py):
    refused whole, like any bundle with a bad entry, and named in the report."""

    reason = "over-budget"


# Kernel and device filesystems: folders there are views of the running system, never a
# place to carry bundles between devices (writes there fail, or create device nodes).
_SYSTEM_TREES = ("/proc", "/sys", "/dev")
_SYSTEM_FSTYPES = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs",
    "pstore", "bpf", "configfs", "fusectl", "mqueue", "hugetlbfs", "autofs", "binfmt_misc", "efivarfs",
})


def _fstype(folder: Path) -> str | None:
    """The filesystem type of the mount holding `folder` (Linux), or None when unknown."""
    try:
        lines = Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    best, fstype = "", None
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right.split():
            continue
        mount = fields[4].replace("\\040", " ")
        inside = str(folder) == mount or str(folder).startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, fstype = mount, right.split()[0]
    return fstype


def check_mailbox_folder(folder: Path) -> Path:
    """The mailbox folder, resolved, when it is a real folder this device can write bundles
    in; MailboxError with one sentence otherwise. Checked before anything is read or written:
    a system folder (/proc, /sys, /dev) is refused, and a test file is written and removed."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise MailboxError(f"The mailbox folder {folder} does not exist or is not a folder.")
    real = folder.resolve()
    if any(real == Path(t) or real.is_relative_to(t) for t in _SYSTEM_TREES) or _fstype(real) in _SYSTEM_FSTYPES:
        raise MailboxError(
            f"The mailbox folder {folder} is part of the system's own filesystems, not a place for bundles; "
            "choose a folder on a disk, USB stick or shared drive."
        )
    probe = real / f".notewell-write-test-{secrets.token_hex(6)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"notewell")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise translate(e) or MailboxError(
            f"The mailbox folder {folder} cannot be written to ({e.strerror}); choose a folder this device can write in."
        ) from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return folder


@dataclass(frozen=True)
class Sender:
    """What the mailbox needs to know about a paired device."""

    device_id: str
    cert_pem: bytes
    revoked: bool = False
    name: str = ""


def _report(folder: Path) -> SyncReport:
    return SyncReport(bundles=BundleCounts(folder=str(folder)))


def _bundles(report: SyncReport, folder: Path) -> BundleCounts:
    # A report handed in without its mailbox part (a caller's own SyncReport) gains one.
    if report.bundles is None:
        report.bundles = BundleCounts(folder=str(folder))
    return report.bundles


def _hex_heads(heads: list[bytes]) -> list[str]:
    return sorted(h.hex() for h in heads)


def is_bundle_name(name: str) -> bool:
    """A name a complete bundle may have. Engines write under temporary names and rename
    (Syncthing `.syncthing.NAME.tmp`, Office-style `~NAME`, ours `.NAME.xxxx.tmp`): those are
    never read, so only whole files are; a whole file is still verified before anything of it
    is applied."""
    return name.endswith(fmt.SUFFIX) and not name.startswith((".", "~"))


def _list(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError as e:
        raise MailboxError(f"Cannot read the mailbox folder {folder}: {e.strerror}.") from None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _ProgressStopped(BaseException):
    """What a progress callback raised while a bundle was stored (the app's cancel, Ctrl-C),
    carried unchanged past the handling that turns a failure into a rejected bundle. A
    BaseException, so the panic guard does not convert it either."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error


class _StoredDocuments:
    """The documents of a bundle being written, read one at a time as the bundle is encoded:
    each as its stored bytes (what `Document.load` restores), never loaded and saved again,
    so a bundle of 50,000 documents never holds 50,000 documents. `heads` collects the heads
    of what was read: what the exported heads record."""

    def __init__(self, store: RecordReplica, doc_ids: list[str], compact: frozenset[str] = frozenset()) -> None:
        self.store = store
        self.doc_ids = doc_ids
        self.compact = compact
        self.heads: dict[str, list[str]] = {}

    def __len__(self) -> int:
        return len(self.doc_ids)

    def __iter__(self):
        for doc_id in self.doc_ids:
            if doc_id in self.compact:
                # Sent before and edited since (the everyday bundle, a few documents): saved
                # compact, since the stored bytes carry every change appended since the last
                # compaction and would make each small edit's bundle several times larger.
                doc = self.store.load_doc(doc_id)
                data, heads = doc.save(), doc.get_heads()
            else:
                data, heads = self.store.stored_doc(doc_id)
            self.heads[doc_id] = _hex_heads(heads)
            yield doc_id, data


class Mailbox:
    """Mailbox sync for one device. Uses the record store from the calling thread only."""

    def __init__(
        self,
        record_store: RecordReplica,
        *,
        device_id: str,
        private_key,
        group_key: bytes,
        lookup_sender: Callable[[str], Sender | None],
        clock: Callable[[], float] = time.time,
        former_group_keys: Iterable[bytes] = (),
        paired_ids: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        self.store = record_store
        self.clock = clock  # this device's clock, against which bundle times are compared
        self.device_id = device_id.lower()
        self.private_key = private_key
        self.group_key = group_key  # reads format 1 bundles only, and keys the pseudonyms (sync/pseudonyms.py)
        self.former_group_keys = [k for k in former_group_keys if k != group_key]
        self.lookup_sender = lookup_sender
        # The devices paired directly (those whose bundles may be applied): what a pseudonym
        # no group key here explains is checked against (`writer_of`).
        self.paired_ids = paired_ids or (lambda: ())
        # name -> (digest, entries) of bundles opened by the first pass of an import
        self._opened: dict[str, tuple[str, list[tuple[str, bytes]]]] = {}
        self._list_merged_from: set[str] = set()  # bundles whose device list the first pass merged
        self._refused_documents: list[str] = []

    # --- names in the folder (sync/pseudonyms.py) ----------------------------------------

    def names(self) -> Names:
        """The pseudonyms of this device and of every device it knows (paired, vouched for,
        revoked), under the group key and those held before: a handful of HMACs."""
        devices = set(self.store.device_trust().devices) | set(self.paired_ids())
        return Names.build(self.device_id, devices, [self.group_key, *self.former_group_keys])

    @property
    def name_prefix(self) -> str:
        """How this device's file names start from now on (its pseudonym's first 16 hex)."""
        return self.names().prefix

    @property
    def own_prefixes(self) -> frozenset[str]:
        """How this device's file names may start: its pseudonym under every group key it has
        held, and its device id's first 16 hex (files written before pseudonyms)."""
        return self.names().own

    def is_own_name(self, name: str, names: Names | None = None) -> bool:
        """Whether a file name (a bundle's, a mark's, a copy's, a temporary one) is named as
        this device's. Not trusted: a file named so is still checked before it counts."""
        prefix, sep, _rest = name.lstrip(".").partition("-")
        return bool(sep) and prefix in (names or self.names()).own

    def writer_of(self, data: bytes, header: fmt.BundleHeader, names: Names | None = None) -> str | None:
        """The device that wrote a bundle or read-mark, by its header: the device id formats 1
        and 2 hold; in format 3, the device its pseudonym stands for. A pseudonym none of the
        group keys this device holds explains (a paired device that joined another group and
        uses that group's key) is checked against each device paired here, not revoked: a
        handful of signature checks, and the one that verifies is the writer. None when no
        device here wrote it."""
        if header.version < fmt.FORMAT_VERSION:
            return header.sender_id
        found = (names or self.names()).resolve(header.named)
        if found is not None:
            return found
        for device_id in sorted(set(self.paired_ids())):
            sender = self.lookup_sender(device_id)
            if sender is None or sender.revoked:
                continue
            try:
                fmt.verify(data, header, sender.cert_pem)
            except fmt.BundleRejected:
                continue
            return device_id
        return None

    def _resolved(self, data: bytes, header: fmt.BundleHeader, names: Names | None = None) -> fmt.BundleHeader:
        """`header` with its sender the device that wrote it; ForeignBundle when none here did."""
        writer = self.writer_of(data, header, names)
        if writer is None:
            raise fmt.ForeignBundle("The bundle comes from a device that is not paired with this one; nothing was applied.")
        return header if writer == header.sender_id else replace(header, sender_id=writer)

    # --- the command ------------------------------------------------------------------

    def run(self, folder: Path, *, full: bool = False, on_progress: ProgressCallback | None = None) -> SyncReport:
        folder = self._check_folder(folder)
        report = _report(folder)
        self.import_folder(folder, report, on_progress=on_progress)
        self.export(folder, report, full=full)
        return report

    # --- import -----------------------------------------------------------------------

    def import_folder(
        self, folder: Path, report: SyncReport | None = None, *, on_progress: ProgressCallback | None = None
    ) -> SyncReport:
        folder = self._check_folder(folder)
        return self.import_paths(folder, _list(folder), report, on_progress=on_progress)

    def import_paths(
        self, folder: Path, paths: list[Path], report: SyncReport | None = None, *,
        on_progress: ProgressCallback | None = None,
    ) -> SyncReport:
        """`import_folder` for some of the folder's files only (those a watcher saw arrive)."""
        report = report or _report(folder)
        candidates = sorted(p for p in paths if is_bundle_name(p.name) and p.is_file())
        # A device's own bundles are recognised by name first, so they are not even read.
        names = self.names()
        others = [p for p in candidates if not self.is_own_name(p.name, names)]
        try:
            self._device_lists_first(others)
            for path in others:
                self.import_file(path, report, on_progress=on_progress)
        finally:
            self._opened, self._list_merged_from = {}, set()
        report.conflicts = self.store.count_conflicts(report.changed_ids)
        for _ms, check in report.clock_checks.values():
            clocks.remember(self.store, check)
        return report

    def _device_lists_first(self, paths: list[Path]) -> None:
        """First pass: the device list of every new bundle from a sender trusted now is merged
        before anything else is applied, so a revocation any of them brings is honoured for
        all of them (docs/security.md). Bad bundles are left to the second pass to name.
        A device list that brings no revocation new here waits for its bundle, which is
        then applied whole as ever."""
        cached = 0
        known_revocations: set[str] = set()
        if self.store.doc_heads_of(DEVICE_LIST_ID):
            ours = self.store.load_doc(DEVICE_LIST_ID)
            known_revocations = {k for k in ours.keys(ROOT) if k.startswith(REVOKE_PREFIX)}
        for path in paths:
            try:
                data = self._read(path)
                header = self._resolved(data, fmt.read_header(data))
                if header.sender_id == self.device_id:
                    continue
                entries = self._open_verified(path.name, data, header)
            except fmt.BundleRejected:
                continue
            if entries is None:
                continue  # applied before
            size = sum(len(blob) for _d, blob in entries)
            if cached + size <= OPENED_CACHE_BYTES:
                self._opened[path.name] = (fmt.digest(data), entries)
                cached += size
            for doc_id, blob in entries:
                if doc_id != DEVICE_LIST_ID:
                    continue
                try:
                    self._check_budget(doc_id, blob)
                    with panics_as(fmt.MalformedBundle("unreadable"), also=(Exception,)):
                        doc = Document.load(blob)
                        revocations = {k for k in doc.keys(ROOT) if k.startswith(REVOKE_PREFIX)}
                    if not revocations - known_revocations:
                        continue  # nothing to honour first: merged with its bundle, whole
                    if self.store.apply_doc(doc_id, doc):
                        self._list_merged_from.add(path.name)
                except VaultError:
                    raise
                except NotewellError:
                    pass  # named when the whole bundle is applied in the second pass

    def _open_verified(self, name: str, data: bytes, header: fmt.BundleHeader) -> list[tuple[str, bytes]] | None:
        """The entries of a bundle from a trusted sender, verified and decrypted; None when this
        exact bundle was applied before. BundleRejected for every reason not to apply it."""
        sender = self.lookup_sender(header.sender_id)
        if sender is None:
            raise fmt.ForeignBundle(
                f"The bundle comes from device {header.sender_id[:16]}, which is not paired with this one; nothing was applied."
            )
        if sender.revoked:
            raise fmt.RevokedSender(
                f"The bundle comes from device {header.sender_id[:16]}, which was revoked; nothing was applied."
            )
        fmt.verify(data, header, sender.cert_pem)
        # The file name is not signed; the header is. A signed bundle under a name that is not its
        # own is a copy presented as something it is not.
        parsed = fmt.parse_file_name(fmt.original_name(name))
        if parsed is None or parsed != (header.named[:16], header.seq):
            raise fmt.ReplayedBundle(
                f"The file's name does not match the sender and sequence number {header.seq} signed inside it "
                "(a renamed or copied bundle); nothing was applied."
            )
        seen = self._seen(header.sender_id)
        this_digest = fmt.digest(data)
        earlier = seen.get(str(header.seq))
        if earlier == this_digest:
            return None
        if earlier is not None:
            raise fmt.ReplayedBundle(
                f"Sequence number {header.seq} of device {header.sender_id[:16]} was already imported with different "
                "contents; nothing was applied."
            )
        opened = self._opened.get(name)
        if opened is not None and opened[0] == this_digest:
            return opened[1]
        return fmt.open_payload(data, header, device_id=self.device_id, private_key=self.private_key,
                                group_key=self.group_key)

    def import_file(self, path: Path, report: SyncReport, *, on_progress: ProgressCallback | None = None) -> None:
        """Apply one bundle file, or record why not. Never raises for a bad bundle.
        `on_progress(done, total)` counts the work on the bundle's documents new to this
        device: each is checked, then stored, so `total` is twice their number; called with
        done 0 first, then as they are checked and after each transaction that stores some."""
        bundles = _bundles(report, path.parent)
        bundles.read += 1
        try:
            data = self._read(path)
            header = self._resolved(data, fmt.read_header(data))
            if header.sender_id == self.device_id:
                bundles.read -= 1  # our own bundle under another name: nothing to learn
                return
            self._refused_documents = []
            outcome = self._import_verified(path.name, data, header, on_progress)
        except fmt.BundleRejected as e:
            bundles.rejected.append(Rejection(path.name, e.reason, e.message))
            return
        finally:
            report.errors.extend(self._refused_documents)  # a revoked device's changes, by document
            self._refused_documents = []
        self._compare_clock(header, report)
        if outcome is None:
            bundles.already_applied += 1
        else:
            changed, concurrent = outcome
            bundles.applied += 1
            report.received += len(changed)
            report.merged += len(concurrent)
            report.changed_ids.update(changed)
            bundles.senders[header.sender_id] = bundles.senders.get(header.sender_id, 0) + len(changed)
            bundles.sender_changed.setdefault(header.sender_id, set()).update(changed)
            bundles.sender_merged[header.sender_id] = bundles.sender_merged.get(header.sender_id, 0) + len(concurrent)

    def _compare_clock(self, header: fmt.BundleHeader, report: SyncReport) -> None:
        """What the (verified, signed) time of a sender's latest bundle says about its clock."""
        sender = self.lookup_sender(header.sender_id)
        name = (sender.name if sender is not None else "") or header.sender_id[:16]
        latest = report.clock_checks.get(header.sender_id)
        if latest is not None and latest[0] > header.created_ms:
            return
        check = clocks.measure_bundle(header.sender_id, name, header.created_ms / 1000, self.clock())
        if check is not None:
            report.clock_checks[header.sender_id] = (header.created_ms, check)
        elif latest is not None:
            del report.clock_checks[header.sender_id]  # a later bundle that says nothing

    def _read(self, path: Path) -> bytes:
        try:
            size = path.stat().st_size
            if size > fmt.MAX_BUNDLE_BYTES:
                raise fmt.MalformedBundle("The bundle is larger than the size limit; nothing was applied.")
            return path.read_bytes()
        except OSError as e:
            raise fmt.MalformedBundle(f"The bundle could not be read ({e.strerror}); nothing was applied.") from None

    def _import_verified(
        self, name: str, data: bytes, header: fmt.BundleHeader, on_progress: ProgressCallback | None = None
    ) -> tuple[list[str], list[str]] | None:
        """(documents changed here, those of them also edited here), or None if this exact
        bundle was applied before."""
        entries = self._open_verified(name, data, header)
        if entries is None:
            return None
        seen = self._seen(header.sender_id)
        this_digest = fmt.digest(data)
        # A run interrupted while storing this bundle (Ctrl-C, a cancel, a crash) committed every
        # entry before `through`: those are not read or applied again.
        partial = self._partial(header.sender_id)
        through = 0
        if str(header.seq) in partial:
            if partial[str(header.seq)].get("digest") != this_digest:
                raise fmt.ReplayedBundle(
                    f"Sequence number {header.seq} of device {header.sender_id[:16]} was partly imported with different "
                    "contents; nothing was applied."
                )
            through = int(partial[str(header.seq)].get("through", 0))
        # Documents this device has are merged; those it has none of (every one, on a new
        # device) are stored whole, in bulk, read on the store's worker processes when it has
        # them. Every entry is read and checked before the first is stored, so a bad entry
        # changes nothing.
        heads_here = self.store.doc_heads()
        fresh: list[tuple[int, str, bytes]] = []  # (position in the bundle, doc id, bytes)
        docs: list[tuple[str, Document]] = []
        for position, (doc_id, blob) in enumerate(entries[through:], start=through):
            if doc_id not in heads_here:
                fresh.append((position, doc_id, blob))
                continue
            self._check_budget(doc_id, blob)  # before it is loaded
            unreadable = fmt.MalformedBundle("A document in the bundle could not be read; nothing was applied.")
            with panics_as(unreadable, also=(Exception,)):
                docs.append((doc_id, Document.load(blob)))
        del entries
        for doc_id, doc in docs:
            if not self.store.is_record_document(doc_id, doc):
                raise fmt.MalformedBundle(
                    f"Document {doc_id} in the bundle is not a record document; nothing was applied."
                )
        # The same heads as ours: the same document, nothing to merge (and nothing to hold).
        docs = [(d, doc) for d, doc in docs if sorted(doc.get_heads()) != sorted(heads_here[d])]
        del heads_here
        changed: list[str] = []
        merged: list[bool] = []  # the merges run once, in the first transaction

        def merge_all() -> None:
            for doc_id, doc in docs:
                try:
                    if self.store.apply_doc(doc_id, doc):
                        changed.append(doc_id)
                except RevokedAuthor as e:  # refused before anything of it was written
                    self._refused_documents.append(e.message)

        def record(stored: int) -> None:
            """Inside each transaction: the merges with the first, then how far the bundle
            is applied; with the last, the bundle's "seen" entry (and no partial one)."""
            if not merged:
                merge_all()
                merged.append(True)
            if stored == len(fresh):
                seen[str(header.seq)] = this_digest
                self.store.local_put(SEEN_PREFIX + header.sender_id, json.dumps(seen, sort_keys=True).encode())
                if partial.pop(str(header.seq), None) is None:
                    return
            else:
                partial[str(header.seq)] = {"digest": this_digest, "through": fresh[stored][0]}
            self.store.local_put(PARTIAL_PREFIX + header.sender_id, json.dumps(partial, sort_keys=True).encode())

        def progress(done: int) -> None:
            # Each new document is checked, then stored: twice as many steps as documents.
            if on_progress is None:
                return
            try:
                on_progress(done, 2 * len(fresh))
            except BaseException as e:  # a cancel or Ctrl-C: past the bundle's own errors, as it is
                raise _ProgressStopped(e) from None

        if fresh:
            # A revoked device's later changes are refused document by document (named in the
            # report); the rest of the bundle is applied (docs/security.md). Other refusals are
            # left to the bulk intake, which refuses the bundle whole.
            kept, revoked = self.store.without_revoked_authors([(doc_id, blob) for _p, doc_id, blob in fresh])
            for _d, e in sorted(revoked.items()):
                if isinstance(e, RevokedAuthor):
                    self._refused_documents.append(e.message)
            if len(kept) != len(fresh):
                keep = {doc_id for doc_id, _b in kept} | {d for d, e in revoked.items() if not isinstance(e, RevokedAuthor)}
                fresh[:] = [f for f in fresh if f[1] in keep]

        transaction = self.store.transaction
        unmergeable = fmt.MalformedBundle("A document in the bundle could not be merged; nothing was applied.")
        try:
            # A panic or other failure inside (after the rollback) refuses the bundle whole:
            # only the first transaction can fail that way (the merges), and it stores
            # nothing unless all of it commits.
            with panics_as(unmergeable, also=(Exception,)):
                if not fresh:
                    with transaction():
                        record(0)
                else:
                    progress(0)
                    applied, refused = self.store.store_new_documents_checked_first(
                        [(doc_id, blob) for _p, doc_id, blob in fresh], batch=IMPORT_BATCH,
                        in_each_transaction=record, on_checked=progress,
                        on_batch=lambda stored: progress(len(fresh) + stored),
                    )
                    over = [e for _d, e in sorted(refused.items()) if isinstance(e, DocumentOverBudget)]
                    if over:
                        raise BundleOverBudget(f"{over[0].message} The bundle was not applied.")
                    if refused:  # nothing was stored
                        raise fmt.MalformedBundle(
                            f"Document {sorted(refused)[0]} in the bundle is not a record document; nothing was applied."
                        )
                    changed += sorted(applied)
        except (fmt.MalformedBundle, VaultError):
            # This vault could not take a bundle (a full disk, another program writing): the
            # run stops with that sentence; the bundle is not at fault and stays unapplied
            # (or, past its first transaction, partly applied: the next run goes on from there).
            raise
        except NotewellError as e:
            raise fmt.MalformedBundle(f"A document in the bundle could not be merged ({e.message}); nothing was applied.") from None
        except _ProgressStopped as stopped:
            raise stopped.error from None
        if name in self._list_merged_from and DEVICE_LIST_ID not in changed:
            changed.append(DEVICE_LIST_ID)  # merged by the first pass, from this bundle
        # A document whose merged heads are not the sender's had edits here the sender lacked.
        concurrent: list[str] = []
        if changed and docs:
            incoming = {doc_id: sorted(doc.get_heads()) for doc_id, doc in docs}
            concurrent = [d for d in changed if d in incoming and sorted(self.store.doc_heads_of(d)) != incoming[d]]
        return changed, concurrent

    def _check_budget(self, doc_id: str, blob: bytes) -> None:
        try:
            self.store.check_document(doc_id, blob)
        except DocumentOverBudget as e:
            raise BundleOverBudget(f"{e.message} The bundle was not applied.") from None
        except NotewellError:
            pass  # not a readable document: said below, as for any unreadable entry

    def _partial(self, sender_id: str) -> dict[str, dict]:
        """{seq: {"digest", "through"}} of this sender's bundles a run began to store and did
        not finish (see `_import_verified`)."""
        raw = self.store.local_get(PARTIAL_PREFIX + sender_id)
        return json.loads(raw) if raw else {}

    def _seen(self, sender_id: str) -> dict[str, str]:
        raw = self.store.local_get(SEEN_PREFIX + sender_id)
        return json.loads(raw) if raw else {}

    # --- export -----------------------------------------------------------------------

    def export(self, folder: Path, report: SyncReport | None = None, *, full: bool = False) -> SyncReport:
        """Write one bundle of what changed since this device's last bundle (all if `full`)."""
        folder = self._check_folder(folder)
        report = report or _report(folder)
        raw = self.store.local_get(EXPORTED_KEY)
        exported: dict[str, list[str]] = json.loads(raw) if raw else {}
        heads = self.store.doc_heads()
        recipients = self._recipients()
        if not recipients:
            return report  # every other device is revoked: nobody to write for
        # A device that was not a recipient of this device's earlier bundles could not read
        # them: this bundle holds everything.
        raw_recipients = self.store.local_get(RECIPIENTS_KEY)
        if raw_recipients is not None and not set(recipients) <= set(json.loads(raw_recipients)):
            full = True
        changed = sorted(d for d, h in heads.items() if full or exported.get(d) != _hex_heads(h))
        if not changed:
            return report
        entries = _StoredDocuments(self.store, changed, frozenset() if full else frozenset(d for d in changed if d in exported))
        self._remove_stale_temp_files(folder)
        seq = self._next_seq(folder, report)
        named = self.names().current
        while True:
            data = fmt.encode_named(
                entries, pseudonym=named, seq=seq, recipients=recipients, private_key=self.private_key
            )
            name = self._write_atomically(folder, named, seq, data)
            if name is not None:
                break
            seq += 1  # another run of this device took the number meanwhile
        # Only once the file is durable: a crash before this line re-exports next time, never skips.
        self.store.local_put(SEQ_KEY, str(seq).encode())
        exported.update(entries.heads)
        self.store.local_put(EXPORTED_KEY, json.dumps(exported, sort_keys=True).encode())
        self.store.local_put(RECIPIENTS_KEY, json.dumps(sorted(recipients)).encode())
        self._remember_written(folder, seq)
        _bundles(report, folder).written = name
        report.sent = len(entries)
        return report

    def _all_written(self) -> dict[str, list[int]]:
        raw = self.store.local_get(WRITTEN_KEY)
        try:
            value = json.loads(raw) if raw else {}
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def written(self, folder: Path) -> list[int]:
        """The sequence numbers of this device's bundles it wrote into `folder` and has not
        removed itself: each should still be there (sync/mailbox_watch.py notices one that is
        not). Kept per folder: a bundle taken to a USB stick is not missing from a cloud folder."""
        return self._all_written().get(str(Path(folder).resolve()), [])

    def _set_written(self, folder: Path, seqs: set[int]) -> None:
        value = self._all_written()
        value[str(Path(folder).resolve())] = sorted(seqs)
        self.store.local_put(WRITTEN_KEY, json.dumps(value, sort_keys=True).encode())

    def _remember_written(self, folder: Path, seq: int) -> None:
        self._set_written(folder, set(self.written(folder)) | {seq})

    def forget_written(self, folder: Path, seqs: set[int]) -> None:
        """These bundles are gone from `folder` and accounted for (collected, or lost and
        their documents written again)."""
        self._set_written(folder, set(self.written(folder)) - seqs)

    def _recipients(self) -> dict:
        """The devices this bundle is written for: the group as this device knows it now
        (paired devices and those vouched for, none revoked), each with its public key."""
        trust = self.store.device_trust()
        return {d: trust.devices[d].public_key for d in sorted(trust.group)
                if d != self.device_id and d in trust.devices}

    def _remove_stale_temp_files(self, folder: Path) -> None:
        """Half-written bundles of this device left by a crash (an hour old: not a run in progress)."""
        names = self.names()
        cutoff = time.time() - STALE_TEMP_SECONDS
        for p in _list(folder):
            if p.name.startswith(".") and p.name.endswith(".tmp") and self.is_own_name(p.name, names):
                try:
                    if p.stat().st_mtime < cutoff:
                        p.unlink()
                except OSError:
                    pass

    def _next_seq(self, folder: Path, report: SyncReport) -> int:
        raw = self.store.local_get(SEQ_KEY)
        last = int(raw) if raw else 0
        # Our own bundles already in the folder count too: a device restored from an old backup
        # must not reuse a sequence number its peers have seen. A file name is not signed, so
        # a higher number counts only when the file is a bundle this device signed with it;
        # any other file named like ours is skipped and named in the report.
        names = self.names()
        for p in sorted(_list(folder)):
            if not (p.name.endswith(fmt.SUFFIX) and not p.name.startswith(".") and self.is_own_name(p.name, names)):
                continue
            parsed = fmt.parse_file_name(p.name)
            if parsed is not None and parsed[1] <= last:
                continue  # no higher than the number this device knows it wrote
            if parsed is not None and self._own_bundle_numbered(p, parsed[1]):
                last = parsed[1]
            else:
                _bundles(report, folder).skipped.append(Rejection(p.name, "stray", (
                    "The file is named as one of this device's bundles but is not one; it was left as it is "
                    "and its number ignored."
                )))
        if last >= fmt.MAX_SEQ:
            raise MailboxError("This device has used every bundle number; start a new mailbox folder.")
        return last + 1

    def _own_bundle_numbered(self, path: Path, seq: int) -> bool:
        """Whether `path` is a whole bundle this device signed with sequence number `seq`."""
        try:
            data = self._read(path)
            header = fmt.read_header(data)
            if self.writer_of(data, header) != self.device_id or header.seq != seq:
                return False
            fmt.verify(data, header, fmt.public_key_of(self.private_key))
        except fmt.BundleRejected:
            return False
        return True

    def own_bundles(self, listing: Iterable[Path]) -> dict[int, Path]:
        """This device's bundles in a folder listing, by sequence number, under any name it
        has written them under (not engines' copies; not yet checked to be its own)."""
        names = self.names()
        found: dict[int, Path] = {}
        for p in listing:
            parsed = fmt.parse_file_name(p.name)
            if parsed is not None and parsed[0] in names.own and not p.name.startswith((".", "~")):
                found[parsed[1]] = p
        return found

    def _write_atomically(self, folder: Path, named: str, seq: int, data: bytes) -> str | None:
        """Temp file, fsync, then link into place. None if the name is already taken."""
        name = fmt.file_name(named, seq)
        target = folder / name
        # A leading dot and no .nwb suffix: readers never pick up a half-written file.
        tmp = folder / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            with open(tmp, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            try:
                # link() refuses to replace: an existing bundle is never overwritten.
                os.link(tmp, target)
            except FileExistsError:
                return None
            except OSError:
                # File systems without hard links (FAT on a USB stick).
                if target.exists():
                    return None
                os.replace(tmp, target)
            _fsync_dir(folder)
            return name
        except OSError as e:
            raise translate(e) or MailboxError(f"Cannot write a bundle into {folder}: {e.strerror}.") from None
        finally:
            try:
                tmp.unlink()
            except OSError:
                pass

    # --- helpers ----------------------------------------------------------------------

    @staticmethod
    def _check_folder(folder: Path) -> Path:
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise MailboxError(f"The mailbox folder {folder} does not exist or is not a folder.")
        return folder


# --- wiring for the command line and the app -------------------------------------------


def sync_mailbox(
    record_store,
    identity,
    folder: Path,
    *,
    full: bool = False,
    on_progress: ProgressCallback | None = None,
    after_run: Callable[[Mailbox, Path, SyncReport], None] | None = None,
) -> SyncReport:
    """`notewell sync mailbox DIR`: merge the paired devices' bundles in DIR, then write ours;
    then `after_run` (collection: `sync.mailbox_collect.collecting`).

    `identity` is this device's `store.device_identity.DeviceIdentity`. Senders are looked up in
    the paired-device list (revoked devices are refused); applied senders get a last-sync entry.
    """
    folder = Mailbox._check_folder(folder)
    mailbox = mailbox_for(record_store, identity)
    report = mailbox.run(folder, full=full, on_progress=on_progress)
    if after_run is not None:
        after_run(mailbox, folder, report)
    record_senders(record_store, report, folder)
    return report


def mailbox_for(record_store, identity) -> Mailbox:
    """This device's `Mailbox`, its senders looked up in the paired-device list."""
    from sync.peers import PeerBook, former_group_keys, group_key

    key = group_key(record_store)
    if key is None:
        raise MailboxError("This device is not paired with any other device yet; pair it first, then use the mailbox.")
    book = PeerBook(record_store)
    # As a direct sync does at its start (sync/protocol.py): this device's vouches into a
    # device list an earlier sync brought, so the bundle written below carries them.
    record_store.share_vouches()

    def lookup(device_id: str) -> Sender | None:
        peer = book.get(device_id)
        if peer is None:
            return None
        return Sender(peer.device_id, peer.cert_pem.encode("ascii"), peer.revoked, peer.name)

    return Mailbox(
        record_store,
        device_id=identity.device_id,
        private_key=identity.key_pem.encode("ascii"),
        group_key=key,
        lookup_sender=lookup,
        former_group_keys=former_group_keys(record_store),
        paired_ids=lambda: [p.device_id for p in book.all()],
    )


def record_senders(record_store, report: SyncReport, folder: Path) -> None:
    """Each sender whose bundles a run applied gets its last-sync entry in the device list."""
    from sync.peers import PeerBook

    book = PeerBook(record_store)
    bundles = _bundles(report, folder)
    for device_id, received in sorted(bundles.senders.items()):
        # Each sender's own counts: what its bundles brought and merged here, the conflicts
        # among those, and what this run wrote (the bundle is for every trusted device, it too);
        # summarised in the words the command line prints and the app shows (SyncReport.summary).
        own = SyncReport(
            received=received,
            sent=report.sent,
            merged=bundles.sender_merged.get(device_id, 0),
            conflicts=record_store.count_conflicts(bundles.sender_changed.get(device_id, set())),
        )
        book.record_sync(
            device_id, ok=True, summary=own.summary(), transport="mailbox",
            received=own.received, sent=own.sent, merged=own.merged, conflicts=own.conflicts,
        )
