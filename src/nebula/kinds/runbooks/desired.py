"""The desired runbooks of a commit: the repo's `runbooks/*.yml` and the built-ins that
`nebula.yaml` enables, each validated in full; any problem fails the whole load."""

from __future__ import annotations

import hashlib
import json

from nebula.errors import ConfigError, ConfigIssue
from nebula.kinds.runbooks.check import runbook_issues
from nebula.kinds.runbooks.spec import Runbook
from nebula.kinds.runbooks.types import DesiredRunbook
from nebula.paths import builtin_runbooks_dir
from nebula.spec.repo import RepoSpec, read_document
from nebula.spec.validate import validate_document
from nebula.spec.yamlfile import YamlDocument
from nebula.store.records import RunbookRecord


def desired_runbooks(repo: RepoSpec) -> tuple[DesiredRunbook, ...]:
    """Every runbook of the commit, by name; `ConfigError` lists every problem."""
    issues: list[ConfigIssue] = []
    found: dict[str, DesiredRunbook] = {}
    builtin_dir = builtin_runbooks_dir()
    builtins = [
        read_document(builtin_dir / f"{name}.yml", builtin_dir, builtin_dir.parent)
        for name in dict.fromkeys(repo.config.runbooks)
    ]
    for doc, builtin in [*((d, True) for d in builtins), *((d, False) for d in repo.runbooks)]:
        try:
            runbook = load_runbook(doc, repo, builtin)
        except ConfigError as exc:
            issues.extend(exc.issues)
            continue
        other = found.get(runbook.name)
        if other is not None:
            issues.append(doc.issue(("name",), _twice(runbook.name, other.record)))
            continue
        found[runbook.name] = runbook
    if issues:
        raise ConfigError(issues)
    return tuple(found[name] for name in sorted(found))


def load_runbook(doc: YamlDocument, repo: RepoSpec, builtin: bool) -> DesiredRunbook:
    """One runbook file validated against the models and the repo's `nebula.yaml`."""
    spec = validate_document(doc, Runbook)
    issues = runbook_issues(doc, spec, repo.config)
    if issues:
        raise ConfigError(issues)
    definition = spec.model_dump(mode="json")
    digest = hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()
    return DesiredRunbook(spec, RunbookRecord(spec.name, doc.file, digest, definition, builtin))


def _twice(name: str, first: RunbookRecord) -> str:
    if first.builtin:
        return (
            f"runbook {name!r} is also the built-in runbook nebula.yaml enables; "
            f"pick one: rename this one, or remove {name!r} from nebula.yaml's runbooks:"
        )
    return f"runbook {name!r} is also defined in {first.file}; give each runbook its own name"
