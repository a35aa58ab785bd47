"""Carry out a Plan.

Installations are applied in parallel (at most `defaults.parallelism` at once); inside one, the
services start in `depends_on` order, each waiting for the condition its dependants need. A
failure stops only its own installation, which is recorded as `error` with the cause; the others
go on. A container that fails to start is removed, so the next plan simply creates it again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from nebula.engine.health import wait_http
from nebula.engine.hooks import run_hooks, scrub
from nebula.engine.reconcile import Snapshot
from nebula.engine.subnets import PoolExhaustedError, free_subnet, local_routes
from nebula.errors import InstallationError, NebulaError, ProviderError
from nebula.plan import Action, Change, Kind
from nebula.providers.docker import ContainerStatus, DockerProvider
from nebula.resources import ContainerSpec, DesiredInstallation, NetworkSpec
from nebula.spec.config import Defaults
from nebula.spec.package import Package
from nebula.store import PackageRecord, Store

Progress = Callable[[str, str], None]  # installation, what is happening


@dataclass(frozen=True)
class InstallationResult:
    name: str
    ok: bool
    removed: bool
    changes: tuple[Change, ...]
    seconds: float
    error: str | None = None
    hook_output: str | None = None


@dataclass(frozen=True)
class ApplyResult:
    installations: tuple[InstallationResult, ...]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.installations)


def apply_plan(
    snapshot: Snapshot,
    provider: DockerProvider,
    store: Store,
    progress: Progress | None = None,
    *,
    commit: str | None = None,
) -> ApplyResult:
    """Execute `snapshot.plan`; each installation's outcome (and the config-repo `commit` it
    came from) is recorded in `store`."""
    plan = snapshot.plan
    names = plan.installations()
    if not names:
        return ApplyResult(())
    store.sync_packages(_record(p) for p in snapshot.desired.packages())
    by_name = {d.name: d for d in snapshot.desired.installations}
    defaults = snapshot.desired.repo.config.defaults
    runner = _Runner(provider, store, defaults, progress or (lambda _i, _m: None), commit)
    with ThreadPoolExecutor(max_workers=min(defaults.parallelism, len(names))) as pool:
        futures = [
            pool.submit(runner.apply, name, plan.for_installation(name), by_name.get(name))
            for name in names
        ]
        return ApplyResult(tuple(f.result() for f in futures))


@dataclass
class _Runner:
    provider: DockerProvider
    store: Store
    defaults: Defaults
    progress: Progress
    commit: str | None
    network_lock: threading.Lock = field(default_factory=threading.Lock)
    subnets_used: list[str] | None = None  # read once per apply, then kept up to date here

    def apply(
        self, name: str, changes: tuple[Change, ...], desired: DesiredInstallation | None
    ) -> InstallationResult:
        started = time.monotonic()
        pending = tuple(c for c in changes if c.action is not Action.NOOP)
        if desired is None:
            return self._remove(name, pending, started)
        deployment = self.store.begin_deployment(
            name,
            package=desired.package,
            version=desired.version,
            config=desired.config,
            spec_hash=desired.spec_hash,
            commit=self.commit,
            summary="; ".join(
                f"{c.action.value} {c.kind.value} {c.name}: {c.reason}" for c in pending
            ),
        )
        container_ids: list[str] = []
        hook_output = None
        try:
            container_ids = self._deploy(desired, changes)
            hook_output = self._post_install(desired)
        except (NebulaError, OSError) as exc:
            error = scrub(str(exc), desired.secrets)
            self.store.finish_deployment(
                deployment,
                ok=False,
                reason=error,
                container_ids=container_ids,
                hook_output=hook_output,
            )
            self.progress(name, f"failed: {error}")
            return InstallationResult(
                name, False, False, pending, time.monotonic() - started, error
            )
        self.store.finish_deployment(
            deployment, ok=True, reason=None, container_ids=container_ids, hook_output=hook_output
        )
        self.progress(name, "running")
        return InstallationResult(
            name, True, False, pending, time.monotonic() - started, hook_output=hook_output
        )

    def _remove(self, name: str, pending: tuple[Change, ...], started: float) -> InstallationResult:
        try:
            for change in pending:
                if change.kind is Kind.CONTAINER and change.observed_id:
                    self.progress(name, f"removing container {change.name}")
                    self.provider.remove_container(
                        change.observed_id, change.name, self.defaults.stop_timeout
                    )
            for change in pending:
                if change.kind is Kind.NETWORK and change.observed_id:
                    self.provider.remove_network(change.observed_id, change.name)
        except ProviderError as exc:
            return InstallationResult(
                name, False, True, pending, time.monotonic() - started, str(exc)
            )
        self.store.remove_installation(name)
        self.progress(name, "removed (volumes kept)")
        return InstallationResult(name, True, True, pending, time.monotonic() - started)

    def _deploy(self, desired: DesiredInstallation, changes: tuple[Change, ...]) -> list[str]:
        name = desired.name
        for change in changes:
            if change.action is Action.CREATE and isinstance(change.desired, NetworkSpec):
                self.progress(name, f"creating network {change.name}")
                self._create_network(change.desired)
            elif change.action is Action.CREATE and change.kind is Kind.VOLUME:
                self.progress(name, f"creating volume {change.name}")
                self.provider.create_volume(change.desired)  # type: ignore[arg-type]
        for change in changes:
            if (
                change.kind is Kind.CONTAINER
                and change.action is Action.DELETE
                and change.observed_id
            ):
                self.progress(name, f"removing container {change.name}")
                self.provider.remove_container(
                    change.observed_id, change.name, self.defaults.stop_timeout
                )

        by_service = {
            c.desired.service: c
            for c in changes
            if c.kind is Kind.CONTAINER and isinstance(c.desired, ContainerSpec)
        }
        for change in by_service.values():
            if change.action in (Action.CREATE, Action.UPDATE):
                self.provider.ensure_image(change.desired.image)  # type: ignore[union-attr]

        ids: dict[str, str] = {}
        for spec in start_order(desired.containers):
            for dependency, condition in spec.depends_on:
                self._wait_condition(ids[dependency], dependency, condition)
            change = by_service[spec.service]
            if change.action in (Action.CREATE, Action.UPDATE):
                ids[spec.service] = self._replace(spec, change)
            elif change.observed_id:
                ids[spec.service] = change.observed_id
        self._wait_healthy(desired, ids)
        return list(ids.values())

    def _create_network(self, spec: NetworkSpec) -> None:
        pool = self.defaults.subnet_pool
        if pool is None:
            self.provider.create_network(spec, None)
            return
        with self.network_lock:  # choose under the lock; create in parallel
            if self.subnets_used is None:
                self.subnets_used = self.provider.used_subnets()
                if self.provider.is_local:
                    self.subnets_used += local_routes()
            try:
                subnet = free_subnet(pool, self.defaults.subnet_size, self.subnets_used)
            except PoolExhaustedError as exc:
                raise ProviderError(f"network {spec.name}", str(exc)) from None
            self.subnets_used.append(str(subnet))
        self.provider.create_network(spec, str(subnet))

    def _replace(self, spec: ContainerSpec, change: Change) -> str:
        if change.action is Action.UPDATE and change.observed_id:
            self.progress(spec.installation, f"recreating {spec.name}: {change.reason}")
            self.provider.remove_container(
                change.observed_id, spec.name, self.defaults.stop_timeout
            )
        else:
            self.progress(spec.installation, f"creating {spec.name}")
        container_id = self.provider.create_container(spec)
        try:
            self.provider.start_container(container_id, spec.name)
        except ProviderError:
            self.provider.remove_container(container_id, spec.name, 0)
            raise
        return container_id

    def _wait_condition(self, container_id: str, service: str, condition: str) -> None:
        timeout = self.defaults.health_timeout
        if condition == "service_healthy":
            status = self.provider.wait_for(container_id, _settled_health, timeout)
            if status.health != "healthy":
                raise InstallationError(
                    f"dependency {service!r} is not healthy ({_describe(status)}); "
                    f"{self._logs(container_id)}"
                )
        elif condition == "service_completed_successfully":
            status = self.provider.wait_for(container_id, _stopped, timeout)
            if status.state != "exited" or status.exit_code != 0:
                raise InstallationError(
                    f"dependency {service!r} did not complete successfully ({_describe(status)})"
                )

    def _wait_healthy(self, desired: DesiredInstallation, ids: dict[str, str]) -> None:
        deadline = time.monotonic() + self.defaults.health_timeout
        checked = [
            s for s in desired.containers if s.healthcheck and s.healthcheck.test != ("NONE",)
        ]
        if checked or desired.health_checks:
            self.progress(desired.name, "waiting for health")
        for spec in checked:
            remaining = max(deadline - time.monotonic(), 0.0)
            status = self.provider.wait_for(ids[spec.service], _settled_health, remaining)
            if status.health != "healthy":
                raise InstallationError(
                    f"service {spec.service!r} is not healthy ({_describe(status)}); "
                    f"{self._logs(ids[spec.service])}"
                )
        for spec in desired.containers:
            if spec.service in ids and spec not in checked:
                status = self.provider.status(ids[spec.service])
                if status.state in ("exited", "dead") and status.exit_code not in (0, None):
                    raise InstallationError(
                        f"service {spec.service!r} exited with code {status.exit_code}; "
                        f"{self._logs(ids[spec.service])}"
                    )
        for check in desired.health_checks:
            failure = wait_http(check, deadline)
            if failure:
                raise InstallationError(failure)

    def _logs(self, container_id: str) -> str:
        try:
            logs = self.provider.logs(container_id, lines=5)
        except ProviderError:
            return "no logs"
        return f"last log lines: {logs}" if logs else "no log output"

    def _post_install(self, desired: DesiredInstallation) -> str | None:
        if not desired.post_install or self.store.post_install_done(desired.name):
            return None
        self.progress(desired.name, "running post_install hooks")
        run = run_hooks(
            desired.post_install, desired.hook_env, self.defaults.hook_timeout, desired.secrets
        )
        if not run.ok:
            raise InstallationError(f"post_install hook failed:\n{run.output}")
        self.store.mark_post_install_done(desired.name)
        return run.output


def _record(package: Package) -> PackageRecord:
    return PackageRecord(
        name=package.name,
        display_name=package.name,
        description=package.description,
        category=package.category,
        icon_url=package.icon,
        repository=package.repository,
        version=package.version,
        manifest=package.model_dump(mode="json"),
    )


def start_order(containers: Sequence[ContainerSpec]) -> list[ContainerSpec]:
    """Containers so that each comes after everything it depends on (resolve refused cycles)."""
    by_service = {c.service: c for c in containers}
    ordered: list[ContainerSpec] = []
    placed: set[str] = set()

    def place(spec: ContainerSpec) -> None:
        if spec.service in placed:
            return
        placed.add(spec.service)
        for dependency, _ in spec.depends_on:
            place(by_service[dependency])
        ordered.append(spec)

    for spec in containers:
        place(spec)
    return ordered


def _settled_health(status: ContainerStatus) -> bool:
    return status.health in ("healthy", "unhealthy") or status.state in (
        "exited",
        "dead",
        "removed",
    )


def _stopped(status: ContainerStatus) -> bool:
    return status.state in ("exited", "dead", "removed")


def _describe(status: ContainerStatus) -> str:
    if status.state in ("exited", "dead"):
        return f"{status.state} with code {status.exit_code}"
    return f"{status.state}, health {status.health or 'unknown'}"
