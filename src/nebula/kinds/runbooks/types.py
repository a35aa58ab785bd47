"""The runbooks kind's plain data: a runbook as loaded and as the store records it, and a
change of one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nebula.kinds.runbooks.spec import Runbook
from nebula.plan import Action


@dataclass(frozen=True)
class RunbookRecord:
    """One runbook as loaded: `definition` is its validated model as JSON data (what the
    executor reads back), `digest` a hash of it, `file` where it was written."""

    name: str
    file: str
    digest: str
    definition: dict[str, Any]
    builtin: bool


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
