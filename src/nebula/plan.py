"""The one Plan: the changes of every kind that would make the world match the config repo.

Each kind (packages, routes, DNS) plans its own share, a `Part`: its changes (each with an action,
what it belongs to, a name and a reason), what it could not plan, and its own detail for its
apply. The Plan is the parts in apply order. Safety rules are checked on the plan itself, the same
way for every kind (octodns's `raise_if_unsafe` is the model): a plan whose deletions remove more
than the guard allows of what a kind manages is unsafe, and is held (nebulad) or confirmed
(the CLI) before anything is done.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    NOOP = "noop"


PENDING = frozenset({Action.CREATE, Action.UPDATE, Action.DELETE})


class Change(Protocol):
    """What every kind's change offers the plan: enough to show it, count it and guard it."""

    @property
    def action(self) -> str:
        """One of `Action`'s values, or a kind's own for what it leaves alone (DNS: foreign)."""
        ...

    @property
    def name(self) -> str: ...

    @property
    def reason(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Part:
    """One kind's share of a plan."""

    kind: str
    changes: tuple[Change, ...] = ()
    removed: frozenset[str] = frozenset()  # what the deletions remove entirely, for the guard
    managed: int = 0  # how many such things the kind manages now
    unit: str = "items"  # what `removed` counts, for messages: "installations", "record sets"
    problems: tuple[str, ...] = ()  # what could not be planned, one line each
    detail: Any = field(default=None, compare=False, repr=False)  # the kind's own plan
    # what waits for something outside this plan before it changes (an installation moving to
    # another node), one line each: shown, never applied
    notes: tuple[str, ...] = ()

    @property
    def pending(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action in PENDING)

    @property
    def has_changes(self) -> bool:
        return bool(self.pending)

    def counts(self) -> dict[str, int]:
        counted = Counter(str(c.action) for c in self.changes)
        return {action.value: counted.get(action.value, 0) for action in Action}

    def unsafe(self, prune_max: int | None) -> str | None:
        """Why this part removes too much (more than `prune_max`, by default more than half of
        what the kind manages), or None."""
        limit = prune_max if prune_max is not None else self.managed / 2
        if len(self.removed) <= limit:
            return None
        rule = f"more than {prune_max}" if prune_max is not None else "more than half"
        return (
            f"{self.kind}: the plan removes {len(self.removed)} of the {self.managed} {self.unit} "
            f"Nebula manages ({rule})"
        )


@dataclass(frozen=True)
class Plan:
    parts: tuple[Part, ...]

    def part(self, kind: str) -> Part:
        """The share of `kind` (an empty one when it was not planned)."""
        return next((p for p in self.parts if p.kind == kind), Part(kind))

    @property
    def pending(self) -> tuple[Change, ...]:
        return tuple(c for p in self.parts for c in p.pending)

    @property
    def has_changes(self) -> bool:
        return any(p.has_changes for p in self.parts)

    @property
    def problems(self) -> list[str]:
        return [problem for p in self.parts for problem in p.problems]

    def counts(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for p in self.parts:
            total.update(p.counts())
        return {action.value: total.get(action.value, 0) for action in Action}

    def unsafe(self, prune_max: int | None) -> list[str]:
        """Every kind whose deletions the prune guard refuses, one reason each."""
        return [reason for p in self.parts if (reason := p.unsafe(prune_max))]

    def change_records(self) -> list[dict[str, Any]]:
        """Every pending change as a dict, for the records of a sync and its audit entry (a
        container, network or volume names its `installation`, a record set its `type`, a
        route its `id`)."""
        return [c.to_dict() for c in self.pending]


def summarize(counts: dict[str, int]) -> str:
    """`2 to create, 1 to update, 0 to delete, 9 unchanged`."""
    return (
        f"{counts['create']} to create, {counts['update']} to update, "
        f"{counts['delete']} to delete, {counts['noop']} unchanged"
    )
