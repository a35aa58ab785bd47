"""Read a whole config repo: `nebula.yaml`, every `packages/*.yaml` and `domains/*.yaml`, all
errors at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nebula.errors import ConfigError, ConfigIssue
from nebula.spec.config import NebulaConfig
from nebula.spec.domain import Domain
from nebula.spec.installation import Installation
from nebula.spec.validate import validate_document
from nebula.spec.yamlfile import YamlDocument, parse_yaml

CONFIG_FILE = "nebula.yaml"
PACKAGES_DIR = "packages"
LOCAL_CATALOG_DIR = "catalog"
DOMAINS_DIR = "domains"


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

    @property
    def local_catalog(self) -> Path | None:
        """The repo's own `catalog/` folder, whose packages shadow the built-in ones."""
        path = self.root / LOCAL_CATALOG_DIR
        return path if path.is_dir() else None


def read_document(path: Path, root: Path) -> YamlDocument:
    """Parse `path`, naming it relative to `root` in every message."""
    name = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(name, 1, 1, "", f"cannot read file: {exc}")]) from None
    return parse_yaml(text, name)


def load_repo(root: Path) -> RepoSpec:
    """Load and validate the config repo at `root`; `ConfigError` lists every problem found."""
    root = root.resolve()
    config_path = root / CONFIG_FILE
    if not config_path.is_file():
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
    config = NebulaConfig()
    try:
        config = validate_document(read_document(config_path, root), NebulaConfig)
    except ConfigError as exc:
        issues.extend(exc.issues)

    installations: list[InstallationSource] = []
    seen: dict[str, str] = {}
    package_files = sorted((root / PACKAGES_DIR).glob("*.y*ml"))
    for path in package_files:
        if path.suffix not in (".yaml", ".yml"):
            continue
        try:
            doc = read_document(path, root)
            spec = validate_document(doc, Installation)
        except ConfigError as exc:
            issues.extend(exc.issues)
            continue
        name = spec.name or path.stem
        if spec.name is None and not _valid_name(name):
            issues.append(
                doc.issue(
                    (), f"file name {path.name!r} is not a valid installation name; set `name:`"
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
    domains = _load_domains(root, issues)
    if issues:
        raise ConfigError(issues)
    return RepoSpec(root=root, config=config, installations=tuple(installations), domains=domains)


def _load_domains(root: Path, issues: list[ConfigIssue]) -> tuple[DomainSource, ...]:
    """Every `domains/*.yaml`, one zone each; problems are added to `issues`."""
    domains: list[DomainSource] = []
    zones: dict[str, str] = {}
    for path in sorted((root / DOMAINS_DIR).glob("*.y*ml")):
        if path.suffix not in (".yaml", ".yml"):
            continue
        try:
            doc = read_document(path, root)
            spec = validate_document(doc, Domain)
        except ConfigError as exc:
            issues.extend(exc.issues)
            continue
        if spec.zone in zones:
            issues.append(doc.issue(("zone",), f"zone {spec.zone!r} is also in {zones[spec.zone]}"))
            continue
        zones[spec.zone] = doc.file
        domains.append(DomainSource(spec, doc))
    return tuple(domains)


def _valid_name(name: str) -> bool:
    try:
        Installation(name=name, package="x")
    except ValueError:
        return False
    return True
