"""The desired projects of a commit: the repo's `projects/*.yaml`, each validated in full, and
the routes of their exposed environments; any problem fails the whole load."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from nebula.errors import ConfigError, ConfigIssue
from nebula.kinds.definitions import defined_twice, digest, load_definitions
from nebula.kinds.projects.spec import Project
from nebula.kinds.projects.types import DesiredProject, Environment, HealthCheck
from nebula.kinds.routes.types import ExposedRoute
from nebula.paths import UnsafePathError, folder_within
from nebula.spec.interpolate import secret_references
from nebula.spec.repo import RepoSpec
from nebula.spec.tls import TlsPolicy
from nebula.spec.validate import validate_document
from nebula.spec.yamlfile import YamlDocument
from nebula.store.records import ProjectRecord


def desired_projects(
    repo: RepoSpec, secrets: Mapping[str, str] | None = None
) -> tuple[DesiredProject, ...]:
    """Every project of the commit, by name; `ConfigError` lists every problem. `secrets`
    (the vault's names → fingerprints) checks the `${secret:NAME}` of environment values;
    None accepts any name."""
    return load_definitions(
        repo.projects, lambda doc: load_project(doc, repo, secrets), defined_twice("project")
    )


def load_project(
    doc: YamlDocument, repo: RepoSpec, secrets: Mapping[str, str] | None = None
) -> DesiredProject:
    """One project file validated against the model, its folder, nodes and secrets."""
    spec = validate_document(doc, Project)
    issues: list[ConfigIssue] = []
    folder = None
    if spec.path is not None:
        try:
            folder = folder_within(repo.root, spec.path)
            if folder is None:
                issues.append(doc.issue(("path",), f"no folder {spec.path!r} in the config repo"))
        except UnsafePathError as exc:
            issues.append(doc.issue(("path",), exc.reason))
    nodes = [n.name for n in repo.config.nodes]
    environments: dict[str, Environment] = {}
    for name, env in spec.environments.items():
        if env.node is not None and env.node not in nodes:
            issues.append(
                doc.issue(
                    ("environments", name, "node"),
                    f"no node {env.node!r} in nebula.yaml (nodes: {', '.join(nodes)})",
                )
            )
        elif env.expose is not None and len(nodes) > 1:
            issues += _off_the_edge(doc, name, env.node or nodes[0], repo.config.edge.name)
        for key, value in env.values.items():
            for secret in secret_references(value):
                if secrets is not None and secret not in secrets:
                    issues.append(
                        doc.issue(
                            ("environments", name, "values", key),
                            f"no secret {secret!r} in the vault; create it with "
                            f"`nebula secrets set {secret}`",
                        )
                    )
        environments[name] = Environment(
            name=name,
            branch=env.branch or spec.branch,
            values=tuple(sorted(env.values.items())),
            host=env.expose,
            node=env.node,
        )
    if issues:
        raise ConfigError(issues)
    definition = spec.model_dump(mode="json")
    health = spec.health
    return DesiredProject(
        name=spec.name,
        file=doc.file,
        git_url=spec.git_url,
        folder=folder,
        dockerfile=spec.dockerfile,
        build_args=tuple(sorted(spec.build_args.items())),
        port=spec.port,
        environments=environments,
        health=HealthCheck(health.path, health.interval, health.timeout),
        cpus=spec.resources.cpus,
        memory=spec.resources.memory,
        keep=spec.keep,
        build_timeout=spec.build_timeout,
        drain=spec.drain,
        record=ProjectRecord(spec.name, doc.file, digest(definition), definition),
        doc=doc,
    )


def project_routes(
    projects: Iterable[DesiredProject],
    routes: Iterable[ExposedRoute],
    policy_of: Callable[[str], TlsPolicy],
) -> tuple[ExposedRoute, ...]:
    """The routes of the projects' exposed environments, beside the installations' `routes`: a
    hostname exposed twice is refused at the project's `expose:`. A project route's `container`
    is empty: which container it dials is the deployment's to say (`deploy.switch`), and the
    routes kind keeps what Caddy has for it."""
    hosts = {r.host: f"installation {r.installation}" for r in routes}
    issues: list[ConfigIssue] = []
    found = []
    for project in projects:
        for env in project.environments.values():
            if env.host is None:
                continue
            where = ("environments", env.name, "expose")
            if env.host in hosts:
                issues.append(
                    project.doc.issue(where, f"{env.host} is already exposed by {hosts[env.host]}")
                )
                continue
            hosts[env.host] = f"project {project.name} ({env.name})"
            policy = policy_of(env.host)
            issuer = policy.issuer_for(env.host)
            found.append(
                ExposedRoute(
                    env.route_owner(project.name),
                    env.host,
                    "",
                    project.port,
                    issuer,
                    policy.acme if issuer == "acme" else None,
                )
            )
    if issues:
        raise ConfigError(issues)
    return tuple(found)


def _off_the_edge(doc: YamlDocument, environment: str, node: str, edge: str) -> list[ConfigIssue]:
    """An exposed environment runs on the edge node: Caddy dials its container's address, which
    only the engine's own host reaches."""
    if node == edge:
        return []
    where: tuple[str, ...] = ("environments", environment, "node")
    if where not in doc.marks:  # placed on the first node by default
        where = ("environments", environment, "expose")
    return [
        doc.issue(
            where,
            f"environment {environment!r} is exposed but runs on node {node!r}; with several "
            f"nodes an exposed project environment runs on the edge node {edge!r} (proxy.node), "
            "whose Caddy dials its container: set `node: " + edge + "`",
        )
    ]
