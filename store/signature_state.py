"""A note's signature state: the one answer to "is this note signed, and by whom?".

`signature_state(doc, trust, kept)` reads every signed entry of a note's document
(store/signing.py), verifies each with the key of the device that made it (the trusted
devices of store/device_list.py), and says one of:

    verified   every standing signature verifies and covers exactly the content the note
               holds (or content a verified resolution accepted): shown as signed
    conflict   signatures that all verify but disagree, or content changed after signing
               (by any device): every signed version is shown, each labelled with the
               device and time that signed it, until the clinician resolves it
    tampered   something failed: a signature that does not verify, a device not trusted, an
               entry a sync removed or altered, a note moved to another client, a signed note
               set back to draft. Never shown as signed; the signed originals stay readable
    legacy     signed before signatures were verified (a vault from an earlier version; not
               made by this device, so not re-issued): shown as such, never as verified
    unsigned   a draft

`kept` holds the entries this device once held that a merge removed or altered (the
intake keeps them, store/replica.py): a signature that disappears is a finding, never a loss.

With `trust=None` the state is structural only (no keys are checked): the projections use it
for the list column of conflicts, where no device list is at hand; every read that shows,
checks or exports a note as signed passes a trust.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Mapping

from automerge.core import Document

from store import documents as D
from store.automerge_guard import panic_or
from store.device_list import DeviceTrust
from store.models import STORED, Addendum, NoteStatus, ProgressNote, Signature
from store.signing import (
    KIND_ADDENDUM,
    KIND_NOTE_SIGNATURE,
    KIND_RESOLUTION,
    OpenedEntry,
    open_entry,
    signed_note,
)


LEGACY_ENTRY = "legacy"  # the entry id a signature from before verification is shown under


class SignatureStatus(str, Enum):
    UNSIGNED = "unsigned"
    VERIFIED = "verified"
    CONFLICT = "conflict"
    TAMPERED = "tampered"
    LEGACY = "legacy"


STATUS_LABELS = {
    SignatureStatus.UNSIGNED: "not signed",
    SignatureStatus.VERIFIED: "signed (verified)",
    SignatureStatus.CONFLICT: "signature conflict",
    SignatureStatus.TAMPERED: "FAILS VERIFICATION",
    SignatureStatus.LEGACY: "signed before verification existed",
}


@dataclass(frozen=True)
class SignedVersion:
    """One signed version of the note, as its signature covers it."""

    entry_id: str
    note: ProgressNote  # the content as signed, with its signature
    device_id: str
    device_label: str  # "this device" or the device's name, from the viewer's point of view
    content_hash: str
    verified: bool
    superseded: bool = False  # settled by a later signature or resolution
    kept_here: bool = False  # read from this device's copy: a sync removed or altered it

    @property
    def signature(self) -> Signature:
        assert self.note.signature is not None
        return self.note.signature

    def label(self) -> str:
        s = self.signature
        return f"signed by {s.signer}, {s.credentials}, on {self.device_label}, {s.signed_at.isoformat()}"


@dataclass(frozen=True)
class SignatureState:
    note_id: str
    status: SignatureStatus
    shown: SignedVersion | None  # the version shown as signed (verified, or the legacy one)
    versions: tuple[SignedVersion, ...] = ()  # every signed version, oldest first
    addenda: tuple[Addendum, ...] = ()  # addenda whose signatures verify, oldest first
    findings: tuple[str, ...] = ()  # what failed, one sentence each, no note text
    resolutions: tuple[dict[str, Any], ...] = field(default=(), repr=False)
    current_hash: str = ""
    # The signed entries as read (entry id -> envelope), so that no caller reads them again.
    entries: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def signed(self) -> bool:
        """Shown as signed: only a verified state is."""
        return self.status == SignatureStatus.VERIFIED

    @property
    def label(self) -> str:
        return STATUS_LABELS[self.status]

    @property
    def needs_attention(self) -> bool:
        return self.status in (SignatureStatus.CONFLICT, SignatureStatus.TAMPERED)

    def standing(self) -> list[SignedVersion]:
        """The signatures that stand (a legacy one included: it is all a legacy conflict has)."""
        return [
            v for v in self.versions
            if (v.verified or v.entry_id == LEGACY_ENTRY) and not v.superseded and not v.kept_here
        ]


def _as_signed(note: ProgressNote) -> ProgressNote | None:
    """The note's content as `signed_note` reads it back from a payload that holds it, built
    from the note already read (validated); None when the payload's canonical form would
    reorder its facts (then the payload is read)."""
    f = note.facts
    ids = [g.goal_id for g in f.goals_addressed]
    keys = [p.key for p in f.participants]
    if (f.add_on_codes != sorted(f.add_on_codes) or f.diagnoses_addressed != sorted(f.diagnoses_addressed)
            or ids != sorted(ids) or keys != sorted(keys)):
        return None
    return ProgressNote.model_validate(
        {"id": note.id, "client_id": note.client_id, "format": note.format,
         "sections": dict(sorted(note.sections.items())), "facts": f},
        context=STORED,
    )


def _version(o: OpenedEntry, trust: DeviceTrust | None, kept_here: bool,
             current: ProgressNote | None = None, current_hash: str = "") -> SignedVersion | None:
    """`current`, `current_hash`: the note as it is and its content hash. A signature over
    exactly that content (the usual case: signed at the document's heads) takes its content
    from the note already read instead of building it again from the payload."""
    assert o.payload is not None
    p = o.payload
    content_hash = D.payload_content_hash(p)
    content = _as_signed(current) if current is not None and content_hash == current_hash else None
    if content is None:
        content = signed_note(p)
    at = o.signed_at
    if content is None or at is None:
        return None
    try:
        signature = Signature(
            signer=str(p.get("signer", "")),
            credentials=str(p.get("credentials", "")),
            signed_at=at,
            device_id=o.device_id,
            heads=[],
            content_hash=content_hash,
        )
    except ValueError:
        return None
    label = trust.label(o.device_id) if trust is not None else f"device {o.device_id[:16]}"
    return SignedVersion(
        entry_id=o.entry_id,
        note=content.model_copy(update={"status": NoteStatus.SIGNED, "signature": signature}),
        device_id=o.device_id,
        device_label=label,
        content_hash=signature.content_hash,
        verified=o.verified,
        kept_here=kept_here,
    )


def _kind_word(o: OpenedEntry) -> str:
    return {KIND_NOTE_SIGNATURE: "signature", KIND_ADDENDUM: "addendum", KIND_RESOLUTION: "resolution"}.get(
        o.kind or "", "entry"
    )


def signature_state(
    doc: Document,
    trust: DeviceTrust | None,
    kept: Mapping[str, str] | None = None,
    note: ProgressNote | None = None,
) -> SignatureState:
    """The note's signature state (see the module docstring). `note` is the document read
    by `note_from_doc`, when the caller has it already."""
    note = note if note is not None else D.note_from_doc(doc)
    entries = D.signed_entries(doc)
    if not entries and not kept and note.signature is None and note.status != NoteStatus.SIGNED:
        return SignatureState(note_id=note.id, status=SignatureStatus.UNSIGNED, shown=None)  # a draft: most notes
    key_for = trust.public_key if trust is not None else None
    opened = [open_entry(eid, env, note.id, key_for) for eid, env in sorted(entries.items())]
    findings: list[str] = [o.problem for o in opened if o.problem]

    kept_opened: list[OpenedEntry] = []
    for eid, envelope in sorted((kept or {}).items()):
        o = open_entry(eid, envelope, note.id, key_for)
        kept_opened.append(o)
        word = _kind_word(o)
        if eid not in entries:
            findings.append(f"signed {word} {eid} was removed by a sync; the signed original is kept on this device.")
        elif entries[eid] != envelope:
            findings.append(f"signed {word} {eid} was altered by a sync; the signed original is kept on this device.")

    valid = [o for o in opened if o.verified]
    sigs = [o for o in valid if o.kind == KIND_NOTE_SIGNATURE]
    resolutions = [o.payload for o in valid if o.kind == KIND_RESOLUTION and o.payload]
    current = D.content_hash(note)

    superseded: set[str] = set()
    for o in sigs:
        superseded.update(str(x) for x in (o.payload or {}).get("supersedes") or [])
    settled: set[str] = set()
    for r in resolutions:
        keeps = r.get("keeps")
        superseded.update(str(x) for x in (r.get("settles") or []) if x != keeps)
        settled.update(str(x) for x in (r.get("settled_content") or []))

    versions: list[SignedVersion] = []
    for o in sigs:
        v = _version(o, trust, kept_here=False, current=note, current_hash=current)
        if v is None:
            findings.append(f"signature {o.entry_id}: its signed content cannot be read.")
            continue
        versions.append(v if o.entry_id not in superseded else _superseded(v))
    for o in kept_opened:
        if o.verified and o.kind == KIND_NOTE_SIGNATURE:
            v = _version(o, trust, kept_here=True)
            if v is not None:
                versions.append(v)
    versions.sort(key=lambda v: (v.signature.signed_at, v.entry_id))
    signed_hashes = {v.content_hash for v in versions}

    addenda: list[Addendum] = []
    for o in valid + [k for k in kept_opened if k.verified and k.entry_id not in entries]:
        if o.kind != KIND_ADDENDUM or o.payload is None:
            continue
        a = D._addendum_of(o.payload)
        if a is None:
            findings.append(f"addendum {o.entry_id}: its signed content cannot be read.")
            continue
        amends = o.payload.get("amends")
        legacy = note.signature.content_hash if note.signature is not None else None
        if amends not in signed_hashes and amends != legacy:
            findings.append(f"addendum {o.entry_id} amends content that no signature of this note covers.")
        addenda.append(a)
    addenda.sort(key=lambda a: (a.signed_at, a.id))

    if sigs or kept_opened:
        for v in versions:
            if v.verified and not v.kept_here and v.note.client_id != note.client_id:
                findings.append(f"it is filed under client {note.client_id}, not the client it was signed for.")
                break
        if note.status == NoteStatus.DRAFT:
            findings.append("it was signed, but its status was set back to draft.")

    standing = [v for v in versions if not v.superseded and not v.kept_here] or [v for v in versions if not v.kept_here]
    common = dict(
        note_id=note.id,
        versions=tuple(versions),
        addenda=tuple(addenda),
        resolutions=tuple(resolutions),
        current_hash=current,
        entries=entries,
    )
    if findings:
        return SignatureState(status=SignatureStatus.TAMPERED, shown=None, findings=tuple(dict.fromkeys(findings)), **common)
    if not standing:
        if note.signature is not None:  # with no signed entry of a note, it is the legacy map's
            legacy = _legacy_version(doc, note, trust)
            if current != legacy.content_hash and current not in settled:
                # Changed after that signing: a conflict, as before signatures were verified.
                return SignatureState(
                    status=SignatureStatus.CONFLICT, shown=None, **{**common, "versions": (legacy,)}
                )
            return SignatureState(status=SignatureStatus.LEGACY, shown=legacy, **common)
        if note.status == NoteStatus.SIGNED:
            return SignatureState(
                status=SignatureStatus.TAMPERED, shown=None,
                findings=("it is marked signed but holds no signature.",), **common,
            )
        return SignatureState(status=SignatureStatus.UNSIGNED, shown=None, **common)
    hashes = {v.content_hash for v in standing}
    if len(hashes) > 1 or (current not in hashes and current not in settled):
        return SignatureState(status=SignatureStatus.CONFLICT, shown=None, **common)
    shown = max(standing, key=lambda v: (v.signature.signed_at, v.entry_id))
    return SignatureState(status=SignatureStatus.VERIFIED, shown=shown, **common)


def _superseded(v: SignedVersion) -> SignedVersion:
    return SignedVersion(
        v.entry_id, v.note, v.device_id, v.device_label, v.content_hash, v.verified, superseded=True, kept_here=v.kept_here
    )


def _legacy_version(doc: Document, note: ProgressNote, trust: DeviceTrust | None) -> SignedVersion:
    """A signature from before verification: the note as it was at the heads it names."""
    s = note.signature
    assert s is not None
    try:
        heads = [bytes.fromhex(h) for h in s.heads]
    except ValueError:
        heads = []
    # Heads it cannot place (an Automerge panic included): the note as it is.
    at = panic_or(note, D.note_from_doc, doc, heads, also=(Exception,)) if heads else note
    if D.content_hash(at) == s.content_hash:
        note = at.model_copy(update={"status": NoteStatus.SIGNED, "signature": s})
    label = trust.label(s.device_id) if trust is not None else f"device {s.device_id[:16]}"
    return SignedVersion(LEGACY_ENTRY, note, s.device_id, label, s.content_hash, verified=False)


def signed_at_of(state: SignatureState) -> datetime | None:
    return state.shown.signature.signed_at if state.shown is not None else None
