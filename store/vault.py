"""The vault: a folder with vault.json, record.db and private.db, and its lifecycle.

Create, open, recover and change the passphrase here; the record and the process notes are
reached through `vault.record` and `vault.private`. Every failure leaves the folder as it
was: nothing is created, truncated or rewritten unless the operation succeeds.

A Vault holds SQLite connections, which are bound to the thread that opened them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlcipher3

from store import keys, vaultfile
from store.database import (
    SIDE_FILES,
    WriteTransactions,
    checkpoint_and_close,
    integrity_problems,
    setting_problems,
    structure_problems,
    open_database,
    read_damage,
    verify_database,
)
from store.errors import (
    DamagedVault,
    NotewellError,
    ValidationFailed,
    VaultError,
    VaultExists,
    VaultLocked,
    WeakPassphrase,
    WrongPassphrase,
    WrongRecoveryKey,
)
from store.device_identity import DeviceIdentity, ensure_identity, generate_identity, load_identity, save_identity
from store.audit import AuditLog, Event, derive_audit_key, note_unlock_failure
from store.keys import KdfParams
from store.models import ClinicianSettings, utcnow, validated
from store.page_check import PageCheck, passed_check
from store.write_access import translate, write_transaction

if TYPE_CHECKING:
    from store.private import PrivateStore
    from store.record import RecordStore

__all__ = ["KdfParams", "PassphraseChanged", "SearchResults", "Vault"]

RECORD_DB = "record.db"
PRIVATE_DB = "private.db"
MAX_DEVICE_NAME = 100

_SETTINGS_KEY = "clinician"
# local_settings rows kept for vault.json (see `Vault._after_unlock`):
# the format vault.json has reached, so it cannot be swapped back for an unauthenticated one;
_FILE_FORMAT_KEY = "vault_file_format"
# a passphrase change under way: written before vault.json is switched, removed with the
# audit entry; the next unlock writes the entry if the switch happened and the entry did not.
_PENDING_CHANGE_KEY = "passphrase_change_pending"
# A local (never synced) table of record.db; created outside RecordStore's migrations so
# that user_version stays RecordStore's to manage.
_LOCAL_SETTINGS_DDL = (
    "CREATE TABLE IF NOT EXISTS local_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
)


@dataclass(frozen=True)
class PassphraseChanged:
    """The outcome of a passphrase change: always made when returned.

    `audit_pending`: its audit entry could not be written just now (record.db was busy or
    could not be written); the next unlock of the vault writes it.
    """

    audit_pending: bool = False


@dataclass
class SearchResults:
    record: list = field(default_factory=list)  # list[RecordHit]
    private: list = field(default_factory=list)  # list[PrivateHit]


def _check_passphrase(passphrase: object) -> None:
    if not isinstance(passphrase, str) or keys.passphrase_is_weak(passphrase):
        raise WeakPassphrase(
            f"A passphrase needs at least {keys.MIN_PASSPHRASE_CHARS} characters; "
            "nothing was changed."
        )


def _new_passphrase_wrap(vault_id: str, master: bytearray, passphrase: str, kdf: KdfParams) -> vaultfile.Wrap:
    """A passphrase wrap of today's wrap format: its associated data binds `kdf`."""
    if keys.below_floor(kdf):
        raise ValueError("a passphrase wrap below today's Argon2id defaults is for tests only")
    salt = keys.random_salt()
    kek = keys.passphrase_kek(passphrase, salt, kdf)
    try:
        return _bound_wrap(vault_id, kek, salt, kdf, master)
    finally:
        keys.wipe(kek)


def _bound_wrap(vault_id: str, kek: bytearray, salt: bytes, kdf: KdfParams, master: bytearray) -> vaultfile.Wrap:
    wrap_format = vaultfile.KDF_BOUND_WRAP_FORMAT
    aad = vaultfile.wrap_aad(vault_id, wrap_format, vaultfile.PASSPHRASE, kdf)
    nonce, ciphertext = keys.wrap(kek, master, aad)
    return vaultfile.Wrap(salt=salt, nonce=nonce, ciphertext=ciphertext, kdf=kdf, format=wrap_format)


def _passphrase_unwrap(vf: vaultfile.VaultFile, passphrase: str) -> tuple[bytearray, bytearray]:
    """(master key, the key that unwrapped it); the caller wipes both."""
    wrap = vf.passphrase_wrap
    assert wrap.kdf is not None
    kek = keys.passphrase_kek(passphrase, wrap.salt, wrap.kdf)
    master = keys.unwrap(kek, wrap.nonce, wrap.ciphertext, vf.aad(vaultfile.PASSPHRASE))
    if master is None:
        keys.wipe(kek)
        raise WrongPassphrase()
    return master, kek


def _unwrap_with_passphrase(vf: vaultfile.VaultFile, passphrase: str) -> bytearray:
    master, kek = _passphrase_unwrap(vf, passphrase)
    keys.wipe(kek)
    return master


def _unwrap_with_recovery(vf: vaultfile.VaultFile, secret: bytearray) -> bytearray:
    wrap = vf.recovery_wrap
    kek = keys.recovery_kek(secret, wrap.salt)
    try:
        master = keys.unwrap(kek, wrap.nonce, wrap.ciphertext, vf.aad(vaultfile.RECOVERY))
    finally:
        keys.wipe(kek)
    if master is None:
        raise WrongRecoveryKey()
    return master


