"""Queries for identity: users, refresh tokens, API keys and service tokens.

Only hashes are stored (a password's scrypt, a token's or key's SHA-256); the callers in
`nebula.identity` make and check them. Every function is one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import ColumnElement, CursorResult, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nebula.errors import NebulaError
from nebula.store.models import ApiKey, RefreshToken, User, new_id, utcnow
from nebula.store.store import Store

KeyKind = Literal["key", "service"]


class IdentityError(NebulaError):
    """A user or key that does not exist, already exists, or may not be used."""


class MakerGoneError(IdentityError):
    """The user or key making a key was removed, demoted or revoked meanwhile."""


@dataclass(frozen=True)
class UserInfo:
    name: str
    role: str
    failed_logins: int
    locked_until: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class LoginUser:
    """What a login checks: the user's id and role, and its scrypt hash and lockout."""

    id: str
    name: str
    role: str
    password_hash: str
    failed_logins: int
    locked_until: datetime | None


@dataclass(frozen=True)
class ApiKeyInfo:
    prefix: str
    name: str
    kind: KeyKind
    scope: str
    created_by: str | None
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class ActiveKey:
    """A key's maker that is an API key or service token: it must not be revoked."""

    prefix: str


@dataclass(frozen=True)
class ActiveUser:
    """A key's maker that is a logged-in user: it must still exist, with one of `roles`."""

    name: str
    roles: frozenset[str]


MakerCheck = ActiveKey | ActiveUser


@dataclass(frozen=True)
class RefreshOutcome:
    """A refresh token's use: `user` when it was valid (and is now spent), `reused` when it
    had been spent before (its whole family is now revoked).
    """

    user: LoginUser | None
    reused: bool = False


def _user_info(row: User) -> UserInfo:
    return UserInfo(
        row.name, row.role, row.failed_logins, row.locked_until, row.created_at, row.updated_at
    )


def _login_user(row: User) -> LoginUser:
    return LoginUser(
        row.id, row.name, row.role, row.password_hash, row.failed_logins, row.locked_until
    )


def _key_info(row: ApiKey) -> ApiKeyInfo:
    kind: KeyKind = "service" if row.kind == "service" else "key"
    return ApiKeyInfo(
        row.prefix, row.name, kind, row.scope, row.created_by, row.created_at, row.revoked_at
    )


# -- users ---------------------------------------------------------------------------------------


def add_user(store: Store, name: str, password_hash: str, role: str) -> UserInfo:
    try:
        with store.transaction() as session:
            row = User(name=name, password_hash=password_hash, role=role, failed_logins=0)
            session.add(row)
            session.flush()
            return _user_info(row)
    except NebulaError as exc:
        if isinstance(exc.__cause__, IntegrityError):
            raise IdentityError(f"user {name!r} already exists") from None
        raise


def list_users(store: Store) -> list[UserInfo]:
    with store.transaction() as session:
        return [_user_info(r) for r in session.scalars(select(User).order_by(User.name))]


def remove_user(store: Store, name: str) -> list[ApiKeyInfo]:
    """Remove the user and every refresh token it holds; revoke the API keys it made (and the
    keys those made). Returns the keys revoked.
    """
    with store.transaction() as session:
        user_id = session.scalar(select(User.id).where(User.name == name))
        if user_id is None:
            raise IdentityError(f"no user {name!r}")
        session.execute(delete(RefreshToken).where(RefreshToken.user_id == user_id))
        session.execute(delete(User).where(User.id == user_id))
        return _revoke_keys_made_by(session, name, utcnow())


def set_role(
    store: Store, name: str, role: str, revoke_scopes: Collection[str]
) -> list[ApiKeyInfo]:
    """Give the user `role`; revoke the API keys it made with a scope in `revoke_scopes` (those
    above the new role), and the keys those made. Returns the keys revoked.
    """
    now = utcnow()
    with store.transaction() as session:
        user = _locked_user(session, name)
        user.role = role
        user.updated_at = now
        return _revoke_keys_made_by(session, name, now, scopes=revoke_scopes)


