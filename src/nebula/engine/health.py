"""Waiting for an installation to be healthy: Docker healthchecks, then the package's HTTP checks."""

from __future__ import annotations

import time

from nebula.resources import HttpCheck


def wait_http(check: HttpCheck, deadline: float) -> str | None:
    """Probe `check.url` until it answers 2xx/3xx; None when healthy, else the last failure."""
    import httpx  # only installations with HTTP checks pay for the import

    delay = 0.1
    failure = "not probed"
    with httpx.Client(timeout=check.timeout, follow_redirects=True) as client:
        while True:
            try:
                response = client.get(check.url)
                if response.status_code < 400:
                    return None
                failure = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                failure = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if time.monotonic() + delay > deadline:
                return f"health check {check.name!r} ({check.url}) failed: {failure}"
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)
