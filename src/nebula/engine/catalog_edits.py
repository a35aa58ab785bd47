"""Install, upgrade and uninstall catalog packages by editing the config repo.

Each operation works out the files to write or delete (`RepoEdit`) against the repo and the
catalog, and refuses clearly what would not validate: an unknown package or version, a
requirement no catalog version meets, an installation that already exists, an uninstall others
depend on, a package needing powers over the host nobody granted (`GrantError`, naming them).
The result is checked by loading the edited repo in full before anything is written, so a
commit made from it never fails the daemon's validation. Committing is `configrepo`'s job.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nebula.catalog import Catalog, version_key
from nebula.engine.load import catalog_for, load_desired
from nebula.errors import NebulaError
from nebula.kinds.base import Desired
from nebula.kinds.packages.dependencies import link, satisfies
from nebula.kinds.packages.grants import GRANTS, grants_needed
from nebula.kinds.packages.resolve import in_channel, selected_version
from nebula.paths import read_file, within
from nebula.spec.names import check_name
from nebula.spec.package import Package, Variable
from nebula.spec.repo import PACKAGES_DIR, RepoSpec
from nebula.spec.yaml_dump import dump_yaml


class MarketplaceError(NebulaError):
    """An install, upgrade or uninstall that cannot be done as asked."""


class GrantError(MarketplaceError):
    """What is installed needs powers over the host the install did not grant (`missing`), or
    a grant asked for is unknown or needed by nothing."""

    def __init__(self, message: str, missing: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.missing = tuple(missing)


ExposeEntry = str | Mapping[str, str]
"""What an install exposes: a hostname, or an `expose:` entry such as {host, auth}; checked
with the rest of the repo when the edit is loaded."""


@dataclass(frozen=True)
class NewInstallation:
    """One `packages/NAME.yaml` an install writes."""

    name: str
    package: Package
    values: dict[str, str] = field(default_factory=dict)
    node: str | None = None
    expose: tuple[ExposeEntry, ...] = ()  # a hostname, or an `expose:` entry ({host, auth})
    required_by: str | None = None  # the installation this one is added for
    allow: tuple[str, ...] = ()  # the grants written into its file

    @property
    def path(self) -> str:
        return f"{PACKAGES_DIR}/{self.name}.yaml"

    @property
    def needs(self) -> tuple[str, ...]:
        """The grants its package's services need."""
        return tuple(grants_needed(self.package.compose))

    def missing(self) -> list[Variable]:
        """Required variables without a value or a default: the user must give them."""
        return [
            v
            for v in self.package.variables
            if v.required and v.default is None and v.name not in self.values
        ]

    def to_yaml(self) -> str:
        body: dict[str, object] = {
            "package": self.package.name,
            "version": self.package.version,
        }
        if self.node:
            body["node"] = self.node
        if self.allow:
            body["allow"] = list(self.allow)
        if self.values:
            body["values"] = dict(sorted(self.values.items()))
        if self.expose:
            body["expose"] = [
                {"host": entry} if isinstance(entry, str) else dict(entry) for entry in self.expose
            ]
        why = f", required by {self.required_by}" if self.required_by else ""
        header = (
            f"# {self.package.name} {self.package.version}: installed by `nebula install`{why}\n"
        )
        return header + dump_yaml(body)


