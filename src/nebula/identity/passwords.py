"""Password hashing with scrypt (hashlib): `scrypt$N$r$p$SALT$HASH`, base64 without padding.

N=2**15, r=8, p=1 costs about 32 MiB and a few tens of milliseconds per check: cheap for one
login, ruinous for a guesser with a stolen database. The parameters travel in the hash, so they
can be raised later without breaking stored hashes. Checks compare in constant time.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

N, R, P = 2**15, 8, 1
MIN_LENGTH = 10
_MAXMEM = 64 * 1024 * 1024


class WeakPasswordError(ValueError):
    pass


def check_strength(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPasswordError(f"a password needs at least {MIN_LENGTH} characters")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, N, R, P)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        found = _scrypt(password, _unb64(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(found, expected)


@functools.cache
def dummy_hash() -> str:
    """Checked when the user does not exist, so a wrong name costs as long as a wrong password."""
    return hash_password(secrets.token_urlsafe(16))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))
