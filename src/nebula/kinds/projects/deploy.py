"""Deploying a project's environment with no request dropped: build the commit (or pick a kept
image, for a rollback), start a new container beside the one serving, wait until it answers
its health check, switch Caddy's route to it in one atomic `/load`, let the old container drain
for `drain:` seconds, then stop it.

Anything failing before the switch removes the new container and leaves what serves as it is.
One deployment of an environment runs at a time (in this process); a second one waits. The
last `keep:` images of a project are kept for rollbacks, with the one serving.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import httpx

from nebula.errors import NebulaError, ProviderError, StateError
from nebula.kinds.base import Desired, World
from nebula.kinds.projects.source import ProjectSource
from nebula.kinds.projects.types import (
    IMAGE_REPOSITORY,
    LABEL_COMMIT,
    LABEL_DEPLOYMENT,
    LABEL_ENVIRONMENT,
    LABEL_PROJECT,
    DesiredProject,
    Environment,
    HealthCheck,
    image_for,
)
from nebula.kinds.routes.apply import proxy_settings
from nebula.kinds.routes.desired import desired_config
from nebula.kinds.routes.types import OWNED_PREFIX
from nebula.providers.caddy import CaddyAdmin
from nebula.providers.docker.projects import ProjectContainer, ProjectEngine, RunSpec
from nebula.spec.interpolate import SECRET_REFERENCE
from nebula.store.projects import ProjectStore
from nebula.store.records import ProjectDeployment

Started = Callable[[ProjectDeployment], None]
STOP_TIMEOUT = 10.0  # seconds a drained container gets to stop after SIGTERM
_LOG_FLUSH = 0.5  # seconds between writes of a build's output to the store
_environments: dict[tuple[str, str], threading.Lock] = {}
_guard = threading.Lock()


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
    """Build `commit` (default: the head of the environment's branch) and switch to it; the
    deployment as it ended (`live` or `failed`, with why)."""
    env = project.environments[environment]
    store = project_store(world)
    with _one_at_a_time(project.name, environment):
        record = store.start(
            project.name, environment, commit=commit, summary=summary, version=version(project)
        )
        started(record)
        run = _Run(desired, world, project, env, store, record.id)
        try:
            source = ProjectSource(project)
            full = source.resolve(commit) if commit else source.head(env.branch)
            image = image_for(project.name, full)
            store.advance(record.id, "building", commit=full, image=image)
            run.build(source, full, image)
            store.advance(record.id, "deploying")
            old = run.switch(image, full)
        except NebulaError as exc:
            store.finish(record.id, ok=False, error=str(exc))
            return store.get(record.id)
        store.finish(record.id, ok=True)
        _retire(run.engine, old, project.drain)
        _prune(run.engine, store, project)
        return store.get(record.id)


def rollback(
    desired: Desired,
    world: World,
    project: DesiredProject,
    environment: str,
    *,
    to: str | None,
    started: Started,
) -> ProjectDeployment:
    """Switch back to a kept image without building: the commit `to` (or a prefix of it), else
    the one live before the current. `StateError` when no kept image fits."""
    env = project.environments[environment]
    store = project_store(world)
    with _one_at_a_time(project.name, environment):
        engine = ProjectEngine(world.docker(desired))
        commit = _rollback_target(engine, store, project, environment, to)
        image = image_for(project.name, commit)
        record = store.start(
            project.name,
            environment,
            commit=commit,
            summary=f"rollback to {commit[:12]}",
            image=image,
            version=version(project),
        )
        started(record)
        run = _Run(desired, world, project, env, store, record.id)
        try:
            store.advance(record.id, "deploying")
            old = run.switch(image, commit)
        except NebulaError as exc:
            store.finish(record.id, ok=False, error=str(exc))
            return store.get(record.id)
        store.finish(record.id, ok=True)
        _retire(engine, old, project.drain)
        return store.get(record.id)


def project_store(world: World) -> ProjectStore:
    return ProjectStore(world.store)


def version(project: DesiredProject) -> str:
    """What of the project's settings a deployment was made with (a change redeploys)."""
    return project.record.digest[:16]


def route_id(project: DesiredProject, env: Environment) -> str:
    """The `@id` of an environment's Caddy route (as the routes kind names it)."""
    return f"{OWNED_PREFIX}{env.route_owner(project.name)}-{env.host}"


# -- the steps -------------------------------------------------------------------------------


@dataclass
class _Run:
    """One deployment of an environment under way."""

    desired: Desired
    world: World
    project: DesiredProject
    env: Environment
    store: ProjectStore
    deployment_id: str

    @property
    def engine(self) -> ProjectEngine:
        return ProjectEngine(self.world.docker(self.desired))

    def build(self, source: ProjectSource, commit: str, image: str) -> None:
        """Build `image` unless the engine has it already (same commit: same image)."""
        engine, project = self.engine, self.project
        if engine.has_image(image):
            self.store.append_log(
                self.deployment_id, f"{image} is built already: not building it again\n"
            )
            return
        context, dockerfile, generated = source.context(commit)
        with _LogSink(self.store, self.deployment_id) as output:
            if generated is not None:
                output(f"no Dockerfile in the code: building with this one\n{generated}")
            engine.build(
                context,
                image,
                dockerfile=dockerfile,
                buildargs=dict(project.build_args),
                labels={LABEL_PROJECT: project.name, LABEL_COMMIT: commit},
                timeout=project.build_timeout,
                output=output,
            )

    def switch(self, image: str, commit: str) -> list[ProjectContainer]:
        """Start `image` beside what serves, wait until healthy, route to it; the containers
        it replaces (still running: they drain). On failure the new container is removed."""
        engine, project, env = self.engine, self.project, self.env
        labels = {LABEL_PROJECT: project.name, LABEL_ENVIRONMENT: env.name}
        network = env.route_owner(project.name)
        engine.ensure_network(network, labels)
        old = engine.containers(project.name, env.name)
        name = env.container(project.name, self.deployment_id)
        spec = RunSpec(
            name=name,
            image=image,
            network=network,
            environment=_values(env.values, self.world),
            labels=labels | {LABEL_DEPLOYMENT: self.deployment_id, LABEL_COMMIT: commit},
            cpus=project.cpus,
            memory=project.memory,
        )
        container_id, address = engine.run(spec)
        dial = f"{_host(address)}:{project.port}"
        try:
            _wait_healthy(engine, container_id, dial, project.health)
            if env.host is not None:
                switch_route(self.desired, route_id(project, env), dial)
        except NebulaError:
            engine.remove(ProjectContainer(container_id, name, self.deployment_id, "running"), 0)
            raise
        return old


def _values(values: tuple[tuple[str, str], ...], world: World) -> dict[str, str]:
    """The environment's values with each `${secret:NAME}` revealed (for Docker only)."""
    return {
        key: SECRET_REFERENCE.sub(lambda m: world.secret(m["name"]), value) for key, value in values
    }


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _wait_healthy(
    engine: ProjectEngine, container_id: str, target: str, health: HealthCheck
) -> None:
    """Until `health.path` answers 2xx or 3xx `healthy_after` times in a row at `target`
    (where Caddy will dial); `ProviderError` when the container stops or time runs out."""
    url = f"http://{target}{health.path}"
    deadline = time.monotonic() + health.timeout
    in_a_row = 0
    last = "no answer yet"
    with httpx.Client(timeout=2.0) as client:
        while True:
            state = engine.state(container_id)
            if state != "running":
                raise ProviderError(
                    f"container {container_id[:12]}",
                    f"the new container is {state} before it was healthy; its last lines:\n"
                    f"{engine.logs(container_id)}",
                    temporary=False,
                )
            try:
                status = client.get(url).status_code
                last = f"HTTP {status}"
                in_a_row = in_a_row + 1 if status < 400 else 0
            except httpx.HTTPError as exc:
                last = str(exc) or type(exc).__name__
                in_a_row = 0
            if in_a_row >= health.healthy_after:
                return
            if time.monotonic() > deadline:
                raise ProviderError(
                    f"container {container_id[:12]}",
                    f"not healthy after {health.timeout:g}s ({url}: {last}); what serves "
                    "keeps serving",
                    temporary=False,
                )
            time.sleep(health.interval)


def switch_route(desired: Desired, route: str, dial: str) -> None:
    """Make Caddy's route `route` dial `dial`, in one atomic `/load` of its whole config (the
    same config the routes kind writes, every other route as Caddy has it)."""
    proxy = proxy_settings(desired)
    if proxy is None:
        return
    with CaddyAdmin(str(proxy.admin)) as caddy, caddy.editing():
        current = caddy.config()
        target = desired_config(current, desired.routes, {route: dial}, proxy)
        if target != current:
            caddy.load(target, current)


def _retire(engine: ProjectEngine, old: list[ProjectContainer], drain: float) -> None:
    """Let the replaced containers finish what they serve, then stop and remove them."""
    if not old:
        return
    if any(c.state == "running" for c in old):
        time.sleep(drain)
    for container in old:
        # gone already, or the engine hiccuped: the next deployment retires it
        with suppress(NebulaError):
            engine.remove(container, STOP_TIMEOUT)


def _prune(engine: ProjectEngine, store: ProjectStore, project: DesiredProject) -> None:
    """Remove the project's images beyond the newest `keep` (never one serving)."""
    serving = {
        d.image for env in project.environments if (d := store.live(project.name, env)) if d.image
    }
    try:
        images = engine.images(f"{IMAGE_REPOSITORY}/{project.name}")
        for image in [i for i in images if i.tag not in serving][project.keep :]:
            engine.remove_image(image.tag)
    except NebulaError:
        pass  # an image left over is removed after the next deployment


def _rollback_target(
    engine: ProjectEngine,
    store: ProjectStore,
    project: DesiredProject,
    environment: str,
    to: str | None,
) -> str:
    """The commit to roll back to, whose image the engine still has."""
    kept = {i.tag for i in engine.images(f"{IMAGE_REPOSITORY}/{project.name}")}
    history = [
        d
        for d in store.deployments(project.name, environment, limit=500)
        if d.deployed_at is not None and d.commit
    ]
    live = store.live(project.name, environment)
    for deployment in history:
        commit = str(deployment.commit)
        if image_for(project.name, commit) not in kept:
            continue
        if to is not None and commit.startswith(to):
            return commit
        if to is None and (live is None or commit != live.commit):
            return commit
    shown = ", ".join(sorted(t.rpartition(":")[2] for t in kept)) or "none"
    wanted = f"commit {to}" if to else "a version live before the current one"
    raise StateError(
        f"cannot roll {project.name} ({environment}) back to {wanted}: no kept image of it "
        f"(kept: {shown}); deploy the commit to build it again"
    )


@contextmanager
def _one_at_a_time(project: str, environment: str) -> Iterator[None]:
    with _guard:
        lock = _environments.setdefault((project, environment), threading.Lock())
    with lock:
        yield


@dataclass
class _LogSink:
    """A build's output into the deployment's logs, written every `_LOG_FLUSH` seconds."""

    store: ProjectStore
    deployment_id: str
    pending: str = ""
    written: float = 0.0

    def __call__(self, text: str) -> None:
        self.pending += text
        if time.monotonic() - self.written >= _LOG_FLUSH:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.store.append_log(self.deployment_id, self.pending)
            self.pending = ""
        self.written = time.monotonic()

    def __enter__(self) -> _LogSink:
        return self

    def __exit__(self, *_: object) -> None:
        self.flush()
