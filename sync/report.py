"""What a sync reports back, shared by direct sync and mailbox sync.

`SyncReport` counts documents, never their content, so it is safe to print or log.
`ProgressCallback(done, total)` is called from the thread doing the sync; the app hands it to
`call_from_thread` before it touches a widget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

ProgressCallback = Callable[[int, int], None]


@dataclass
class SyncReport:
    received: int = 0  # documents changed here by what the other side had
    sent: int = 0  # documents the other side changed with what we had
    merged: int = 0  # documents edited on both sides since they last met (now merged)
    conflicts: int = 0  # signature conflicts found after merging
    errors: list[str] = field(default_factory=list)  # user-facing sentences, no note text
    peer_id: str = ""
    peer_name: str = ""
    clock: Any = None  # sync.clock.ClockCheck: this device's clock against the peer's, when measured

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        text = f"received {self.received}, sent {self.sent}, merged {self.merged}, conflicts {self.conflicts}"
        if self.errors:
            text += "; " + " ".join(self.errors)
        return text
