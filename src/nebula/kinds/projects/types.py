"""The projects kind's plain data: a project as loaded from `projects/*.yaml`, each of its
environments, and the labels its containers and images carry."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nebula.spec.yamlfile import YamlDocument
from nebula.store.records import ProjectRecord

LABEL_PROJECT = "io.nebula.project"  # on a project's containers, networks and images
LABEL_ENVIRONMENT = "io.nebula.project.environment"
LABEL_DEPLOYMENT = "io.nebula.project.deployment"
LABEL_COMMIT = "io.nebula.project.commit"
IMAGE_REPOSITORY = "nebula-project"  # images are nebula-project/NAME:COMMIT12


def image_for(project: str, commit: str) -> str:
    """The tag of a project's image built from `commit`."""
    return f"{IMAGE_REPOSITORY}/{project}:{commit[:12]}"


@dataclass(frozen=True)
class HealthCheck:
    """When a new container may take traffic: `path` answers 2xx/3xx over HTTP on the
    environment's port (from where Caddy dials it), `healthy_after` times in a row."""

    path: str = "/"
    interval: float = 0.5
    timeout: float = 60.0  # the container never healthy by then: the deployment fails
    healthy_after: int = 2


@dataclass(frozen=True)
class Environment:
    """One environment of a project (development, staging, production): its own branch,
    values and hostname. `values` are environment variables; a secret is its stand-in until
    the container is created."""

    name: str
    branch: str
    values: tuple[tuple[str, str], ...]
    host: str | None  # the hostname Caddy routes to it; None: not exposed
    node: str | None  # None: the default node

    def container(self, project: str, deployment_id: str) -> str:
        """The name of one deployment's container."""
        return f"project-{project}-{self.name}-{deployment_id[:8]}"

    def route_owner(self, project: str) -> str:
        """The name its Caddy route is kept under (`installation` of its `ExposedRoute`)."""
        return f"project-{project}-{self.name}"


@dataclass(frozen=True)
class DesiredProject:
    """A project of the commit: where its code is, how it is built, its environments."""

    name: str
    file: str
    git_url: str | None  # a git remote, or None for a folder of the config repo
    folder: Path | None  # that folder (absolute), when the code lives in the config repo
    dockerfile: str | None  # the Dockerfile's path in the code; None: a detected default
    build_args: tuple[tuple[str, str], ...]
    port: int  # the container port it serves on
    environments: dict[str, Environment]
    health: HealthCheck
    cpus: float | None
    memory: str | None
    keep: int  # images kept for rollback
    build_timeout: float
    drain: float  # seconds the old container keeps serving after the switch
    record: ProjectRecord
    doc: YamlDocument = field(compare=False, repr=False)  # its file, for error marks
