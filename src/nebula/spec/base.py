"""Shared building blocks of the spec models: strictness, durations, addresses, scalars read
as text."""

from __future__ import annotations

import ipaddress
import math
import re
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from nebula.spec.names import excerpt

_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")  # ASCII digits only: int() and float() take any
_DURATION_PART = re.compile(rf"({_NUMBER.pattern})(ms|us|s|m|h)")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_DURATION = 7 * 24 * 3600  # a week: beyond any real timeout or interval, far below overflows


class StrictModel(BaseModel):
    """Every spec model rejects unknown keys and is immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def parse_duration(value: Any) -> float:
    """Compose durations (`30s`, `1m30s`, `500ms`) or plain numbers of seconds → seconds,
    from 0 to `MAX_DURATION` (`.inf`, `.nan` and `999999999h` would only fail later)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 1m30s or 500ms")
    if isinstance(value, int | float):
        seconds: int | float = value
    else:
        text = str(value).strip()
        if _NUMBER.fullmatch(text):
            seconds = float(text)  # a bare number: seconds (flags and environment give text)
        else:
            pos, seconds = 0, 0.0
            for match in _DURATION_PART.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match[1]) * _UNIT_SECONDS[match[2]]
                pos = match.end()
            if not text or pos != len(text):
                raise ValueError(f"{excerpt(text)} is not a duration; use e.g. 30s, 1m30s or 500ms")
    if not 0 <= seconds <= MAX_DURATION:  # also false for nan
        raise ValueError(f"a duration is from 0 to {MAX_DURATION // 3600}h (7 days)")
    return float(seconds)


def check_ip_address(value: str) -> str:
    """`value` as a canonical IPv4 or IPv6 address, else ValueError (never a silent default).
    A scoped IPv6 address (`fe80::1%eth0`) is refused too: Docker takes none."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(
            f"{excerpt(value)} is not an IP address; use e.g. 0.0.0.0, 127.0.0.1 or ::1"
        ) from None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        raise ValueError(f"{excerpt(value)}: Docker takes no %zone; write the address alone")
    return str(address)


def _as_text(value: Any) -> Any:
    """YAML reads `8080`, `1.0` or `true` as numbers and booleans; the spec wants their text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, int):
        return str(value)
    return value


def _float_text(value: float) -> str:
    """A number as compose writes it (Go's `%v`: the shortest digits that read back, with an
    exponent from 1e+06 up and below 1e-04): `8`, `1000`, `1.5`, `1e+06`, `+Inf`."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)  # finite
    shown = "".join(map(str, digits))
    point = len(shown) + exponent  # where the decimal point falls among the digits
    minus = "-" if sign else ""
    if not -4 < point <= 6:  # the exponent form
        mantissa = shown[0] + ("." + shown[1:] if len(shown) > 1 else "")
        return f"{minus}{mantissa}e{point - 1:+03d}"
    if point <= 0:
        return f"{minus}0.{'0' * -point}{shown}"
    if point >= len(shown):
        return f"{minus}{shown}{'0' * (point - len(shown))}"
    return f"{minus}{shown[:point]}.{shown[point:]}"


def check_http_url(value: str) -> str:
    """An http(s) URL with a host, without a trailing `/`; `ValueError` for anything else."""
    url = value.strip()
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != -1
    except ValueError:  # a port that is no number, or out of range
        valid = False
    if not valid:
        raise ValueError(f"{excerpt(value)} is not an http(s) URL; use e.g. http://127.0.0.1:8080")
    return url.rstrip("/")


# The JSON Schema of each (`nebula schema export`) says what YAML may hold, before conversion.
Duration = Annotated[float, BeforeValidator(parse_duration, json_schema_input_type=str | float)]
Text = Annotated[str, BeforeValidator(_as_text, json_schema_input_type=str | float | bool)]
IpAddress = Annotated[str, AfterValidator(check_ip_address)]
HttpAddress = Annotated[str, AfterValidator(check_http_url)]
