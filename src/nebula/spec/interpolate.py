"""Variable interpolation with compose's rules.

`$VAR` and `${VAR}` take the value; `${VAR:-default}` uses the default when VAR is unset or empty,
`${VAR-default}` only when unset; `${VAR:?message}` / `${VAR?message}` make a missing value an
error; `${VAR:+alt}` / `${VAR+alt}` give `alt` when VAR is set; `$$` is a literal dollar. A `${`
without its `}` is an error, as in compose (it would otherwise reach the container as text).

`${secret:NAME}` refers to a secret in the vault. Interpolation puts the secret's stand-in
(`••••` and its fingerprint) in its place, never its value: apply swaps the stand-in for the
value only in what it hands to Docker.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from nebula.spec.names import SECRET_NAME_PATTERN, excerpt

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_TOKEN = re.compile(
    rf"\$(?:(?P<dollar>\$)|\{{(?P<braced>[^}}]*)\}}|(?P<named>{_NAME})|(?P<unclosed>\{{))"
)
SECRET_PREFIX = "secret:"
_SECRET = re.compile(rf"secret:(?P<name>{SECRET_NAME_PATTERN})")
SECRET_REFERENCE = re.compile(rf"\$\{{secret:(?P<name>{SECRET_NAME_PATTERN})\}}")
_BRACED = re.compile(rf"(?P<name>{_NAME})(?:(?P<op>:-|-|:\?|\?|:\+|\+)(?P<arg>.*))?", re.DOTALL)


class InterpolationError(ValueError):
    """A reference cannot be resolved; `name` is the variable concerned (may be empty)."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(message)


class UnknownSecretError(InterpolationError):
    """`${secret:NAME}` names a secret the vault does not hold."""

    def __init__(self, name: str) -> None:
        super().__init__(
            name, f"no secret {name!r} in the vault; create it with `nebula secrets set {name}`"
        )


def secret_references(text: str) -> list[str]:
    """The secret names `text` refers to with `${secret:NAME}` (`$${...}` is not a reference)."""
    if "secret:" not in text:
        return []
    return [
        secret["name"]
        for token in _TOKEN.finditer(text)
        if token["braced"] and (secret := _SECRET.fullmatch(token["braced"]))
    ]


def _parse(braced: str) -> tuple[str, str | None, str]:
    match = _BRACED.fullmatch(braced)
    if match is None:
        raise InterpolationError(
            "",
            f"invalid reference {excerpt('${' + braced + '}')}: "
            "expected ${NAME} or ${NAME:-default}",
        )
    return match["name"], match["op"], match["arg"] or ""


def _unclosed(text: str, token: re.Match[str]) -> InterpolationError:
    return InterpolationError(
        "",
        f"unclosed reference {excerpt(text[token.start() :])}: close it with }}, or write $$ for $",
    )


def references(text: str) -> list[tuple[str, bool]]:
    """Each variable `text` refers to, with whether the reference itself supplies a fallback."""
    found = []
    for token in _TOKEN.finditer(text):
        if token["unclosed"]:
            raise _unclosed(text, token)
        if token["named"]:
            found.append((token["named"], False))
        elif token["braced"] is not None:
            if token["braced"].startswith(SECRET_PREFIX):
                continue
            name, op, _ = _parse(token["braced"])
            found.append((name, op in (":-", "-", ":+", "+")))
    return found


def interpolate(
    text: str, values: Mapping[str, str], secrets: Mapping[str, str] | None = None
) -> str:
    """Substitute every reference in `text`; an unresolvable one raises `InterpolationError`.

    `secrets` maps secret names to their stand-ins (see `stand_ins.stand_in`).
    """

    def substitute(token: re.Match[str]) -> str:
        if token["dollar"]:
            return "$"
        if token["named"]:
            return _lookup(token["named"], values)
        if token["unclosed"]:
            raise _unclosed(text, token)
        if token["braced"].startswith(SECRET_PREFIX):
            return _secret(token["braced"], {} if secrets is None else secrets)
        name, op, arg = _parse(token["braced"])
        value = values.get(name)
        if op is None:
            return _lookup(name, values)
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if value is not None else arg
        if op == ":+":
            return arg if value else ""
        if op == "+":
            return arg if value is not None else ""
        if (op == ":?" and not value) or (op == "?" and value is None):
            raise InterpolationError(name, arg or f"variable {name} is required")
        return value or ""

    if "$" not in text:
        return text
    return _TOKEN.sub(substitute, text)


def substitute_secrets(text: str, secrets: Mapping[str, str]) -> str:
    """Only the `${secret:NAME}` references of `text` replaced by stand-ins; the rest as is."""
    if "secret:" not in text:
        return text
    return SECRET_REFERENCE.sub(lambda m: _secret(m[0][2:-1], secrets), text)


def _secret(braced: str, secrets: Mapping[str, str]) -> str:
    match = _SECRET.fullmatch(braced)
    if match is None:
        raise InterpolationError(
            "",
            f"invalid secret reference {excerpt('${' + braced + '}')}: write ${{secret:NAME}} "
            "(letters, digits, '_', '.', '-'; no default)",
        )
    value = secrets.get(match["name"])
    if value is None:
        raise UnknownSecretError(match["name"])
    return value


def _lookup(name: str, values: Mapping[str, str]) -> str:
    value = values.get(name)
    if value is None:
        raise InterpolationError(name, f"variable {name} has no value")
    return value
