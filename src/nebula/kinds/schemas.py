"""The JSON Schemas `nebula schema export` and `nebula init` write: `spec.schema.KINDS` (the
models of `spec/`) and the models kinds keep to themselves (agents, functions)."""

from __future__ import annotations

from nebula.kinds.agents.spec import Agent
from nebula.kinds.functions.spec import Function
from nebula.spec.schema import KINDS, SchemaKind

SCHEMAS: tuple[SchemaKind, ...] = (
    *KINDS,
    SchemaKind(
        "agent",
        Agent,
        ("agents/*.yaml", "agents/*.yml"),
        "agents/*.yaml: one agent (its model, prompt, tools and guardrails)",
    ),
    SchemaKind(
        "function",
        Function,
        ("functions/*.yaml", "functions/*.yml"),
        "functions/*.yaml: one function agents may call (a built-in, a URL or an image)",
    ),
)