def _locked_user(session: Session, name: str) -> User:
    """The user named `name`, its row locked for this transaction; `IdentityError` if none."""
    user = session.scalar(select(User).where(User.name == name).with_for_update())
    if user is None:
        raise IdentityError(f"no user {name!r}")
    return user


def set_password(store: Store, name: str, password_hash: str) -> None:
    """A new password: clears the lockout and revokes every refresh token of the user."""
    now = utcnow()
    with store.transaction() as session:
        user = _locked_user(session, name)
        user.password_hash = password_hash
        user.failed_logins = 0
        user.locked_until = None
        user.updated_at = now
        _revoke_where(session, RefreshToken.user_id == user.id, now)


def login_user(store: Store, name: str) -> LoginUser | None:
    with store.transaction() as session:
        row = session.scalar(select(User).where(User.name == name))
        return None if row is None else _login_user(row)


def user_by_id(store: Store, user_id: str) -> LoginUser | None:
    with store.transaction() as session:
        row = session.get(User, user_id)
        return None if row is None else _login_user(row)


def record_login_failure(
    store: Store, name: str, lockout: Callable[[int], float | None], now: datetime
) -> datetime | None:
    """Count a wrong password at `now`; `lockout(failures)` gives the seconds to lock for, if
    any. Returns the user's `locked_until` afterwards.
    """
    with store.transaction() as session:
        user = session.scalar(select(User).where(User.name == name).with_for_update())
        if user is None:
            return None
        user.failed_logins += 1
        seconds = lockout(user.failed_logins)
        if seconds:
            user.locked_until = now + timedelta(seconds=seconds)
        return user.locked_until


def record_login_success(store: Store, name: str) -> None:
    with store.transaction() as session:
        session.execute(
            update(User)
            .where(User.name == name, User.failed_logins != 0)
            .values(failed_logins=0, locked_until=None)
        )


# -- refresh tokens ------------------------------------------------------------------------------


def add_refresh_token(
    store: Store, user_id: str, family_id: str, token_hash: str, expires_at: datetime
) -> None:
    with store.transaction() as session:
        session.add(
            RefreshToken(
                id=new_id(),
                user_id=user_id,
                family_id=family_id,
                token_hash=token_hash,
                expires_at=expires_at,
            )
        )


