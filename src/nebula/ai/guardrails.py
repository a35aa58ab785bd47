"""An agent's guardrails as the loop checks them: blocked patterns on the user's input, every
model reply and every tool call's arguments."""

from __future__ import annotations

import re
from dataclasses import dataclass

from nebula.kinds.agents.types import AgentDef


@dataclass(frozen=True)
class Guardrails:
    """Blocked patterns, compiled once (searched case-insensitively)."""

    blocked: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def of(cls, agent: AgentDef) -> Guardrails:
        return cls(tuple(re.compile(p, re.IGNORECASE) for p in agent.blocked_patterns))

    def violation(self, text: str, where: str) -> str | None:
        """Why `text` may not pass (the pattern and where it was met), or None."""
        for pattern in self.blocked:
            if pattern.search(text):
                return f"blocked pattern {pattern.pattern!r} found in {where}"
        return None
