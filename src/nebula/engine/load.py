"""The pipeline's first step: from a config repo folder to the desired state of every kind.

Everything is loaded, validated and resolved before any kind plans: a commit that fails here
changes nothing (`ConfigError` lists every problem, in file order).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from nebula.catalog import Catalog, builtin_catalog_dir
from nebula.kinds.agents.desired import desired_agents
from nebula.kinds.base import Desired
from nebula.kinds.dns.desired import desired_zones
from nebula.kinds.functions.desired import desired_functions
from nebula.kinds.packages.resolve import resolve
from nebula.kinds.projects.desired import desired_projects, project_routes
from nebula.kinds.routes.desired import exposed_routes, tls_policies
from nebula.kinds.runbooks.desired import desired_runbooks
from nebula.kinds.workflows.desired import desired_workflows
from nebula.spec.repo import RepoSpec, load_repo

FingerprintSource = Callable[[], Mapping[str, str]]
SECRET_MARK = "${secret:"


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
        mentioned |= any(SECRET_MARK in repr(doc.data) for doc in repo.projects)
        secrets = fingerprints() if mentioned else {}
    installations = resolve(repo, catalog, secrets)
    routes = exposed_routes(repo, installations)
    projects = desired_projects(repo, secrets)
    routes += project_routes(projects, routes, tls_policies(repo))
    runbooks = desired_runbooks(repo)
    zones = tuple(desired_zones(repo))
    workflows = desired_workflows(repo)
    functions = desired_functions(repo)
    agents = desired_agents(repo, {f.name: f.spec for f in functions})
    return Desired(
        repo,
        catalog,
        installations,
        routes,
        zones,
        runbooks,
        workflows,
        functions,
        agents,
        projects,
    )
