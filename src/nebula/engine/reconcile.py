"""From a config repo folder to desired state and a plan against what Docker runs now."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nebula.catalog import Catalog, builtin_catalog_dir
from nebula.kinds.docker_diff import diff
from nebula.kinds.packages import resolve
from nebula.plan import Plan
from nebula.providers.docker import DockerProvider
from nebula.resources import DesiredInstallation, Observed
from nebula.spec.package import Package
from nebula.spec.repo import RepoSpec, load_repo


@dataclass(frozen=True)
class Desired:
    repo: RepoSpec
    catalog: Catalog
    installations: list[DesiredInstallation]

    def packages(self) -> list[Package]:
        """The catalog packages the installations use, at the versions they use."""
        used = sorted({(i.package, i.version) for i in self.installations if i.package})
        return [
            entry.package for name, version in used if (entry := self.catalog.get(name, version))
        ]


@dataclass(frozen=True)
class Snapshot:
    desired: Desired
    observed: Observed
    plan: Plan


def catalog_for(repo: RepoSpec) -> Catalog:
    """The built-in catalog, shadowed by the repo's own `catalog/` folder if it has one."""
    local = repo.local_catalog
    return Catalog([builtin_catalog_dir(), *([local] if local else [])])


def load_desired(root: Path) -> Desired:
    """Load, validate and resolve the config repo; `ConfigError` before anything is touched."""
    repo = load_repo(root)
    catalog = catalog_for(repo)
    return Desired(repo, catalog, resolve(repo, catalog))


def plan_against(desired: Desired, provider: DockerProvider) -> Snapshot:
    observed = provider.observe()
    return Snapshot(desired, observed, diff(desired.installations, observed))
