"""The continuous mailbox: a folder carried by Syncthing or a cloud drive, watched.

`MailboxWatcher.run()` stays in the mailbox folder until its stop event is set. It brings in
other devices' bundles as they appear and writes this device's bundle within seconds of each
save (docs/sync-across-networks.md). Bundles, their checks and what the store keeps are
sync/mailbox.py's; this module decides only *when* to read and write.

- The folder: file-system notifications (watchfiles) where the platform has them, else a poll
  of the listing every `POLL_EVERY` seconds; and in both a full look every `RESCAN_EVERY`
  seconds, since notifications are lost on network and FUSE folders. A file is read again only
  when its size or time changed since it was last read: an idle folder costs a listing.
- This device's saves: the record's change marker (`PRAGMA data_version`, a few microseconds)
  is looked at every `TICK` seconds; a bundle is written once saves have paused for
  `QUIET` seconds, or `AT_MOST` seconds after the first unsent one while typing goes on.
- Engines' debris: temporary names are never read (`mailbox.is_bundle_name`); a file still
  being written under its final name is read, found truncated and read again when it
  changes (it is named to the clinician only if it stays truncated for `TRUNCATED_GRACE`);
  conflict copies are bundles checked under their original name (`bundle.original_name`),
  so a copy is "already applied"; a bundle that vanishes before it is read is not an error.
- One of this device's own bundles gone from the folder before every device could read it
  (an engine or a person deleted it): the next bundle carries every document, so nothing
  the lost one held is lost.
- No error stops the watch: each round that fails is told (`on_round(None, error)`) and
  tried again after a pause that doubles up to `BACKOFF_MAX`; what it had not done is done
  by the next round that succeeds.

The store connection is used from the thread that calls `run()` only.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from store.errors import NotewellError
from sync import bundle as fmt
from sync.mailbox import Mailbox, MailboxError, _list, is_bundle_name
from sync.report import BundleCounts, SyncReport

TICK = 0.5  # seconds between looks at the record's change marker
QUIET = 1.0  # saves paused this long: write the bundle
AT_MOST = 5.0  # ...or this long after the first save not yet written, whatever happens
POLL_EVERY = 2.0  # listing the folder, without notifications
RESCAN_EVERY = 30.0  # listing the folder, with notifications too
DEBOUNCE_MS = 300  # notifications arriving together are one look at the folder
TRUNCATED_GRACE = 120.0  # a truncated file this old is no longer taken for one being written
BACKOFF_MAX = 60.0

# Device-local (never synced) keys: when the folder last brought something in and when this
# device last wrote a bundle there (seconds since the epoch, ASCII), for the Devices screen.
LAST_IN_KEY = "sync.mailbox.last_in.v1"
LAST_OUT_KEY = "sync.mailbox.last_out.v1"
# The app's mailbox folder, set once on the Devices screen: JSON {"folder": path, "watch": bool}.
FOLDER_KEY = "sync.mailbox.folder.v1"

RoundCallback = Callable[[SyncReport | None, NotewellError | None], None]


def last_activity(record_store) -> tuple[float | None, float | None]:
    """(last brought in, last sent out) through the mailbox, seconds since the epoch."""
    def read(key: str) -> float | None:
        raw = record_store.local_get(key)
        try:
            return float(raw) if raw else None
        except ValueError:
            return None
    return read(LAST_IN_KEY), read(LAST_OUT_KEY)


def remembered_folder(record_store) -> tuple[str | None, bool]:
    """(the mailbox folder this device remembers, whether it is watched while the app runs)."""
    raw = record_store.local_get(FOLDER_KEY)
    try:
        value = json.loads(raw) if raw else {}
        folder = value.get("folder")
        return (folder if isinstance(folder, str) and folder else None), bool(value.get("watch"))
    except (ValueError, AttributeError):
        return None, False


def remember_folder(record_store, folder: str | None, watch: bool) -> None:
    record_store.local_put(FOLDER_KEY, json.dumps({"folder": folder, "watch": bool(folder) and watch}).encode())


def note_activity(record_store, report: SyncReport, now: float | None = None) -> None:
    """Remember when this run brought something in and when it wrote a bundle."""
    now = time.time() if now is None else now
    if report.received:
        record_store.local_put(LAST_IN_KEY, f"{now:.3f}".encode())
    if report.bundles is not None and report.bundles.written:
        record_store.local_put(LAST_OUT_KEY, f"{now:.3f}".encode())


def _notifications(folder: Path, stop: threading.Event) -> Iterator[set[str]]:
    """Names that changed in `folder`, or an empty set every TICK seconds (watchfiles)."""
    import watchfiles

    for changes in watchfiles.watch(
        folder, stop_event=stop, rust_timeout=int(TICK * 1000), yield_on_timeout=True,
        debounce=DEBOUNCE_MS, step=50, watch_filter=None, recursive=False, raise_interrupt=False,
    ):
        yield {os.path.basename(path) for _change, path in changes}


class MailboxWatcher:
    """Watches one mailbox folder for one device until `stop` is set."""

    def __init__(
        self,
        mailbox: Mailbox,
        folder: Path,
        *,
        stop: threading.Event,
        on_round: RoundCallback,
        after_round: Callable[[SyncReport], None] | None = None,
        notifications: bool = True,
        on_notice: Callable[[str], None] | None = None,
    ) -> None:
        self.mailbox = mailbox
        self.store = mailbox.store
        self.folder = Path(folder)
        self.stop = stop
        self.on_round = on_round
        self.after_round = after_round  # the paired-device list's entries, the last-activity times
        self.on_notice = on_notice or (lambda _text: None)
        self.mode = "notifications" if notifications else "polling"
        self._known: dict[str, tuple[int, int]] = {}  # name -> (size, mtime_ns) when last read
        self._told: set[tuple[str, int, int, str]] = set()  # rejections already named
        self._baseline: tuple[int, int] | None = None  # the change marker after the last round
        self._unsent_since: float | None = None  # first local save not yet written
        self._last_marker: tuple[int, int] | None = None
        self._last_change = 0.0
        self._retry_at = 0.0
        self._backoff = 0.0
        self._last_error: str | None = None

    # --- the loop ----------------------------------------------------------------------

    def run(self) -> None:
        self._round(look=True, write=True)  # what arrived and was saved while nobody watched
        if self.mode == "notifications":
            try:
                self._run_with(_notifications(self.folder, self.stop))
                return
            except Exception as e:  # noqa: BLE001  no inotify, too many watches, a folder gone
                if self.stop.is_set():
                    return
                self.on_notice(
                    f"File-system notifications are not available for {self.folder} ({type(e).__name__}); "
                    f"looking at it every {POLL_EVERY:g} seconds instead."
                )
                self.mode = "polling"
        self._run_with(self._polls())

    def _polls(self) -> Iterator[set[str] | None]:
        """Without notifications: None ("look at the folder") every POLL_EVERY seconds, an
        empty set ("look at the record") every TICK."""
        next_poll = time.monotonic() + POLL_EVERY
        while not self.stop.wait(TICK):
            if time.monotonic() >= next_poll:
                next_poll = time.monotonic() + POLL_EVERY
                yield None
            else:
                yield set()

    def _run_with(self, events: Iterator[set[str] | None]) -> None:
        next_rescan = time.monotonic() + RESCAN_EVERY
        pending_look = False
        for names in events:
            if self.stop.is_set():
                return
            now = time.monotonic()
            if names is None or any(is_bundle_name(n) or n.endswith(fmt.SUFFIX) for n in names):
                pending_look = True
            if now >= next_rescan:
                next_rescan, pending_look = now + RESCAN_EVERY, True
            write = self._saves_to_write(now)
            if (pending_look or write) and now >= self._retry_at:
                if self._round(look=pending_look, write=write):
                    pending_look = False

    def _saves_to_write(self, now: float) -> bool:
        """Whether this device's saves since the last bundle should be written now."""
        marker = self.store.change_marker()
        if marker != self._last_marker:
            self._last_marker, self._last_change = marker, now
        if self._baseline is None:
            return True  # the first round has not succeeded yet: it is tried again
        if marker == self._baseline:
            self._unsent_since = None
            return False
        if self._unsent_since is None:
            self._unsent_since = now
        return now - self._last_change >= QUIET or now - self._unsent_since >= AT_MOST

    # --- one round -------------------------------------------------------------------

    def _round(self, *, look: bool, write: bool) -> bool:
        """Bring in what is new in the folder (`look`), then write this device's bundle when
        something changed here or was brought in. True when it succeeded."""
        before = self.store.change_marker()
        report = SyncReport(bundles=BundleCounts(folder=str(self.folder)))
        try:
            full = False
            if look:
                listing = self._listing()
                self._bring_in(listing, report)
                full = self._own_bundles_lost(listing)
            wrote = write or full or bool(report.received)
            if wrote:
                self.mailbox.export(self.folder, report, full=full)
            if self.after_round is not None:
                self.after_round(report)
        except NotewellError as e:
            self._failed(e)
            return False
        except Exception as e:  # noqa: BLE001  no error stops the watch; the sentence names no content
            self._failed(NotewellError(
                f"The mailbox watch met an internal error ({type(e).__name__}); it goes on, and nothing acknowledged was lost."
            ))
            return False
        # Saves made by others during the round change data_version and are still to write;
        # this connection's own writes (the round's) are not saves. A round that only read the
        # folder leaves the saves it found waiting (their quiet time is still running).
        saves = before[0] if wrote or self._baseline is None else self._baseline[0]
        self._baseline = (saves, self.store.change_marker()[1])
        if wrote:
            self._last_marker, self._unsent_since = None, None
        self._backoff, self._retry_at, self._last_error = 0.0, 0.0, None
        if self._worth_telling(report):
            self.on_round(report, None)
        return True

    def _failed(self, error: NotewellError) -> None:
        self._backoff = min(BACKOFF_MAX, max(1.0, 2 * self._backoff))
        self._retry_at = time.monotonic() + self._backoff
        if error.message != self._last_error:  # the same trouble is said once, not every round
            self._last_error = error.message
            self.on_round(None, error)

    @staticmethod
    def _worth_telling(report: SyncReport) -> bool:
        b = report.bundles
        return bool(report.received or report.errors or (b and (b.read or b.written or b.rejected or b.skipped or b.removed or b.started)))

    def _listing(self) -> dict[str, tuple[int, int]]:
        """name -> (size, mtime_ns) of the folder's files that may be bundles."""
        found: dict[str, tuple[int, int]] = {}
        for path in _list(self.folder):
            if not path.name.endswith(fmt.SUFFIX):
                continue
            with contextlib.suppress(OSError):  # gone meanwhile
                st = path.stat()
                found[path.name] = (st.st_size, st.st_mtime_ns)
        return found

    def _bring_in(self, listing: dict[str, tuple[int, int]], report: SyncReport) -> None:
        new = sorted(n for n, stat in listing.items() if is_bundle_name(n) and self._known.get(n) != stat)
        for name in list(self._known):
            if name not in listing:
                del self._known[name]
        if not new:
            return
        self.mailbox.import_paths(self.folder, [self.folder / n for n in new], report)
        b = report.bundles
        assert b is not None
        rejected = {r.file: r for r in b.rejected}
        told = []
        for name in new:
            r = rejected.get(name)
            stat = listing[name]
            if r is not None and not (self.folder / name).exists():
                continue  # deleted before it could be read: nothing to say, nothing applied
            if r is not None and r.reason == fmt.BundleTruncated.reason:
                # Still being written, most likely: read again when it changes (or at the
                # next full look), named only once it has stayed truncated a long while.
                if time.time() - stat[1] / 1e9 < TRUNCATED_GRACE:
                    b.read -= 1  # not read yet, as far as anyone needs to know
                    continue
            else:
                self._known[name] = stat
            if r is not None and (name, *stat, r.reason) not in self._told:
                self._told.add((name, *stat, r.reason))
                told.append(r)
        b.rejected = told

    def _own_bundles_lost(self, listing: dict[str, tuple[int, int]]) -> bool:
        """Whether bundles this device wrote have gone from the folder (deleted by an engine
        or a person); if so they are forgotten and the next bundle carries everything."""
        own = self.mailbox.own_prefixes  # under every name it has written them under
        present = {parsed[1] for n in listing if (parsed := fmt.parse_file_name(n)) is not None
                   and parsed[0] in own}
        lost = set(self.mailbox.written(self.folder)) - present
        if not lost:
            return False
        self.mailbox.forget_written(self.folder, lost)
        return True


