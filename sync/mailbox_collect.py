"""Collection: keeping the mailbox folder's size bounded as the record grows.

Each device writes, into the folder, a **read-mark**: which bundles of every other device it
has read (the sequence numbers in its `sync.mailbox.seen.v1.<sender>` entries, as ranges).
A read-mark has the bundle envelope (sync/bundle.py: signed by its device, its payload
encrypted to the devices it trusts) with one entry, `read-marks`, holding JSON; it is named
`<first 16 hex of the device's pseudonym>-read.nwm` (sync/pseudonyms.py; earlier versions
used the device id, and such marks are still read), which readers of bundles (`*.nwb`) never
pick up. Each device replaces its own (and removes its marks under older names); a conflict
copy or an older copy is read too, and the one with the highest signed number counts.

Only the writer of a bundle removes it, and only when

- every device it trusts now (revoked ones excluded: `DeviceTrust.group`) has a read-mark,
  signed by that device's key, that covers the bundle: names its number, or names a later
  bundle of this writer that held every document (a **starting bundle**, which brings
  everything the earlier ones did); and
- that has been so for the grace period (`grace_seconds`, 7 days unless set), counted on this
  device's clock from the round that first found it so. A device that stops covering it
  (a new device trusted since) starts the count again.

Read-marks come from a folder anyone may write in, so each is checked: at most
`MAX_MARK_BYTES`, signed by a device trusted now (a forged, foreign or revoked device's mark
is ignored), opened with this device's key, its JSON bounded (`MAX_RANGES` per sender). A
mark can only ever hold removal back: an ignored, stale or missing mark leaves bundles where
they are.

A device trusted after some of this writer's bundles were removed (a new computer, or one
restored from an old backup) has no mark covering them: the writer then writes a starting
bundle, every document as stored, once (until that device has read it). `collect()` runs
after each one-shot `sync mailbox DIR` and each round of the watcher; an idle round costs a
listing and the look at read-marks whose size or time changed. A mark arriving does not wake
the watcher by itself: its next round (a full look at most every `RESCAN_EVERY`) reads it.

What it keeps in the record store's local (never synced) table:
  sync.mailbox.collect.v1    JSON {folder: {"since": {seq: time all devices were found to
                             have read it}, "removed": [[from, to]], "full": [seq of bundles
                             that held every document], "mark": sha256 of the last mark written}}
  sync.mailbox.mark_seq.v1   the last number this device signed a read-mark with
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sync import bundle as fmt
from sync.mailbox import SEEN_PREFIX, Mailbox, MailboxError, _fsync_dir, _list
from sync.report import BundleCounts, SyncReport

MARK_SUFFIX = ".nwm"
MARK_ENTRY = "read-marks"
MAX_MARK_BYTES = 1024 * 1024
MAX_RANGES = 4096  # per sender, in a mark read or written (a written one keeps its first ones)
MAX_FULL_KEPT = 64
DEFAULT_GRACE_SECONDS = 7 * 24 * 3600.0
STATE_KEY = "sync.mailbox.collect.v1"
MARK_SEQ_KEY = "sync.mailbox.mark_seq.v1"
_MARK_NAME = re.compile(r"^([0-9a-f]{16})-read\.nwm$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def mark_name(named: str) -> str:
    """A read-mark's name: the first 16 hex characters of the device's pseudonym
    (`Mailbox.name_prefix`), or, for marks earlier versions wrote, of its device id."""
    return f"{named[:16]}-read{MARK_SUFFIX}"


def mark_original_name(name: str) -> str | None:
    """The read-mark name an engine's conflict copy or duplicate was made from (or the name
    itself); None when it is no read-mark's name. Temporary names are never read."""
    if not name.endswith(MARK_SUFFIX) or name.startswith((".", "~")):
        return None
    # The engines' copy names are the bundles' (bundle.original_name), with this suffix.
    original = fmt.original_name(name[: -len(MARK_SUFFIX)] + fmt.SUFFIX)[: -len(fmt.SUFFIX)] + MARK_SUFFIX
    return original if _MARK_NAME.match(original) else None


# --- ranges of sequence numbers ------------------------------------------------------


