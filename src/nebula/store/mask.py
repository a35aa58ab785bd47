"""Masking secrets out of anything Nebula records: the one function every audit detail goes
through.

`mask_detail(value, known)` replaces
- every value in `known` (vault values, resolved `${secret:NAME}` references), wherever it
  appears inside a string, by its stand-in: `••••` + the vault's keyed fingerprint, the same
  stand-in plans show, so an entry can be matched to a secret version without revealing it;
- whole values of fields named like a secret (password, passwd, token, secret, key, apikey,
  credential, auth, cookie, private, signature, ...; but not key_id, secret_name, token_file:
  names about a secret), at any depth, and `NAME=value` strings whose NAME is one, by a bare
  `••••`;
- the password of a URL (`scheme://user:password@host`), by a bare `••••`.

Values found by their name get no fingerprint: without the vault's key a fingerprint is an
unkeyed hash, and a hash of a weak password (a login's, say) lets a reader test guesses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any

from nebula.stand_ins import MASK, stand_in

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
# ...unless the name ends in one of these: it names or counts a secret (key_id, secret_names).
_ABOUT_WORDS = frozenset(
    {"id", "ids", "name", "names", "file", "path", "prefix", "fingerprint", "count", "scope"}
)
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_.-]*)=(.+)$", re.DOTALL)
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)(?P<pw>[^@\s/]+)(?=@)")


@cache  # field names repeat: an audit detail of 1,000 changes has a handful
def is_secret_name(name: str) -> bool:
    """Whether a field or variable name says its value is a secret (DB_PASSWORD, apiKey; not
    key_id or secret_name)."""
    words = [word.lower() for word in _WORD.findall(name)]
    return bool(words) and words[-1] not in _ABOUT_WORDS and any(w in _SECRET_WORDS for w in words)


def mask_detail(value: Any, known: Mapping[str, str] | None = None) -> Any:
    """`value` (JSON-like data) with every secret in it masked; the input is not changed.

    `known` maps secret values to their fingerprints.
    """
    secrets = sorted(((v, fp) for v, fp in (known or {}).items() if v), key=lambda s: -len(s[0]))
    return _walk(value, secrets, hide=False)


def _walk(value: Any, secrets: list[tuple[str, str]], *, hide: bool) -> Any:
    if isinstance(value, dict):
        return {
            str(k): _walk(v, secrets, hide=hide or is_secret_name(str(k))) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_walk(v, secrets, hide=hide) for v in value]
    if value is None or isinstance(value, bool):
        return value
    if hide and isinstance(value, int | float):
        return MASK
    if not isinstance(value, str):
        return value
    if hide:
        return value if value.startswith(MASK) else MASK
    return _mask_text(value, secrets)


def _mask_text(text: str, secrets: list[tuple[str, str]]) -> str:
    for secret, fingerprint in secrets:
        if secret in text:
            text = text.replace(secret, stand_in(fingerprint))
    assignment = _ASSIGNMENT.match(text) if "=" in text else None
    if assignment and is_secret_name(assignment[1]) and not assignment[2].startswith(MASK):
        return f"{assignment[1]}={MASK}"
    if "@" not in text:  # no URL with a password (the pattern needs the `@`)
        return text
    return _URL_PASSWORD.sub(lambda m: m[0] if m["pw"].startswith(MASK) else m["head"] + MASK, text)
