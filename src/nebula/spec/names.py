"""The one grammar of names: installations, packages, nodes, users, API keys, secrets.

A name is 1 to 63 characters: lowercase letters, digits, `.`, `_` and `-`, starting with a
letter or a digit. It never holds `/`, never starts with `.` and so is never `..`: a name is
safe as a file name (`packages/NAME.yaml`, `catalog/NAME/`), in Docker names (`NAME-web`,
`NAME_default`) and in a URL path segment.

Secret names follow the same rule with two allowances kept for vaults made before it: upper
case letters and a leading `_` (environment-style names such as `PDNS_API_KEY`, which
`NEBULA_SECRET_<NAME>` overrides mirror), and up to 128 characters, since an install names a
secret `INSTALLATION.VARIABLE`. A secret name is only ever a key in the vault, never a path.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

from nebula.errors import NebulaError

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler
    from pydantic_core import CoreSchema

NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
SECRET_NAME_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
SECRET_NAME = re.compile(SECRET_NAME_PATTERN)
COMPOSE_NAME = re.compile(r"[a-zA-Z0-9._-]+")
"""Compose's own grammar for the keys of `services:` and `volumes:` (its schema's
`^[a-zA-Z0-9._-]+$`): what a package may call a service or a volume."""

NAME_RULE = (
    "use 1 to 63 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit "
    "(no '/', no spaces, no upper case)"
)
SECRET_NAME_RULE = (
    "use 1 to 128 of letters, digits, '.', '_' and '-', starting with a letter, digit or '_'"
)
COMPOSE_NAME_RULE = "use letters, digits, '_', '.' and '-'"
_EXCERPT = 32  # a bad name longer than this is quoted by its first 12 characters only


class InvalidNameError(NebulaError, ValueError):
    """A name outside the grammar. A `ValueError` too, so pydantic reports it as a field's
    problem at its file:line."""


def check_name(value: str, what: str = "name") -> str:
    """`value` if it is a valid name, else `InvalidNameError` saying what is valid."""
    if not NAME.fullmatch(value):
        raise InvalidNameError(f"{what} {excerpt(value)} is not valid: {NAME_RULE}")
    return value


def check_secret_name(value: str) -> str:
    """`value` if it is a valid secret name, else `InvalidNameError` saying what is valid."""
    if not SECRET_NAME.fullmatch(value):
        raise InvalidNameError(f"secret name {excerpt(value)} is not valid: {SECRET_NAME_RULE}")
    return value


def excerpt(value: str) -> str:
    """`value` quoted, cut short when long: what a message may show of text from a file or a
    request, which may be anything (a host file's line, a secret)."""
    return repr(value) if len(value) <= _EXCERPT else f"{value[:12]!r}… ({len(value)} chars)"


class _NameField:
    """Pydantic metadata checking a `str` field with `check_name`. Not an `AfterValidator`:
    this module stays free of pydantic until a model is built (the CLI's fast paths use it)."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(check_name, handler(source))


Name = Annotated[str, _NameField()]
"""A field holding a name (pydantic reports a bad one, with the grammar, at its line)."""
