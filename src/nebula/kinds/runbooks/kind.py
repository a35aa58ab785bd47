"""The runbooks kind: records the commit's runbooks in the store, where the remediation engine
reads them. Nothing outside Nebula changes, so the prune guard never holds a plan for them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from nebula.errors import NebulaError
from nebula.kinds.base import Applied, Desired, World
from nebula.kinds.runbooks.diff import runbook_changes
from nebula.plan import Part
from nebula.store.records import RunbookRecord


def runbooks_part(desired: Sequence[RunbookRecord], stored: Sequence[RunbookRecord]) -> Part:
    """The kind's share of the plan; its detail is the records to store."""
    changes = runbook_changes(desired, stored)
    return Part(Runbooks.name, changes, managed=len(stored), unit="runbooks", detail=desired)


class Runbooks:
    name: ClassVar[str] = "runbooks"

    def plan(self, desired: Desired, world: World) -> Part:
        records = [r.record for r in desired.runbooks]
        if not records and not world.store_open:
            return Part(self.name)  # nothing desired, and no store at hand to hold any
        try:
            stored = world.store.runbooks()
        except NebulaError as exc:
            return Part(self.name, problems=(f"runbooks: cannot read the store: {exc}",))
        return runbooks_part(records, stored)

    def apply(self, part: Part, desired: Desired, world: World) -> Applied:
        if not part.has_changes:
            return Applied(self.name)
        try:
            world.store.replace_runbooks(part.detail)
        except NebulaError as exc:
            return Applied(self.name, errors=(f"runbooks: cannot record the runbooks: {exc}",))
        return Applied(self.name, part.pending)
