"""The agents kind's plain data: an agent profile as the AI runtime runs it, and an agent of a
commit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nebula.store.records import AgentRecord


@dataclass(frozen=True)
class AgentDef:
    """An agent: the seed's `AgentProfile` with Nebula's extensions (`max_turns`,
    `tool_calling`, `tool_choice`, `auto_approve`). `model` is `PROVIDER:NAME` (`ollama:llama3.2`,
    `openai:gpt-4o`, a provider of nebula.yaml's `ai.providers`) or a bare OpenAI model name."""

    name: str
    description: str
    system_prompt: str
    model: str
    temperature: float = 0.7
    tools: tuple[str, ...] = ()  # function names
    max_tokens: int | None = None  # per model reply
    include_history: bool = False  # the agent's last runs (task and answer) go before the task
    max_execution_time: float = 120.0  # seconds
    blocked_patterns: tuple[str, ...] = ()  # regexes, searched case-insensitively
    require_approval: bool = False  # every tool call waits for a person
    auto_approve: tuple[str, ...] = ()  # writing functions this agent may call unasked
    max_turns: int = 8  # model replies per run
    tool_calling: Literal["native", "react"] = "native"
    tool_choice: Literal["auto", "required"] = "auto"  # required: the first reply calls a tool
    file: str = ""

    @property
    def provider(self) -> str:
        """The provider part of `model` (`openai` for a bare name)."""
        prefix, colon, _ = self.model.partition(":")
        return prefix if colon else "openai"

    @property
    def model_name(self) -> str:
        """The model as its provider names it (`llama3.2:3b` of `ollama:llama3.2:3b`)."""
        prefix, colon, rest = self.model.partition(":")
        return rest if colon else prefix


@dataclass(frozen=True)
class DesiredAgent:
    """An agent of the commit: as the AI runtime runs it, and as the store records it."""

    spec: AgentDef
    record: AgentRecord

    @property
    def name(self) -> str:
        return self.spec.name
