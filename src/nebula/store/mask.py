"""Masking secrets out of anything Nebula records: the one function every audit detail goes
through.

`mask_detail(value, known)` replaces
- every value in `known` (vault values, resolved `${secret:NAME}` references), and each of its
  common encodings (`secret_forms`), wherever it appears inside a string, by its stand-in:
  `••••` + the vault's keyed fingerprint, the same stand-in plans show, so an entry can be
  matched to a secret version without revealing it;
- whole values of fields named like a secret (password, passwd, token, secret, key, apikey,
  credential, auth, cookie, private, signature, ...; but not key_id, secret_name, token_file:
  names about a secret), at any depth, and `NAME=value` strings whose NAME is one, by a bare
  `••••`;
- the password of a URL (`scheme://user:password@host`), by a bare `••••`.

Values found by their name get no fingerprint: without the vault's key a fingerprint is an
unkeyed hash, and a hash of a weak password (a login's, say) lets a reader test guesses.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any
from urllib.parse import quote, quote_plus

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


def secret_forms(value: str) -> set[str]:
    """`value` and what a hook or a program commonly turns it into: base64 (with and without
    padding, wrapped at 76 columns as `base64` does, and of the value with the newline `echo`
    adds), base64url, hex (lower and upper case) and URL encoding."""
    raw = value.encode()
    forms = {value, quote(value, safe=""), quote_plus(value)}
    for data in (raw, raw + b"\n"):
        forms.update((data.hex(), data.hex().upper()))
        for encoded in (base64.b64encode(data), base64.urlsafe_b64encode(data)):
            forms.update((encoded.decode(), encoded.rstrip(b"=").decode()))
        forms.add(base64.encodebytes(data).decode().rstrip("\n"))
    return forms


def secret_replacer(known: Mapping[str, str]) -> Callable[[str], str]:
    """A function that replaces every secret value of `known` (value -> what takes its place),
    and each of its `secret_forms`, wherever it appears in a text; in one pass, so what took a
    secret's place is never itself taken for a secret."""
    table: dict[str, str] = {}
    for secret, replacement in known.items():
        if secret:
            for form in secret_forms(secret):
                table.setdefault(form, replacement)
    if not table:
        return str
    # Longest first: at any position, the whole of a longer form wins over a prefix of it.
    pattern = re.compile("|".join(map(re.escape, sorted(table, key=len, reverse=True))))
    return lambda text: pattern.sub(lambda m: table[m[0]], text)


def mask_detail(value: Any, known: Mapping[str, str] | None = None) -> Any:
    """`value` (JSON-like data) with every secret in it masked; the input is not changed.

    `known` maps secret values to their fingerprints.
    """
    replace = secret_replacer({v: stand_in(fp) for v, fp in (known or {}).items()})
    return _walk(value, replace, hide=False)


def _walk(value: Any, replace: Callable[[str], str], *, hide: bool) -> Any:
    if isinstance(value, dict):
        return {
            str(k): _walk(v, replace, hide=hide or is_secret_name(str(k))) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_walk(v, replace, hide=hide) for v in value]
    if value is None or isinstance(value, bool):
        return value
    if hide and isinstance(value, int | float):
        return MASK
    if not isinstance(value, str):
        return value
    if hide:
        return value if value.startswith(MASK) else MASK
    return _mask_text(replace(value))


def _mask_text(text: str) -> str:
    assignment = _ASSIGNMENT.match(text) if "=" in text else None
    if assignment and is_secret_name(assignment[1]) and not assignment[2].startswith(MASK):
        return f"{assignment[1]}={MASK}"
    if "@" not in text:  # no URL with a password (the pattern needs the `@`)
        return text
    return _URL_PASSWORD.sub(lambda m: m[0] if m["pw"].startswith(MASK) else m["head"] + MASK, text)