def unwrap_master(
    vf: vaultfile.VaultFile, *, passphrase: str | None = None, recovery_key: str | None = None
) -> bytearray:
    """The master key from one of `vf`'s wraps, checked against its MAC; the caller wipes it.
    For a vault.json read from elsewhere than a vault folder (a backup carries the one it was
    made with). WrongPassphrase, WrongRecoveryKey (a typo said as such), DamagedVault."""
    if recovery_key is not None:
        secret = keys.parse_recovery_key(recovery_key)
        try:
            master = _unwrap_with_recovery(vf, secret)
        finally:
            keys.wipe(secret)
    elif isinstance(passphrase, str):
        master = _unwrap_with_passphrase(vf, passphrase)
    else:
        raise WrongPassphrase()
    file_key = keys.vault_file_key(master)
    try:
        if vf.authenticated and not vf.mac_matches(file_key):
            keys.wipe(master)
            raise DamagedVault(_ALTERED)
    finally:
        keys.wipe(file_key)
    return master


def _rewrap_params(vf: vaultfile.VaultFile, kdf: KdfParams | None) -> KdfParams:
    """The cost of a new passphrase wrap: never below today's defaults, whatever vault.json
    says (one edit to the file must not make every later guess cheap)."""
    if kdf is not None:
        return kdf
    default, current = KdfParams(), vf.passphrase_wrap.kdf
    assert current is not None
    return KdfParams(
        memory_kib=max(default.memory_kib, current.memory_kib),
        time_cost=max(default.time_cost, current.time_cost),
        parallelism=max(default.parallelism, current.parallelism),
    )


_ALTERED = (
    "The vault's vault.json is damaged or was altered (its authentication code does not "
    "match its contents)."
)
_OTHER_DEVICE = (
    "The vault's vault.json names a different device than the sync certificate in record.db "
    "(one of them is damaged or was altered)."
)
_DOWNGRADED = (
    "The vault's vault.json was replaced by an older, unauthenticated form of it (it is "
    "damaged or was altered)."
)


def _record_unwritable(e: sqlcipher3.OperationalError) -> VaultError:
    """A passphrase change that could not write record.db: a busy lock or a full disk in the
    words used everywhere (store/write_access.py), anything else named as it is."""
    return translate(e) or VaultError(f"The vault's record.db cannot be written ({e}); nothing was changed.")


def _require_databases(path: Path) -> None:
    for name in (RECORD_DB, PRIVATE_DB):
        if not (path / name).is_file():
            raise DamagedVault(f"The vault's {name} is missing.")


