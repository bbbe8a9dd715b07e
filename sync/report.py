"""What a sync reports back, shared by direct sync and mailbox sync.

`SyncReport` counts documents, never their content, so it is safe to print or log.
`ProgressCallback(done, total)` is called from the thread doing the sync; the app hands it to
`call_from_thread` before it touches a widget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from store.replica import ProgressCallback  # one definition, re-exported for sync's callers


@dataclass
class SyncReport:
    received: int = 0  # documents changed here by what the other side had
    sent: int = 0  # documents the other side changed with what we had
    merged: int = 0  # documents edited on both sides since they last met (now merged)
    conflicts: int = 0  # signature conflicts found after merging
    errors: list[str] = field(default_factory=list)  # user-facing sentences, no note text
    peer_id: str = ""
    peer_name: str = ""
    # Ids of the documents this sync changed here (ids only, never content): the app reloads just those.
    changed_ids: set[str] = field(default_factory=set, repr=False)
    # In a live sync: those changed since whoever watches the session last took them (`take_live_changes`).
    live_changed: set[str] = field(default_factory=set, repr=False)
    clock: Any = None  # sync.clock.ClockCheck: this device's clock against the peer's, when measured

    def take_live_changes(self) -> frozenset[str]:
        """The ids a live sync changed here since the last call (call it from the thread
        that runs the session, e.g. in `on_exchange`)."""
        taken = frozenset(self.live_changed)
        self.live_changed.clear()
        return taken

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        text = f"received {self.received}, sent {self.sent}, merged {self.merged}, conflicts {self.conflicts}"
        if self.errors:
            text += "; " + " ".join(self.errors)
        return text
