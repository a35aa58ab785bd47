"""Read a whole config repo: `nebula.yaml`, every `packages/*.yaml` and `domains/*.yaml`, all
errors at once; `runbooks/*.yml`, `workflows/*.yaml`, `agents/*.yaml`, `functions/*.yaml` and
`projects/*.yaml` are parsed here and validated by their kinds."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nebula.errors import ConfigError, ConfigIssue
from nebula.paths import UnsafePathError, folder_within, read_file
from nebula.spec.config import NebulaConfig
from nebula.spec.domain import Domain
from nebula.spec.installation import Installation
from nebula.spec.names import NAME, NAME_RULE, excerpt
from nebula.spec.validate import M, validate_document
from nebula.spec.yamlfile import YamlDocument, parse_yaml

CONFIG_FILE = "nebula.yaml"
PACKAGES_DIR = "packages"
LOCAL_CATALOG_DIR = "catalog"
DOMAINS_DIR = "domains"
RUNBOOKS_DIR = "runbooks"
WORKFLOWS_DIR = "workflows"
AGENTS_DIR = "agents"
FUNCTIONS_DIR = "functions"
PROJECTS_DIR = "projects"


@dataclass(frozen=True)
class InstallationSource:
    """One installation as written, with the document it came from (for error marks)."""

    name: str
    spec: Installation
    doc: YamlDocument


@dataclass(frozen=True)
class DomainSource:
    """One zone as written in `domains/*.yaml`, with its document (for error marks)."""

    spec: Domain
    doc: YamlDocument


@dataclass(frozen=True)
class RepoSpec:
    root: Path
    config: NebulaConfig
    installations: tuple[InstallationSource, ...]
    domains: tuple[DomainSource, ...] = ()
    runbooks: tuple[YamlDocument, ...] = ()  # parsed; the runbooks kind validates them
    workflows: tuple[YamlDocument, ...] = ()  # parsed; the workflows kind validates them
    agents: tuple[YamlDocument, ...] = ()  # parsed; the agents kind validates them
    functions: tuple[YamlDocument, ...] = ()  # parsed; the functions kind validates them
    projects: tuple[YamlDocument, ...] = ()  # parsed; the projects kind validates them

    @property
    def local_catalog(self) -> Path | None:
        """The repo's own `catalog/` folder, whose packages shadow the built-in ones."""
        return local_catalog_dir(self.root)


def local_catalog_dir(root: Path) -> Path | None:
    """The `catalog/` folder of the repo at `root`, if it has one; `ConfigError` when it is
    not a folder inside the repo."""
    return _folder(root, LOCAL_CATALOG_DIR)


def read_document(path: Path, root: Path, names_from: Path | None = None) -> YamlDocument:
    """Parse `path`, naming it relative to `names_from` (default `root`) in every message.
    Refused unread: a file leading outside `root`, anything but a regular file, a file over
    1 MiB (`nebula.paths`)."""
    name, text = _read_text(path, root, names_from)
    return parse_yaml(text, name)


def _read_text(path: Path, root: Path, names_from: Path | None = None) -> tuple[str, str]:
    """The name `path` goes by in messages, and its text (see `read_document`)."""
    base = root if names_from is None else names_from
    name = path.relative_to(base).as_posix() if path.is_relative_to(base) else str(path)
    try:
        return name, read_file(path, root).decode("utf-8")
    except UnsafePathError as exc:
        raise ConfigError([ConfigIssue(name, 1, 1, "", exc.reason)]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(name, 1, 1, "", f"cannot read file: {exc}")]) from None


_Key = tuple[str, str, type | None]  # a file's name, its text, the model it is validated as


class _Documents:
    """The files of one load of a repo, parsed (and validated), each reused from the load
    before when its name, text and model are the same: a commit that changes one file costs
    one file's parsing and validation, however large the repo. Documents and models are never
    changed once loaded, so sharing them is safe; only the last load's are kept."""

    last: dict[_Key, tuple[YamlDocument, object]] = {}

    def __init__(self) -> None:
        self.now: dict[_Key, tuple[YamlDocument, object]] = {}

    def parsed(self, path: Path, root: Path) -> YamlDocument:
        return self._get(path, root, None)[0]

    def validated(self, path: Path, root: Path, model: type[M]) -> tuple[YamlDocument, M]:
        doc, spec = self._get(path, root, model)
        assert isinstance(spec, model)
        return doc, spec

    def _get(self, path: Path, root: Path, model: type | None) -> tuple[YamlDocument, object]:
        name, text = _read_text(path, root)
        key = (name, text, model)
        found = self.last.get(key) or self.now.get(key)
        if found is None:
            doc = parse_yaml(text, name)
            found = (doc, validate_document(doc, model) if model is not None else None)
        self.now[key] = found
        return found

    def keep(self) -> None:
        """This load's documents are the ones the next load may reuse."""
        _Documents.last = self.now


