"""Tokens and keys: JWT access tokens, random refresh tokens, API keys and service tokens.

- Access token: a JWT (HS256) with `sub` (user), `uid` (the user's id), `role`, `iat`, `exp`
  (15 minutes), `typ` access. Its signature and expiry are checked here; `sessions` then checks
  that the user (by id, so a new user of the same name is not it) still exists, and grants no
  more than the role it holds now.
- Refresh token: 256 random bits, stored as its SHA-256; a plain hash suffices for a secret
  that cannot be guessed, and it is looked up by that hash.
- API key `nbk_PREFIX_SECRET`, service token `nbs_PREFIX_SECRET`: PREFIX (12 hex digits) is
  the lookup id, shown in listings; only SHA-256(SECRET) is stored, compared in constant time.

The signing key is 32 random bytes in a 0600 file in the daemon's data dir (`signing.key`),
made on first use: never in the database, so a copy of the database cannot mint tokens.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from nebula.store.identity import IdentityError

ACCESS_TTL = timedelta(minutes=15)
REFRESH_TTL = timedelta(days=30)
ISSUER = "nebulad"
KEY_PREFIXES: dict[Literal["key", "service"], str] = {"key": "nbk", "service": "nbs"}
SIGNING_KEY_FILE = "signing.key"


@dataclass(frozen=True)
class NewKey:
    """A key as made: `token` is shown once and never stored."""

    prefix: str
    token: str
    secret_hash: str


def sha256_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def new_key(kind: Literal["key", "service"]) -> NewKey:
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return NewKey(prefix, f"{KEY_PREFIXES[kind]}_{prefix}_{secret}", sha256_hex(secret))


def split_key(token: str) -> tuple[Literal["key", "service"], str, str] | None:
    """(kind, prefix, secret) of an API key or service token; None for anything else."""
    head, _, rest = token.partition("_")
    prefix, _, secret = rest.partition("_")
    kind = {"nbk": "key", "nbs": "service"}.get(head)
    if kind is None or len(prefix) != 12 or not secret:
        return None
    return ("key" if kind == "key" else "service"), prefix, secret


def issue_access_token(
    key: bytes, user: str, user_id: str, role: str, now: datetime
) -> tuple[str, datetime]:
    import jwt

    expires = now + ACCESS_TTL
    claims = {
        "iss": ISSUER,
        "sub": user,
        "uid": user_id,
        "role": role,
        "typ": "access",
        "iat": int(now.timestamp()),
        "exp": int(expires.timestamp()),
    }
    return jwt.encode(claims, key, algorithm="HS256"), expires


def read_access_token(key: bytes, token: str) -> dict[str, Any] | None:
    """The claims of a valid, unexpired access token of ours; None for anything else."""
    import jwt

    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=["HS256"],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "iss", "uid"]},
        )
    except jwt.PyJWTError:
        return None
    return claims if claims.get("typ") == "access" else None


def load_signing_key(data_dir: Path) -> bytes:
    """The signing key in `data_dir`, made (0600) when missing; refused if others can read it."""
    path = data_dir / SIGNING_KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise IdentityError(
            f"{path} is readable by other users (mode {mode:04o}): run `chmod 600 {path}`"
        )
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError:
        key = b""
    if len(key) < 32:
        raise IdentityError(f"{path} does not hold a signing key: remove it to make a new one")
    return key
