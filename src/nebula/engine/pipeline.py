"""The one pipeline: plan every kind, check the plan, guard it, apply it in dependency order.

`nebula plan`, `nebula apply`, `nebula dns plan|apply` and nebulad all go through here (loading
is `engine.load`; the caller holds the store's apply lock from planning to the end of apply, so
the plan guarded is the plan carried out). What to do with an unsafe plan is the caller's: the
daemon holds it for approval, the CLI asks. A kind's failed changes never stop the kinds after
it: each reports its errors in the outcome (an error that stops a run as a whole, such as the
vault's key missing, is raised before anything more is touched).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from nebula.kinds.base import Applied, Desired, World
from nebula.kinds.registry import KINDS, kind
from nebula.plan import Plan

KIND_NAMES = tuple(KINDS)


def plan(desired: Desired, world: World, only: Collection[str] | None = None) -> Plan:
    """Every kind's share (or only the kinds in `only`), in apply order."""
    return Plan(tuple(kind(name).plan(desired, world) for name in _selected(only)))


def apply(the_plan: Plan, desired: Desired, world: World) -> tuple[Applied, ...]:
    """Carry out `the_plan`, made a moment ago under the same apply lock, kind after kind."""
    done = []
    for part in the_plan.parts:
        applied = kind(part.kind).apply(part, desired, world)
        if applied.changes:
            world.changed.add(part.kind)
        done.append(applied)
    return tuple(done)


@dataclass(frozen=True)
class Outcome:
    """One run of the pipeline: the plan, and what each kind's apply did (None: not applied,
    because the plan was not allowed)."""

    plan: Plan
    applied: tuple[Applied, ...] | None

    def of(self, kind: str) -> Applied:
        """What `kind`'s apply did (an empty `Applied` when it was not applied)."""
        return next((a for a in self.applied or () if a.kind == kind), Applied(kind))

    def change_records(self) -> list[dict[str, Any]]:
        """The plan's pending changes as recorded in a sync (`Plan.change_records`), each with
        the `log` its apply left, if any (an image's build output)."""
        logs = {(a.kind, name): log for a in self.applied or () for name, log in a.logs}
        records = []
        for part in self.plan.parts:
            for change in part.pending:
                record = change.to_dict()
                if (part.kind, change.name) in logs:
                    record["log"] = logs[part.kind, change.name]
                records.append(record)
        return records

    @property
    def errors(self) -> list[str]:
        return [error for a in self.applied or () for error in a.errors]

    @property
    def ok(self) -> bool:
        return self.applied is not None and not self.errors


def run(
    desired: Desired,
    world: World,
    *,
    only: Collection[str] | None = None,
    allow: Callable[[Plan], bool] = lambda _plan: True,
) -> Outcome:
    """Plan, then apply unless `allow` (the guard, or a person's confirmation) says no."""
    the_plan = plan(desired, world, only)
    if not allow(the_plan):
        return Outcome(the_plan, None)
    return Outcome(the_plan, apply(the_plan, desired, world))


def _selected(only: Collection[str] | None) -> list[str]:
    if only is None:
        return list(KIND_NAMES)
    unknown = sorted(set(only) - set(KIND_NAMES))
    if unknown:
        raise ValueError(f"unknown kind {', '.join(unknown)}; one of {', '.join(KIND_NAMES)}")
    return [name for name in KIND_NAMES if name in only]