def _folder(root: Path, name: str) -> Path | None:
    try:
        return folder_within(root, name)
    except UnsafePathError as exc:
        raise ConfigError([ConfigIssue(name, 1, 1, "", exc.reason)]) from None


def _yaml_files(root: Path, folder: str, issues: list[ConfigIssue]) -> list[Path]:
    """The `*.yaml` and `*.yml` files of `root/folder`, by name; a folder that is a symlink
    loop or leads outside the repo is an issue, never an empty folder."""
    try:
        found = _folder(root, folder)
    except ConfigError as exc:
        issues.extend(exc.issues)
        return []
    if found is None:
        return []
    return sorted(
        (p for p in found.glob("*.y*ml") if p.suffix in (".yaml", ".yml")), key=lambda p: p.name
    )


def _documents(
    documents: _Documents, root: Path, folder: str, model: type[M], issues: list[ConfigIssue]
) -> Iterator[tuple[Path, YamlDocument, M]]:
    """Each YAML file of `root/folder` with its document, validated as `model`; the problems
    of a file that does not validate are added to `issues` and the file is passed over."""
    for path in _yaml_files(root, folder, issues):
        try:
            doc, spec = documents.validated(path, root, model)
        except ConfigError as exc:
            issues.extend(exc.issues)
            continue
        yield path, doc, spec


def load_repo(root: Path) -> RepoSpec:
    """Load and validate the config repo at `root`; `ConfigError` lists every problem found."""
    root = root.resolve()
    config_path = root / CONFIG_FILE
    if not os.path.lexists(config_path):
        raise ConfigError(
            [
                ConfigIssue(
                    CONFIG_FILE,
                    1,
                    1,
                    "",
                    f"{root} is not a Nebula config repo (no {CONFIG_FILE}); "
                    "create one with `nebula init`",
                )
            ]
        )
    issues: list[ConfigIssue] = []
    documents = _Documents()
    config = NebulaConfig()
    try:
        config = documents.validated(config_path, root, NebulaConfig)[1]
    except ConfigError as exc:
        issues.extend(exc.issues)

    installations: list[InstallationSource] = []
    seen: dict[str, str] = {}
    for path, doc, spec in _documents(documents, root, PACKAGES_DIR, Installation, issues):
        name = spec.name or path.stem
        if spec.name is None and not NAME.fullmatch(name):
            issues.append(
                doc.issue(
                    (),
                    f"file name {excerpt(path.name)} is not a valid installation name: "
                    f"{NAME_RULE}; or set `name:`",
                )
            )
            continue
        if name in seen:
            issues.append(
                doc.issue(("name",), f"installation {name!r} is also defined in {seen[name]}")
            )
            continue
        seen[name] = doc.file
        installations.append(InstallationSource(name, spec, doc))
    domains = _load_domains(documents, root, issues)
    runbooks = _parse_all(documents, root, RUNBOOKS_DIR, issues)
    workflows = _parse_all(documents, root, WORKFLOWS_DIR, issues)
    agents = _parse_all(documents, root, AGENTS_DIR, issues)
    functions = _parse_all(documents, root, FUNCTIONS_DIR, issues)
    projects = _parse_all(documents, root, PROJECTS_DIR, issues)
    try:
        local_catalog_dir(root)
    except ConfigError as exc:
        issues.extend(exc.issues)
    documents.keep()
    if issues:
        raise ConfigError(issues)
    return RepoSpec(
        root,
        config,
        tuple(installations),
        domains,
        runbooks,
        workflows,
        agents,
        functions,
        projects,
    )


def _parse_all(
    documents: _Documents, root: Path, folder: str, issues: list[ConfigIssue]
) -> tuple[YamlDocument, ...]:
    """Every YAML file of `root/folder`, parsed; problems are added to `issues`."""
    docs = []
    for path in _yaml_files(root, folder, issues):
        try:
            docs.append(documents.parsed(path, root))
        except ConfigError as exc:
            issues.extend(exc.issues)
    return tuple(docs)


def _load_domains(
    documents: _Documents, root: Path, issues: list[ConfigIssue]
) -> tuple[DomainSource, ...]:
    """Every `domains/*.yaml`, one zone each; problems are added to `issues`."""
    domains: list[DomainSource] = []
    zones: dict[str, str] = {}
    for _, doc, spec in _documents(documents, root, DOMAINS_DIR, Domain, issues):
        if spec.zone in zones:
            issues.append(doc.issue(("zone",), f"zone {spec.zone!r} is also in {zones[spec.zone]}"))
            continue
        zones[spec.zone] = doc.file
        domains.append(DomainSource(spec, doc))
    return tuple(domains)
