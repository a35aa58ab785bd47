"""The desired agents of a commit: the repo's `agents/*.yaml`, each validated in full against
the commit's functions and `nebula.yaml`; any problem fails the whole load."""

from __future__ import annotations

from collections.abc import Mapping

from nebula.errors import ConfigError
from nebula.kinds.agents.check import agent_issues
from nebula.kinds.agents.spec import Agent
from nebula.kinds.agents.types import DesiredAgent
from nebula.kinds.definitions import defined_twice, digest, load_definitions
from nebula.kinds.functions.types import FunctionDef
from nebula.spec.repo import RepoSpec
from nebula.spec.validate import validate_document
from nebula.spec.yamlfile import YamlDocument
from nebula.store.records import AgentRecord


def desired_agents(
    repo: RepoSpec, functions: Mapping[str, FunctionDef]
) -> tuple[DesiredAgent, ...]:
    """Every agent of the commit, by name; `functions` are the commit's, by name (the tools
    agents may name). `ConfigError` lists every problem."""
    providers = repo.config.ai.provider_names

    def load(doc: YamlDocument) -> DesiredAgent:
        spec = validate_document(doc, Agent)
        problems = agent_issues(doc, spec, functions, providers)
        if problems:
            raise ConfigError(problems)
        definition = spec.model_dump(mode="json")
        record = AgentRecord(spec.name, doc.file, digest(definition), definition)
        return DesiredAgent(spec.definition(doc.file), record)

    return load_definitions(repo.agents, load, defined_twice("agent"))