def watch_mailbox(
    record_store,
    identity,
    folder: Path,
    *,
    stop: threading.Event,
    on_round: RoundCallback,
    notifications: bool = True,
    on_notice: Callable[[str], None] | None = None,
    grace_seconds: float | None = None,
) -> None:
    """`notewell sync mailbox DIR --watch` and the app's remembered mailbox folder: watch
    `folder` for this device until `stop` is set. Each round ends with collection
    (sync/mailbox_collect.py): `grace_seconds` is how long a bundle every device has read
    stays (7 days when None)."""
    from sync.mailbox import mailbox_for, record_senders
    from sync.mailbox_collect import DEFAULT_GRACE_SECONDS, Collector

    folder = Mailbox._check_folder(folder)
    mailbox = mailbox_for(record_store, identity)
    collector = Collector(mailbox, folder, grace_seconds=DEFAULT_GRACE_SECONDS if grace_seconds is None else grace_seconds)

    def after(report: SyncReport) -> None:
        collector.collect(report)
        record_senders(record_store, report, folder)
        note_activity(record_store, report)

    MailboxWatcher(
        mailbox, folder, stop=stop, on_round=on_round, after_round=after,
        notifications=notifications, on_notice=on_notice,
    ).run()


__all__ = ["MailboxError", "MailboxWatcher", "last_activity", "note_activity", "remember_folder", "remembered_folder",
           "watch_mailbox"]