def use_refresh_token(
    store: Store, token_hash: str, next_hash: str, next_expires_at: datetime
) -> RefreshOutcome:
    """Spend a refresh token and issue its successor (`next_hash`) in the same family."""
    now = utcnow()
    with store.transaction() as session:
        token = session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
        )
        if token is None or token.revoked_at is not None:
            return RefreshOutcome(None)
        if token.used_at is not None:
            _revoke_where(session, RefreshToken.family_id == token.family_id, now)
            return RefreshOutcome(None, reused=True)
        if token.expires_at <= now:
            return RefreshOutcome(None)
        user = session.get(User, token.user_id)
        if user is None:
            return RefreshOutcome(None)
        # Spent only if nobody spent it meanwhile (SQLite takes no row lock on SELECT).
        spent = session.execute(
            update(RefreshToken)
            .where(RefreshToken.id == token.id, RefreshToken.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        if not isinstance(spent, CursorResult) or spent.rowcount != 1:
            _revoke_where(session, RefreshToken.family_id == token.family_id, now)
            return RefreshOutcome(None, reused=True)
        session.add(
            RefreshToken(
                id=new_id(),
                user_id=token.user_id,
                family_id=token.family_id,
                token_hash=next_hash,
                expires_at=next_expires_at,
            )
        )
        return RefreshOutcome(_login_user(user))


def revoke_refresh_family(store: Store, token_hash: str) -> bool:
    """Revoke the login (every token of the family) the token belongs to; False if unknown."""
    now = utcnow()
    with store.transaction() as session:
        family = session.scalar(
            select(RefreshToken.family_id).where(RefreshToken.token_hash == token_hash)
        )
        if family is None:
            return False
        _revoke_where(session, RefreshToken.family_id == family, now)
        return True


def _revoke_where(session: Session, condition: ColumnElement[bool], now: datetime) -> None:
    session.execute(
        update(RefreshToken)
        .where(condition, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


# -- API keys and service tokens -----------------------------------------------------------------


def add_api_key(
    store: Store,
    *,
    prefix: str,
    name: str,
    kind: KeyKind,
    scope: str,
    secret_hash: str,
    created_by: str | None,
    maker: MakerCheck | None = None,
) -> ApiKeyInfo:
    """Add a key. `maker`, when given, is checked in the same transaction, its row locked: a
    maker revoked or removed while its bearer was still trusted (the daemon remembers one for
    seconds) makes nothing, which the revocation walk (`_revoke_keys_made_by`) could miss.
    """
    with store.transaction() as session:
        taken = session.scalar(
            select(ApiKey.prefix).where(
                ApiKey.name == name, ApiKey.kind == kind, ApiKey.revoked_at.is_(None)
            )
        )
        if taken is not None:
            what = "node" if kind == "service" else "API key"
            raise IdentityError(
                f"{what} {name!r} already has an active {'token' if kind == 'service' else 'key'}"
                f" ({taken}): revoke it first"
            )
        row = ApiKey(
            prefix=prefix,
            name=name,
            kind=kind,
            scope=scope,
            secret_hash=secret_hash,
            created_by=created_by,
        )
        session.add(row)
        session.flush()
        # After the insert: on SQLite it holds the write lock, so no revocation commits between
        # this check and ours; on PostgreSQL the row lock does (a revocation updates that row).
        if maker is not None:
            _check_maker(session, maker)
        return _key_info(row)


def _check_maker(session: Session, maker: MakerCheck) -> None:
    if isinstance(maker, ActiveKey):
        key = session.scalar(select(ApiKey).where(ApiKey.prefix == maker.prefix).with_for_update())
        if key is None or key.revoked_at is not None:
            raise MakerGoneError(f"key {maker.prefix} was revoked: it may make no keys")
        return
    role = session.scalar(select(User.role).where(User.name == maker.name).with_for_update())
    if role is None:
        raise MakerGoneError(f"user {maker.name} was removed: it may make no keys")
    if role not in maker.roles:
        raise MakerGoneError(f"user {maker.name} has the role {role} now: it may make no keys")


def api_key_secret(store: Store, prefix: str) -> tuple[ApiKeyInfo, str] | None:
    """An active key by its prefix, with the hash of its secret to compare against."""
    with store.transaction() as session:
        row = session.scalar(
            select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
        )
        return None if row is None else (_key_info(row), row.secret_hash)


def list_api_keys(store: Store, *, revoked: bool = False) -> list[ApiKeyInfo]:
    with store.transaction() as session:
        query = select(ApiKey).order_by(ApiKey.kind, ApiKey.name, ApiKey.created_at)
        if not revoked:
            query = query.where(ApiKey.revoked_at.is_(None))
        return [_key_info(r) for r in session.scalars(query)]


def _revoke_keys_made_by(
    session: Session, creator: str, now: datetime, *, scopes: Collection[str] | None = None
) -> list[ApiKeyInfo]:
    """Revoke the keys `creator` made (only those of `scopes`, when given), then every key made
    by one of those, and so on: a removed admin leaves no key behind. Keys revoked already are
    followed too, as a key may have made others before it was revoked. A key names the key
    that made it by id, `key:PREFIX` (see `identity.principal`).
    """
    revoked: list[ApiKeyInfo] = []
    creators = [creator]
    while creators:
        query = select(ApiKey).where(ApiKey.created_by.in_(creators))
        if scopes is not None:
            query = query.where(ApiKey.scope.in_(scopes))
            scopes = None  # a key made by a revoked key goes, whatever its scope
        rows = list(session.scalars(query))
        for row in rows:
            if row.revoked_at is None:
                row.revoked_at = now
                revoked.append(_key_info(row))
        creators = [f"key:{row.prefix}" for row in rows]
    return revoked


def revoke_api_key(store: Store, prefix: str) -> ApiKeyInfo:
    with store.transaction() as session:
        row = session.scalar(
            select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
        )
        if row is None:
            raise IdentityError(f"no active API key or service token with id {prefix!r}")
        row.revoked_at = utcnow()
        return _key_info(row)
