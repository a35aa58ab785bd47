"""The desired workflows of a commit: the repo's `workflows/*.yaml`, each validated in full;
any problem fails the whole load."""

from __future__ import annotations

import hashlib
import json

from nebula.errors import ConfigError, ConfigIssue
from nebula.kinds.workflows.check import workflow_issues
from nebula.kinds.workflows.spec import Workflow
from nebula.kinds.workflows.types import DesiredWorkflow
from nebula.spec.repo import RepoSpec
from nebula.spec.validate import validate_document
from nebula.spec.yamlfile import YamlDocument
from nebula.store.records import WorkflowRecord


def desired_workflows(repo: RepoSpec) -> tuple[DesiredWorkflow, ...]:
    """Every workflow of the commit, by name; `ConfigError` lists every problem."""
    issues: list[ConfigIssue] = []
    found: dict[str, DesiredWorkflow] = {}
    for doc in repo.workflows:
        try:
            workflow = load_workflow(doc, repo)
        except ConfigError as exc:
            issues.extend(exc.issues)
            continue
        other = found.get(workflow.name)
        if other is not None:
            issues.append(
                doc.issue(
                    ("name",),
                    f"workflow {workflow.name!r} is also defined in {other.record.file}; "
                    "give each workflow its own name",
                )
            )
            continue
        found[workflow.name] = workflow
    if issues:
        raise ConfigError(issues)
    return tuple(found[name] for name in sorted(found))


def load_workflow(doc: YamlDocument, repo: RepoSpec) -> DesiredWorkflow:
    """One workflow file validated against the models and the repo's `nebula.yaml`."""
    spec = validate_document(doc, Workflow)
    issues = workflow_issues(doc, spec, repo.config)
    if issues:
        raise ConfigError(issues)
    definition = spec.model_dump(mode="json")
    digest = hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()
    return DesiredWorkflow(spec, WorkflowRecord(spec.name, doc.file, digest, definition))
