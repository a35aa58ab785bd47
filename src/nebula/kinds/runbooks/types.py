"""The runbooks kind's plain data: a runbook as loaded and as the store records it."""

from __future__ import annotations

from dataclasses import dataclass

from nebula.kinds.runbooks.spec import Runbook
from nebula.store.records import RunbookRecord


@dataclass(frozen=True)
class DesiredRunbook:
    """A runbook of the commit: its model (what the remediation engine runs) and its record."""

    spec: Runbook
    record: RunbookRecord

    @property
    def name(self) -> str:
        return self.spec.name