@dataclass(frozen=True)
class RepoEdit:
    """Files to write (path -> text) and to delete, relative to the repo root; `granted`:
    installation -> the grants its written file gives."""

    write: dict[str, str]
    delete: tuple[str, ...] = ()
    message: str = ""
    granted: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def paths(self) -> list[str]:
        return [*self.write, *self.delete]

    def apply_to(self, root: Path) -> None:
        """Write and delete the files under `root`; `UnsafePathError`, before anything
        changes, for a path that would lead outside it."""
        writes = {within(root, rel): text for rel, text in self.write.items()}
        deletes = [_entry_within(root, rel) for rel in self.delete]
        for path, text in writes.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        for path in deletes:
            path.unlink(missing_ok=True)

    def check(self, root: Path) -> Desired:
        """Load the repo as it would be after this edit: `ConfigError` if it does not validate."""
        with tempfile.TemporaryDirectory(prefix="nebula-edit-") as tmp:
            copy = Path(tmp) / "repo"
            # symlinks=True: a link is copied as a link (one to a folder above would recurse)
            shutil.copytree(root, copy, symlinks=True, ignore=shutil.ignore_patterns(".git"))
            self.apply_to(copy)
            return load_desired(copy)


def plan_install(
    repo: RepoSpec,
    package_name: str,
    *,
    name: str | None = None,
    version: str | None = None,
    values: Mapping[str, str] | None = None,
    node: str | None = None,
    expose: Sequence[ExposeEntry] = (),
    allow: Sequence[str] = (),
) -> list[NewInstallation]:
    """The installations to add for `package_name`: what it requires and is not installed yet
    (providers first), then the package itself, each granted what it needs of `allow`.
    `InvalidNameError` for a name outside the grammar (`nebula.spec.names`), before the catalog
    is looked at; `GrantError` unless `allow` is exactly what they need."""
    check_name(package_name, "package name")
    if name is not None:
        check_name(name, "installation name")
    if node is not None:
        check_name(node, "node name")
    catalog = catalog_for(repo)
    existing = {s.name for s in repo.installations}
    installed = _installed_packages(repo, catalog)
    package = _pick(catalog, package_name, version)
    name = name or package.name
    if name in existing:
        raise MarketplaceError(
            f"{PACKAGES_DIR}/{name}.yaml exists already: `nebula upgrade {name}` changes its "
            f"version; install under another name with --name"
        )
    installer = _Installer(catalog, installed, existing, node)
    installer.add_requirements(package, [name])
    added = [
        *installer.added,
        NewInstallation(name, package, dict(values or {}), node, tuple(expose)),
    ]
    _check_grants(added, allow)
    return [dataclasses.replace(item, allow=item.needs) for item in added]


def _check_grants(added: Sequence[NewInstallation], allow: Sequence[str]) -> None:
    """`GrantError` unless `allow` grants what `added` needs, and nothing else."""
    unknown = [grant for grant in allow if grant not in GRANTS]
    if unknown:
        raise GrantError(f"no grant {', '.join(unknown)} (grants: {', '.join(GRANTS)})")
    needed = [grant for grant in GRANTS if any(grant in item.needs for item in added)]
    needless = [grant for grant in GRANTS if grant in allow and grant not in needed]
    if needless:
        raise GrantError(
            f"nothing installed needs {', '.join(needless)}: grant only what is needed "
            f"({', '.join(needed) or 'nothing'})"
        )
    missing = [grant for grant in needed if grant not in allow]
    if missing:
        needs = "; ".join(
            f"{item.package.name} {item.package.version} needs "
            + ", ".join(
                f"{grant} (service {', '.join(services)})"
                for grant, services in grants_needed(item.package.compose).items()
            )
            for item in added
            if item.needs
        )
        raise GrantError(
            f"{needs}: powers over the host Nebula gives only when granted; not granted: "
            f"{', '.join(missing)}",
            missing,
        )


