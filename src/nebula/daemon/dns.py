"""The daemon's side of DNS: when a sync plans the zones, and what it tells about them.

The zones of the last good commit are planned (one GET per zone) and applied when they differ
from what was last applied, when the last attempt failed for a reason that may go away by itself
(a provider unreachable or failing: `Applied.temporary`), when a secret changed, or when
`RECHECK` seconds have passed (a record Nebula owns, removed or edited by hand, comes back); other
syncs leave DNS out and make no request. A refused token or record is not retried at every sync:
it waits for a change, or the recheck. Each zone applied is published as a `dns_changed` event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from nebula.daemon.events import EventBus
from nebula.kinds.base import Applied
from nebula.kinds.dns.apply import ZoneOutcome
from nebula.kinds.dns.types import DesiredZone

log = logging.getLogger("nebulad")

RECHECK = 300.0


class DnsKeeper:
    def __init__(self, bus: EventBus, recheck: float = RECHECK) -> None:
        self.bus = bus
        self.recheck = recheck
        self._applied: Sequence[DesiredZone] | None = None
        self._failed = False
        self._at = 0.0

    def due(self, zones: Sequence[DesiredZone]) -> bool:
        """Whether this sync plans the zones (see the module docstring)."""
        if list(zones) == self._applied and not self._failed:
            return time.monotonic() - self._at >= self.recheck
        return True

    def applied(self, zones: Sequence[DesiredZone], done: Applied) -> None:
        """Note what the DNS step of a sync did; publish each zone it changed."""
        self._at = time.monotonic()
        outcomes: list[ZoneOutcome] = done.detail or []
        for outcome in outcomes:
            if outcome.applied:
                changes = [c.to_dict() for c in outcome.plan.pending] if outcome.plan else []
                self.bus.publish("dns_changed", zone=outcome.zone, changes=changes)
                log.info("dns: zone %s: %d change(s) applied", outcome.zone, len(changes))
        for error in done.errors:
            log.warning("%s", error)
        self._applied, self._failed = list(zones), done.temporary

    def forget(self) -> None:
        """Something the zones depend on changed (a secret): plan them at the next sync."""
        self._applied = None
