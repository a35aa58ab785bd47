"""Certificates of the exposed hostnames: read what Caddy serves, record it, flag expiry.

Each hostname's certificate is read from Caddy's HTTPS listener with the name as SNI (what a
client is served). Per zone of `domains/`, the worst status and the earliest expiry go to the
zone's `ssl_status` / `ssl_expires_at`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from nebula.kinds.base import Desired
from nebula.kinds.routes.apply import proxy_settings
from nebula.kinds.routes.certificates import CertificateState, certificate_state, summarize
from nebula.providers.tls_probe import served_certificate
from nebula.spec.domain import zone_of
from nebula.store import Store
from nebula.store.ssl import record_ssl


def check_certificates(
    desired: Desired, *, wait: float = 0.0, clock: Callable[[], datetime] | None = None
) -> list[CertificateState]:
    """The state of every exposed hostname's certificate. With `wait`, names still pending
    are read again until they are served or `wait` seconds have passed (just after a load,
    issuance takes a moment)."""
    proxy = proxy_settings(desired)
    if proxy is None or not desired.routes:
        return []
    now = clock or (lambda: datetime.now(UTC))
    deadline = time.monotonic() + wait
    states: dict[str, CertificateState] = {}
    todo = list(desired.routes)
    while True:
        for route in todo:
            served = served_certificate(proxy.https_address, proxy.https_port, route.host)
            states[route.host] = certificate_state(route.host, route.installation, served, now())
        todo = [r for r in todo if states[r.host].status == "pending"]
        if not todo or time.monotonic() >= deadline:
            return [states[r.host] for r in desired.routes]
        time.sleep(0.2)


def record_certificates(store: Store, desired: Desired, states: list[CertificateState]) -> None:
    """Write each zone's worst status and earliest expiry; a zone with no exposed hostname
    has none (cleared if it had one)."""
    zones = [d.spec.zone for d in desired.repo.domains]
    by_zone: dict[str, list[CertificateState]] = {zone: [] for zone in zones}
    for state in states:
        zone = zone_of(state.host, zones)
        if zone is not None:
            by_zone[zone].append(state)
    for zone, found in sorted(by_zone.items()):
        status, expires_at = summarize(found) if found else (None, None)
        record_ssl(store, zone, status, expires_at)