@dataclass
class _Installer:
    """Adds what a package requires and the repo lacks, depth first (providers first)."""

    catalog: Catalog
    installed: dict[str, list[tuple[str, str]]]  # package -> [(installation, version)]
    existing: set[str]  # installation names taken
    node: str | None
    added: list[NewInstallation] = field(default_factory=list)

    def add_requirements(self, package: Package, trail: list[str]) -> None:
        for requirement in package.requires:
            wanted = f"{requirement.package} {requirement.version}".strip()
            have = self.installed.get(requirement.package, [])
            if have:
                if any(satisfies(v, requirement.version) for _, v in have):
                    continue
                found = ", ".join(f"{n} ({v})" for n, v in have)
                raise MarketplaceError(
                    f"{package.name} {package.version} requires {wanted}, but the repo has "
                    f"{found}: upgrade it (`nebula upgrade NAME --to VERSION`) or install "
                    "another one"
                )
            if requirement.package in trail:
                raise MarketplaceError(
                    "dependency cycle: " + " → ".join([*trail, requirement.package])
                )
            versions = self.catalog.versions(requirement.package)
            candidates = [v for v in versions if satisfies(v, requirement.version)]
            if not candidates:
                raise MarketplaceError(
                    f"{package.name} {package.version} requires {wanted}: no catalog version "
                    f"meets it (available: {', '.join(versions) or 'none'})"
                )
            dependency = _pick(self.catalog, requirement.package, candidates[-1])
            name = requirement.package
            if name in self.existing:
                raise MarketplaceError(
                    f"{package.name} requires {wanted}, and {PACKAGES_DIR}/{name}.yaml is "
                    f"another package's installation: install {name} under another name first "
                    f"(`nebula install {name} --name NAME`)"
                )
            self.add_requirements(dependency, [*trail, name])
            self.added.append(
                NewInstallation(name, dependency, {}, self.node, (), required_by=trail[-1])
            )
            self.installed.setdefault(dependency.name, []).append((name, dependency.version))
            self.existing.add(name)


def secret_name(installation: str, variable: str) -> str:
    """The vault name an install gives a secret variable's value, e.g. `nextcloud.db_password`."""
    return f"{installation}.{variable.lower()}"


def move_secrets_out(
    item: NewInstallation, ask: Callable[[Variable], str | None]
) -> tuple[NewInstallation, dict[str, str]]:
    """`item` with each secret variable's value replaced by a `${secret:NAME}` reference, and
    the values for the vault (name -> value). A value not given is asked for with `ask`; when
    that gives nothing, a random one is generated (what a database password wants)."""
    values = dict(item.values)
    for_vault: dict[str, str] = {}
    for variable in item.package.variables:
        if not variable.secret or values.get(variable.name, "").startswith("${secret:"):
            continue
        value = values.get(variable.name) or ask(variable) or secrets.token_urlsafe(24)
        name = secret_name(item.name, variable.name)
        for_vault[name] = value
        values[variable.name] = f"${{secret:{name}}}"
    return dataclasses.replace(item, values=values), for_vault


def install_edit(added: Sequence[NewInstallation]) -> RepoEdit:
    target = added[-1]
    also = [f"{a.package.name} {a.package.version}" for a in added[:-1]]
    message = f"Install {target.name} ({target.package.name} {target.package.version})"
    if also:
        message += f" with {', '.join(also)}"
    granted = {a.name: a.allow for a in added if a.allow}
    return RepoEdit({a.path: a.to_yaml() for a in added}, message=message, granted=granted)


def uninstall_edit(repo: RepoSpec, name: str) -> RepoEdit:
    """Delete `packages/NAME.yaml`; refused while other installations depend on it."""
    source = next((s for s in repo.installations if s.name == name), None)
    if source is None:
        raise MarketplaceError(
            f"no installation {name!r} in {repo.root / PACKAGES_DIR} "
            f"(installed: {', '.join(s.name for s in repo.installations) or 'none'})"
        )
    linked = link(list(repo.installations), _packages(repo, catalog_for(repo)))
    dependants = linked.dependants(name)
    if dependants:
        raise MarketplaceError(
            f"cannot uninstall {name}: {', '.join(dependants)} "
            f"{'depends' if len(dependants) == 1 else 'depend'} on it; uninstall "
            f"{'that' if len(dependants) == 1 else 'those'} first"
        )
    return RepoEdit({}, (source.doc.file,), message=f"Uninstall {name}")


