"""The daemon's side of the reverse proxy: the proxy step of each sync, and certificate watch.

After every sync (also one that changed no container: an `expose:` added to a running app
changes only the proxy) Caddy's routes are brought in line; that is one GET of its config when
nothing changed. Certificates are read from Caddy's HTTPS listener shortly after routes
change (waiting for issuance) and hourly otherwise; each zone's status and expiry are recorded,
and a certificate close to expiry is published as a `certificate_expiring` warning event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from nebula.daemon.control import ControlError
from nebula.daemon.events import EventBus
from nebula.errors import NebulaError
from nebula.kinds.base import Applied, Desired
from nebula.kinds.routes.certificates import CertificateState
from nebula.kinds.routes.check import check_certificates, record_certificates
from nebula.spec.domain import zone_of
from nebula.store import Store
from nebula.store.dns import DnsStore

log = logging.getLogger("nebulad")

CHECK_INTERVAL = 3600.0  # certificates are re-read hourly, and soon after routes change
ISSUANCE_WAIT = 60.0  # how long a check waits for certificates still being issued


class ProxyKeeper:
    def __init__(
        self, store: Store, bus: EventBus, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.store = store
        self.bus = bus
        self.clock = clock  # the time certificates are judged at; None: now
        self._due = threading.Event()
        self._lock = threading.Lock()  # one certificate check at a time
        self._states: list[CertificateState] | None = None

    def applied(self, done: Applied) -> None:
        """After the routes step of a sync: publish what changed; certificates are read soon
        after routes change (and once after the daemon starts)."""
        for error in done.errors:
            log.warning("%s", error)
        if done.changes:
            changes = [c.to_dict() for c in done.changes]
            self.bus.publish("proxy_changed", changes=changes)
            log.info("proxy: %d route(s) and policies changed", len(changes))
        if done.changes or self._states is None:
            self._due.set()

    def watch(self, stop: threading.Event, current: Callable[[], Desired | None]) -> None:
        """Check certificates when due (routes changed) or hourly, until `stop`."""
        while not stop.is_set():
            self._due.wait(CHECK_INTERVAL)
            self._due.clear()
            desired = current()
            if desired is None or stop.is_set():
                continue
            try:
                self.check(desired, wait=ISSUANCE_WAIT)
            except NebulaError as exc:
                log.warning("certificates: %s", exc)

    def check(self, desired: Desired, wait: float = 0.0) -> list[CertificateState]:
        """Read, record and publish the certificates of `desired`'s exposed hostnames."""
        with self._lock:
            states = check_certificates(desired, wait=wait, clock=self.clock)
            record_certificates(self.store, desired, states)
            self._states = states
        for state in states:
            if state.expiring:
                log.warning("certificate of %s expires %s", state.host, state.expires_at)
                self.bus.publish("certificate_expiring", **state.to_dict())
        return states

    def domain_ssl(self, key: str, desired: Desired | None, check: bool) -> dict[str, Any]:
        """A zone's certificate status and its hostnames' certificates; with `check`, read
        afresh first."""
        dns = DnsStore(self.store)
        if check and desired is not None and dns.domain(key) is not None:
            self.check(desired)
        info = dns.domain(key)
        if info is None:
            raise ControlError("not_found", f"no domain {key!r}")
        states = [s for s in self._states or [] if zone_of(s.host, [info.name])]
        return {
            "id": info.id,
            "domain": info.name,
            "ssl_status": info.ssl_status,
            "ssl_expires_at": info.ssl_expires_at.isoformat() if info.ssl_expires_at else None,
            "certificates": [s.to_dict() for s in states],
        }
