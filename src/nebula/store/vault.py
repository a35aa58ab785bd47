"""Queries of the vault's tables: sealed secrets and the ids of the master keys.

Nothing here can decrypt: the store only holds ciphertexts, wrapped data keys, key ids and
fingerprints. `nebula.secrets` does the cryptography.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, select, update

from nebula.store.models import Secret, VaultKey, utcnow
from nebula.store.store import Store


@dataclass(frozen=True)
class KeyRecord:
    """A master key by its id; `fingerprint_key` is sealed under that master key."""

    key_id: str
    state: str  # active | next | retired
    fingerprint_key: bytes = field(repr=False)
    fingerprint_nonce: bytes = field(repr=False)
    created_at: datetime | None = None
    retired_at: datetime | None = None


@dataclass(frozen=True)
class SealedSecret:
    """A secret row as stored: the value sealed under a data key, wrapped under `key_id`."""

    name: str
    ciphertext: bytes = field(repr=False)
    nonce: bytes = field(repr=False)
    wrapped_key: bytes = field(repr=False)
    key_nonce: bytes = field(repr=False)
    key_id: str
    fingerprint: str
    created_at: datetime | None = None
    rotated_at: datetime | None = None


def _key(row: VaultKey) -> KeyRecord:
    return KeyRecord(
        row.key_id,
        row.state,
        row.fingerprint_key,
        row.fingerprint_nonce,
        row.created_at,
        row.retired_at,
    )


def _sealed(row: Secret) -> SealedSecret:
    return SealedSecret(
        row.name,
        row.ciphertext,
        row.nonce,
        row.wrapped_key,
        row.key_nonce,
        row.key_id,
        row.fingerprint,
        row.created_at,
        row.rotated_at,
    )


def keys(store: Store) -> list[KeyRecord]:
    """Every master key the vault has known, oldest first."""
    with store.transaction() as session:
        rows = session.scalars(select(VaultKey).order_by(VaultKey.created_at)).all()
        return [_key(r) for r in rows]


def add_key(store: Store, record: KeyRecord) -> None:
    with store.transaction() as session:
        session.add(
            VaultKey(
                key_id=record.key_id,
                state=record.state,
                fingerprint_key=record.fingerprint_key,
                fingerprint_nonce=record.fingerprint_nonce,
                created_at=utcnow(),
            )
        )


def finish_rotation(store: Store, old_key_id: str, new_key_id: str) -> bool:
    """Make `new_key_id` the active key and retire the old one, in one transaction.

    Refused (False) while any secret is still wrapped by the old key.
    """
    with store.transaction() as session:
        left = session.scalar(select(Secret.name).where(Secret.key_id == old_key_id).limit(1))
        if left is not None:
            return False
        session.execute(
            update(VaultKey)
            .where(VaultKey.key_id == old_key_id)
            .values(state="retired", retired_at=utcnow())
        )
        session.execute(
            update(VaultKey).where(VaultKey.key_id == new_key_id).values(state="active")
        )
        return True


def get(store: Store, name: str) -> SealedSecret | None:
    with store.transaction() as session:
        row = session.get(Secret, name)
        return _sealed(row) if row is not None else None


_IN_LIST_LIMIT = 100
_COLUMNS = (
    Secret.name,
    Secret.ciphertext,
    Secret.nonce,
    Secret.wrapped_key,
    Secret.key_nonce,
    Secret.key_id,
    Secret.fingerprint,
)


def get_many(store: Store, names: list[str]) -> list[SealedSecret]:
    """The named secrets that exist, without their times (plain columns, no ORM objects: an
    apply reads many at once; past a hundred names, reading them all beats a long IN list)."""
    wanted = set(names)
    query = select(*_COLUMNS)
    if len(wanted) <= _IN_LIST_LIMIT:
        query = query.where(Secret.name.in_(wanted))
    with store.transaction() as session:
        rows = session.execute(query).all()
    return [SealedSecret(*row) for row in rows if row[0] in wanted]


def put(store: Store, sealed: SealedSecret) -> SealedSecret:
    """Insert a new secret, or replace a secret's value (its `rotated_at` becomes now)."""
    now = utcnow()
    with store.transaction() as session:
        row = session.get(Secret, sealed.name)
        if row is None:
            row = Secret(name=sealed.name, created_at=now, rotated_at=None)
            session.add(row)
        else:
            row.rotated_at = now
        row.ciphertext = sealed.ciphertext
        row.nonce = sealed.nonce
        row.wrapped_key = sealed.wrapped_key
        row.key_nonce = sealed.key_nonce
        row.key_id = sealed.key_id
        row.fingerprint = sealed.fingerprint
        session.flush()
        return _sealed(row)


def listing(store: Store) -> list[SealedSecret]:
    """Every secret, by name."""
    with store.transaction() as session:
        return [_sealed(r) for r in session.scalars(select(Secret).order_by(Secret.name)).all()]


def fingerprints(store: Store) -> dict[str, str]:
    with store.transaction() as session:
        rows = session.execute(select(Secret.name, Secret.fingerprint)).all()
        return {name: fingerprint for name, fingerprint in rows}


def remove(store: Store, name: str) -> bool:
    with store.transaction() as session:
        result = session.execute(delete(Secret).where(Secret.name == name))
        return bool(result.rowcount)  # type: ignore[attr-defined]


def wrapped_by(store: Store, key_id: str, limit: int) -> list[SealedSecret]:
    """Up to `limit` secrets whose data key is wrapped by `key_id`."""
    with store.transaction() as session:
        rows = session.scalars(
            select(Secret).where(Secret.key_id == key_id).order_by(Secret.name).limit(limit)
        ).all()
        return [_sealed(r) for r in rows]


def rewrap(
    store: Store, name: str, old_key_id: str, new_key_id: str, *, wrapped: bytes, nonce: bytes
) -> bool:
    """Move one secret's data key to `new_key_id`, only if it is still under `old_key_id`."""
    with store.transaction() as session:
        result = session.execute(
            update(Secret)
            .where(Secret.name == name, Secret.key_id == old_key_id)
            .values(wrapped_key=wrapped, key_nonce=nonce, key_id=new_key_id)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]
