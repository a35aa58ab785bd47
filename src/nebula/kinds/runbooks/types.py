"""The runbooks kind's plain data: a runbook as loaded and as the store records it, and a
change of one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nebula.kinds.runbooks.spec import Runbook
from nebula.plan import Action
from nebula.store.records import RunbookRecord


@dataclass(frozen=True)
class DesiredRunbook:
    """A runbook of the commit: its model (what the remediation engine runs) and its record."""

    spec: Runbook
    record: RunbookRecord

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class RunbookChange:
    action: Action
    name: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action.value, "name": self.name, "reason": self.reason}
