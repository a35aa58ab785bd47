"""The desired functions of a commit: the repo's `functions/*.yaml`, each validated in full;
any problem fails the whole load."""

from __future__ import annotations

from nebula.kinds.definitions import defined_twice, digest, load_definitions
from nebula.kinds.functions.spec import Function
from nebula.kinds.functions.types import DesiredFunction
from nebula.spec.repo import RepoSpec
from nebula.spec.validate import validate_document
from nebula.spec.yamlfile import YamlDocument
from nebula.store.records import FunctionRecord


def desired_functions(repo: RepoSpec) -> tuple[DesiredFunction, ...]:
    """Every function of the commit, by name; `ConfigError` lists every problem."""
    return load_definitions(repo.functions, load_function, defined_twice("function"))


def load_function(doc: YamlDocument) -> DesiredFunction:
    """One function file validated against the models (a built-in's own description and
    parameters filled in where the file leaves them out)."""
    spec = validate_document(doc, Function)
    function = spec.definition(doc.file)
    definition = spec.model_dump(mode="json") | {
        "description": function.description,
        "parameters": function.parameters,
    }
    return DesiredFunction(
        function, FunctionRecord(spec.name, doc.file, digest(definition), definition)
    )
