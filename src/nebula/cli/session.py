"""Opening what a command works on: the desired state, Docker, the store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nebula.engine.reconcile import Desired
    from nebula.providers.docker import DockerProvider
    from nebula.store import Store


def open_provider(desired: Desired | None, docker_host: str | None) -> DockerProvider:
    """The Docker Engine: the flag, else nebula.yaml's `docker.host`, else DOCKER_HOST."""
    from nebula.providers.docker import DockerProvider

    configured = desired.repo.config.docker.host if desired else None
    return DockerProvider(docker_host or configured)


def open_store(database_url: str | None) -> Store:
    from nebula.store import Store

    return Store(database_url or Store.default_url())


def load(repo: Path) -> Desired:
    from nebula.engine.reconcile import load_desired

    return load_desired(repo)