class Vault:
    """An open vault. Construct with `create`, `open` or `recover`, never directly."""

    def __init__(
        self,
        path: Path,
        vf: vaultfile.VaultFile,
        db_keys: list[bytearray],
        record_conn: sqlcipher3.Connection,
        private_conn: sqlcipher3.Connection,
        audit_key: bytearray,
        file_key: bytearray,
        backup_key: bytearray | None = None,
    ) -> None:
        self.path = path
        self._audit_key = audit_key
        # The root key of this vault's backups (store/backup.py): a backup is written from an
        # open vault, whose master key is long wiped.
        self._backup_key = backup_key if backup_key is not None else bytearray()
        # vault.json as it is on disk (format, wraps, device), and its MAC key.
        self._vf = vf
        self._file_key = file_key
        # Set by `recover` when the new passphrase is in place but its audit entry is
        # still due (written at the next unlock).
        self.passphrase_audit_pending = False
        self._audit: AuditLog | None = None
        self.vault_id = vf.vault_id
        self.device_id = vf.device_id
        self.device_name = vf.device_name
        self._db_keys = db_keys
        self._record_conn: sqlcipher3.Connection | None = record_conn
        self._private_conn: sqlcipher3.Connection | None = private_conn
        self._record: RecordStore | None = None
        self._private: PrivateStore | None = None
        # This device's clock for what the record writes (signatures, addenda); tests set it
        # before the first use of `record` to run a vault whose clock is wrong.
        self.now: Callable[[], datetime] = utcnow
        # Every page of both databases verified: before opening (the default), or after it
        # on a thread of its own, before the first write (store/page_check.py).
        self.page_check: PageCheck = passed_check()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Vault {str(self.path)!r} {state}>"

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- lifecycle ---------------------------------------------------------------------

    @staticmethod
    def exists(path: Path) -> bool:
        return (Path(path).expanduser() / vaultfile.FILE_NAME).is_file()

    @classmethod
    def create(
        cls,
        path: Path,
        passphrase: str,
        *,
        device_name: str,
        settings: ClinicianSettings | None = None,
        kdf: KdfParams | None = None,
    ) -> tuple[Vault, str]:
        """A new vault at `path` (an empty or missing folder), open, and its recovery key.

        The recovery key is returned once and stored nowhere in the clear.
        """
        path = Path(path).expanduser()
        _check_passphrase(passphrase)
        if not isinstance(device_name, str) or not device_name.strip():
            raise ValidationFailed([("device_name", "must not be blank")])
        device_name = device_name.strip()
        if len(device_name) > MAX_DEVICE_NAME:
            raise ValidationFailed([("device_name", f"must be at most {MAX_DEVICE_NAME} characters")])
        if settings is None:
            settings = ClinicianSettings()
        elif not isinstance(settings, ClinicianSettings):
            settings = validated(ClinicianSettings, dict(settings))
        kdf = kdf or KdfParams()
        if keys.below_floor(kdf):
            raise ValueError("a vault below today's Argon2id defaults is for tests only (store/keys.py TEST_KDF)")
        _check_free(path)

        vault_id = secrets.token_hex(16)
        # The device id is the fingerprint of this device's certificate (the sync identity).
        identity = generate_identity(device_name)
        master = keys.random_key()
        recovery_secret, recovery_text = keys.new_recovery_key()
        try:
            passphrase_wrap = _new_passphrase_wrap(vault_id, master, passphrase, kdf)
            recovery_salt = keys.random_salt()
            rkek = keys.recovery_kek(recovery_secret, recovery_salt)
            try:
                recovery_aad = vaultfile.wrap_aad(vault_id, vaultfile.WRAP_FORMAT, vaultfile.RECOVERY)
                nonce, ciphertext = keys.wrap(rkek, master, recovery_aad)
            finally:
                keys.wipe(rkek)
            vf = vaultfile.VaultFile(
                vault_id=vault_id,
                device_id=identity.device_id,
                device_name=device_name,
                created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                passphrase_wrap=passphrase_wrap,
                recovery_wrap=vaultfile.Wrap(salt=recovery_salt, nonce=nonce, ciphertext=ciphertext),
            )
        finally:
            keys.wipe(recovery_secret)

        _check_free(path)  # again: the key derivation took a moment
        created_dir = not path.exists()
        if created_dir:
            try:
                path.mkdir(mode=0o700, parents=True)
                os.chmod(path, 0o700)
            except OSError as e:
                keys.wipe(master)
                raise translate(e) or VaultError(f"Cannot create the vault folder {path}: {e.strerror}.") from None

        made: list[Path] = []
        conns: list[sqlcipher3.Connection] = []
        db_keys = _database_keys(master)
        audit_key = bytearray(derive_audit_key(bytes(master)))
        file_key = keys.vault_file_key(master)
        backup_key = keys.backup_key(master)
        keys.wipe(master)
        try:
            for name, key in zip((RECORD_DB, PRIVATE_DB), db_keys):
                # Listed before it exists: a failure after the file was made (a full disk while
                # configuring it) must remove it too, or the next `init` is refused.
                made.append(path / name)
                try:
                    conns.append(open_database(path / name, key, create=True))
                except VaultExists:
                    made.pop()  # someone else's file: never ours to remove
                    raise
            _ensure_local_tables(conns[0])
            _write_settings(conns[0], settings)
            from store.record import RecordStore

            save_identity(
                RecordStore(conns[0], device_id=identity.device_id, settings=lambda: settings).replica, identity
            )
            AuditLog(conns[0], bytes(audit_key)).append(Event.VAULT_CREATED, device_name=device_name)
            # private.db's tables too, now: made on first use instead, they would be the one
            # write an import refused after its writing began leaves behind (store/importer.py).
            from store.private import PrivateStore

            PrivateStore(conns[1], device_id=identity.device_id)
            with WriteTransactions(conns[0]):
                _put_local_setting(conns[0], _FILE_FORMAT_KEY, str(vf.format_version))
            # vault.json last: its presence marks a complete vault.
            vaultfile.write_new(path, vf, file_key)
        except BaseException as e:
            # All or nothing: every file made here goes, whatever fails while undoing it.
            for conn in conns:
                try:
                    conn.close()
                except sqlcipher3.Error:
                    pass
            for p in made:
                for suffix in ("", *SIDE_FILES):
                    try:
                        Path(f"{p}{suffix}").unlink(missing_ok=True)
                    except OSError:
                        pass
            _remove_if_ours(path / vaultfile.FILE_NAME, vf.to_bytes(file_key))
            if created_dir:
                try:
                    path.rmdir()
                except OSError:
                    pass
            for key in (*db_keys, audit_key, file_key, backup_key):
                keys.wipe(key)
            typed = translate(e)
            if typed is not None:
                raise typed from None
            if isinstance(e, OSError):
                raise VaultError(f"Cannot create the vault at {path}: {e.strerror}.") from None
            raise
        return cls(path, vf, db_keys, conns[0], conns[1], audit_key, file_key, backup_key), recovery_text

    @classmethod
    def open(cls, path: Path, passphrase: str, *, pages_after_open: bool = False) -> Vault:
        """Unlock the vault at `path`. WrongPassphrase, NotAVault, DamagedVault,
        NewerVaultFormat; on any of them nothing on disk has changed.

        pages_after_open=True (the app, `notewell check`): the HMAC of every page is verified
        after the vault opens rather than before, on a thread of its own (`page_check`),
        and nothing is written to it until that has passed (store/page_check.py)."""
        path = Path(path).expanduser()
        vf = vaultfile.read(path)
        _require_databases(path)
        if not isinstance(passphrase, str):
            raise WrongPassphrase()
        try:
            master, kek = _passphrase_unwrap(vf, passphrase)
        except WrongPassphrase:
            # Counted in memory only (a wrong passphrase must not write to the vault) and
            # written to the audit trail at the next successful unlock in this process.
            note_unlock_failure(path)
            raise
        try:
            vault = cls._unlock(path, vf, master, kek=kek, pages_after_open=pages_after_open)
        finally:
            keys.wipe(kek)
        try:
            vault.audit.flush_unlock_failures(path)
        except BaseException:
            vault.close()
            raise
        return vault

    @classmethod
    def _unlock(
        cls,
        path: Path,
        vf: vaultfile.VaultFile,
        master: bytearray,
        *,
        kek: bytearray | None = None,
        pages_after_open: bool = False,
    ) -> Vault:
        """What every unlock does once a wrap has opened (and wipes `master`): vault.json's
        MAC, both databases verified and opened, then what vault.json and record.db must
        agree on (`_after_unlock`). `kek`: the key that opened the passphrase wrap, when it
        was the passphrase (an outdated vault.json is then upgraded with it)."""
        file_key = keys.vault_file_key(master)
        if vf.authenticated and not vf.mac_matches(file_key):
            keys.wipe(master)
            keys.wipe(file_key)
            raise DamagedVault(_ALTERED)
        vault = cls._open_with_master(path, vf, master, file_key, pages_after_open=pages_after_open)
        try:
            vault._after_unlock(kek)
        except sqlcipher3.OperationalError as e:
            vault.close()
            raise _record_unwritable(e) from None
        except BaseException:
            vault.close()
            raise
        return vault

    def _after_unlock(self, kek: bytearray | None = None) -> None:
        """vault.json and record.db agree on the file's format (it is never swapped back for
        the unauthenticated first format), on this device's id (its certificate's
        fingerprint), and on the passphrase changes the audit trail records. An outdated
        vault.json is upgraded (`_upgrade_file`). Nothing is written unless something is due;
        nothing is ever quietly corrected."""
        conn = self.record_conn
        reached = _get_local_setting(conn, _FILE_FORMAT_KEY)
        if not self._vf.authenticated and reached is not None and reached != str(self._vf.format_version):
            # Another program may have upgraded it since we read it: only its MAC can say.
            again = vaultfile.read(self.path)
            if not (again.authenticated and again.mac_matches(self._file_key)):
                raise DamagedVault(_DOWNGRADED)
            self._vf = again
        vf = self._vf
        if vf.authenticated:
            identity = load_identity(self.record.replica)
            if identity is None or identity.device_id != vf.device_id:
                raise DamagedVault(_OTHER_DEVICE)
            if identity.name != vf.device_name:
                ensure_identity(self.record.replica, vf.device_name)
            if reached is None:
                # A crash between the upgrade's rename and its commit; or a create's.
                with WriteTransactions(conn):
                    _put_local_setting(conn, _FILE_FORMAT_KEY, str(vf.format_version))
            if vf.outdated and kek is not None:
                self._upgrade_file(kek)
        else:
            self._upgrade_file(kek)
        self._settle_pending_change()
        self._upgrade_signatures()
        try:
            vaultfile.remove_stale_tmp(self.path)
        except OSError:
            pass  # harmless: readers ignore it and the next write replaces it

    def _upgrade_signatures(self) -> None:
        """Signatures from before verification existed that this device made are re-issued
        by its key, once (store/record.py `upgrade_signatures`). A busy or full record.db
        leaves them for the next unlock; until then they show as signed before verification."""
        try:
            self.record.upgrade_signatures()
        except VaultError:
            pass

    def _upgrade_file(self, kek: bytearray | None) -> None:
        """Write today's format of an outdated vault.json, and say so in the audit trail.

        A first-format file adopts the device id of the certificate in record.db (a vault
        made before certificates had a random one, and the certificate is the one sync
        knows). With `kek` (an unlock with the passphrase) the master key is wrapped again
        under the same key, its Argon2id parameters now bound into the wrap; without it (the
        recovery key) the wrap stays as it is until the new passphrase replaces it. If the
        file cannot be written now, the next unlock tries again."""
        old = self._vf
        identity = ensure_identity(self.record.replica, old.device_name)
        wrap = old.passphrase_wrap
        if kek is not None and not wrap.kdf_bound:
            master = keys.unwrap(kek, wrap.nonce, wrap.ciphertext, old.aad(vaultfile.PASSPHRASE))
            if master is not None:  # it just opened: always
                assert wrap.kdf is not None
                try:
                    wrap = _bound_wrap(old.vault_id, kek, wrap.salt, wrap.kdf, master)
                finally:
                    keys.wipe(master)
        new = dataclasses.replace(
            old, format_version=vaultfile.FORMAT_VERSION, device_id=identity.device_id,
            passphrase_wrap=wrap, mac=None, signed_fields=None,
        )
        conn = self.record_conn
        try:
            with WriteTransactions(conn):
                self.audit.append(
                    Event.VAULT_FILE_UPGRADED,
                    from_format=old.format_version,
                    to_format=new.format_version,
                    device_id_changed=identity.device_id != old.device_id,
                    passphrase_wrap_binds_kdf=new.passphrase_wrap.kdf_bound,
                )
                _put_local_setting(conn, _FILE_FORMAT_KEY, str(new.format_version))
                vaultfile.replace(self.path, new, self._file_key)
        except (VaultError, sqlcipher3.OperationalError):
            # A read-only folder, a full disk or a busy record.db: the vault opens as
            # before, and the next unlock upgrades it.
            new = dataclasses.replace(old, device_id=identity.device_id)
        self._vf = new
        if identity.device_id != self.device_id:
            self.device_id = identity.device_id
            self._record = None  # rebuilt with the new device id
            self._private = None

    def _settle_pending_change(self) -> None:
        """Write the audit entry of a passphrase change that reached vault.json but not the
        audit trail (killed in between, or record.db was busy); drop one that never
        reached vault.json."""
        conn = self.record_conn
        if _get_local_setting(conn, _PENDING_CHANGE_KEY) is None:
            return
        try:
            with WriteTransactions(conn):
                raw = _get_local_setting(conn, _PENDING_CHANGE_KEY)
                pending = _parse_pending(raw)
                if pending is not None and pending["wrap"] == vaultfile.wrap_digest(self._vf.passphrase_wrap):
                    self.audit.append(pending["event"], changed_at=pending["at"], recorded_late=True)
                _delete_local_setting(conn, _PENDING_CHANGE_KEY)
        except sqlcipher3.OperationalError:
            pass  # busy now: still due, and the next unlock tries again

    def _switch_passphrase(self, new_wrap: vaultfile.Wrap, event: Event) -> bool:
        """Put a new passphrase wrap in place with its audit entry.

        VaultError, and nothing changed, if that cannot be done. Otherwise the new
        passphrase is in effect: True with its audit entry written, False with the entry
        still due (the next unlock writes it, from the note made before the switch).
        A crash at any point leaves exactly one passphrase working.
        """
        conn = self.record_conn
        old_format = self._vf.format_version
        new = dataclasses.replace(
            self._vf, passphrase_wrap=new_wrap, format_version=vaultfile.FORMAT_VERSION,
            mac=None, signed_fields=None,
        )
        note = json.dumps(
            {
                "wrap": vaultfile.wrap_digest(new_wrap),
                "event": event.value,
                "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
        )
        # Written first: the step most likely to fail (a full disk) then changes nothing.
        tmp = vaultfile.prepare(self.path, new, self._file_key)
        try:
            with WriteTransactions(conn):
                _put_local_setting(conn, _PENDING_CHANGE_KEY, note)
        except BaseException as e:
            vaultfile.discard(tmp)
            if isinstance(e, sqlcipher3.OperationalError):
                raise _record_unwritable(e) from None
            raise
        try:
            vaultfile.put_in_place(self.path, tmp)
        except BaseException:
            # Not switched. The note would be dropped at the next unlock anyway.
            try:
                with WriteTransactions(conn):
                    _delete_local_setting(conn, _PENDING_CHANGE_KEY)
            except (sqlcipher3.Error, VaultError):
                pass
            raise
        self._vf = new
        try:
            with WriteTransactions(conn):
                self.audit.append(event)
                if old_format < new.format_version:  # the upgrade the unlock could not write
                    self.audit.append(
                        Event.VAULT_FILE_UPGRADED, from_format=old_format, to_format=new.format_version,
                        passphrase_wrap_binds_kdf=True,
                    )
                    _put_local_setting(conn, _FILE_FORMAT_KEY, str(new.format_version))
                _delete_local_setting(conn, _PENDING_CHANGE_KEY)
        except (sqlcipher3.Error, VaultError):
            # The switch is made (a busy lock or a full disk, translated, lands here too):
            # the entry is written from the note at the next unlock.
            return False
        return True

    @property
    def identity(self) -> DeviceIdentity:
        """This device's key pair and certificate, for pairing and sync."""
        identity = load_identity(self.record.replica)
        if identity is None:
            identity = ensure_identity(self.record.replica, self.device_name)
        return identity

    def become_new_device(self, device_name: str, **audit_details: Any) -> DeviceIdentity:
        """Give this vault a device identity of its own: a new key pair and certificate in
        record.db, vault.json naming it, and a `vault_restored` audit entry with
        `audit_details`. For a vault restored from a backup, before it is put in place: the
        device the backup came from may still exist, and two devices never share an identity
        (peers trust a device by its certificate). Pairing it again is the clinician's step."""
        if not isinstance(device_name, str) or not device_name.strip():
            raise ValidationFailed([("device_name", "must not be blank")])
        device_name = device_name.strip()[:MAX_DEVICE_NAME]
        old = self.identity
        identity = generate_identity(device_name)
        new = dataclasses.replace(
            self._vf, device_id=identity.device_id, device_name=device_name, mac=None, signed_fields=None
        )
        with self.record.transaction():
            replica = self.record.replica
            save_identity(replica, identity)
            replica.forget_identity()
            # The device the backup came from signed this vault's notes: the new identity
            # vouches for it, so they still verify here (store/device_list.py); if that
            # laptop is lost, forgetting it is the clinician's step, as for any device.
            replica.vouch_for(old.device_id, old.name, old.cert_pem)
            self.audit.append(
                Event.VAULT_RESTORED, from_device=old.short_id, device=identity.short_id, **audit_details
            )
            # Inside the transaction: if vault.json cannot be written, record.db keeps the
            # identity vault.json names.
            vaultfile.replace(self.path, new, self._file_key)
        self._vf = new
        self.device_id, self.device_name = identity.device_id, device_name
        self._record = None  # rebuilt with the new device id
        self._private = None
        return identity

    @classmethod
    def _open_with_master(
        cls,
        path: Path,
        vf: vaultfile.VaultFile,
        master: bytearray,
        file_key: bytearray,
        *,
        pages_after_open: bool = False,
    ) -> Vault:
        db_keys = _database_keys(master)
        audit_key = bytearray(derive_audit_key(bytes(master)))
        backup_key = keys.backup_key(master)
        keys.wipe(master)
        conns: list[sqlcipher3.Connection] = []
        names = (RECORD_DB, PRIVATE_DB)
        page_check = passed_check()
        try:
            # Both files are verified before either is opened for writing: opening one
            # would fold its WAL in, a write we must not make if the vault then fails.
            for name, key in zip(names, db_keys):
                try:
                    verify_database(path / name, key, pages=not pages_after_open)
                except WrongPassphrase:
                    # The master key was proven by the unwrap, so the file is not this
                    # vault's, or it is damaged beyond telling.
                    raise DamagedVault(
                        f"The vault's {name} does not match its keys (it is damaged or "
                        "belongs to another vault)."
                    ) from None
            if pages_after_open:
                page_check = PageCheck([(path / name, key) for name, key in zip(names, db_keys)])
                page_check.hold_writes()
            for name, key in zip(names, db_keys):
                conns.append(open_database(path / name, key, verified=True, fold_log=not pages_after_open))
            _ensure_local_tables(conns[0])
        except BaseException:
            if pages_after_open:
                page_check.release()
            for conn in conns:
                _close_unless_unverified(conn, page_check)
            for key in (*db_keys, audit_key, file_key, backup_key):
                keys.wipe(key)
            raise
        vault = cls(path, vf, db_keys, conns[0], conns[1], audit_key, file_key, backup_key)
        vault.page_check = page_check
        return vault

    @classmethod
    def recover(
        cls, path: Path, recovery_key: str, new_passphrase: str, *, kdf: KdfParams | None = None
    ) -> Vault:
        """Set a new passphrase with the recovery key and open the vault.

        vault.json and both databases are checked before vault.json is rewritten, so a
        failure changes nothing. The recovery key stays valid. If the new passphrase is in
        place but its audit entry could not be written yet, `passphrase_audit_pending` is
        set on the returned vault (the next unlock writes the entry).
        """
        path = Path(path).expanduser()
        _check_passphrase(new_passphrase)
        try:
            secret = keys.parse_recovery_key(recovery_key)
        except WrongRecoveryKey:
            note_unlock_failure(path)
            raise
        try:
            vf = vaultfile.read(path)
            _require_databases(path)
            master = _unwrap_with_recovery(vf, secret)
        except WrongRecoveryKey:
            note_unlock_failure(path)
            raise
        finally:
            keys.wipe(secret)
        try:
            vault = cls._unlock(path, vf, bytearray(master))
            try:
                new_wrap = _new_passphrase_wrap(
                    vault.vault_id, master, new_passphrase, _rewrap_params(vault._vf, kdf)
                )
            except BaseException:
                vault.close()
                raise
        finally:
            keys.wipe(master)
        try:
            vault.passphrase_audit_pending = not vault._switch_passphrase(new_wrap, Event.VAULT_RECOVERED)
        except BaseException:
            vault.close()
            raise
        return vault

    @staticmethod
    def change_passphrase(
        path: Path, old: str, new: str, *, kdf: KdfParams | None = None
    ) -> PassphraseChanged:
        """Re-wrap the master key under `new`: either it is changed (and the result says
        whether its audit entry is still due) or an error says why and nothing changed.
        vault.json and both databases are checked first. Atomic: afterwards exactly one of
        the two passphrases opens the vault, even if the process is killed half-way."""
        path = Path(path).expanduser()
        _check_passphrase(new)
        vf = vaultfile.read(path)
        _require_databases(path)
        if not isinstance(old, str):
            raise WrongPassphrase()
        try:
            master = _unwrap_with_passphrase(vf, old)
        except WrongPassphrase:
            note_unlock_failure(path)
            raise
        try:
            vault = Vault._unlock(path, vf, bytearray(master))
            try:
                new_wrap = _new_passphrase_wrap(vault.vault_id, master, new, _rewrap_params(vault._vf, kdf))
            except BaseException:
                vault.close()
                raise
        finally:
            keys.wipe(master)
        try:
            try:
                vault.audit.flush_unlock_failures(path)
            except sqlcipher3.OperationalError as e:
                raise _record_unwritable(e) from None
            audited = vault._switch_passphrase(new_wrap, Event.PASSPHRASE_CHANGED)
        finally:
            vault.close()
        return PassphraseChanged(audit_pending=not audited)

    @property
    def closed(self) -> bool:
        return self._record_conn is None

    def close(self) -> None:
        """Checkpoint and close both databases and overwrite the keys we hold. Idempotent."""
        conns = [self._record_conn, self._private_conn]
        self._record = None
        self._private = None
        self._audit = None
        self._record_conn = None
        self._private_conn = None
        try:
            for conn in conns:
                if conn is not None:
                    _close_unless_unverified(conn, self.page_check)
        finally:
            self.page_check.release()
            for key in (*self._db_keys, self._audit_key, self._file_key, self._backup_key):
                keys.wipe(key)
            self._db_keys = []

    # --- connections and stores --------------------------------------------------------

    @property
    def record_conn(self) -> sqlcipher3.Connection:
        if self._record_conn is None:
            raise VaultLocked("The vault is locked; unlock it again to continue.")
        return self._record_conn

    @property
    def private_conn(self) -> sqlcipher3.Connection:
        if self._private_conn is None:
            raise VaultLocked("The vault is locked; unlock it again to continue.")
        return self._private_conn

    @property
    def audit(self) -> AuditLog:
        """The vault's hash-chained audit trail (record.db, local, never synced)."""
        if self._audit is None:
            self._audit = AuditLog(self.record_conn, bytes(self._audit_key))
        return self._audit

    @property
    def record(self) -> RecordStore:
        if self._record is None:
            conn = self.record_conn
            # Imported here: the vault's lifecycle does not depend on the record's code.
            from store.record import RecordStore

            self._record = RecordStore(
                conn, device_id=self.device_id, settings=self.settings, audit=self.audit, now=lambda: self.now()
            )
        return self._record

    def open_record_store(self) -> RecordStore:
        """A second RecordStore on its own connection, for a thread that works on the record
        alongside the owner of this vault (a sync running while the clinician types).

        SQLite connections are bound to their thread: call this from the thread that will use
        the store, and `close_record_store` from it when done. Document caches notice each
        other's writes (store/docstore.py), so the two never overwrite each other.
        """
        from store.record import RecordStore

        if not self._db_keys:
            raise VaultLocked("The vault is locked; unlock it again to continue.")
        # (A log left by a crash is folded in only once every page has passed.)
        conn = open_database(
            self.path / RECORD_DB, bytes(self._db_keys[0]), verified=True, fold_log=self.page_check.passed
        )
        audit = AuditLog(conn, bytes(self._audit_key))
        return RecordStore(
            conn, device_id=self.device_id, settings=lambda: _read_settings(conn), audit=audit, now=lambda: self.now()
        )

    @staticmethod
    def close_record_store(store: RecordStore) -> None:
        checkpoint_and_close(store._conn)

    @property
    def private(self) -> PrivateStore:
        if self._private is None:
            conn = self.private_conn
            from store.private import PrivateStore

            self._private = PrivateStore(conn, device_id=self.device_id)
        return self._private

    # --- settings, search, check -------------------------------------------------------

    def settings(self) -> ClinicianSettings:
        return _read_settings(self.record_conn)

    def update_settings(self, **fields: Any) -> ClinicianSettings:
        """Change some settings; ValidationFailed (and nothing saved) on a bad value."""
        data = self.settings().model_dump(mode="json")
        data.update(fields)
        new = validated(ClinicianSettings, data)
        assert isinstance(new, ClinicianSettings)
        _write_settings(self.record_conn, new)
        return new

    def search(self, query: str, limit: int = 50) -> SearchResults:
        return SearchResults(
            record=self.record.search(query, limit),
            private=self.private.search(query, limit),
        )

    def check(self) -> list[str]:
        """Problems found in vault.json, both databases and by the stores' own checks;
        [] if healthy."""
        problems = self._vault_file_problems()
        problems += [f"{RECORD_DB}: {p}" for p in integrity_problems(self.record_conn)]
        problems += [f"{PRIVATE_DB}: {p}" for p in integrity_problems(self.private_conn)]
        try:
            record = self.record
        except ModuleNotFoundError as e:
            if e.name != "store.record":
                raise
            record = None
        for store in (record, self._private_store_if_available()):
            store_check = getattr(store, "check", None)
            if callable(store_check):
                problems += list(store_check())
        return problems

    def check_report(self, *, full: bool = False, workers: bool = False) -> CheckReport:
        """`notewell check`: vault.json, the HMAC of every page of both databases (the page
        check this vault runs, `page_check`), SQLite's structure check, the settings, the
        private store's index, signatures, and the derived tables against the documents.

        By default a document verified by an earlier check and unchanged since, heads and
        rows alike, is not loaded again (store/check_record.py). `full` loads every one, and
        adds SQLite's `integrity_check` of both databases (b-trees, free list, every index
        against its table): the structure only SQLite itself writes, which the page HMACs
        and the documents' comparison cover for anything else that could change it. Pages
        are always all read: damage is a change nobody wrote, so no record of an earlier
        pass can vouch for them. `workers`: the documents to read are shared with worker
        processes when there are many (store/check_reading.py; the command line's check)."""
        self.page_check.start()  # on its own thread, while the documents are compared
        problems = self._vault_file_problems()
        read = unchanged = 0
        try:
            for name, conn in ((RECORD_DB, self.record_conn), (PRIVATE_DB, self.private_conn)):
                found = structure_problems(conn) if full else setting_problems(conn)
                problems += [f"{name}: {p}" for p in found]
            mismatches, read, unchanged = self.record.check_documents(full=full, workers=workers)
            problems += mismatches + self.record.signature_problems(workers=workers) + self.private.check()
        except sqlcipher3.DatabaseError as e:
            if read_damage(e) is None:
                raise
            # A damaged page stopped the comparison; the page check names it.
            problems.append("the consistency checks stopped at a page that cannot be read (damaged).")
        problems = self.page_check.wait() + problems
        return CheckReport(problems=problems, documents_read=read, documents_unchanged=unchanged, full=full)

    def full_check_estimate(self) -> FullCheckEstimate:
        """How long `notewell check --full` will take, from the vault's size and this machine's
        cores: its documents (each loaded, read into its rows and its signatures verified,
        on as many cores as the check uses) and its databases' bytes (every page read twice:
        the HMACs and SQLite's structure check). Rates measured with bench/open_bench.py on a
        quiet machine; a busy one takes longer."""
        from store.prepare_pool import default_workers

        documents = self.record_conn.execute("SELECT count(*) FROM documents").fetchone()[0]
        size = sum((self.path / name).stat().st_size for name in (RECORD_DB, PRIVATE_DB))
        cores = 1 + default_workers()  # this process and its workers (store/check_reading.py)
        seconds = (FULL_CHECK_START_SECONDS + documents * FULL_CHECK_CPU_PER_DOCUMENT / cores
                   + size / FULL_CHECK_BYTES_PER_SECOND)
        return FullCheckEstimate(documents=documents, size_bytes=size, seconds=seconds)

    def _vault_file_problems(self) -> list[str]:
        """vault.json as it is on disk now: its checksum, its MAC and its device id."""
        try:
            on_disk = vaultfile.read(self.path)
        except NotewellError as e:
            return [f"{vaultfile.FILE_NAME}: {e.message}"]
        if not on_disk.authenticated:
            return [
                f"{vaultfile.FILE_NAME}: it is still in the first format, without a checksum "
                "or authentication code (the upgrade could not be written; it is tried at "
                "every unlock)."
            ]
        if not on_disk.mac_matches(self._file_key):
            return [f"{vaultfile.FILE_NAME}: {_ALTERED}"]
        identity = load_identity(self.record.replica)
        if identity is None or identity.device_id != on_disk.device_id:
            return [f"{vaultfile.FILE_NAME}: {_OTHER_DEVICE}"]
        return []

    def _private_store_if_available(self) -> PrivateStore | None:
        try:
            return self.private
        except ModuleNotFoundError as e:
            if e.name != "store.private":
                raise
            return None


@dataclass(frozen=True)
class CheckReport:
    """What `Vault.check_report` found, and how many documents it loaded to find it."""

    problems: list[str]
    documents_read: int  # loaded and compared with their rows
    documents_unchanged: int  # verified by an earlier check and unchanged since: not loaded
    full: bool


# A full check's rates on a quiet machine (bench/open_bench.py; bench/README.md, "... `check` on
# both cores"): the command's start and key derivation; the CPU to load a document, read it
# into its rows and verify its signatures again, shared by the cores the check uses; pages,
# each read twice (their HMACs, then SQLite's structure check).
FULL_CHECK_START_SECONDS = 1.0
FULL_CHECK_CPU_PER_DOCUMENT = 0.0023
FULL_CHECK_BYTES_PER_SECOND = 60e6


@dataclass(frozen=True)
class FullCheckEstimate:
    documents: int
    size_bytes: int
    seconds: float

    def sentence(self) -> str:
        size_mb = self.size_bytes / 1e6
        if self.seconds < 60:
            when = f"about {max(1, round(self.seconds))} s"
        else:
            when = f"about {self.seconds / 60:.0f} min"
        return (
            f"A full check loads all {self.documents:,} documents again and reads "
            f"{size_mb:,.0f} MB of pages twice: {when} on a quiet machine."
        )


def _close_unless_unverified(conn: sqlcipher3.Connection, page_check: PageCheck) -> None:
    """Checkpoint and close; only close while the pages are unverified or found damaged
    (a checkpoint writes to the main file). SQLite's own close may still fold in the log
    when this is its last connection: frames that were judged whole when the vault opened
    (store/write_ahead_log.py), since nothing was written after."""
    if page_check.passed:
        checkpoint_and_close(conn)
    else:
        conn.close()


def _database_keys(master: bytearray) -> list[bytearray]:
    return [
        keys.database_key(master, keys.RECORD_DB_INFO),
        keys.database_key(master, keys.PRIVATE_DB_INFO),
    ]


def _check_free(path: Path) -> None:
    """VaultExists unless `path` is missing or a folder holding none of a vault's files."""
    if path.exists() and not path.is_dir():
        raise VaultExists(f"{path} exists and is not a folder; nothing was changed.")
    if not path.exists():
        return
    names = [vaultfile.FILE_NAME]
    for db in (RECORD_DB, PRIVATE_DB):
        names += [db] + [db + suffix for suffix in SIDE_FILES]
    for name in names:
        if os.path.lexists(path / name):
            raise VaultExists(
                f"A vault (or part of one: {name}) already exists at {path}; nothing was overwritten."
            )


def _remove_if_ours(path: Path, content: bytes) -> None:
    """Undo our own write of a file, never someone else's."""
    try:
        if path.read_bytes() == content:
            path.unlink()
    except OSError:
        pass


def _ensure_local_tables(conn: sqlcipher3.Connection) -> None:
    # Read first: opening a vault that has the table takes no write lock.
    if conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'local_settings'"
    ).fetchone() is None:
        with write_transaction(conn):
            conn.execute(_LOCAL_SETTINGS_DDL)


