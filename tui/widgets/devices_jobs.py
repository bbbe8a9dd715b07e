"""The sync service's former place, kept so that code importing it from here still works.

The service is `tui/sync_jobs.py`: it belongs to the app, not to a widget.
"""

from tui.sync_jobs import SyncCancelled, SyncJobs

__all__ = ["SyncCancelled", "SyncJobs"]
