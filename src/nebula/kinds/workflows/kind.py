"""The workflows kind: records the commit's workflows in the store, where the workflow engine
reads them. Nothing outside Nebula changes, so the prune guard never holds a plan for them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from nebula.errors import NebulaError
from nebula.kinds.base import Applied, Desired, World
from nebula.kinds.workflows.diff import workflow_changes
from nebula.plan import Part
from nebula.store.records import WorkflowRecord


def workflows_part(desired: Sequence[WorkflowRecord], stored: Sequence[WorkflowRecord]) -> Part:
    """The kind's share of the plan; its detail is the records to store."""
    changes = workflow_changes(desired, stored)
    return Part(Workflows.name, changes, managed=len(stored), unit="workflows", detail=desired)


class Workflows:
    name: ClassVar[str] = "workflows"

    def plan(self, desired: Desired, world: World) -> Part:
        records = [w.record for w in desired.workflows]
        if not records and not world.store_open:
            return Part(self.name)  # nothing desired, and no store at hand to hold any
        try:
            stored = world.store.workflows()
        except NebulaError as exc:
            return Part(self.name, problems=(f"workflows: cannot read the store: {exc}",))
        return workflows_part(records, stored)

    def apply(self, part: Part, desired: Desired, world: World) -> Applied:
        if not part.has_changes:
            return Applied(self.name)
        try:
            world.store.replace_workflows(part.detail)
        except NebulaError as exc:
            return Applied(self.name, errors=(f"workflows: cannot record the workflows: {exc}",))
        return Applied(self.name, part.pending)