def _write_settings(conn: sqlcipher3.Connection, settings: ClinicianSettings) -> None:
    value = json.dumps(settings.model_dump(mode="json"), sort_keys=True)
    with write_transaction(conn):
        conn.execute(
            "INSERT INTO local_settings (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (_SETTINGS_KEY, value),
        )


def _get_local_setting(conn: sqlcipher3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM local_settings WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


def _put_local_setting(conn: sqlcipher3.Connection, key: str, value: str) -> None:
    """Inside the caller's write transaction."""
    conn.execute(
        "INSERT INTO local_settings (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def _delete_local_setting(conn: sqlcipher3.Connection, key: str) -> None:
    conn.execute("DELETE FROM local_settings WHERE key = ?", (key,))


def _parse_pending(raw: str | None) -> dict | None:
    """A pending passphrase change as noted by `_switch_passphrase`; None if unreadable."""
    try:
        data = json.loads(raw or "")
        event = Event(data["event"])
        if event not in (Event.PASSPHRASE_CHANGED, Event.VAULT_RECOVERED):
            return None
        if not isinstance(data["wrap"], str) or not isinstance(data["at"], str):
            return None
        return {"wrap": data["wrap"], "event": event, "at": data["at"]}
    except (ValueError, KeyError, TypeError):
        return None


def _read_settings(conn: sqlcipher3.Connection) -> ClinicianSettings:
    row = conn.execute("SELECT value FROM local_settings WHERE key = ?", (_SETTINGS_KEY,)).fetchone()
    if row is None:
        return ClinicianSettings()
    try:
        return ClinicianSettings.model_validate_json(row[0])
    except ValueError:
        raise DamagedVault("The vault's clinician settings are damaged.") from None
