"""The DNS kind: the record sets of every zone in `domains/*.yaml` (and of exposed hostnames).

Each zone stands alone: one that cannot be read is a problem of the plan, never written (nothing
published is removed because a read failed), and the other zones go on. A zone planned is
applied as it was planned, without reading it again; what each zone holds afterwards is
recorded in the store.
"""

from __future__ import annotations

from typing import ClassVar

from nebula.errors import NebulaError
from nebula.kinds.base import Applied, Desired, World
from nebula.kinds.dns.apply import ZoneOutcome, apply_zones, plan_zones, record_outcomes
from nebula.kinds.dns.types import DnsAction
from nebula.plan import Part


class Dns:
    name: ClassVar[str] = "dns"

    def plan(self, desired: Desired, world: World) -> Part:
        outcomes = plan_zones(desired.zones, world.secret)
        changes = tuple(c for o in outcomes if o.plan for c in o.plan.changes)
        removed = {f"{c.name} {c.type}" for c in changes if c.action is DnsAction.DELETE}
        managed = sum(1 for o in outcomes if o.state for r in o.state.rrsets if r.owned)
        problems = tuple(p for o in outcomes for p in o.problems())
        return Part(
            self.name, changes, frozenset(removed), managed, "record sets", problems, outcomes
        )

    def apply(self, part: Part, desired: Desired, world: World) -> Applied:
        """Apply each zone as it was planned; a zone that could not be planned keeps its error
        and is not touched (nobody saw, and the guard never judged, what it would change)."""
        planned: list[ZoneOutcome] = part.detail or []
        known = {o.zone: o.plan for o in planned if o.plan is not None}
        zones = [z for z in desired.zones if z.zone in known]
        done = {o.zone: o for o in apply_zones(zones, world.secret, known=known)}
        outcomes = [done.get(o.zone, o) for o in planned]
        errors = [f"dns: {p}" for o in outcomes for p in o.problems()]
        try:
            record_outcomes(world.store, outcomes)
        except NebulaError as exc:
            errors.append(f"dns: cannot record the zones: {exc}")
        applied = tuple(c for o in outcomes if o.applied and o.plan for c in o.plan.pending)
        temporary = any(o.temporary for o in outcomes)
        return Applied(self.name, applied, tuple(errors), detail=outcomes, temporary=temporary)
