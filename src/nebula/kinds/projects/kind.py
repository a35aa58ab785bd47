"""The projects kind: records the commit's projects, and deploys each environment whose branch
has a commit (or whose settings have a version) not deployed yet; removes the containers of
environments no longer in the repo.

Planning fetches each project's remote (a bare mirror: one `git fetch`) and reads the store;
so a sync, polled or started by a webhook, finds new commits. A commit is deployed once by
syncs, even when it failed (a broken build is not rebuilt at every sync; `nebula projects
deploy` tries again); a rollback stays until the branch moves on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from nebula.errors import NebulaError
from nebula.kinds.base import Applied, Desired, World
from nebula.kinds.definitions import definition_changes
from nebula.kinds.projects.types import DesiredProject, Environment
from nebula.plan import Action, Change, Part

if TYPE_CHECKING:
    from nebula.providers.docker.projects import ProjectContainer
    from nebula.store.projects import ProjectStore


@dataclass(frozen=True)
class DeployChange:
    """An environment to deploy at `commit`."""

    action: Action
    project: str
    environment: str
    commit: str
    reason: str

    @property
    def name(self) -> str:
        return f"{self.project}/{self.environment}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "name": self.name,
            "commit": self.commit,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class RetireChange:
    """A container of an environment no longer in the repo, to stop and remove."""

    container: ProjectContainer
    project: str
    environment: str
    action: Action = Action.DELETE
    reason: str = "no longer in the repo"

    @property
    def name(self) -> str:
        return self.container.name

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action.value, "name": self.name, "reason": self.reason}


class Projects:
    name: ClassVar[str] = "projects"

    def plan(self, desired: Desired, world: World) -> Part:
        records = [p.record for p in desired.projects]
        if not records and not world.store_open:
            return Part(self.name)  # nothing to plan: no store, builds or git to load
        from nebula.kinds.projects.deploy import project_store, version
        from nebula.kinds.projects.source import ProjectSource

        problems: list[str] = []
        try:
            store = project_store(world)
            stored = store.projects()
        except NebulaError as exc:
            return Part(self.name, problems=(f"projects: cannot read the store: {exc}",))
        changes: list[Any] = list(definition_changes(records, stored))
        for project in desired.projects:
            source = ProjectSource(project)
            fetched = False
            for env in project.environments.values():
                if not _placed_here(desired, env, world):
                    continue
                try:
                    head = source.head(env.branch, fetch=not fetched)
                    fetched = True
                    done = store.deployed(project.name, env.name, head, version(project))
                except NebulaError as exc:
                    problems.append(f"project {project.name} ({env.name}): {exc}")
                    continue
                if not done:
                    changes.append(_deploy_change(project, env.name, head, store))
        try:
            changes += _retired(desired, world)
        except NebulaError as exc:
            problems.append(f"projects: cannot list their containers: {exc}")
        removed = frozenset(c.name for c in changes if isinstance(c, RetireChange))
        return Part(
            self.name,
            tuple(changes),
            removed,
            managed=len(stored),
            unit="project containers",
            problems=tuple(problems),
            detail=records,
        )

    def apply(self, part: Part, desired: Desired, world: World) -> Applied:
        if not part.has_changes:
            return Applied(self.name, errors=part.problems, temporary=bool(part.problems))
        from nebula.kinds.projects.deploy import STOP_TIMEOUT, deploy, project_store
        from nebula.providers.docker import BUILD_LOG_LINES
        from nebula.providers.docker.projects import ProjectEngine

        errors = list(part.problems)
        done: list[Change] = []
        try:
            project_store(world).replace_projects(part.detail)
        except NebulaError as exc:
            return Applied(self.name, errors=(f"projects: cannot record them: {exc}",))
        by_name = {p.name: p for p in desired.projects}
        logs = []
        for change in part.pending:
            if isinstance(change, RetireChange):
                try:
                    ProjectEngine(world.docker(desired)).remove(change.container, STOP_TIMEOUT)
                    done.append(change)
                except NebulaError as exc:
                    errors.append(f"{change.name}: {exc}")
            elif isinstance(change, DeployChange):
                world.progress(change.name, f"deploying {change.commit[:12]}")
                result = deploy(
                    desired,
                    world,
                    by_name[change.project],
                    change.environment,
                    commit=change.commit,
                    summary=change.reason,
                    started=lambda _: None,
                )
                if result.status == "live":
                    done.append(change)
                else:
                    errors.append(f"{change.name}: {result.error}")
                tail = project_store(world).logs(result.id).splitlines()[-BUILD_LOG_LINES:]
                logs.append((change.name, "\n".join(tail)))
            else:
                done.append(change)
        return Applied(self.name, tuple(done), tuple(errors), logs=tuple(logs))


def _deploy_change(
    project: DesiredProject, environment: str, head: str, store: ProjectStore
) -> DeployChange:
    live = store.live(project.name, environment)
    if live is None:
        return DeployChange(Action.CREATE, project.name, environment, head, f"build {head[:12]}")
    why = "new commit" if live.commit != head else "settings changed"
    return DeployChange(Action.UPDATE, project.name, environment, head, f"{why}: build {head[:12]}")


def _placed_here(desired: Desired, env: Environment, world: World) -> bool:
    """Whether the environment runs on the node this run plans (its `node:`, else the first)."""
    placed = desired.repo.config.node(env.node)
    return placed is not None and placed.name == world.node_spec(desired).name


def _retired(desired: Desired, world: World) -> list[RetireChange]:
    """The containers of projects' environments the commit no longer has."""
    from nebula.providers.docker.projects import ProjectEngine

    wanted = {(p.name, e) for p in desired.projects for e in p.environments}
    engine = ProjectEngine(world.docker(desired))
    return [
        RetireChange(container, project, environment)
        for container, project, environment in engine.all_containers()
        if (project, environment) not in wanted
    ]
