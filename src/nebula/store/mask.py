"""Masking secrets out of anything Nebula records or shows: `••••` and a short fingerprint.

`mask_detail` is the one function every audit detail goes through. It masks
- every value in `known` (resolved `${secret:NAME}` values, vault values), wherever it appears
  inside a string;
- whole values of fields named like a secret (password, passwd, token, secret, key, apikey,
  credential, auth, cookie, private, ...), at any depth, and `NAME=value` strings whose NAME is;
- the password of a URL (`scheme://user:password@host`).

The fingerprint (8 hex digits of a SHA-256) tells two values apart in a diff; it does not
identify a value (use the vault for that), and the same value always gets the same one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

MASK = "••••"

_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pwd",
        "passphrase",
        "token",
        "secret",
        "secrets",
        "key",
        "apikey",
        "credential",
        "credentials",
        "auth",
        "authorization",
        "cookie",
        "private",
        "signature",
    }
)
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_.-]*)=(.+)$", re.DOTALL)
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)(?P<pw>[^@\s/]+)(?=@)")


def mask(value: str) -> str:
    """`••••` and the value's fingerprint."""
    digest = hashlib.sha256(b"nebula-fingerprint\0" + value.encode()).hexdigest()
    return f"{MASK}{digest[:8]}"


def is_secret_name(name: str) -> bool:
    """Whether a field or variable name says its value is a secret (DB_PASSWORD, apiKey)."""
    return any(word.lower() in _SECRET_WORDS for word in _WORD.findall(name))


def mask_detail(value: Any, known: Iterable[str] = ()) -> Any:
    """`value` (JSON-like data) with every secret in it masked; the input is not changed."""
    secrets = sorted({s for s in known if s}, key=len, reverse=True)  # longest first
    return _walk(value, secrets, hide=False)


def _walk(value: Any, secrets: list[str], *, hide: bool) -> Any:
    if isinstance(value, dict):
        return {
            str(k): _walk(v, secrets, hide=hide or is_secret_name(str(k))) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_walk(v, secrets, hide=hide) for v in value]
    if value is None or isinstance(value, bool):
        return value
    if hide and isinstance(value, int | float):
        return mask(str(value))
    if not isinstance(value, str):
        return value
    if hide:
        return value if value.startswith(MASK) else mask(value)
    return _mask_text(value, secrets)


def _mask_text(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, mask(secret))
    assignment = _ASSIGNMENT.match(text)
    if assignment and is_secret_name(assignment[1]) and not assignment[2].startswith(MASK):
        return f"{assignment[1]}={mask(assignment[2])}"
    return _URL_PASSWORD.sub(
        lambda m: m[0] if m["pw"].startswith(MASK) else m["head"] + mask(m["pw"]), text
    )
