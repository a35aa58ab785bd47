"""The JSON Schemas `nebula schema export` and `nebula init` write: `spec.schema.KINDS` (the
models of `spec/`) and the models kinds keep to themselves (agents, functions, projects)."""

from __future__ import annotations

from nebula.kinds.agents.spec import Agent
from nebula.kinds.functions.spec import Function
from nebula.kinds.projects.spec import Project
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
    SchemaKind(
        "project",
        Project,
        ("projects/*.yaml", "projects/*.yml"),
        "projects/*.yaml: one of your own apps, built from git and deployed behind Caddy",
    ),
)
