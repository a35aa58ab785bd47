"""Managing users, API keys and service tokens (for `nebula user|apikey` and admin routes)."""

from __future__ import annotations

from nebula.identity.passwords import WeakPasswordError, check_strength, hash_password
from nebula.identity.principal import SCOPE_ROLES, Role
from nebula.identity.tokens import new_key
from nebula.spec import names
from nebula.store import Store
from nebula.store import identity as queries
from nebula.store.identity import ApiKeyInfo, IdentityError, UserInfo


def check_name(name: str, what: str = "user name") -> str:
    """`name` if it is a valid name (`nebula.spec.names`), else `IdentityError`."""
    try:
        return names.check_name(name, what)
    except names.InvalidNameError as exc:
        raise IdentityError(str(exc)) from None


def add_user(store: Store, name: str, password: str, role: str) -> UserInfo:
    check_name(name)
    parsed = _role(role)
    _strong(password)
    return queries.add_user(store, name, hash_password(password), parsed.name)


def set_password(store: Store, name: str, password: str) -> None:
    """Change the password; the user's sessions (refresh tokens) end and any lockout lifts."""
    _strong(password)
    queries.set_password(store, name, hash_password(password))


def users(store: Store) -> list[UserInfo]:
    return queries.list_users(store)


def remove_user(store: Store, name: str) -> list[ApiKeyInfo]:
    """Remove the user: its sessions end, and the API keys it made are revoked (returned)."""
    return queries.remove_user(store, name)


def set_role(store: Store, name: str, role: str) -> list[ApiKeyInfo]:
    """Change the user's role; the API keys it made above the new role are revoked (returned).
    Its access tokens hold the new role within seconds (see `sessions.Sessions`).
    """
    parsed = _role(role)
    above = [scope for scope, granted in SCOPE_ROLES.items() if granted > parsed]
    return queries.set_role(store, name, parsed.name, above)


def create_key(
    store: Store,
    name: str,
    scope: str,
    *,
    service: bool = False,
    created_by: str | None = None,
    maker: queries.MakerCheck | None = None,
) -> tuple[ApiKeyInfo, str]:
    """A new API key (or a node's service token) and its token, which is shown only now.
    `maker`: what must still hold of its maker as it is added (`Principal.maker`)."""
    check_name(name, "node name" if service else "key name")
    if scope not in SCOPE_ROLES:
        raise IdentityError(f"unknown scope {scope!r}: use read, write or admin")
    kind: queries.KeyKind = "service" if service else "key"
    made = new_key(kind)
    info = queries.add_api_key(
        store,
        prefix=made.prefix,
        name=name,
        kind=kind,
        scope=scope,
        secret_hash=made.secret_hash,
        created_by=created_by,
        maker=maker,
    )
    return info, made.token


def keys(store: Store, *, revoked: bool = False) -> list[ApiKeyInfo]:
    return queries.list_api_keys(store, revoked=revoked)


def revoke_key(store: Store, prefix: str) -> ApiKeyInfo:
    return queries.revoke_api_key(store, prefix)


def _role(role: str) -> Role:
    try:
        return Role.parse(role)
    except ValueError as exc:
        raise IdentityError(str(exc)) from None


def _strong(password: str) -> None:
    try:
        check_strength(password)
    except WeakPasswordError as exc:
        raise IdentityError(str(exc)) from None
