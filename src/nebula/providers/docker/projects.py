"""What deploying a project asks of a Docker Engine: its images (built, listed, removed), its
network, and its containers, one per deployment, labelled with the project and environment.

A project's containers and networks carry `io.nebula.project`, never `io.nebula.managed`: the
packages kind manages only what it made, and leaves these to the deployments.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nebula.errors import ProviderError
from nebula.kinds.projects.types import LABEL_DEPLOYMENT, LABEL_ENVIRONMENT, LABEL_PROJECT
from nebula.providers.docker.build import Output, build_image

if TYPE_CHECKING:
    from nebula.providers.docker import DockerProvider


@dataclass(frozen=True)
class ProjectContainer:
    id: str
    name: str
    deployment: str
    state: str  # running | exited | created | ...


@dataclass(frozen=True)
class ProjectImage:
    tag: str
    created: int  # unix time
    id: str


@dataclass(frozen=True)
class RunSpec:
    """One deployment's container. `environment` holds plain values: it goes to Docker only."""

    name: str
    image: str
    network: str
    environment: Mapping[str, str]
    labels: Mapping[str, str]
    cpus: float | None = None
    memory: str | None = None


class ProjectEngine:
    """A project's share of one Docker Engine, through its `DockerProvider`."""

    def __init__(self, provider: DockerProvider) -> None:
        self.provider = provider

    def has_image(self, tag: str) -> bool:
        import docker.errors

        with self.provider._call(f"image {tag}"):
            try:
                self.provider.api.inspect_image(tag)
            except docker.errors.ImageNotFound:
                return False
        return True

    def build(
        self,
        context: bytes,
        tag: str,
        *,
        dockerfile: str,
        buildargs: Mapping[str, str],
        labels: Mapping[str, str],
        timeout: float,
        output: Output,
    ) -> str:
        """Build `tag` from a tar `context`, streaming its progress to `output`; its id."""
        with self.provider._call(f"image {tag}"):
            return build_image(
                self.provider.api,
                context,
                tag,
                dockerfile=dockerfile,
                buildargs=buildargs,
                labels=labels,
                timeout=timeout,
                output=output,
            )

    def images(self, repository: str) -> list[ProjectImage]:
        """The tags of `repository` on the engine, newest first."""
        with self.provider._call(f"images {repository}"):
            found = self.provider.api.images(name=repository)
        images = [
            ProjectImage(tag, int(image.get("Created") or 0), image["Id"])
            for image in found
            for tag in image.get("RepoTags") or []
            if tag.startswith(repository + ":")
        ]
        return sorted(images, key=lambda i: (-i.created, i.tag))

    def remove_image(self, tag: str) -> None:
        """Untag (and remove, when nothing else uses it) an image; its parents stay, as the
        classic builder's cache."""
        import docker.errors

        with self.provider._call(f"image {tag}"), suppress(docker.errors.NotFound):
            self.provider.api.remove_image(tag, noprune=True)

    def ensure_network(self, name: str, labels: Mapping[str, str]) -> None:
        """The project's network (a bridge: Docker picks its subnet), made once."""
        api = self.provider.api
        with self.provider._call(f"network {name}"):
            if not api.networks(names=[name]):
                api.create_network(name, driver="bridge", labels=dict(labels), check_duplicate=True)

    def containers(self, project: str, environment: str) -> list[ProjectContainer]:
        """The environment's containers, running or not."""
        return [
            container
            for container, *_ in self._listed(
                [f"{LABEL_PROJECT}={project}", f"{LABEL_ENVIRONMENT}={environment}"]
            )
        ]

    def all_containers(self) -> list[tuple[ProjectContainer, str, str]]:
        """Every project's containers on the engine: (container, project, environment)."""
        return self._listed([LABEL_PROJECT])

    def _listed(self, labels: list[str]) -> list[tuple[ProjectContainer, str, str]]:
        with self.provider._call("projects' containers"):
            found = self.provider.api.containers(all=True, filters={"label": labels})
        listed = []
        for c in found:
            tags = c.get("Labels") or {}
            container = ProjectContainer(
                c["Id"],
                (c.get("Names") or ["/"])[0].lstrip("/"),
                tags.get(LABEL_DEPLOYMENT, ""),
                c.get("State", ""),
            )
            listed.append((container, tags.get(LABEL_PROJECT, ""), tags.get(LABEL_ENVIRONMENT, "")))
        return listed

    def run(self, spec: RunSpec) -> tuple[str, str]:
        """Create and start the container on its network: (its id, its address there)."""
        api = self.provider.api
        host_config = api.create_host_config(
            restart_policy={"Name": "unless-stopped"},
            init=True,  # signals reach the app (as PID 1 it would ignore SIGTERM) and zombies reaped
            nano_cpus=int(spec.cpus * 1e9) if spec.cpus else None,
            mem_limit=spec.memory,
        )
        networking = api.create_networking_config({spec.network: api.create_endpoint_config()})
        with self.provider._call(f"container {spec.name}"):
            created = api.create_container(
                spec.image,
                name=spec.name,
                environment=[f"{k}={v}" for k, v in spec.environment.items()],
                labels=dict(spec.labels),
                host_config=host_config,
                networking_config=networking,
                detach=True,
            )
            container_id: str = created["Id"]
            api.start(container_id)
            info: dict[str, Any] = api.inspect_container(container_id)
        networks = (info.get("NetworkSettings") or {}).get("Networks") or {}
        address = (networks.get(spec.network) or {}).get("IPAddress") or ""
        if not address:
            raise ProviderError(f"container {spec.name}", f"has no address on {spec.network}")
        return container_id, address

    def state(self, container_id: str) -> str:
        """`running`, `exited`, ... (`gone` once removed)."""
        import docker.errors

        with self.provider._call(f"container {container_id[:12]}"):
            try:
                return str(self.provider.api.inspect_container(container_id)["State"]["Status"])
            except docker.errors.NotFound:
                return "gone"

    def logs(self, container_id: str, lines: int = 20) -> str:
        return self.provider.logs(container_id, lines)

    def remove(self, container: ProjectContainer, stop_timeout: float) -> None:
        """Stop (SIGTERM, then `stop_timeout` seconds) and remove a container."""
        self.provider.remove_container(container.id, container.name, stop_timeout)
