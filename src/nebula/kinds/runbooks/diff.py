"""The pure diff of the runbooks kind: the commit's runbooks against the store's."""

from __future__ import annotations

from collections.abc import Sequence

from nebula.kinds.runbooks.types import RunbookChange
from nebula.plan import Action
from nebula.store.records import RunbookRecord


def runbook_changes(
    desired: Sequence[RunbookRecord], stored: Sequence[RunbookRecord]
) -> tuple[RunbookChange, ...]:
    """One change per runbook created, updated or deleted, by name."""
    held = {r.name: r for r in stored}
    wanted = {r.name: r for r in desired}
    changes = []
    for name in sorted(held.keys() | wanted.keys()):
        new, old = wanted.get(name), held.get(name)
        if new is None:
            changes.append(RunbookChange(Action.DELETE, name, "no longer in the repo"))
        elif old is None:
            changes.append(RunbookChange(Action.CREATE, name, f"new, from {new.file}"))
        elif (new.digest, new.file, new.builtin) != (old.digest, old.file, old.builtin):
            changes.append(RunbookChange(Action.UPDATE, name, f"changed in {new.file}"))
    return tuple(changes)
