"""Plain YAML scalars read as compose reads them: YAML 1.2's core schema, as go-yaml v3 has it.

PyYAML's resolver follows YAML 1.1, where `53:53` is a base-60 number (3233), `yes`, `on` and
`y` are booleans and `2024-01-01` is a date. Compose (compose-go, on go-yaml v3) keeps all of
these as the strings written, and so does every file Nebula reads. The rules, in go-yaml's order:

- null: empty, `~`, `null`, `Null`, `NULL`; booleans: `true` and `false`, lower, title or upper
  case, nothing else;
- integers: decimal, `0x` hex, `0o` octal, `0b` binary and, as go-yaml keeps for compatibility,
  a leading `0` for octal (`0777` is 511); `_` between digits is dropped. Unlike go-yaml, which
  turns one beyond 64 bits into an inexact float, a large integer stays exact (the checks of the
  field it is given to say it is too large);
- floats: `1.5`, `1e3`, `.5`, `.inf`, `-.Inf`, `.nan`;
- anything else, dates included, is a string.
"""

from __future__ import annotations

import math
import re
from typing import Any

_YAML = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL = (_YAML + t for t in ("str", "int", "float", "bool", "null"))
SCALAR_TAGS = frozenset((STR, INT, FLOAT, BOOL, NULL))

_WORDS: dict[str, tuple[str, Any]] = {
    **{word: (BOOL, True) for word in ("true", "True", "TRUE")},
    **{word: (BOOL, False) for word in ("false", "False", "FALSE")},
    **{word: (NULL, None) for word in ("", "~", "null", "Null", "NULL")},
    **{word: (FLOAT, math.nan) for word in (".nan", ".NaN", ".NAN")},
    **{sign + inf: (FLOAT, math.inf) for sign in ("", "+") for inf in (".inf", ".Inf", ".INF")},
    **{"-" + inf: (FLOAT, -math.inf) for inf in (".inf", ".Inf", ".INF")},
}
_NUMERIC_START = frozenset("0123456789+-")
_INT = re.compile(
    r"([-+]?)(?:0[xX]([0-9a-fA-F]+)|0[oO]([0-7]+)|0[bB]([01]+)|(0[0-7]*)|([1-9][0-9]*))"
)
_BASES = (16, 8, 2, 8, 10)  # of _INT's groups 2 to 6
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_MAX_DIGITS = 1000  # a longer number is no number anyone means: left a string, never parsed


def resolve_plain(text: str) -> tuple[str, Any]:
    """The tag and value of a plain (unquoted, untagged) scalar."""
    word = _WORDS.get(text)
    if word is not None:
        return word
    first = text[0]
    if first == ".":
        return (FLOAT, float(text)) if _FLOAT.fullmatch(text) else (STR, text)
    if first not in _NUMERIC_START:
        return STR, text
    plain = text.replace("_", "")
    if len(plain) > _MAX_DIGITS:
        return STR, text
    number = _integer(plain)
    if number is not None:
        return INT, number
    if _FLOAT.fullmatch(plain):
        value = float(plain)
        if not math.isinf(value):  # beyond a double: go-yaml leaves it a string
            return FLOAT, value
    return STR, text


def read_tagged(tag: str, text: str) -> Any:
    """The value of a scalar with one of `SCALAR_TAGS` given (`!!int "17"`); ValueError when
    the text is not one of its kind (`!!float` takes an integer, as go-yaml does)."""
    if tag == STR:
        return text
    found, value = resolve_plain(text)
    if found == tag:
        return value
    if tag == FLOAT and found == INT:
        return float(value)
    raise ValueError(text)


def _integer(plain: str) -> int | None:
    match = _INT.fullmatch(plain)
    if match is None:
        return None
    group = next(i for i in range(2, 7) if match[i] is not None)
    digits = match[group]
    return int(digits, _BASES[group - 2]) * (-1 if match[1] == "-" else 1)
