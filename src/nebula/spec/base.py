"""Shared building blocks of the spec models: strictness, durations, scalars read as text."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|s|m|h)")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class StrictModel(BaseModel):
    """Every spec model rejects unknown keys and is immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def parse_duration(value: Any) -> float:
    """Compose durations (`30s`, `1m30s`, `500ms`) or plain numbers of seconds → seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 1m30s or 500ms")
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)  # a bare number: seconds (flags and environment give text)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match[1]) * _UNIT_SECONDS[match[2]]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"{text!r} is not a duration; use e.g. 30s, 1m30s or 500ms")
    return total


def _as_text(value: Any) -> Any:
    """YAML reads `8080`, `1.0` or `true` as numbers and booleans; the spec wants their text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


# The JSON Schema of each (`nebula schema export`) says what YAML may hold, before conversion.
Duration = Annotated[float, BeforeValidator(parse_duration, json_schema_input_type=str | float)]
Text = Annotated[str, BeforeValidator(_as_text, json_schema_input_type=str | float | bool)]
