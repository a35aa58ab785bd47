"""The model of an agent (`agents/*.yaml`): the seed's `AgentProfile`, keys spelt as there
(camelCase: `systemPrompt`, `context.maxTokens`, `guardrails.blockedPatterns`), and Nebula's
extensions (`guardrails.autoApprove`, `maxTurns`, `toolCalling`, `toolChoice`).

The models check the shape; `check.py` checks what needs the repo: the tools against its
functions, the model's provider against `nebula.yaml`'s `ai:`, the patterns as regexes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from nebula.kinds.agents.types import AgentDef
from nebula.spec.base import Duration, StrictModel
from nebula.spec.names import Name


def _once_each(names: list[str]) -> list[str]:
    first: dict[str, int] = {}
    for index, name in enumerate(names):
        if first.setdefault(name, index) != index:
            raise PydanticCustomError(
                "named_twice",
                "'{name}' is listed twice; name it once",
                {"name": name, "at": (index,)},
            )
    return names


class Context(StrictModel):
    maxTokens: int | None = Field(
        default=None, ge=1, le=1_000_000, description="the most tokens of one model reply"
    )
    includeHistory: bool = Field(
        default=False, description="the agent's last 5 runs (task and answer) go before the task"
    )


class Guardrails(StrictModel):
    maxExecutionTime: Duration = Field(
        default=120.0, gt=0, description="a run is stopped (timed_out) after this long"
    )
    blockedPatterns: list[str] = Field(
        default=[],
        description="Python regexes, searched case-insensitively in the task, every model reply "
        "and every tool call's arguments: a match stops the run (blocked)",
    )
    requireApproval: bool = Field(default=False, description="every tool call waits for a person")
    autoApprove: list[Name] = Field(
        default=[], description="writing functions of `tools` this agent may call unasked"
    )

    @field_validator("autoApprove")
    @classmethod
    def _unique(cls, names: list[str]) -> list[str]:
        return _once_each(names)


class Agent(StrictModel):
    name: Name
    description: str = ""
    systemPrompt: str = Field(min_length=1, description="what the agent is and how it works")
    model: str = Field(
        min_length=1,
        max_length=255,
        description="PROVIDER:NAME: ollama:llama3.2, openai:gpt-4o (or gpt-4o), or a server of "
        "nebula.yaml's ai.providers",
    )
    temperature: float = Field(default=0.7, ge=0, le=2)
    tools: list[Name] = Field(default=[], description="the functions it may call, by name")
    context: Context = Context()
    guardrails: Guardrails = Guardrails()
    maxTurns: int = Field(default=8, ge=1, le=100, description="model replies per run at most")
    toolCalling: Literal["native", "react"] = Field(
        default="native",
        description="native: the model's tool calls; react: JSON-constrained ReAct steps, for "
        "models without tool support",
    )
    toolChoice: Literal["auto", "required"] = Field(
        default="auto", description="required: the first reply must call a tool"
    )

    @field_validator("tools")
    @classmethod
    def _unique(cls, names: list[str]) -> list[str]:
        return _once_each(names)

    def definition(self, file: str = "") -> AgentDef:
        """The agent as the AI runtime runs it."""
        return AgentDef(
            name=self.name,
            description=self.description,
            system_prompt=self.systemPrompt,
            model=self.model,
            temperature=self.temperature,
            tools=tuple(self.tools),
            max_tokens=self.context.maxTokens,
            include_history=self.context.includeHistory,
            max_execution_time=self.guardrails.maxExecutionTime,
            blocked_patterns=tuple(self.guardrails.blockedPatterns),
            require_approval=self.guardrails.requireApproval,
            auto_approve=tuple(self.guardrails.autoApprove),
            max_turns=self.maxTurns,
            tool_calling=self.toolCalling,
            tool_choice=self.toolChoice,
            file=file,
        )
