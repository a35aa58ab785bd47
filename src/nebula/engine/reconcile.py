"""From a config repo folder to desired state and a plan against what Docker runs now."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from nebula.catalog import Catalog, builtin_catalog_dir
from nebula.kinds.dns.desired import desired_zones
from nebula.kinds.dns.types import DesiredZone
from nebula.kinds.packages.diff import diff
from nebula.kinds.packages.resolve import resolve
from nebula.kinds.packages.types import DesiredInstallation, Observed
from nebula.kinds.routes.desired import ExposedRoute, exposed_routes
from nebula.plan import Plan
from nebula.providers.docker import DockerProvider
from nebula.spec.package import Package
from nebula.spec.repo import RepoSpec, load_repo

FingerprintSource = Callable[[], Mapping[str, str]]
SECRET_MARK = "${secret:"


@dataclass(frozen=True)
class Desired:
    repo: RepoSpec
    catalog: Catalog
    installations: list[DesiredInstallation]
    routes: tuple[ExposedRoute, ...] = ()  # exposed hostnames, for the proxy
    zones: tuple[DesiredZone, ...] = ()  # DNS zones with their desired records

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


def load_desired(root: Path, fingerprints: FingerprintSource | None = None) -> Desired:
    """Load, validate and resolve the config repo; `ConfigError` before anything is touched.

    `fingerprints` gives the vault's secret name -> fingerprint (`Vault.fingerprints`, which
    needs no master key); it is called only when an installation file mentions `${secret:`.
    Without it (`nebula validate`), any secret name is accepted.
    """
    repo = load_repo(root)
    catalog = catalog_for(repo)
    secrets: Mapping[str, str] | None = None
    if fingerprints is not None:
        mentioned = any(SECRET_MARK in repr(s.doc.data) for s in repo.installations)
        secrets = fingerprints() if mentioned else {}
    installations = resolve(repo, catalog, secrets)
    routes = exposed_routes(repo, installations)
    return Desired(repo, catalog, installations, routes, tuple(desired_zones(repo)))


def plan_against(desired: Desired, provider: DockerProvider) -> Snapshot:
    observed = provider.observe()
    return Snapshot(desired, observed, diff(desired.installations, observed))
