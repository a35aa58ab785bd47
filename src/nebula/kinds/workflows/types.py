"""The workflows kind's plain data: a workflow as loaded and as the store records it, and the
order its steps may run in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from graphlib import TopologicalSorter

from nebula.kinds.workflows.spec import Workflow
from nebula.store.records import WorkflowRecord


@dataclass(frozen=True)
class DesiredWorkflow:
    """A workflow of the commit: its model (what the workflow engine runs) and its record."""

    spec: Workflow
    record: WorkflowRecord

    @property
    def name(self) -> str:
        return self.spec.name

    def layers(self) -> tuple[tuple[str, ...], ...]:
        """Its step ids in the order they may run (see `layers`)."""
        return layers({step.id: step.needs for step in self.spec.steps})


def layers(needs: Mapping[str, Iterable[str]]) -> tuple[tuple[str, ...], ...]:
    """The steps of a DAG (each step's id → the ids it needs) in topological layers: every step
    of a layer needs only steps of the layers before it, so a layer's steps may run in
    parallel. Within a layer, steps keep the order of `needs`. Every id needed must be a step;
    `graphlib.CycleError` on a cycle (a loaded workflow has neither problem)."""
    order = {step: index for index, step in enumerate(needs)}
    sorter = TopologicalSorter(needs)
    sorter.prepare()
    found = []
    while sorter.is_active():
        ready = tuple(sorted(sorter.get_ready(), key=order.__getitem__))
        sorter.done(*ready)
        found.append(ready)
    return tuple(found)