def upgrade_edit(repo: RepoSpec, name: str, to: str | None = None) -> tuple[RepoEdit, str, str]:
    """Pin `name` to version `to` (default: the newest its channel allows, or the newest).

    Returns the edit, the current version and the new one. Only the `version:`/`channel:` line
    of the file changes; comments and the rest stay as written."""
    source = next((s for s in repo.installations if s.name == name), None)
    if source is None or source.spec.package is None:
        raise MarketplaceError(f"no catalog installation {name!r} in {repo.root / PACKAGES_DIR}")
    catalog = catalog_for(repo)
    versions = catalog.versions(source.spec.package)
    current = selected_version(source.spec, versions)
    if current is None:
        raise MarketplaceError(
            f"{source.doc.file}: its version is not in the catalog; fix it first"
        )
    if to is None:
        channel = source.spec.channel or "latest"
        to = max((v for v in versions if in_channel(v, channel)), key=version_key)
    elif to not in versions:
        raise MarketplaceError(
            f"{source.spec.package} has no version {to!r} (available: {', '.join(versions)})"
        )
    if to == current and source.spec.version == to:
        raise MarketplaceError(f"{name} is at {to} already")
    edited = _set_version(read_file(repo.root / source.doc.file, repo.root).decode(), to)
    verb = "Upgrade" if version_key(to) > version_key(current) else "Downgrade"
    message = f"{verb} {name} ({source.spec.package}) {current} → {to}"
    return RepoEdit({source.doc.file: edited}, message=message), current, to


_VERSION_LINE = re.compile(r"(version|channel)\s*:")
_PACKAGE_LINE = re.compile(r"package\s*:")


def _set_version(text: str, version: str) -> str:
    """`text` pinned to `version`: its `version:`/`channel:` lines give way to one
    `version: "V"` line after `package:`; every other line stays as written."""
    lines = [line for line in text.splitlines(keepends=True) if not _VERSION_LINE.match(line)]
    at = next((i for i, line in enumerate(lines) if _PACKAGE_LINE.match(line)), None)
    if at is None:
        raise MarketplaceError("cannot find the `package:` line to pin a version after")
    lines.insert(at + 1, f"version: {json.dumps(version)}\n")
    return "".join(lines)


def _entry_within(root: Path, rel: str) -> Path:
    """`root / rel` checked to stay inside `root`, but not resolved itself: deleting a symlink
    removes the link, not what it points to."""
    within(root, rel)
    return within(root, Path(rel).parent) / Path(rel).name


def _pick(catalog: Catalog, name: str, version: str | None) -> Package:
    versions = catalog.versions(name)
    if not versions:
        from difflib import get_close_matches

        close = get_close_matches(name, catalog.names(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise MarketplaceError(
            f"no package {name!r} in the catalog{hint}: `nebula catalog search` lists them"
        )
    if version is not None and version not in versions:
        raise MarketplaceError(
            f"{name} has no version {version!r} (available: {', '.join(versions)})"
        )
    entry = catalog.get(name, version)
    assert entry is not None  # listed a moment ago
    return entry.package


def _packages(repo: RepoSpec, catalog: Catalog) -> dict[str, Package | None]:
    """Installation -> the catalog package version it selects (None: inline app, or none)."""
    found: dict[str, Package | None] = {}
    for source in repo.installations:
        package = source.spec.package
        version = selected_version(source.spec, catalog.versions(package)) if package else None
        entry = catalog.get(package, version) if package and version else None
        found[source.name] = entry.package if entry else None
    return found


def _installed_packages(repo: RepoSpec, catalog: Catalog) -> dict[str, list[tuple[str, str]]]:
    """Package name -> [(installation, version it selects)] of the repo."""
    found: dict[str, list[tuple[str, str]]] = {}
    for name, package in _packages(repo, catalog).items():
        if package is not None:
            found.setdefault(package.name, []).append((name, package.version))
    return found
