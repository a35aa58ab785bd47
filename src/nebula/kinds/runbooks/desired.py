"""The desired runbooks of a commit: the repo's `runbooks/*.yml` and the built-ins that
`nebula.yaml` enables, each validated in full; any problem fails the whole load."""

from __future__ import annotations

from nebula.errors import ConfigError
from nebula.kinds.definitions import defined_twice, digest, load_definitions
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
    builtin_dir = builtin_runbooks_dir()
    builtins = [
        read_document(builtin_dir / f"{name}.yml", builtin_dir, builtin_dir.parent)
        for name in dict.fromkeys(repo.config.runbooks)
    ]
    enabled = {id(doc) for doc in builtins}
    return load_definitions(  # built-ins first: a repo's runbook of the same name is refused
        [*builtins, *repo.runbooks],
        lambda doc: load_runbook(doc, repo, builtin=id(doc) in enabled),
        _twice,
    )


def load_runbook(doc: YamlDocument, repo: RepoSpec, builtin: bool) -> DesiredRunbook:
    """One runbook file validated against the models and the repo's `nebula.yaml`."""
    spec = validate_document(doc, Runbook)
    issues = runbook_issues(doc, spec, repo.config)
    if issues:
        raise ConfigError(issues)
    definition = spec.model_dump(mode="json")
    record = RunbookRecord(spec.name, doc.file, digest(definition), definition, builtin)
    return DesiredRunbook(spec, record)


def _twice(name: str, first: DesiredRunbook) -> str:
    if first.record.builtin:
        return (
            f"runbook {name!r} is also the built-in runbook nebula.yaml enables; "
            f"pick one: rename this one, or remove {name!r} from nebula.yaml's runbooks:"
        )
    return defined_twice("runbook")(name, first)
