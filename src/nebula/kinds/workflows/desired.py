"""The desired workflows of a commit: the repo's `workflows/*.yaml`, each validated in full;
any problem fails the whole load."""

from __future__ import annotations

from nebula.errors import ConfigError
from nebula.kinds.definitions import defined_twice, digest, load_definitions
from nebula.kinds.workflows.check import workflow_issues
from nebula.kinds.workflows.spec import Workflow
from nebula.kinds.workflows.types import DesiredWorkflow
from nebula.spec.repo import RepoSpec
from nebula.spec.validate import validate_document
from nebula.spec.yamlfile import YamlDocument
from nebula.store.records import WorkflowRecord


def desired_workflows(repo: RepoSpec) -> tuple[DesiredWorkflow, ...]:
    """Every workflow of the commit, by name; `ConfigError` lists every problem."""
    return load_definitions(
        repo.workflows, lambda doc: load_workflow(doc, repo), defined_twice("workflow")
    )


def load_workflow(doc: YamlDocument, repo: RepoSpec) -> DesiredWorkflow:
    """One workflow file validated against the models and the repo's `nebula.yaml`."""
    spec = validate_document(doc, Workflow)
    issues = workflow_issues(doc, spec, repo.config)
    if issues:
        raise ConfigError(issues)
    definition = spec.model_dump(mode="json")
    return DesiredWorkflow(
        spec, WorkflowRecord(spec.name, doc.file, digest(definition), definition)
    )
