"""Typed errors raised by the store (and by sync, which reuses the base class).

Every error carries a short title and one user-facing sentence. The sentence never
contains note text: callers pass identifiers and field names, never content.
The command line prints `message` and exits non-zero; the app shows title and message.
"""

from __future__ import annotations


class NotewellError(Exception):
    """Base of every expected failure. `message` is safe to show to the clinician."""

    title = "Notewell error"
    exit_code = 1

    def __init__(self, message: str, *, title: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if title is not None:
            self.title = title

    def __str__(self) -> str:
        return self.message


# --- vault lifecycle -------------------------------------------------------------


class VaultError(NotewellError):
    title = "Vault problem"


class WrongPassphrase(VaultError):
    title = "Wrong passphrase"

    def __init__(self, message: str = "The passphrase is not correct for this vault.") -> None:
        super().__init__(message)


class WrongRecoveryKey(VaultError):
    title = "Wrong recovery key"

    def __init__(self, message: str = "The recovery key is not correct for this vault.") -> None:
        super().__init__(message)


class NotAVault(VaultError):
    title = "Not a vault"


class DamagedVault(VaultError):
    title = "Damaged vault"


class VaultExists(VaultError):
    title = "Vault already exists"


class NewerVaultFormat(VaultError):
    title = "Newer vault format"


class VaultLocked(VaultError):
    title = "Vault locked"


class WeakPassphrase(VaultError):
    title = "Passphrase too weak"


# --- the environment refusing a write (store/write_access.py raises these) ---------------


class VaultBusy(VaultError):
    """Another program kept the vault's write lock for longer than this one waits."""

    title = "Vault busy"

    def __init__(
        self,
        message: str = "Another Notewell program is writing to this vault; nothing was changed. "
        "Try again when it has finished.",
    ) -> None:
        super().__init__(message)


class DiskFull(VaultError):
    """A write met a full disk (or a used-up quota); it was rolled back whole."""

    title = "Disk full"

    def __init__(
        self, message: str = "The disk is full; nothing was lost. Free some space and try again."
    ) -> None:
        super().__init__(message)


# --- backups (store/backup.py) -----------------------------------------------------------


class BackupError(NotewellError):
    """A backup could not be written, or a restore could not be made (the folder, the disk)."""

    title = "Backup problem"


class BadBackupFile(BackupError):
    """A backup file that is not ours, cut short, damaged or altered: refused, nothing written."""

    title = "Backup refused"


# --- the record ----------------------------------------------------------------------


class RecordError(NotewellError):
    title = "Record problem"


class ValidationFailed(RecordError):
    """Bad input. `problems` lists (field, reason) pairs; the message joins them."""

    title = "Invalid input"

    def __init__(self, problems: list[tuple[str, str]] | str) -> None:
        if isinstance(problems, str):
            problems = [("", problems)]
        self.problems = problems
        parts = [f"{field}: {reason}" if field else reason for field, reason in problems]
        super().__init__("; ".join(parts))


class NotFound(RecordError):
    title = "Not found"


class SignedNoteLocked(RecordError):
    title = "Signed note"

    def __init__(self, note_id: str) -> None:
        super().__init__(
            f"Note {note_id} is signed and cannot be edited; add an addendum instead."
        )
        self.note_id = note_id


class NoteNotSigned(RecordError):
    title = "Note not signed"


class ComplianceIncomplete(RecordError):
    title = "Note incomplete"

    def __init__(self, note_id: str, missing: list[str]) -> None:
        self.missing = missing
        super().__init__(
            f"Note {note_id} cannot be signed yet; missing: " + ", ".join(missing) + "."
        )


class SignerUnknown(RecordError):
    title = "Clinician not set"

    def __init__(self) -> None:
        super().__init__(
            "Signing needs the clinician's name and credentials; set them in the vault's settings."
        )


class NoSignatureConflict(RecordError):
    title = "No signature conflict"

    def __init__(self, note_id: str) -> None:
        super().__init__(f"Note {note_id} has no signature conflict to resolve.")
        self.note_id = note_id


class NoteChangedMeanwhile(RecordError):
    """The note is no longer the version the clinician was shown (a sync brought edits)."""

    title = "Note changed"

    def __init__(self, note_id: str) -> None:
        super().__init__(
            "This note was changed on another device since it was shown here; nothing was signed. "
            "Review the changes, then sign again."
        )
        self.note_id = note_id


class ForeignDocument(RecordError):
    """A document offered by sync that is not a record document this store can keep."""

    title = "Unknown document"


class DocumentOverBudget(ForeignDocument):
    """A document from another device that declares more than a record document may hold
    (store/document_budget.py); refused whole before it is loaded or stored."""

    title = "Document too large"


class RevokedAuthor(ForeignDocument):
    """A document from another device holding changes made on a device this one knows to be
    revoked (by the actor those changes carry; docs/security.md says what that can and cannot
    prove); refused whole before anything is stored, and named in the sync's report."""

    title = "Changes from a revoked device"


class ImportFailed(RecordError):
    title = "Import failed"


class ExportFailed(RecordError):
    title = "Export failed"


class IntegrityProblem(RecordError):
    title = "Integrity check failed"


class DocumentFault(RecordError):
    """Automerge failed inside (a panic), not the input: store/automerge_guard.py raises it."""

    title = "Document problem"

    def __init__(
        self,
        message: str = "A record document could not be read or changed because of a fault in the "
        "document library; nothing was changed.",
    ) -> None:
        super().__init__(message)
