"""The one JSON reader for API request bodies: strict and bounded, so bad input is a clear
error and never a traceback.

`loads(raw)` refuses (`BodyError`, with a message fit for the caller) what would crash or
mislead later: bytes that are not JSON; nesting deeper than `MAX_DEPTH` (Python's parser gives
up with a RecursionError near 1,000 levels, and whatever walks a body later recurses too);
numbers that are not finite (`NaN`, `Infinity`, `1e999`); integers outside 64 bits, which
neither SQLite nor PostgreSQL can hold.
"""

from __future__ import annotations

import json
import math
from typing import Any

from nebula.spec.names import excerpt

MAX_DEPTH = 32
_INT_LIMIT = 2**63


class BodyError(ValueError):
    """A request body refused; the message says why."""


def loads(raw: bytes | str) -> Any:
    """The JSON value of `raw` (see the module docstring for what is refused)."""
    try:
        value = json.loads(raw, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except BodyError:
        raise
    except RecursionError:
        raise _too_deep() from None
    except ValueError:  # not UTF-8, not JSON, an integer of thousands of digits
        raise BodyError("the request body is not JSON") from None
    if _deeper_than(value, MAX_DEPTH):
        raise _too_deep()
    return value


def _int(text: str) -> int:
    value = int(text)
    if not -_INT_LIMIT <= value < _INT_LIMIT:
        raise BodyError(f"the number {excerpt(text)} is out of range")
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BodyError(f"the number {excerpt(text)} is out of range")
    return value


def _constant(text: str) -> Any:
    raise BodyError(f"{text} is not a JSON number")


def _too_deep() -> BodyError:
    return BodyError(f"the request body nests deeper than {MAX_DEPTH} levels")


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` levels (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if level > limit:
            return True
        stack.extend((child, level + 1) for child in children)
    return False