def to_ranges(numbers: Iterable[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for n in sorted(set(numbers)):
        if out and out[-1][1] + 1 == n:
            out[-1][1] = n
        else:
            out.append([n, n])
    return out


def _in_ranges(n: int, ranges: list[list[int]]) -> bool:
    return any(lo <= n <= hi for lo, hi in ranges)


def _range_in(lo: int, hi: int, ranges: list[list[int]]) -> bool:
    """Whether every number from `lo` to `hi` is in `ranges` (merged: see `_merge`)."""
    return any(a <= lo and hi <= b for a, b in ranges)


def _checked_ranges(value) -> list[list[int]] | None:
    """Ranges from untrusted JSON, or None when they are not well-formed and bounded."""
    if not isinstance(value, list) or len(value) > MAX_RANGES:
        return None
    out = []
    for item in value:
        if (not isinstance(item, list) or len(item) != 2 or not all(type(x) is int for x in item)
                or not 1 <= item[0] <= item[1] <= fmt.MAX_SEQ):
            return None
        out.append([item[0], item[1]])
    return out


# --- read-marks --------------------------------------------------------------------


@dataclass
class Marks:
    """The read-marks found in a folder: per device, its mark's signed number and, per
    sender (full device id), the ranges of that sender's bundles it has read."""

    read: dict[str, dict[str, list[list[int]]]] = field(default_factory=dict)
    numbers: dict[str, int] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)  # file names of marks not counted


def parse_mark(data: bytes, *, expected_prefix: str, trust, mailbox: Mailbox) -> tuple[str, int, dict]:
    """(device id, signed number, {sender: ranges}) of one read-mark; BundleRejected or
    ValueError when it does not count."""
    header = fmt.read_header(data)
    device_id, private_key = mailbox.device_id, mailbox.private_key
    if header.named[:16] != expected_prefix:
        raise ValueError("named for another device")
    sender = mailbox.writer_of(data, header)
    if sender is None or sender == device_id:
        raise ValueError("not another device of the group")
    if sender not in trust.group or sender in trust.revoked:
        raise ValueError("not a trusted device")
    key = trust.public_key(sender)
    if key is None:
        raise ValueError("no key")
    fmt.verify(data, header, key)
    entries = fmt.open_payload(data, header, device_id=device_id, private_key=private_key)
    if len(entries) != 1 or entries[0][0] != MARK_ENTRY:
        raise ValueError("not a read-mark")
    body = json.loads(entries[0][1].decode("utf-8"))
    read = body.get("read") if isinstance(body, dict) else None
    if not isinstance(read, dict) or len(read) > 256:
        raise ValueError("not a read-mark")
    out: dict[str, list[list[int]]] = {}
    for other, ranges in read.items():
        checked = _checked_ranges(ranges)
        if not isinstance(other, str) or not _HEX64.match(other) or checked is None:
            raise ValueError("not a read-mark")
        out[other] = _merge(checked, set())
    return sender, header.seq, out


class Collector:
    """Read-marks and collection for one device in one folder. Keeps what it has read of
    each mark file (by size and time) between calls, so a watcher's idle round is cheap."""

    def __init__(
        self,
        mailbox: Mailbox,
        folder: Path,
        *,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.mailbox = mailbox
        self.store = mailbox.store
        self.folder = Path(folder)
        self.grace = grace_seconds
        self.clock = clock
        self.me = mailbox.device_id
        # name -> ((size, mtime_ns), parsed mark or None when it does not count)
        self._marks: dict[str, tuple[tuple[int, int], tuple[str, int, dict] | None]] = {}
        self._group: frozenset[str] = frozenset()

    # --- the round --------------------------------------------------------------------

    def collect(self, report: SyncReport | None = None) -> list[str]:
        """Write this device's read-mark if it changed, then remove this device's bundles
        every trusted device has read for the grace period, and write a starting bundle for
        a device that has not read bundles already removed. The names removed."""
        listing = _list(self.folder)
        self._note_full_export(report)
        self.write_mark(listing)
        marks = self.read_marks(listing)
        removed = self._remove_read(listing, marks)
        started = self._start_late_devices(marks)
        if report is not None and report.bundles is not None:
            report.bundles.removed += removed
            report.bundles.started = started
        return removed

    # --- this device's read-mark --------------------------------------------------------

    def _read_by_me(self, trust) -> dict[str, list[list[int]]]:
        read = {}
        for sender in sorted(trust.devices):
            if sender == self.me:
                continue
            raw = self.store.local_get(SEEN_PREFIX + sender)
            try:
                seqs = [int(s) for s in json.loads(raw)] if raw else []
            except (ValueError, TypeError):
                seqs = []
            if seqs:
                read[sender] = to_ranges(seqs)[:MAX_RANGES]  # fewer says less: never more
        return read

    def write_mark(self, listing: list[Path] | None = None) -> str | None:
        """Replace this device's read-mark when what it has read changed (or the file is gone)."""
        listing = _list(self.folder) if listing is None else listing
        trust = self.store.device_trust()
        recipients = self.mailbox._recipients()
        if not recipients:
            return None
        payload = json.dumps({"read": self._read_by_me(trust)}, sort_keys=True, separators=(",", ":")).encode()
        digest = hashlib.sha256(payload + json.dumps(sorted(recipients)).encode()).hexdigest()
        state = self._state()
        names = self.mailbox.names()
        name = mark_name(names.prefix)
        target = self.folder / name
        # Copies an engine made of this device's mark, and its marks under names it used
        # before (its device id, a former group key's pseudonym): replaced by this one.
        own_copies = [p for p in listing if p.name != name and self._own_mark(p.name, names)]
        if state.get("mark") == digest and target.exists() and not own_copies:
            return None
        seq = self._next_mark_seq(listing)
        data = fmt.encode_named([(MARK_ENTRY, payload)], pseudonym=names.current, seq=seq, recipients=recipients,
                                private_key=self.mailbox.private_key)
        tmp = self.folder / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            with open(tmp, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)  # this device's own mark: replaced whole, never half-written
            _fsync_dir(self.folder)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise MailboxError(f"Cannot write this device's read-mark into {self.folder}: {e.strerror}.") from None
        self.store.local_put(MARK_SEQ_KEY, str(seq).encode())
        # Its copies and its marks under older names say less than the one just written.
        for p in own_copies:
            with contextlib.suppress(OSError):
                p.unlink()
        state = self._state()
        state["mark"] = digest
        self._save_state(state)
        return name

    def _next_mark_seq(self, listing: list[Path]) -> int:
        """One more than any this device signed, here or in the folder (a device restored from
        an old backup must not write a mark older than one it wrote before)."""
        raw = self.store.local_get(MARK_SEQ_KEY)
        last = int(raw) if raw and raw.isdigit() else 0
        public = fmt.public_key_of(self.mailbox.private_key)
        names = self.mailbox.names()
        for p in listing:
            if not self._own_mark(p.name, names):
                continue
            with contextlib.suppress(fmt.BundleRejected, OSError):
                if p.stat().st_size > MAX_MARK_BYTES:
                    continue
                data = p.read_bytes()
                header = fmt.read_header(data)
                if self.mailbox.writer_of(data, header, names) == self.me:
                    fmt.verify(data, header, public)
                    last = max(last, header.seq)
        return min(last + 1, fmt.MAX_SEQ)

    @staticmethod
    def _own_mark(name: str, names) -> bool:
        """Whether `name` is named as one of this device's read-marks (or a copy of one),
        under any name it has used."""
        original = mark_original_name(name)
        return original is not None and original[:16] in names.own

    # --- the other devices' read-marks -------------------------------------------------

    def read_marks(self, listing: list[Path] | None = None) -> Marks:
        """The read-marks that count: per trusted device, its mark with the highest number."""
        listing = _list(self.folder) if listing is None else listing
        trust = self.store.device_trust()
        if trust.group != self._group:  # a mark refused from a device not trusted then is read again
            self._marks, self._group = {}, trust.group
        marks = Marks()
        present = set()
        names = self.mailbox.names()
        for path in sorted(listing):
            original = mark_original_name(path.name)
            if original is None or self._own_mark(path.name, names):
                continue
            present.add(path.name)
            try:
                st = path.stat()
            except OSError:
                continue
            stat = (st.st_size, st.st_mtime_ns)
            cached = self._marks.get(path.name)
            if cached is None or cached[0] != stat:
                parsed = None
                if st.st_size <= MAX_MARK_BYTES:
                    try:
                        parsed = parse_mark(path.read_bytes(), expected_prefix=original[:16], trust=trust,
                                            mailbox=self.mailbox)
                    except (fmt.BundleRejected, ValueError, OSError, RecursionError):  # deep JSON too
                        parsed = None
                cached = self._marks[path.name] = (stat, parsed)
            parsed = cached[1]
            # Trust is looked at again each time: a device revoked since its mark was read.
            if parsed is None or parsed[0] not in trust.group or parsed[0] in trust.revoked:
                marks.ignored.append(path.name)
                continue
            device, number, read = parsed
            if number > marks.numbers.get(device, 0):
                marks.numbers[device] = number
                marks.read[device] = read
        for name in set(self._marks) - present:
            del self._marks[name]
        return marks

    # --- removal -----------------------------------------------------------------------

    def _waiting_for(self) -> list[str]:
        trust = self.store.device_trust()
        return sorted(d for d in trust.group if d != self.me and d not in trust.revoked)

    def _covers(self, read: dict[str, list[list[int]]] | None, seq: int, full: list[int]) -> bool:
        """Whether a device's mark says it has what this device's bundle `seq` carried."""
        mine = (read or {}).get(self.me)
        if not mine:
            return False
        return _in_ranges(seq, mine) or any(f >= seq and _in_ranges(f, mine) for f in full)

    def _remove_read(self, listing: list[Path], marks: Marks) -> list[str]:
        devices = self._waiting_for()
        if not devices:
            return []  # nobody to have read them: nothing is known to be read
        state = self._state()
        since: dict[str, float] = state.setdefault("since", {})
        full = state.setdefault("full", [])
        now = self.clock()
        removable = []
        written = self.mailbox.written(self.folder)
        for seq in written:
            if all(self._covers(marks.read.get(d), seq, full) for d in devices):
                first = since.setdefault(str(seq), now)
                if now - first >= self.grace:
                    removable.append(seq)
            else:
                since.pop(str(seq), None)
        for key in list(since):
            if int(key) not in written:
                del since[key]
        removed_names, removed = [], set()
        own_files = self.mailbox.own_bundles(listing)  # under whichever name it was written
        for seq in removable:
            path = own_files.get(seq, self.folder / fmt.file_name(self.mailbox.name_prefix, seq))
            # A file named as this device's bundle that it did not sign is not its to remove.
            if path.exists() and not self.mailbox._own_bundle_numbered(path, seq):
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            removed.add(seq)
            removed_names.append(path.name)
            since.pop(str(seq), None)
        removed_ranges = state.setdefault("removed", [])
        if removed:
            state["removed"] = _merge(removed_ranges, removed)
        # Engines' copies of bundles removed here: the same bytes, read by every device.
        own = self.mailbox.own_prefixes
        for p in listing:
            if not p.name.endswith(fmt.SUFFIX):
                continue
            original = fmt.original_name(p.name)
            parsed = fmt.parse_file_name(original)
            if (original != p.name and parsed is not None and parsed[0] in own
                    and _in_ranges(parsed[1], state["removed"]) and self.mailbox._own_bundle_numbered(p, parsed[1])):
                with contextlib.suppress(OSError):
                    p.unlink()  # a copy: not counted as a bundle removed
        self._save_state(state)
        if removed:
            self.mailbox.forget_written(self.folder, removed)
        return removed_names

    # --- devices that came later ---------------------------------------------------------

    def _note_full_export(self, report: SyncReport | None) -> None:
        """A bundle this round wrote that held every document is a starting bundle: whoever
        reads it has everything this device's earlier bundles carried."""
        if report is None or report.bundles is None or not report.bundles.written:
            return
        parsed = fmt.parse_file_name(report.bundles.written)
        if parsed is None or report.sent < len(self.store.doc_heads()):
            return
        state = self._state()
        state["full"] = sorted(set(state.get("full", [])) | {parsed[1]})[-MAX_FULL_KEPT:]
        # whom it was written for: a device trusted later cannot read it
        state["full_for"] = {str(parsed[1]): sorted(self.mailbox._recipients())}
        self._save_state(state)

    def _start_late_devices(self, marks: Marks) -> str | None:
        state = self._state()
        removed = state.get("removed") or []
        full = state.get("full", [])
        if not removed:
            return None
        written = set(self.mailbox.written(self.folder))
        late = []
        for device in self._waiting_for():
            mine = (marks.read.get(device) or {}).get(self.me) or []
            if all(_range_in(lo, hi, mine) or any(f >= hi and _in_ranges(f, mine) for f in full) for lo, hi in removed):
                continue
            # A starting bundle still in the folder that this device has not read yet: it is
            # on its way; no second one.
            if any(int(f) in written and device in ids for f, ids in state.get("full_for", {}).items()):
                continue
            late.append(device)
        if not late:
            return None
        # Its own report: the round's says what the round's bundle held.
        report = SyncReport(bundles=BundleCounts(folder=str(self.folder)))
        self.mailbox.export(self.folder, report, full=True)
        self._note_full_export(report)
        return report.bundles.written

    # --- state -------------------------------------------------------------------------

    def _all_state(self) -> dict:
        raw = self.store.local_get(STATE_KEY)
        try:
            value = json.loads(raw) if raw else {}
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def _state(self) -> dict:
        value = self._all_state().get(str(self.folder.resolve()))
        return value if isinstance(value, dict) else {}

    def _save_state(self, state: dict) -> None:
        value = self._all_state()
        value[str(self.folder.resolve())] = state
        self.store.local_put(STATE_KEY, json.dumps(value, sort_keys=True).encode())


def collecting(grace_seconds: float | None = None) -> Callable[[Mailbox, Path, SyncReport], None]:
    """`sync_mailbox(..., after_run=collecting(grace))`: a one-shot run ends with collection."""
    def collect(mailbox: Mailbox, folder: Path, report: SyncReport) -> None:
        grace = DEFAULT_GRACE_SECONDS if grace_seconds is None else grace_seconds
        Collector(mailbox, folder, grace_seconds=grace).collect(report)
    return collect


def _merge(ranges: list[list[int]], numbers: set[int]) -> list[list[int]]:
    """`ranges` with `numbers` added, without expanding large ranges."""
    out = sorted([list(r) for r in ranges] + [[n, n] for n in numbers])
    merged: list[list[int]] = []
    for lo, hi in out:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return merged
