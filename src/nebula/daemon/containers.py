"""The daemon's side of its own node's containers: when a sync plans them against the engine.

A push changes some nodes' installations and leaves the others' as they were. A node whose
share a push left unchanged need not list its engine again to find it has nothing to do: its
last plan against the engine found nothing to do, for this very share, and the engine's event
stream (every start, stop, death, removal of a managed container) has said nothing since. Such
a sync leaves the containers out (as `DnsKeeper` leaves unchanged zones out) and makes no
request to the engine. Everything else plans them: a changed share, any container event since
(the node's own changes included), an event stream that broke, a plan that found changes, notes
(a move under way) or errors, and every sync not started by a push (`nebula sync`, the drift
interval, a start, a new leader), so drift the events cannot show (a network or volume removed
by hand) is still found at the drift interval.
"""

from __future__ import annotations

from nebula.engine.pipeline import Outcome
from nebula.kinds.base import Desired
from nebula.spec.config import Node

PUSHES = frozenset({"webhook", "hook", "poll", "watch"})
"""Triggers that mean "the repo may have changed", as opposed to "check everything"."""


class ContainerKeeper:
    def __init__(self) -> None:
        self._converged: tuple[object, int] | None = None  # the share, the events count then
        self.events = 0  # container events seen on the node's engine (and reconnections)

    @staticmethod
    def share(desired: Desired, node: Node) -> object:
        """What a plan of the node's containers depends on in `desired`: the node, and the
        installations placed on it (resolved; an unchanged one keeps its objects)."""
        return node, tuple(i for i in desired.installations if i.node == node.name)

    def due(self, share: object, trigger: str, *, events_watched: bool) -> bool:
        """Whether this sync plans the containers (see the module docstring)."""
        if trigger not in PUSHES or not events_watched or self._converged is None:
            return True
        return self._converged != (share, self.events)

    def planned(self, share: object, events: int, outcome: Outcome) -> None:
        """Note what a plan of the containers found; `events`: the count as it began."""
        part = outcome.plan.part("packages")
        errors = outcome.of("packages").errors
        converged = not (part.has_changes or part.notes or part.problems or errors)
        self._converged = (share, events) if converged else None
