"""What nebulad's API and the CLI call for the config repo's projects: deploy an environment
(build its branch's head, or a given commit), roll it back to a kept image without building,
and read the deployments with their build logs.

A deployment is carried out by `kinds.projects.deploy` (the same code the projects kind runs
when a sync finds a new commit on a project's branch), against the last good commit's desired
state. One deployment of an environment runs at a time; a second one waits for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from nebula.errors import NotFoundError, StateError
from nebula.kinds.base import Desired, World
from nebula.kinds.projects import deploy as deploys
from nebula.kinds.projects.types import DesiredProject
from nebula.store.projects import ProjectStore
from nebula.store.records import ProjectDeployment, ProjectRecord


@dataclass
class ProjectService:
    """The projects of the last good commit, deployed through `world` (its store, secrets and
    Docker Engine). `desired` answers the last good commit's desired state (None before one
    loaded)."""

    desired: Callable[[], Desired | None]
    world: Callable[[], World]

    def projects(self) -> list[ProjectRecord]:
        """The projects as last loaded, by name."""
        return self._store().projects()

    def deploy(
        self,
        name: str,
        environment: str,
        commit: str | None = None,
        *,
        wait: bool = True,
        summary: str | None = None,
    ) -> ProjectDeployment:
        """Build `commit` (default: the head of the project's branch) and switch `environment`
        to it. With `wait`, returns once it is live or failed; else at once, `pending`, the
        deployment running in the background (follow it with `deployment(id)`).
        `NotFoundError` for an unknown project or environment."""
        desired, project = self._project(name, environment)
        why = summary or (f"deploy of {commit[:12]}" if commit else "deploy by request")
        return self._run(
            desired,
            lambda world, started: deploys.deploy(
                desired,
                world,
                project,
                environment,
                commit=commit,
                summary=why,
                started=started,
            ),
            wait,
        )

    def rollback(
        self, name: str, environment: str, to: str | None = None, *, wait: bool = True
    ) -> ProjectDeployment:
        """Switch `environment` back to a kept image, without building: `to` (a commit or its
        prefix) or else the one live before the current. `StateError` when no kept image
        fits."""
        desired, project = self._project(name, environment)
        return self._run(
            desired,
            lambda world, started: deploys.rollback(
                desired, world, project, environment, to=to, started=started
            ),
            wait,
        )

    def deployments(
        self, name: str, environment: str | None = None, limit: int = 50
    ) -> list[ProjectDeployment]:
        """A project's deployments, newest first (those of a removed project too)."""
        return self._store().deployments(name, environment, limit)

    def deployment(self, deployment_id: str) -> ProjectDeployment:
        """One deployment; `NotFoundError` if none has that id."""
        return self._store().get(deployment_id)

    def build_logs(self, deployment_id: str) -> str:
        """The build output kept with a deployment, masked ('' for a rollback)."""
        return self._store().logs(deployment_id)

    def interrupted(self) -> int:
        """Mark the deployments a stop cut short `failed` (what served before still serves:
        nothing switches before a deployment is healthy); how many. At start only."""
        return self._store().fail_unfinished(
            "interrupted: nebulad stopped during this deployment; deploy again"
        )

    # --------------------------------------------------------------------------------------

    def _store(self) -> ProjectStore:
        return ProjectStore(self.world().store)

    def _project(self, name: str, environment: str) -> tuple[Desired, DesiredProject]:
        desired = self.desired()
        found = {p.name: p for p in desired.projects} if desired else {}
        project = found.get(name)
        if desired is None or project is None:
            known = ", ".join(sorted(found)) or "none"
            raise NotFoundError(f"no project {name!r} in the config repo (projects: {known})")
        if environment not in project.environments:
            raise NotFoundError(
                f"project {name!r} has no environment {environment!r} "
                f"(environments: {', '.join(project.environments)})"
            )
        placed = desired.repo.config.node(project.environments[environment].node)
        here = self.world().node_spec(desired).name
        if placed is not None and placed.name != here:
            raise StateError(
                f"{name} ({environment}) runs on node {placed.name}: its deployments are that "
                f"node's nebulad's to make (this is node {here})"
            )
        return desired, project

    def _run(
        self,
        desired: Desired,
        run: Callable[[World, Callable[[ProjectDeployment], None]], ProjectDeployment],
        wait: bool,
    ) -> ProjectDeployment:
        """Run a deployment now (`wait`) or in a thread, answering once it is recorded."""
        world = self.world()
        if wait:
            return run(world, lambda _: None)
        recorded: list[ProjectDeployment] = []
        ready = threading.Event()

        def started(deployment: ProjectDeployment) -> None:
            recorded.append(deployment)
            ready.set()

        failure: list[BaseException] = []

        def work() -> None:
            try:
                run(world, started)
            except BaseException as exc:  # raised before it was recorded: the caller's
                failure.append(exc)
                ready.set()

        threading.Thread(target=work, name="project-deploy", daemon=True).start()
        ready.wait()
        if failure and not recorded:
            raise failure[0]
        return recorded[0]
