"""What a workflow's models alone cannot check, each problem at its file:line: the DAG (a
`needs` naming no step, a cycle, a template reading a step that has not run before it), and
every step as a runbook's steps are checked (`runbooks.check.step_issues`)."""

from __future__ import annotations

import difflib
from graphlib import CycleError, TopologicalSorter

from nebula.errors import ConfigIssue
from nebula.kinds.runbooks.check import step_issues, strings
from nebula.kinds.runbooks.expressions import step_references
from nebula.kinds.workflows.spec import Workflow, WorkflowStep
from nebula.kinds.workflows.types import layers
from nebula.spec.config import NebulaConfig
from nebula.spec.yamlfile import Path, YamlDocument


def workflow_issues(
    doc: YamlDocument, workflow: Workflow, config: NebulaConfig
) -> list[ConfigIssue]:
    issues = _unknown_needs(doc, workflow.steps)
    if not issues:
        issues += _cycle(doc, workflow.steps)
    if not issues:
        issues += _unseen_steps(doc, workflow.steps)
    for index, step in enumerate(workflow.steps):
        at: Path = ("steps", index)
        issues += step_issues(
            doc, at, action=step.action, params=step.params, condition=step.condition, config=config
        )
    return issues


def _unknown_needs(doc: YamlDocument, steps: list[WorkflowStep]) -> list[ConfigIssue]:
    ids = [step.id for step in steps]
    issues = []
    for index, step in enumerate(steps):
        for number, need in enumerate(step.needs):
            if need in ids:
                continue
            close = difflib.get_close_matches(need, ids, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "steps: " + ", ".join(ids)
            path = ("steps", index, "needs", number)
            issues.append(doc.issue(path, f"no step {need!r} in this workflow; {hint}"))
    return issues


def _cycle(doc: YamlDocument, steps: list[WorkflowStep]) -> list[ConfigIssue]:
    """The first cycle of `needs` found, at the need that closes it (`a → b → a`: a needs b,
    which needs a)."""
    try:
        TopologicalSorter({step.id: step.needs for step in steps}).prepare()
    except CycleError as exc:
        cycle: list[str] = list(reversed(exc.args[1]))  # graphlib lists it in running order
        index = next(i for i, step in enumerate(steps) if step.id == cycle[0])
        path = ("steps", index, "needs", steps[index].needs.index(cycle[1]))
        shown = " → ".join(cycle)
        message = f"the steps' needs form a cycle: {shown} (→: needs); remove one of these needs"
        return [doc.issue(path, message)]
    return []


def _unseen_steps(doc: YamlDocument, steps: list[WorkflowStep]) -> list[ConfigIssue]:
    """A template or condition reading `steps.X` where X does not run before the step: X is not
    among the steps it needs, directly or through others."""
    needs = {step.id: step.needs for step in steps}
    before: dict[str, set[str]] = {}
    for layer in layers(needs):
        for id_ in layer:
            before[id_] = set(needs[id_]).union(*(before[need] for need in needs[id_]))
    issues = []
    for index, step in enumerate(steps):
        texts: list[tuple[Path, str, bool]] = []
        if step.condition is not None:
            texts.append((("steps", index, "condition"), step.condition, True))
        texts += [
            (path, text, False) for path, text in strings(step.params, ("steps", index, "params"))
        ]
        for path, text, condition in texts:
            for read in sorted(step_references(text, condition) - before[step.id]):
                if read == step.id:
                    problem = f"steps.{read} is this step itself, which has not finished here"
                elif read in before:
                    problem = (
                        f"steps.{read} may not have run yet: add {read!r} to this step's needs"
                    )
                else:
                    problem = f"steps.{read}: no step {read!r} in this workflow"
                issues.append(doc.issue(path, problem))
    return issues
