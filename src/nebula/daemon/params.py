"""Query parameters every list route of the API reads the same way (`?limit=N`)."""

from __future__ import annotations

from starlette.requests import Request

from nebula.daemon.control import ControlError

MAX_LIMIT = 1000  # entries one list request may ask for


def query_limit(request: Request, default: int) -> int:
    """`?limit=N`, 1 to `MAX_LIMIT` (`default` when absent); `ControlError` otherwise."""
    raw = request.query_params.get("limit", str(default))
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_LIMIT):
        raise ControlError("invalid", f"limit must be a number from 1 to {MAX_LIMIT}, not {raw!r}")
    return int(raw)
