"""The daemon's side of DNS: the DNS step of each sync.

Every sync brings the zones of the last good commit (validated when the commit was loaded)
in line (one GET per zone when nothing
changed), when they differ from what was last applied, when the last attempt failed, or when
`RECHECK` seconds have passed (a record Nebula owns, removed or edited by hand, comes back).
A zone that fails is recorded with its cause and never stops the other zones, nor the Docker
apply; provider tokens come from the vault (or `NEBULA_SECRET_NAME`).
"""

from __future__ import annotations

import logging
import time

from nebula.daemon.events import EventBus
from nebula.engine.reconcile import Desired
from nebula.errors import NebulaError
from nebula.kinds.dns.apply import (
    ProviderFactory,
    SecretResolver,
    apply_zones,
    open_dns_provider,
    record_outcomes,
    vault_secrets,
)
from nebula.kinds.dns.types import DesiredZone
from nebula.store import Store

log = logging.getLogger("nebulad")

RECHECK = 300.0


class DnsKeeper:
    def __init__(
        self,
        store: Store,
        bus: EventBus,
        secrets: SecretResolver | None = None,
        factory: ProviderFactory = open_dns_provider,
        recheck: float = RECHECK,
    ) -> None:
        self.store = store
        self.bus = bus
        self.secrets = secrets or vault_secrets(store)
        self.factory = factory
        self.recheck = recheck
        self._applied: list[DesiredZone] | None = None
        self._failed = False
        self._at = 0.0

    def sync(self, desired: Desired) -> list[str]:
        """Apply the zones of `desired` when due; the errors, for the sync's record."""
        zones = list(desired.zones)
        due = time.monotonic() - self._at >= self.recheck
        if zones == self._applied and not self._failed and not due:
            return []
        self._at = time.monotonic()
        if not zones:
            self._applied, self._failed = zones, False
            return []
        outcomes = apply_zones(zones, self.secrets, self.factory)
        try:
            record_outcomes(self.store, outcomes)
        except NebulaError as exc:
            log.warning("dns: cannot record the zones: %s", exc)
        errors = [f"dns: {problem}" for o in outcomes for problem in o.problems()]
        for outcome in outcomes:
            if outcome.applied:
                changes = [c.to_dict() for c in outcome.plan.pending] if outcome.plan else []
                self.bus.publish("dns_changed", zone=outcome.zone, changes=changes)
                log.info("dns: zone %s: %d change(s) applied", outcome.zone, len(changes))
        for error in errors:
            log.warning("%s", error)
        self._applied, self._failed = zones, bool(errors)
        return errors
