"""Deploying a project's environment: build (or pick a kept image), start the new container,
wait until it is healthy, switch Caddy's route to it, let the old one drain, stop it."""

from __future__ import annotations

from collections.abc import Callable

from nebula.kinds.base import Desired, World
from nebula.kinds.projects.types import DesiredProject
from nebula.store.records import ProjectDeployment

Started = Callable[[ProjectDeployment], None]


def deploy(
    desired: Desired,
    world: World,
    project: DesiredProject,
    environment: str,
    *,
    commit: str | None,
    summary: str,
    started: Started,
) -> ProjectDeployment:
    """Build `commit` (default: the head of the environment's branch) and switch to it."""
    raise NotImplementedError


def rollback(
    desired: Desired,
    world: World,
    project: DesiredProject,
    environment: str,
    *,
    to: str | None,
    started: Started,
) -> ProjectDeployment:
    """Switch back to a kept image without building."""
    raise NotImplementedError
