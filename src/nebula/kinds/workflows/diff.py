"""The pure diff of the workflows kind: the commit's workflows against the store's."""

from __future__ import annotations

from collections.abc import Sequence

from nebula.kinds.workflows.types import WorkflowChange
from nebula.plan import Action
from nebula.store.records import WorkflowRecord


def workflow_changes(
    desired: Sequence[WorkflowRecord], stored: Sequence[WorkflowRecord]
) -> tuple[WorkflowChange, ...]:
    """One change per workflow created, updated or deleted, by name."""
    held = {r.name: r for r in stored}
    wanted = {r.name: r for r in desired}
    changes = []
    for name in sorted(held.keys() | wanted.keys()):
        new, old = wanted.get(name), held.get(name)
        if new is None:
            changes.append(WorkflowChange(Action.DELETE, name, "no longer in the repo"))
        elif old is None:
            changes.append(WorkflowChange(Action.CREATE, name, f"new, from {new.file}"))
        elif (new.digest, new.file) != (old.digest, old.file):
            changes.append(WorkflowChange(Action.UPDATE, name, f"changed in {new.file}"))
    return tuple(changes)
