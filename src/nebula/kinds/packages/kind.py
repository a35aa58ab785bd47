"""The packages kind: installations from the catalog (or inline compose) run on Docker.

It plans the share of one node (`World.node`): the installations placed on it, against its
Docker Engine. A node whose engine is a Swarm has its installations run by the swarm kind.
"""

from __future__ import annotations

from typing import ClassVar

from nebula.kinds.base import Applied, Desired, World
from nebula.kinds.packages.diff import Snapshot, moving
from nebula.kinds.packages.types import Resource
from nebula.plan import Action, Part


class Packages:
    name: ClassVar[str] = "packages"

    def plan(self, desired: Desired, world: World) -> Part:
        node = world.node_spec(desired)
        if node.engine != "docker":
            return Part(self.name, unit="installations")
        observed = world.observed(desired)
        leaving = moving(desired, observed, node.name)
        running = world.store.running_nodes(leaving) if leaving else {}
        snapshot = Snapshot.of(desired, observed, node.name, running)
        plan = snapshot.plan
        moved = {m.installation for m in plan.moves}
        removed = {
            c.installation
            for c in plan.pending
            if c.action is Action.DELETE and c.kind is Resource.CONTAINER and c.desired is None
        }
        kept = {c.installation for c in plan.changes if c.desired is not None}
        return Part(
            self.name,
            plan.changes,
            removed=frozenset(removed - kept - moved),  # a move is no loss: the guard skips it
            managed=len(removed | kept),
            unit="installations",
            detail=snapshot,
            notes=tuple(m.note(node.name) for m in plan.moves if not m.ready),
        )

    def apply(self, part: Part, desired: Desired, world: World) -> Applied:
        from nebula.kinds.packages.apply import apply_plan, settle  # the store: only to apply

        snapshot: Snapshot | None = part.detail
        if snapshot is None:  # not this node's engine to plan
            return Applied(self.name)
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
