"""`Vault`: secrets sealed in the state store under a master key kept outside it.

Reading fingerprints needs only the store (planning never decrypts); `set`, `reveal` and the
rotations need the master key, which is looked up the first time one of them runs.

Rotating the master key (`rotate_key`) is resumable: the new key is saved (in the key store's
`next` slot, then as a `next` row of `vault_keys`) before any secret moves; each secret row names
the key that wraps its data key and moves in its own transaction; the old key is retired only
when no row uses it, and only then does the new key become `current` in the key store. Whenever
it is killed, every secret stays readable with the keys on hand, and a rerun finishes the job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from nebula.secrets import crypto
from nebula.secrets.errors import (
    MasterKeyError,
    NotInitializedError,
    TamperedSecretError,
    UnknownSecretError,
    VaultError,
)
from nebula.secrets.keys import EnvironmentKey, KeyStore, Slot, locate
from nebula.spec.names import InvalidNameError, check_secret_name
from nebula.stand_ins import stand_in
from nebula.store import Store
from nebula.store import vault as rows
from nebula.store.vault import KeyRecord, SealedSecret

MAX_VALUE_BYTES = 64 * 1024
_BATCH = 100
_SLOTS: tuple[Slot, ...] = ("current", "next")


@dataclass(frozen=True)
class SecretInfo:
    """What may be shown about a secret: never its value."""

    name: str
    fingerprint: str
    key_id: str
    created_at: datetime | None
    rotated_at: datetime | None

    @property
    def masked(self) -> str:
        """`•••• 3f9a1c2b7d4e`-style stand-in shown in plans and listings."""
        return stand_in(self.fingerprint)


@dataclass(frozen=True)
class InitResult:
    key_id: str
    where: str
    created: bool  # False: the vault (or the key) was already there


@dataclass(frozen=True)
class RotationResult:
    old_key_id: str
    new_key_id: str
    moved: int
    where: str


def check_name(name: str) -> str:
    """`name` if it is a secret name (`nebula.spec.names`), else `VaultError`."""
    try:
        return check_secret_name(name)
    except InvalidNameError as exc:
        raise VaultError(str(exc)) from None


@dataclass
class _Unlocked:
    active_id: str
    masters: dict[str, bytes]  # key id -> master key
    fingerprint_key: bytes
    ciphers: dict[str, crypto.AESGCM] = field(default_factory=dict)  # built once per key

    def cipher(self, key_id: str) -> crypto.AESGCM | None:
        if key_id not in self.ciphers and key_id in self.masters:
            self.ciphers[key_id] = crypto.AESGCM(self.masters[key_id])
        return self.ciphers.get(key_id)


def _info(row: SealedSecret) -> SecretInfo:
    return SecretInfo(row.name, row.fingerprint, row.key_id, row.created_at, row.rotated_at)


class Vault:
    """The secrets of one state store. See the module docstring for the key handling."""

    def __init__(self, store: Store, keys: KeyStore | None = None) -> None:
        self._store = store
        self._keys = keys
        self._unlocked: _Unlocked | None = None
        self._unpromoted: str | None = None  # old key id, when a rotation was cut short

    @property
    def keys(self) -> KeyStore:
        if self._keys is None:
            self._keys = locate()
        return self._keys

    # -- reading without the master key ------------------------------------------------------

    def fingerprints(self) -> dict[str, str]:
        """Every secret's name -> fingerprint. Needs no master key: planning uses this."""
        return rows.fingerprints(self._store)

    def secrets(self) -> list[SecretInfo]:
        """Every secret, by name."""
        return [_info(r) for r in rows.listing(self._store)]

    def info(self, name: str) -> SecretInfo:
        row = rows.get(self._store, check_name(name))
        if row is None:
            raise UnknownSecretError(name)
        return _info(row)

    def key_records(self) -> list[KeyRecord]:
        return rows.keys(self._store)

    def remove(self, name: str) -> bool:
        """Delete a secret; False if there was none of that name."""
        return rows.remove(self._store, check_name(name))

    # -- the master key ----------------------------------------------------------------------

    def init(self) -> InitResult:
        """Create the master key (or adopt the one found) and register it with this vault."""
        records = rows.keys(self._store)
        if records:
            return InitResult(self._unlock().active_id, self.keys.where, created=False)
        master = self.keys.load("current")
        created = master is None
        if master is None:
            master = crypto.new_key()
            self.keys.save("current", master)
        key_id = crypto.key_id(master)
        fingerprint_key = crypto.derive(master, b"nebula-vault/fingerprint-key/v1")
        nonce, sealed = crypto.seal(master, fingerprint_key, crypto.fingerprint_key_data(key_id))
        rows.add_key(self._store, KeyRecord(key_id, "active", sealed, nonce))
        self._unlocked = _Unlocked(key_id, {key_id: master}, fingerprint_key)
        return InitResult(key_id, self.keys.where, created)

    def _unlock(self) -> _Unlocked:
        """Load the master keys this vault needs. Changes nothing (finishing a rotation cut
        short before its last step is `rotate_key`'s job)."""
        if self._unlocked is not None:
            return self._unlocked
        records = {r.key_id: r for r in rows.keys(self._store)}
        active = next((r for r in records.values() if r.state == "active"), None)
        if active is None:
            raise NotInitializedError("the vault has no master key yet: run `nebula secrets init`")
        loaded = {crypto.key_id(k): k for slot in _SLOTS if (k := self.keys.load(slot)) is not None}
        if not loaded:
            raise MasterKeyError(
                f"no master key in {self.keys.where}; this vault's key has id {active.key_id}. "
                "Restore it there, or set NEBULA_MASTER_KEY / NEBULA_MASTER_KEY_FILE"
            )
        known = {k: v for k, v in loaded.items() if k in records and records[k].state != "retired"}
        if active.key_id not in known:
            found = ", ".join(sorted(loaded))
            raise MasterKeyError(
                f"wrong master key: {self.keys.where} holds key id {found}, but this vault's "
                f"secrets are sealed with key id {active.key_id}; nothing was changed"
            )
        current = self.keys.load("current")
        if current is not None and crypto.key_id(current) != active.key_id:
            # a rotation finished in the store, killed before it promoted the new key
            self._unpromoted = crypto.key_id(current)
        master = known[active.key_id]
        try:
            fingerprint_key = crypto.open_sealed(
                master,
                active.fingerprint_nonce,
                active.fingerprint_key,
                crypto.fingerprint_key_data(active.key_id),
            )
        except crypto.InvalidTag:
            raise VaultError(
                f"the vault's key record {active.key_id} failed its integrity check "
                "(the vault_keys table was altered)"
            ) from None
        self._unlocked = _Unlocked(active.key_id, known, fingerprint_key)
        return self._unlocked

    def _wrapping_key(self) -> tuple[str, bytes]:
        """The key new data keys are wrapped with: the next one while a rotation runs."""
        unlocked = self._unlock()
        rotating = [
            r.key_id
            for r in rows.keys(self._store)
            if r.state == "next" and r.key_id in unlocked.masters
        ]
        key_id = rotating[0] if rotating else unlocked.active_id
        return key_id, unlocked.masters[key_id]

    # -- values ------------------------------------------------------------------------------

    def set(self, name: str, value: str) -> SecretInfo:
        """Store `value` under `name` with a fresh data key (replacing any previous value)."""
        check_name(name)
        data = value.encode()
        if not data:
            raise VaultError(f"secret {name!r}: the value is empty")
        if len(data) > MAX_VALUE_BYTES:
            raise VaultError(f"secret {name!r}: the value is over {MAX_VALUE_BYTES} bytes")
        key_id, master = self._wrapping_key()
        fingerprint = crypto.fingerprint(self._unlock().fingerprint_key, name, value)
        data_key = crypto.new_key()
        nonce, ciphertext = crypto.seal(data_key, data, crypto.value_data(name, fingerprint))
        key_nonce, wrapped = crypto.seal(master, data_key, crypto.data_key_data(name, key_id))
        sealed = SealedSecret(name, ciphertext, nonce, wrapped, key_nonce, key_id, fingerprint)
        return _info(rows.put(self._store, sealed))

    def rotate(self, name: str, value: str) -> SecretInfo:
        """A new value (and a new data key) for an existing secret."""
        self.info(name)  # UnknownSecretError if missing
        return self.set(name, value)

    def reveal(self, name: str) -> str:
        """The plain value. Keep it in memory; never log or print it unasked."""
        row = rows.get(self._store, check_name(name))
        if row is None:
            raise UnknownSecretError(name)
        return self._open(row)

    def reveal_many(self, names: Iterable[str]) -> dict[str, str]:
        """Plain values of `names`, in one query; `UnknownSecretError` for a missing one."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        found = {r.name: r for r in rows.get_many(self._store, wanted)}
        for name in wanted:
            if name not in found:
                raise UnknownSecretError(name)
        return {name: self._open(found[name]) for name in wanted}

    def reveal_planned(self, planned: Mapping[str, str]) -> dict[str, str]:
        """Plain values of the secrets a plan used (`planned`: name -> fingerprint), refused if
        any was changed or removed since the plan was made."""
        wanted = sorted(planned)
        found = {r.name: r for r in rows.get_many(self._store, wanted)}
        for name in wanted:
            row = found.get(name)
            if row is None:
                raise UnknownSecretError(name)
            if row.fingerprint != planned[name]:
                raise VaultError(
                    f"secret {name!r} changed since the plan was made (fingerprint "
                    f"{planned[name]} → {row.fingerprint}); plan again"
                )
        return {name: self._open(found[name]) for name in wanted}

    def _data_key(self, row: SealedSecret) -> bytes:
        master = self._unlock().cipher(row.key_id)
        if master is None:
            raise MasterKeyError(
                f"secret {row.name!r} is sealed with master key id {row.key_id}, which "
                f"{self.keys.where} does not hold"
            )
        try:
            return crypto.open_sealed(
                master, row.key_nonce, row.wrapped_key, crypto.data_key_data(row.name, row.key_id)
            )
        except crypto.InvalidTag:
            raise TamperedSecretError(row.name) from None

    def _open(self, row: SealedSecret) -> str:
        data_key = self._data_key(row)
        try:
            data = crypto.open_sealed(
                data_key, row.nonce, row.ciphertext, crypto.value_data(row.name, row.fingerprint)
            )
        except crypto.InvalidTag:
            raise TamperedSecretError(row.name) from None
        return data.decode()

    # -- rotating the master key ---------------------------------------------------------------

    def rotate_key(self, on_moved: Callable[[str], None] | None = None) -> RotationResult:
        """Re-wrap every data key under a new master key; resumes an interrupted rotation.

        `on_moved(name)` is called after each secret has moved (for progress).
        """
        if isinstance(self.keys, EnvironmentKey):
            raise self.keys.refusal()
        unlocked = self._unlock()
        if self._unpromoted is not None:  # finish the last rotation: promote its key
            new_id = unlocked.active_id
            self.keys.save("current", unlocked.masters[new_id])
            self.keys.delete("next")
            old_id, self._unpromoted = self._unpromoted, None
            return RotationResult(old_id, new_id, 0, self.keys.where)
        old_id = unlocked.active_id
        pending = [r for r in rows.keys(self._store) if r.state == "next"]
        if pending and pending[0].key_id in unlocked.masters:
            new_id = pending[0].key_id
        elif pending:
            raise MasterKeyError(
                f"a key rotation to key id {pending[0].key_id} was started, but "
                f"{self.keys.where} no longer holds that key"
            )
        else:
            new = self.keys.load("next")
            if new is None or crypto.key_id(new) == old_id:
                new = crypto.new_key()
                self.keys.save("next", new)  # saved before anything depends on it
            new_id = crypto.key_id(new)
            nonce, sealed = crypto.seal(
                new, unlocked.fingerprint_key, crypto.fingerprint_key_data(new_id)
            )
            rows.add_key(self._store, KeyRecord(new_id, "next", sealed, nonce))
            unlocked.masters[new_id] = new
        new_master = unlocked.masters[new_id]
        moved = 0
        while batch := rows.wrapped_by(self._store, old_id, _BATCH):
            for row in batch:
                data_key = self._data_key(row)
                nonce, wrapped = crypto.seal(
                    new_master, data_key, crypto.data_key_data(row.name, new_id)
                )
                if rows.rewrap(self._store, row.name, old_id, new_id, wrapped=wrapped, nonce=nonce):
                    moved += 1
                    if on_moved is not None:
                        on_moved(row.name)
        if not rows.finish_rotation(self._store, old_id, new_id):
            raise VaultError("secrets were added under the old key during the rotation; rerun it")
        self.keys.save("current", new_master)
        self.keys.delete("next")
        self._unlocked = _Unlocked(new_id, {new_id: new_master}, unlocked.fingerprint_key)
        return RotationResult(old_id, new_id, moved, self.keys.where)


def open_vault(store: Store, keys: KeyStore | None = None) -> Vault:
    """The vault kept in `store`; the master key is looked up (see `keys.locate`) when needed."""
    return Vault(store, keys)
