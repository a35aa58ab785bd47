"""What an agent's models alone cannot check, each problem at its file:line: its tools against
the repo's functions, its model's provider against `nebula.yaml`'s `ai:`, its blocked patterns
as regexes, what `autoApprove` and `toolChoice` ask for."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence

from nebula.errors import ConfigIssue
from nebula.kinds.agents.spec import Agent
from nebula.kinds.functions.types import FunctionDef
from nebula.spec.names import excerpt
from nebula.spec.yamlfile import YamlDocument


def agent_issues(
    doc: YamlDocument,
    agent: Agent,
    functions: Mapping[str, FunctionDef],
    providers: Sequence[str],
) -> list[ConfigIssue]:
    """`functions`: the repo's, by name; `providers`: the names a model may route to."""
    issues = [
        doc.issue(("tools", index), _unknown(name, functions, "function", "functions/*.yaml"))
        for index, name in enumerate(agent.tools)
        if name not in functions
    ]
    issues += _provider(doc, agent.definition().provider, agent.model, providers)
    for index, pattern in enumerate(agent.guardrails.blockedPatterns):
        try:
            re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            issues.append(
                doc.issue(
                    ("guardrails", "blockedPatterns", index),
                    f"not a valid regular expression: {exc.msg} at position {exc.pos}",
                )
            )
    for index, name in enumerate(agent.guardrails.autoApprove):
        problem = _auto_approved(name, agent.tools, functions)
        if problem:
            issues.append(doc.issue(("guardrails", "autoApprove", index), problem))
    if agent.toolChoice == "required" and not agent.tools:
        issues.append(
            doc.issue(
                ("toolChoice",),
                "'required' makes the first reply call a tool, and this agent has none: "
                "list its tools, or use auto",
            )
        )
    return issues


def _unknown(name: str, known: Iterable[str], what: str, where: str) -> str:
    names = sorted(known)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"add it to {where}"
    return f"no {what} {excerpt(name)}; {hint}"


def _provider(
    doc: YamlDocument, provider: str, model: str, providers: Sequence[str]
) -> list[ConfigIssue]:
    if provider == "anthropic":
        problem = (
            "Anthropic is not available in this version; use ollama:NAME, openai:NAME or an "
            "OpenAI-compatible server of nebula.yaml's ai.providers"
        )
    elif provider not in providers:
        close = difflib.get_close_matches(provider, providers, n=1)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else "providers: " + ", ".join(providers) + " (add servers under ai.providers)"
        )
        problem = f"no model provider {excerpt(provider)}; {hint}"
    elif not model.partition(":")[2] and ":" in model:
        problem = f"give the model's name after {provider!r}, e.g. {provider}:llama3.2"
    else:
        return []
    return [doc.issue(("model",), problem)]


def _auto_approved(
    name: str, tools: Sequence[str], functions: Mapping[str, FunctionDef]
) -> str | None:
    if name not in tools:
        return f"{name!r} is not among this agent's tools: add it to tools, or remove it here"
    function = functions.get(name)
    if function is not None and not function.writes:
        return (
            f"{name!r} does not write: it never waits for approval, so there is nothing to "
            "approve; remove it here"
        )
    return None
