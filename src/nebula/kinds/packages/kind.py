"""The packages kind: installations from the catalog (or inline compose) run on Docker."""

from __future__ import annotations

from typing import ClassVar

from nebula.kinds.base import Applied, Desired, World
from nebula.kinds.packages.diff import Snapshot
from nebula.kinds.packages.types import Observed, PackagesPlan, Resource, engine
from nebula.plan import Action, Part


class Packages:
    name: ClassVar[str] = "packages"

    def plan(self, desired: Desired, world: World) -> Part:
        if engine(desired.repo.config.nodes[0]) == "swarm":  # the swarm kind runs services
            return Part(self.name, detail=Snapshot(desired, Observed(), PackagesPlan(())))
        observed = world.observed(desired)
        snapshot = Snapshot.of(desired, observed)
        plan = snapshot.plan
        removed = {
            c.installation
            for c in plan.pending
            if c.action is Action.DELETE and c.kind is Resource.CONTAINER and c.desired is None
        }
        kept = {c.installation for c in plan.changes if c.desired is not None}
        return Part(
            self.name,
            plan.changes,
            removed=frozenset(removed - kept),
            managed=len(removed | kept),
            unit="installations",
            detail=snapshot,
        )

    def apply(self, part: Part, desired: Desired, world: World) -> Applied:
        from nebula.kinds.packages.apply import apply_plan, settle  # the store: only to apply

        snapshot: Snapshot = part.detail
        if not snapshot.plan.has_changes:
            settle(snapshot, world.store)
            return Applied(self.name)
        result = apply_plan(
            snapshot, world.docker(desired), world.store, world.progress, commit=world.commit
        )
        world.forget_observed()
        errors = tuple(f"{r.name}: {r.error}" for r in result.installations if not r.ok)
        logs = tuple(build for r in result.installations for build in r.builds)
        return Applied(self.name, part.pending, errors, detail=result, logs=logs)
