"""What a sync reports back: one type for both transports, and its one summary.

`SyncReport` is what `sync.direct` (sync now, serve, live) and `sync.mailbox` return. It
counts documents and carries the ids of the documents the sync changed here, never their
content, so it is safe to print or log. A mailbox run adds what it did with the folder's
bundles (`report.bundles`). `report.summary()` is the one text of it, used by the command
line (`sync now`, `sync serve`, `sync mailbox`), the app and the paired-device list.

`ProgressCallback(done, total)` is called from the thread doing the sync; the app hands it to
`call_from_thread` before it touches a widget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from store.replica import ProgressCallback  # one definition, re-exported for sync's callers


@dataclass(frozen=True)
class Rejection:
    """A bundle the mailbox refused: it changed nothing."""

    file: str
    reason: str  # a BundleRejected.reason: truncated, tampered, foreign, revoked, replayed, ...
    message: str  # one sentence for the clinician


@dataclass
class BundleCounts:
    """What a mailbox run did with the folder's bundles."""

    folder: str
    read: int = 0  # other devices' bundles examined this run
    applied: int = 0
    already_applied: int = 0  # read before, skipped
    rejected: list[Rejection] = field(default_factory=list)  # skipped, each with why
    written: str | None = None  # the file name of this device's bundle, when one was written
    senders: dict[str, int] = field(default_factory=dict)  # device id -> documents received from it
    # Device id -> the ids its bundles changed here, and how many of them were merged with
    # edits made here (for each sender's own sync entry: its counts, not the run's).
    sender_changed: dict[str, set[str]] = field(default_factory=dict, repr=False)
    sender_merged: dict[str, int] = field(default_factory=dict)
    # Files named as this device's bundles that are not (another program's, or planted): the
    # next sequence number ignores them; each is named, never fatal.
    skipped: list[Rejection] = field(default_factory=list)
    # Collection (sync/mailbox_collect.py): this device's bundles it removed, every device
    # having read them, and a starting bundle it wrote for a device that came later.
    removed: list[str] = field(default_factory=list)
    started: str | None = None


@dataclass
class SyncReport:
    received: int = 0  # documents changed here by what the other side had
    sent: int = 0  # documents the other side changed with what we had (mailbox: written to the bundle)
    merged: int = 0  # of those received, documents edited on both sides since they last met (now merged)
    conflicts: int = 0  # signature conflicts among the documents this sync changed
    errors: list[str] = field(default_factory=list)  # user-facing sentences, no note text
    peer_id: str = ""  # direct: the other device
    peer_name: str = ""
    # Ids of the documents this sync changed here (ids only, never content): the app reloads just those.
    changed_ids: set[str] = field(default_factory=set, repr=False)
    # In a live sync: those changed since whoever watches the session last took them (`take_live_changes`).
    live_changed: set[str] = field(default_factory=set, repr=False)
    clock: Any = None  # direct: sync.clock.ClockCheck, this device's clock against the peer's, when measured
    # Mailbox: sender id -> (its latest bundle's time in ms, what that time says about its clock).
    clock_checks: dict[str, tuple[int, Any]] = field(default_factory=dict, repr=False)
    bundles: BundleCounts | None = None  # a mailbox run's bundles; None for a direct sync

    def take_live_changes(self) -> frozenset[str]:
        """The ids a live sync changed here since the last call (call it from the thread
        that runs the session, e.g. in `on_exchange`)."""
        taken = frozenset(self.live_changed)
        self.live_changed.clear()
        return taken

    @property
    def ok(self) -> bool:
        """Nothing went wrong: no error, and no bundle rejected."""
        return not self.errors and not (self.bundles is not None and self.bundles.rejected)

    @property
    def peer(self) -> str:
        """The other device as a clinician knows it (its name, else the start of its id)."""
        return self.peer_name or self.peer_id[:16]

    @property
    def clock_skews(self) -> list[Any]:
        """The devices whose clocks disagree with this one's, as this sync measured them
        (sync.clock.ClockCheck): the peer's, or the senders' of the bundles read."""
        checks = [self.clock] if self.clock is not None else []
        checks += [check for _ms, check in self.clock_checks.values()]
        return [check for check in checks if check.skewed]

    def summary(self) -> str:
        """The one text of a sync, for the clinician, from either transport: the counts on the
        first line (all of a direct sync's, which the paired-device list keeps), then for a
        mailbox run what it did with the bundles and one line per bundle it rejected and why.
        Counts, file names and error sentences only, never note text."""
        first = f"received {self.received}, sent {self.sent}, merged {self.merged}, conflicts {self.conflicts}"
        if self.conflicts:
            first += " (marked on the notes, for you to resolve)"
        if self.errors:
            first += "; " + " ".join(self.errors)
        lines = [first]
        b = self.bundles
        if b is not None:
            wrote = (
                f"wrote {b.written} ({self.sent} document{'' if self.sent == 1 else 's'})" if b.written
                else "wrote none (nothing changed since this device's last bundle)"
            )
            lines.append(
                f"bundles: read {b.read} (applied {b.applied}, already applied {b.already_applied}, "
                f"rejected {len(b.rejected)}); {wrote}"
            )
            lines += [f"rejected {r.file} ({r.reason}): {r.message}" for r in b.rejected]
            lines += [f"skipped {r.file}: {r.message}" for r in b.skipped]
            if b.removed:
                lines.append(f"removed {len(b.removed)} of this device's bundles that every device has read")
            if b.started:
                lines.append(f"wrote the starting bundle {b.started} for a device that has not read removed bundles")
        return "\n".join(lines)
