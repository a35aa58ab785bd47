"""What a runbook's models alone cannot check, each problem at its file:line: every step's
params against its action's model (`step_issues`, which workflows' steps share), every template and condition through the sandbox's static
check, and the channels and nodes it names against `nebula.yaml`."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from nebula.errors import ConfigIssue
from nebula.kinds.runbooks.expressions import check_condition, check_template
from nebula.kinds.runbooks.params import PARAMS
from nebula.kinds.runbooks.spec import Runbook
from nebula.spec.config import NebulaConfig
from nebula.spec.validate import issues_from
from nebula.spec.yamlfile import Path, YamlDocument, dotted


def runbook_issues(doc: YamlDocument, runbook: Runbook, config: NebulaConfig) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    if runbook.trigger.condition is not None:
        issues += _expression(doc, ("trigger", "condition"), runbook.trigger.condition, True)
    for index, step in enumerate(runbook.steps):
        at: Path = ("steps", index)
        issues += step_issues(
            doc, at, action=step.action, params=step.params, condition=step.condition, config=config
        )
    channels = sorted(config.notifications)
    if runbook.escalation is not None:
        notify = enumerate(runbook.escalation.notify)
        issues += _named(
            doc, [(("escalation", "notify", i), n) for i, n in notify], channels, "channel"
        )
    return issues


def step_issues(
    doc: YamlDocument,
    at: Path,
    *,
    action: str,
    params: dict[str, Any],
    condition: str | None,
    config: NebulaConfig,
) -> list[ConfigIssue]:
    """The problems of the step at `at` (of a runbook or a workflow): its condition and the
    templates of its params through the sandbox, its params against its action's model, and
    the channels or node it names against `nebula.yaml`."""
    issues: list[ConfigIssue] = []
    if condition is not None:
        issues += _expression(doc, (*at, "condition"), condition, True)
    for path, text in strings(params, (*at, "params")):
        issues += _expression(doc, path, text, False)
    issues += _params(doc, (*at, "params"), action, params)
    if action == "notify":
        channels = sorted(config.notifications)
        issues += _named(doc, _channels(params, (*at, "params")), channels, "channel")
    if action == "ssh":
        node = [((*at, "params", "node"), params.get("node"))]
        issues += _named(doc, node, [n.name for n in config.nodes], "node")
    return issues


def _channels(params: dict[str, Any], at: Path) -> list[tuple[Path, Any]]:
    """The channels a notify step names, each with its path."""
    listed = params.get("channels")
    if isinstance(listed, list):
        return [((*at, "channels", i), name) for i, name in enumerate(listed)]
    return [((*at, "channel"), params.get("channel"))]


def _expression(doc: YamlDocument, path: Path, text: str, condition: bool) -> list[ConfigIssue]:
    try:
        (check_condition if condition else check_template)(text)
    except ValueError as exc:
        return [doc.issue(path, str(exc))]
    return []


def strings(value: Any, path: Path) -> Iterator[tuple[Path, str]]:
    """Every string in `value` (nested mappings and lists too), with its path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from strings(item, (*path, index))


def _params(doc: YamlDocument, at: Path, action: str, params: dict[str, Any]) -> list[ConfigIssue]:
    """The step's params validated against its action's model, each issue at its line."""
    model = PARAMS[action]
    try:
        model.model_validate(params)
    except ValidationError as exc:
        below = YamlDocument(doc.file, params, _marks_below(doc, at))
        return [replace(i, field=_joined(at, i.field)) for i in issues_from(exc, below, model)]
    return []


def _marks_below(doc: YamlDocument, at: Path) -> dict[Path, Any]:
    return {path[len(at) :]: mark for path, mark in doc.marks.items() if path[: len(at)] == at}


def _joined(at: Path, field: str) -> str:
    prefix = dotted(at)
    if not field:
        return prefix
    return prefix + field if field.startswith("[") else f"{prefix}.{field}"


def _named(
    doc: YamlDocument, named: Sequence[tuple[Path, Any]], known: list[str], what: str
) -> list[ConfigIssue]:
    """An issue for each name not among `known` (nebula.yaml's channels or nodes)."""
    issues = []
    section = "notifications" if what == "channel" else "nodes"
    for path, name in named:
        if not isinstance(name, str) or name in known:
            continue  # not a name: the params' model says so
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"declare it under {section}:"
        issues.append(doc.issue(path, f"no {what} {name!r} in nebula.yaml; {hint}"))
    return issues
