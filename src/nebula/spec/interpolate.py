"""Variable interpolation with compose's rules.

`$VAR` and `${VAR}` take the value; `${VAR:-default}` uses the default when VAR is unset or empty,
`${VAR-default}` only when unset; `${VAR:?message}` / `${VAR?message}` make a missing value an
error; `${VAR:+alt}` / `${VAR+alt}` give `alt` when VAR is set; `$$` is a literal dollar.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_TOKEN = re.compile(rf"\$(?:(?P<dollar>\$)|\{{(?P<braced>[^}}]*)\}}|(?P<named>{_NAME}))")
_BRACED = re.compile(rf"(?P<name>{_NAME})(?:(?P<op>:-|-|:\?|\?|:\+|\+)(?P<arg>.*))?", re.DOTALL)


class InterpolationError(ValueError):
    """A reference cannot be resolved; `name` is the variable concerned (may be empty)."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(message)


def _parse(braced: str) -> tuple[str, str | None, str]:
    match = _BRACED.fullmatch(braced)
    if match is None:
        raise InterpolationError(
            "", f"invalid reference ${{{braced}}}: expected ${{NAME}} or ${{NAME:-default}}"
        )
    return match["name"], match["op"], match["arg"] or ""


def references(text: str) -> list[tuple[str, bool]]:
    """Each variable `text` refers to, with whether the reference itself supplies a fallback."""
    found = []
    for token in _TOKEN.finditer(text):
        if token["named"]:
            found.append((token["named"], False))
        elif token["braced"] is not None:
            name, op, _ = _parse(token["braced"])
            found.append((name, op in (":-", "-", ":+", "+")))
    return found


def interpolate(text: str, values: Mapping[str, str]) -> str:
    """Substitute every reference in `text`; an unresolvable one raises `InterpolationError`."""

    def substitute(token: re.Match[str]) -> str:
        if token["dollar"]:
            return "$"
        if token["named"]:
            return _lookup(token["named"], values)
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


def _lookup(name: str, values: Mapping[str, str]) -> str:
    value = values.get(name)
    if value is None:
        raise InterpolationError(name, f"variable {name} has no value")
    return value
