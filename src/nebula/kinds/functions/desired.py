"""The desired functions of a commit: the repo's `functions/*.yaml`, each validated in full;
any problem fails the whole load."""

from __future__ import annotations

import hashlib
import json

from nebula.errors import ConfigError, ConfigIssue
from nebula.kinds.functions.spec import Function
from nebula.kinds.functions.types import DesiredFunction
from nebula.spec.repo import RepoSpec
from nebula.spec.validate import validate_document
from nebula.store.records import FunctionRecord


def desired_functions(repo: RepoSpec) -> tuple[DesiredFunction, ...]:
    """Every function of the commit, by name; `ConfigError` lists every problem."""
    issues: list[ConfigIssue] = []
    found: dict[str, DesiredFunction] = {}
    for doc in repo.functions:
        try:
            spec = validate_document(doc, Function)
        except ConfigError as exc:
            issues.extend(exc.issues)
            continue
        other = found.get(spec.name)
        if other is not None:
            issues.append(
                doc.issue(
                    ("name",),
                    f"function {spec.name!r} is also defined in {other.record.file}; "
                    "give each function its own name",
                )
            )
            continue
        function = spec.definition(doc.file)
        # the document as written, with what a built-in fills in
        definition = spec.model_dump(mode="json") | {
            "description": function.description,
            "parameters": function.parameters,
        }
        digest = hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()
        record = FunctionRecord(spec.name, doc.file, digest, definition)
        found[spec.name] = DesiredFunction(function, record)
    if issues:
        raise ConfigError(issues)
    return tuple(found[name] for name in sorted(found))
