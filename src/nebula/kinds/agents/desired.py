"""The desired agents of a commit: the repo's `agents/*.yaml`, each validated in full against
the commit's functions and `nebula.yaml`; any problem fails the whole load."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from nebula.errors import ConfigError, ConfigIssue
from nebula.kinds.agents.check import agent_issues
from nebula.kinds.agents.spec import Agent
from nebula.kinds.agents.types import DesiredAgent
from nebula.kinds.functions.types import FunctionDef
from nebula.spec.repo import RepoSpec
from nebula.spec.validate import validate_document
from nebula.store.records import AgentRecord


def desired_agents(
    repo: RepoSpec, functions: Mapping[str, FunctionDef]
) -> tuple[DesiredAgent, ...]:
    """Every agent of the commit, by name; `functions` are the commit's, by name (the tools
    agents may name). `ConfigError` lists every problem."""
    issues: list[ConfigIssue] = []
    found: dict[str, DesiredAgent] = {}
    providers = repo.config.ai.provider_names
    for doc in repo.agents:
        try:
            spec = validate_document(doc, Agent)
        except ConfigError as exc:
            issues.extend(exc.issues)
            continue
        problems = agent_issues(doc, spec, functions, providers)
        other = found.get(spec.name)
        if other is not None:
            problems.append(
                doc.issue(
                    ("name",),
                    f"agent {spec.name!r} is also defined in {other.record.file}; "
                    "give each agent its own name",
                )
            )
        if problems:
            issues.extend(problems)
            continue
        definition = spec.model_dump(mode="json")
        digest = hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()
        record = AgentRecord(spec.name, doc.file, digest, definition)
        found[spec.name] = DesiredAgent(spec.definition(doc.file), record)
    if issues:
        raise ConfigError(issues)
    return tuple(found[name] for name in sorted(found))
