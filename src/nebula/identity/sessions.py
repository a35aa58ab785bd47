"""Logging in and proving who one is: passwords to tokens, tokens to a `Principal`.

`Sessions` is what the daemon's API uses: `login` (with back-off and lockout, see `lockout`),
`refresh` (rotation; a reused refresh token revokes its whole family), `logout`, and
`verify_bearer` for every TCP request (JWT access token, API key or service token; see
`tokens`). Every bearer is checked against the store: a key must still be active, an access
token's user must still exist, and gets no more than the role it holds now (a demoted admin's
token is an operator's). A verified bearer is remembered for `CACHE_SECONDS`, so a busy client
costs no store query per request. Its errors are `AuthError`, carrying the HTTP status and, for
a lockout, the seconds to wait.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nebula.identity import lockout
from nebula.identity.passwords import dummy_hash, verify_password
from nebula.identity.principal import Principal, Role, scope_role
from nebula.identity.tokens import (
    ACCESS_TTL,
    REFRESH_TTL,
    issue_access_token,
    new_refresh_token,
    read_access_token,
    sha256_hex,
    split_key,
)
from nebula.store import Store
from nebula.store import identity as queries
from nebula.store.identity import IdentityError, LoginUser
from nebula.store.models import new_id

_WRONG = "wrong user name or password"
# A verified bearer is trusted this long without asking the store again, so a key revoked or a
# user removed or demoted from another process (`nebula apikey revoke`, `nebula user rm`) keeps
# its power for at most this long; it can make no key meanwhile (checked as the key is added).
CACHE_SECONDS = 5.0
_CACHE_MAX = 10_000


class AuthError(IdentityError):
    """A login or refresh refused: `status` 401 (bad credentials) or 429 (locked out)."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        self.status = status
        self.retry_after = retry_after
        super().__init__(message)


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    expires_in: int  # seconds the access token is valid
    refresh_token: str
    refresh_expires_at: datetime
    user: str
    role: str


class Sessions:
    def __init__(
        self,
        store: Store,
        signing_key: bytes,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        address_guard: lockout.AddressGuard | None = None,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self.store = store
        self.key = signing_key
        self.clock = clock
        self.addresses = address_guard or lockout.AddressGuard()
        self._verified: dict[
            str, tuple[Principal, float]
        ] = {}  # SHA-256 of a bearer -> (who, until)
        self._lock = threading.Lock()
        self.cache_seconds = cache_seconds

    def login(self, name: str, password: str, address: str) -> TokenPair:
        if wait := self.addresses.blocked_for(address):
            raise AuthError(
                429, f"too many failed logins from {address}: try again later", retry_after=wait
            )
        user = queries.login_user(self.store, name)
        if user is None:
            verify_password(password, dummy_hash())  # as slow as a real check
            self.addresses.failed(address)
            raise AuthError(401, _WRONG)
        now = self.clock()
        if user.locked_until is not None and user.locked_until > now:
            wait = (user.locked_until - now).total_seconds()
            raise AuthError(
                429,
                f"user {name} is locked after {user.failed_logins} failed logins: try again later",
                retry_after=wait,
            )
        if not verify_password(password, user.password_hash):
            self.addresses.failed(address)
            queries.record_login_failure(self.store, name, lockout.user_lock_seconds, now)
            raise AuthError(401, _WRONG)
        if user.failed_logins:
            queries.record_login_success(self.store, name)
        refresh = new_refresh_token()
        expires = now + REFRESH_TTL
        queries.add_refresh_token(self.store, user.id, new_id(), sha256_hex(refresh), expires)
        return self._pair(user, refresh, expires)

    def refresh(self, token: str) -> TokenPair:
        """Spend `token` for a new pair; a token spent before revokes its whole login."""
        successor = new_refresh_token()
        expires = self.clock() + REFRESH_TTL
        outcome = queries.use_refresh_token(
            self.store, sha256_hex(token), sha256_hex(successor), expires
        )
        if outcome.reused:
            raise AuthError(
                401,
                "this refresh token was already used, so it may have been stolen: "
                "its session is revoked; log in again",
            )
        if outcome.user is None:
            raise AuthError(401, "invalid, expired or revoked refresh token: log in again")
        return self._pair(outcome.user, successor, expires)

    def logout(self, token: str) -> bool:
        """Revoke the login `token` belongs to; False when it is unknown."""
        return queries.revoke_refresh_family(self.store, sha256_hex(token))

    def needs_io(self, token: str) -> bool:
        """Whether `verify_bearer(token)` would read the store (a bearer not verified lately)."""
        return self._recall(sha256_hex(token)) is None

    def csrf_token(self, session: str) -> str:
        """What a browser's changes must carry beside the session cookie `session` (an access
        token): bound to it, so a token from another session, or none, is refused."""
        return hmac.new(self.key, b"csrf:" + session.encode(), "sha256").hexdigest()

    def forget_verified(self) -> None:
        """Drop the cache of verified bearers (a key was revoked through this process)."""
        with self._lock:
            self._verified.clear()

    def verify_bearer(self, token: str) -> Principal | None:
        digest = sha256_hex(token)
        if (cached := self._recall(digest)) is not None:
            return cached
        lifetime = self.cache_seconds
        key = split_key(token)
        if key is not None:
            principal = self._verify_key(*key)
        else:
            claims = read_access_token(self.key, token)
            principal = None if claims is None else self._verify_access(claims)
            if claims is not None:  # never trusted past its expiry
                lifetime = min(lifetime, float(claims["exp"]) - time.time())
        if principal is not None and lifetime > 0:
            with self._lock:
                if len(self._verified) >= _CACHE_MAX:
                    self._verified.clear()
                self._verified[digest] = (principal, time.monotonic() + lifetime)
        return principal

    def _recall(self, digest: str) -> Principal | None:
        with self._lock:
            cached = self._verified.get(digest)
        return cached[0] if cached is not None and cached[1] > time.monotonic() else None

    def _verify_access(self, claims: dict[str, Any]) -> Principal | None:
        """The principal of a valid access token whose user still exists, with the lesser of
        the token's role and the user's role now."""
        user = queries.user_by_id(self.store, str(claims["uid"]))
        if user is None or user.name != claims["sub"]:
            return None
        try:
            role = min(Role.parse(str(claims.get("role"))), Role.parse(user.role))
        except ValueError:
            return None
        return Principal(user.name, role, "password", f"user:{user.name}")

    def _verify_key(self, kind: str, prefix: str, secret: str) -> Principal | None:
        found = queries.api_key_secret(self.store, prefix)
        if found is None:
            return None
        info, stored = found
        if info.kind != kind or not hmac.compare_digest(sha256_hex(secret), stored):
            return None
        role = scope_role(info.scope)
        if kind == "service":
            return Principal(f"node:{info.name}", role, "service_token", f"key:{prefix}")
        return Principal(f"key:{info.name}", role, "api_key", f"key:{prefix}")

    def _pair(self, user: LoginUser, refresh: str, refresh_expires: datetime) -> TokenPair:
        access, _ = issue_access_token(self.key, user.name, user.id, user.role, self.clock())
        return TokenPair(
            access_token=access,
            expires_in=int(ACCESS_TTL.total_seconds()),
            refresh_token=refresh,
            refresh_expires_at=refresh_expires,
            user=user.name,
            role=user.role,
        )
