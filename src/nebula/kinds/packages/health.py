"""Package health checks: one probe (HTTP, TCP or a command in a container), and waiting for one.

Apply waits for every check to pass after starting an installation; the daemon then runs them
on their interval (`daemon.health`). A probe never raises: a failure is a result with a reason.
"""

from __future__ import annotations

import functools
import socket
import ssl
import time
from dataclasses import dataclass

from nebula.errors import ProviderError
from nebula.kinds.packages.types import ExecCheck, HealthProbe, HttpCheck, TcpCheck
from nebula.providers.docker import DockerProvider

_OUTPUT_SHOWN = 200  # characters of a failing command's output kept in its detail
_SETTLE = 0.2  # seconds a TCP check waits to see whether the connection is closed at once


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str  # "HTTP 200", "connection refused", "exit code 1: ..."
    latency: float  # seconds the probe took


def probe(check: HealthProbe, provider: DockerProvider) -> ProbeResult:
    """Run `check` once, within its timeout."""
    started = time.monotonic()
    if isinstance(check, HttpCheck):
        ok, detail = _http(check)
    elif isinstance(check, TcpCheck):
        ok, detail = _tcp(check)
    else:
        ok, detail = _exec(check, provider)
    return ProbeResult(ok, detail, time.monotonic() - started)


def wait_healthy(check: HealthProbe, provider: DockerProvider, deadline: float) -> str | None:
    """Probe until `check` passes; None when it does, else why it still failed at `deadline`."""
    delay = 0.1
    while True:
        result = probe(check, provider)
        if result.ok:
            return None
        if time.monotonic() + delay > deadline:
            return f"health check {check.name!r} ({check.target}) failed: {result.detail}"
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)


@functools.cache
def _tls() -> ssl.SSLContext:
    """httpx's default TLS settings, made once: loading the CA bundle costs more than a check."""
    import httpx

    return httpx.create_ssl_context()


def _http(check: HttpCheck) -> tuple[bool, str]:
    import httpx  # only installations with HTTP checks pay for the import

    # An expected 3xx is judged as answered, not after following it.
    follow = not any(300 <= s < 400 for s in check.expect_status)
    try:
        with httpx.Client(timeout=check.timeout, follow_redirects=follow, verify=_tls()) as client:
            status = client.get(check.url).status_code
    except httpx.HTTPError as exc:
        return False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    ok = status in check.expect_status if check.expect_status else 200 <= status < 400
    expected = "" if ok or not check.expect_status else f", expected {_statuses(check)}"
    return ok, f"HTTP {status}{expected}"


def _statuses(check: HttpCheck) -> str:
    return " or ".join(str(s) for s in check.expect_status)


def _tcp(check: TcpCheck) -> tuple[bool, str]:
    """Connect, then listen briefly: Docker's userland proxy accepts on a published port even
    when nothing listens behind it, and closes at once; a server waits or greets instead."""
    try:
        with socket.create_connection((check.host, check.port), timeout=check.timeout) as conn:
            conn.settimeout(min(_SETTLE, check.timeout))
            try:
                closed = conn.recv(1) == b""
            except TimeoutError:
                closed = False
    except TimeoutError:
        return False, f"no answer within {check.timeout:g}s"
    except OSError as exc:
        return False, (exc.strerror or str(exc)).lower()
    if closed:
        return False, "connection closed at once: nothing listens behind the port"
    return True, "connected"


def _exec(check: ExecCheck, provider: DockerProvider) -> tuple[bool, str]:
    try:
        code, output = provider.exec_run(check.container, check.command, check.timeout)
    except ProviderError as exc:
        return False, exc.cause
    if code is None:
        return False, f"timed out after {check.timeout:g}s"
    shown = output.strip()[-_OUTPUT_SHOWN:]
    return code == 0, f"exit code {code}" + (f": {shown}" if shown and code != 0 else "")
