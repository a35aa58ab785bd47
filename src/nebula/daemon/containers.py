"""The daemon's side of its own node's containers: when a sync plans them against the engine.

A push changes some nodes' installations and leaves the others' as they were. A node whose
share a push left unchanged need not list its engine again to learn it has nothing to do: its
last sync left the engine as planned (a plan that found nothing to do, or changes all applied),
for this very share, and the engine's event stream has told of nothing since but the daemon's
own doing (the containers it created, started, replaced or removed; health-check execs). Such a
sync leaves the containers out (as `DnsKeeper` leaves unchanged zones out) and makes no request
to the engine; with no projects in the commit, it leaves the projects kind's look for retired
project containers out too. Everything else plans them: a changed share, any other container
event since (a stop, a death, a removal by hand), an event stream that broke, a sync that left
notes (a move under way), problems or errors, and every sync not started by a push (`nebula
sync`, the drift interval, a start, a new leader), so drift the events cannot show (a network
removed by hand) is still found at the drift interval.
"""

from __future__ import annotations

from nebula.engine.pipeline import Outcome
from nebula.kinds.base import Desired
from nebula.providers.docker import ContainerEvent
from nebula.spec.config import Node

PUSHES = frozenset({"webhook", "hook", "poll", "watch"})
"""Triggers that mean "the repo may have changed", as opposed to "check everything"."""

KINDS = ("packages", "projects")
"""The kinds that look at the node's containers."""


class ContainerKeeper:
    def __init__(self) -> None:
        self._left: tuple[object, int] | None = None  # the share as planned, events then
        self._events = 0  # container events on the node's engine not of the daemon's doing

    @property
    def events(self) -> int:
        return self._events

    def seen(self, event: ContainerEvent, *, own: bool) -> None:
        """An event of the engine's stream; `own`: of the daemon's own doing."""
        if not own and not event.action.startswith("exec_"):  # an exec changes nothing
            self._events += 1

    @staticmethod
    def share(desired: Desired, node: Node) -> object:
        """What a plan of the node's containers depends on in `desired`: the node, the
        installations placed on it (resolved; an unchanged one keeps its objects), the
        projects."""
        placed = tuple(i for i in desired.installations if i.node == node.name)
        return node, placed, desired.projects

    def left_out(
        self, desired: Desired, share: object, trigger: str, *, events_watched: bool
    ) -> frozenset[str]:
        """The kinds this sync leaves out (see the module docstring): none, or the packages
        kind, with the projects kind when the commit has no projects."""
        if trigger not in PUSHES or not events_watched or self._left != (share, self._events):
            return frozenset()
        return frozenset(("packages",) if desired.projects else KINDS)

    def planned(self, share: object, events: int, outcome: Outcome) -> None:
        """Note how a sync that planned the containers left them; `events`: the count as it
        began (an event during the sync is one since)."""
        packages, projects = (outcome.plan.part(kind) for kind in KINDS)
        left_as_planned = not (
            packages.notes
            or packages.problems
            or projects.has_changes
            or projects.problems
            or any(outcome.of(kind).errors for kind in KINDS)
        )
        self._left = (share, events) if left_as_planned and outcome.applied else None
