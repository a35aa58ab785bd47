"""Carry out the packages' plan on the Docker Engine.

Installations being removed go first. The others are applied in parallel (at most
`defaults.parallelism` at once), each after the installations it depends on; inside one, the
services start in `depends_on` order, each waiting for the condition its dependants need. A
failure stops only its own installation, which is recorded as `error` with the cause; the others
go on. A container this apply made that fails to start or become healthy is removed (its last
log lines go into the error), so the next plan simply creates it again: a retry.

One apply runs at a time per state store: the caller takes the store's apply lock
(`Store.apply_lock`) before it loads and plans, and holds it until the apply and the proxy step
end, so the plan it guarded is the one carried out (deletions a person confirmed with the lock
released are checked against it). Afterwards, the status of every installation left unchanged
follows what runs: one marked `error` or `installing` by an apply cut short (the Docker Engine
restarting, a kill) whose containers run as deployed becomes `running` (`Store.settle`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import graphlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nebula.errors import InstallationError, NebulaError, ProviderError
from nebula.kinds.packages.diff import Snapshot
from nebula.kinds.packages.health import wait_healthy
from nebula.kinds.packages.hooks import HookRun, run_hooks, scrub
from nebula.kinds.packages.subnets import (
    PoolExhaustedError,
    free_subnet,
    local_routes,
    node_pool,
)
from nebula.kinds.packages.types import (
    ContainerSpec,
    DesiredInstallation,
    NetworkSpec,
    ObservedContainer,
    Resource,
    ResourceChange,
    reveal,
    stand_ins_in,
)
from nebula.plan import Action
from nebula.providers.docker import ContainerStatus, DockerProvider
from nebula.secrets import Vault, open_vault
from nebula.spec.config import Defaults, Node
from nebula.spec.package import Package
from nebula.stand_ins import MASK, stand_in
from nebula.store import PackageRecord, Store, installation_runs

Progress = Callable[[str, str], None]  # installation, what is happening


@dataclass(frozen=True)
class InstallationResult:
    name: str
    ok: bool
    removed: bool
    changes: tuple[ResourceChange, ...]
    seconds: float
    error: str | None = None
    hook_output: str | None = None
    builds: tuple[tuple[str, str], ...] = ()  # container, the tail of its image's build output


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
    vault: Vault | None = None,
) -> ApplyResult:
    """Execute `snapshot.plan`, made under the store's apply lock the caller holds; each
    installation's outcome (and the config-repo `commit` it came from) is recorded in `store`.

    The secrets the installations refer to are decrypted once, up front, from `vault` (default:
    the vault in `store`); a wrong master key, a tampered secret or one changed since the plan
    stops the apply before anything is touched. The files of the config repo no container
    binds any more are deleted at the end.
    """
    report = progress or (lambda _i, _m: None)
    result = _apply(snapshot, provider, store, report, commit=commit, vault=vault)
    settle(snapshot, store)
    # no container is being created any more: the repo's files none binds can go (cleanup
    # only; one that fails is tried again by the next apply)
    with contextlib.suppress(ProviderError, OSError):
        provider.prune_files()
    return result


def settle(snapshot: Snapshot, store: Store) -> list[str]:
    """Let the status of each of the node's installations the plan leaves alone follow what
    runs; the names whose status changed."""
    pending = set(snapshot.plan.installations())
    observed = {c.name: c for c in snapshot.observed.containers}
    running = [
        d.name for d in snapshot.installations if d.name not in pending and _runs(d, observed)
    ]
    return store.settle(running, node=snapshot.node) if running else []


def _runs(desired: DesiredInstallation, observed: Mapping[str, ObservedContainer]) -> bool:
    """Whether every container of `desired` is up (or finished cleanly) and not unhealthy."""
    for spec in desired.containers:
        container = observed.get(spec.name)
        if container is None or container.installation != desired.name:
            return False
        if container.health in ("unhealthy", "starting"):
            return False
        if container.state != "running" and container.exit_code != 0:
            return False
    return True


def _apply(
    snapshot: Snapshot,
    provider: DockerProvider,
    store: Store,
    progress: Progress,
    *,
    commit: str | None,
    vault: Vault | None,
) -> ApplyResult:
    plan = snapshot.plan
    names = plan.installations()
    if not names:
        return ApplyResult(())
    store.sync_packages(_record(p) for p in snapshot.desired.packages())
    by_name = {d.name: d for d in snapshot.installations}
    config = snapshot.desired.repo.config
    node = config.node(snapshot.node) or config.nodes[0]
    runner = _Runner(provider, store, config.defaults, progress, commit, node)
    runner.moved = {m.installation: m.to for m in plan.moves if m.ready}
    runner.revealed = _reveal(snapshot, vault or open_vault(store))
    removed = [n for n in names if n not in by_name]
    deployed = _dependency_order([by_name[n] for n in names if n in by_name])
    results: dict[str, InstallationResult] = {}
    with ThreadPoolExecutor(max_workers=min(config.defaults.parallelism, len(names))) as pool:
        # Removals first, containers before networks: a network goes only once no container of
        # another removed installation (a dependant) is attached to it any more.
        for result in pool.map(
            lambda n: runner.remove_containers(n, plan.for_installation(n)), removed
        ):
            results[result.name] = result
        for result in pool.map(runner.remove_networks, [results[n] for n in removed]):
            results[result.name] = result
        # Each installation waits for those it depends on; tasks start in submission order, so
        # a provider has always started before its dependants wait for it.
        futures: dict[str, Future[InstallationResult]] = {}
        for desired in deployed:
            providers = [futures[p] for p in desired.requires if p in futures]
            futures[desired.name] = pool.submit(
                runner.apply_after, providers, desired, plan.for_installation(desired.name)
            )
        results |= {name: future.result() for name, future in futures.items()}
    return ApplyResult(tuple(results[n] for n in names))


def _reveal(snapshot: Snapshot, vault: Vault) -> dict[str, str]:
    """Stand-in -> plain value of the secrets the installations being applied hand to Docker or
    to hooks (a dependant may carry a provider's secret), checked against the planned
    fingerprints. Secrets of installations left as they are stay sealed."""
    known = {stand_in(fp): (name, fp) for d in snapshot.installations for name, fp in d.secrets}
    applying = {c.installation for c in snapshot.plan.pending}
    planned = dict(
        known[found]
        for d in snapshot.installations
        if d.name in applying
        for text in _handed_over(d)
        for found in stand_ins_in(text)
        if found in known
    )
    if not planned:
        return {}
    values = vault.reveal_planned(planned)
    return {stand_in(planned[name]): value for name, value in values.items()}


def _handed_over(desired: DesiredInstallation) -> Iterator[str]:
    """Every text of `desired` that apply reveals secrets in."""
    for container in desired.containers:
        yield from (value for _, value in container.environment)
        yield from container.command or ()
        yield from container.entrypoint or ()
        yield from container.healthcheck.test if container.healthcheck else ()
        yield from (file.value for file in container.secret_files)
    yield from (value for _, value in desired.hook_env)
    for hooks in (desired.post_install, desired.pre_upgrade, desired.post_upgrade):
        yield from hooks


def _dependency_order(installations: list[DesiredInstallation]) -> list[DesiredInstallation]:
    """Providers before their dependants (resolve refused cycles), otherwise as given."""
    by_name = {d.name: d for d in installations}
    graph = {d.name: [p for p in d.requires if p in by_name] for d in installations}
    return [by_name[n] for n in graphlib.TopologicalSorter(graph).static_order()]


@dataclass
class _Runner:
    provider: DockerProvider
    store: Store
    defaults: Defaults
    progress: Progress
    commit: str | None
    node: Node  # the node applied to: its rows of the store, its subnet pool
    moved: dict[str, str] = field(default_factory=dict)  # installation -> the node it moved to
    network_lock: threading.Lock = field(default_factory=threading.Lock)
    subnets_used: list[str] | None = None  # read once per apply, then kept up to date here
    revealed: dict[str, str] = field(default_factory=dict, repr=False)  # stand-in -> value

    def apply_after(
        self,
        providers: list[Future[InstallationResult]],
        desired: DesiredInstallation,
        changes: tuple[ResourceChange, ...],
    ) -> InstallationResult:
        """Apply `desired` once the installations it depends on are applied; if one of them
        failed, fail without touching anything."""
        pending = tuple(c for c in changes if c.action is not Action.NOOP)
        failed = [r.name for r in (f.result() for f in providers) if not r.ok]
        if failed:
            error = f"not applied: it depends on {', '.join(failed)}, which failed"
            self.progress(desired.name, error)
            return InstallationResult(desired.name, False, False, pending, 0.0, error)
        return self.apply(desired, changes)

    def apply(
        self, desired: DesiredInstallation, changes: tuple[ResourceChange, ...]
    ) -> InstallationResult:
        started = time.monotonic()
        name = desired.name
        pending = tuple(c for c in changes if c.action is not Action.NOOP)
        deployed, previous = installation_runs.deployed_version(self.store, name, self.node.name)
        upgrade = (
            deployed and None not in (previous, desired.version) and previous != desired.version
        )
        deployment = self.store.begin_deployment(
            name,
            package=desired.package,
            version=desired.version,
            config=desired.config,
            spec_hash=desired.spec_hash,
            commit=self.commit,
            node=self.node.name,
            summary="; ".join(
                f"{c.action.value} {c.kind.value} {c.name}: {c.reason}" for c in pending
            ),
        )
        container_ids: list[str] = []
        built: dict[str, str] = {}
        hooks = _Hooks(self, desired, previous if upgrade else None)
        try:
            if upgrade:
                hooks.run("pre_upgrade", desired.pre_upgrade)  # before any container changes
            container_ids = self._deploy(desired, changes, built)
            if desired.post_install and not self.store.post_install_done(name):
                hooks.run("post_install", desired.post_install)
                self.store.mark_post_install_done(name)
            if upgrade:
                hooks.run("post_upgrade", desired.post_upgrade)
            installation_runs.set_uninstall_hooks(
                self.store, name, desired.pre_uninstall, _plain(desired)
            )
        except (NebulaError, OSError) as exc:
            error = scrub(str(exc), tuple(self.revealed.values()))
            self.store.finish_deployment(
                deployment,
                ok=False,
                reason=error,
                container_ids=container_ids,
                hook_output=hooks.output,
            )
            self.progress(name, f"failed: {error}")
            return InstallationResult(
                name,
                False,
                False,
                pending,
                time.monotonic() - started,
                error,
                builds=tuple(built.items()),
            )
        self.store.finish_deployment(
            deployment, ok=True, reason=None, container_ids=container_ids, hook_output=hooks.output
        )
        self.progress(name, "running")
        return InstallationResult(
            name,
            True,
            False,
            pending,
            time.monotonic() - started,
            hook_output=hooks.output,
            builds=tuple(built.items()),
        )

    def remove_containers(
        self, name: str, changes: tuple[ResourceChange, ...]
    ) -> InstallationResult:
        """First half of removing an installation (or its containers on this node, once it runs
        on the node it moved to: no uninstall hooks then); `remove_networks` finishes it."""
        started = time.monotonic()
        pending = tuple(c for c in changes if c.action is not Action.NOOP)
        lines: tuple[str, ...] = ()
        env: dict[str, Any] = {}
        if name not in self.moved:
            lines, env = installation_runs.uninstall_hooks(self.store, name)
        if lines and any(c.kind is Resource.CONTAINER and c.observed_id for c in pending):
            self.progress(name, "running pre_uninstall hooks")
            run = self.run_hook(
                name, "pre_uninstall", lines, env=tuple(env.items()), secrets=(), version=None
            )
            if not run.ok:
                reason = f"{run.reason('pre_uninstall')}\ncontainers kept until the hook succeeds"
                installation_runs.mark_failed(self.store, name, reason, self.node.name)
                self.progress(name, f"failed: {reason}")
                return InstallationResult(
                    name, False, True, pending, time.monotonic() - started, reason
                )
        try:
            for change in pending:
                if change.kind is Resource.CONTAINER and change.observed_id:
                    self.progress(name, f"removing container {change.name}")
                    self.provider.remove_container(
                        change.observed_id, change.name, self.defaults.stop_timeout
                    )
        except ProviderError as exc:
            return InstallationResult(
                name, False, True, pending, time.monotonic() - started, str(exc)
            )
        return InstallationResult(name, True, True, pending, time.monotonic() - started)

    def remove_networks(self, removing: InstallationResult) -> InstallationResult:
        if not removing.ok:
            return removing
        started = time.monotonic() - removing.seconds
        name = removing.name
        try:
            for change in removing.changes:
                if change.kind is Resource.NETWORK and change.observed_id:
                    self.provider.remove_network(change.observed_id, change.name)
        except ProviderError as exc:
            return dataclasses.replace(
                removing, ok=False, seconds=time.monotonic() - started, error=str(exc)
            )
        if name in self.moved:  # its record and health are the new node's now
            self.progress(name, f"removed here: moved to {self.moved[name]} (volumes kept)")
        else:
            self.store.remove_installation(name, node=self.node.name)
            installation_runs.forget_installation(self.store, name)
            self.progress(name, "removed (volumes kept)")
        return dataclasses.replace(removing, seconds=time.monotonic() - started)

    def _deploy(
        self,
        desired: DesiredInstallation,
        changes: tuple[ResourceChange, ...],
        built: dict[str, str],
    ) -> list[str]:
        """Make the containers match; the images it builds leave their output in `built`
        (by container)."""
        name = desired.name
        for change in changes:
            if change.action is Action.CREATE and isinstance(change.desired, NetworkSpec):
                self.progress(name, f"creating network {change.name}")
                self._create_network(change.desired)
            elif change.action is Action.CREATE and change.kind is Resource.VOLUME:
                self.progress(name, f"creating volume {change.name}")
                self.provider.create_volume(change.desired)  # type: ignore[arg-type]
        for change in changes:
            if (
                change.kind is Resource.CONTAINER
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
            if c.kind is Resource.CONTAINER and isinstance(c.desired, ContainerSpec)
        }
        for change in by_service.values():
            spec = change.desired
            if change.action not in (Action.CREATE, Action.UPDATE):
                continue
            assert isinstance(spec, ContainerSpec)  # by_service holds containers only
            if spec.build is None:
                self.provider.ensure_image(spec.image, spec.platform)
                continue
            self.progress(name, f"building {spec.image} from {spec.build.context}")
            output = self.provider.ensure_built(spec.image, spec.build)
            if output is not None:
                built[spec.name] = output

        ids: dict[str, str] = {}
        fresh: list[tuple[str, str]] = []  # containers this apply made: id, name
        try:
            for spec in start_order(desired.containers):
                for dependency, condition in spec.depends_on:
                    self._wait_condition(ids[dependency], dependency, condition)
                change = by_service[spec.service]
                if change.action in (Action.CREATE, Action.UPDATE):
                    ids[spec.service] = self._replace(spec, change)
                    fresh.append((ids[spec.service], spec.name))
                elif change.observed_id:
                    ids[spec.service] = change.observed_id
            self._wait_healthy(desired, ids)
        except (NebulaError, OSError):
            self._discard(name, fresh)
            raise
        return list(ids.values())

    def _discard(self, installation: str, containers: list[tuple[str, str]]) -> None:
        """Remove the containers an apply made that did not come up (their last log lines are
        in the error already), so that the next plan creates them again: a retry."""
        for container_id, name in containers:
            self.progress(installation, f"removing {name}: it did not come up")
            with contextlib.suppress(ProviderError):
                self.provider.remove_container(container_id, name, 0)

    def _create_network(self, spec: NetworkSpec) -> None:
        pool, setting = node_pool(self.node, self.defaults)
        if pool is None:
            self.provider.create_network(spec, None)
            return
        with self.network_lock:  # choose under the lock; create in parallel
            if self.subnets_used is None:
                self.subnets_used = self.provider.used_subnets()
                if self.provider.is_local:
                    self.subnets_used += local_routes()
            try:
                subnet = free_subnet(pool, self.defaults.subnet_size, self.subnets_used, setting)
            except PoolExhaustedError as exc:
                raise ProviderError(f"network {spec.name}", str(exc)) from None
            self.subnets_used.append(str(subnet))
        self.provider.create_network(spec, str(subnet))

    def _replace(self, spec: ContainerSpec, change: ResourceChange) -> str:
        if change.action is Action.UPDATE and change.observed_id:
            self.progress(spec.installation, f"recreating {spec.name}: {change.reason}")
            self.provider.remove_container(
                change.observed_id, spec.name, self.defaults.stop_timeout
            )
        else:
            self.progress(spec.installation, f"creating {spec.name}")
        container_id = self.provider.create_container(spec, self.revealed)
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
            failure = wait_healthy(check, self.provider, deadline)
            if failure:
                raise InstallationError(failure)

    def _logs(self, container_id: str) -> str:
        try:
            logs = self.provider.logs(container_id, lines=5)
        except ProviderError:
            return "no logs"
        return f"last log lines: {logs}" if logs else "no log output"

    def run_hook(
        self,
        name: str,
        kind: installation_runs.HookKind,
        lines: tuple[str, ...],
        *,
        env: tuple[tuple[str, str], ...],
        secrets: tuple[str, ...],
        version: str | None,
    ) -> HookRun:
        """Run one kind of hook and record the run."""
        started = datetime.now(UTC)
        env = (*env, ("NEBULA_INSTALLATION", name), ("NEBULA_HOOK", kind))
        run = run_hooks(
            tuple(reveal(line, self.revealed) for line in lines),
            tuple((key, reveal(value, self.revealed)) for key, value in env),
            self.defaults.hook_timeout,
            (*secrets, *self.revealed.values()),
        )
        installation_runs.record_hook_run(
            self.store,
            name,
            kind,
            status="succeeded" if run.ok else "timed_out" if run.timed_out else "failed",
            exit_code=run.exit_code,
            output=run.output,
            version=version,
            started_at=started,
        )
        return run


@dataclass
class _Hooks:
    """The hooks of one deployment: each kind run and recorded, its output kept; a failure
    raises `InstallationError` saying why."""

    runner: _Runner
    desired: DesiredInstallation
    from_version: str | None  # set for an upgrade
    outputs: list[str] = field(default_factory=list)

    @property
    def output(self) -> str | None:
        return "\n".join(self.outputs) or None

    def run(self, kind: installation_runs.HookKind, lines: tuple[str, ...]) -> None:
        if not lines:
            return
        desired = self.desired
        self.runner.progress(desired.name, f"running {kind} hooks")
        env = desired.hook_env
        if self.from_version is not None:
            env = (
                *env,
                ("NEBULA_FROM_VERSION", self.from_version),
                ("NEBULA_TO_VERSION", desired.version or ""),
            )
        run = self.runner.run_hook(
            desired.name, kind, lines, env=env, secrets=(), version=desired.version
        )
        self.outputs.append(f"[{kind}]\n{run.output}")
        if not run.ok:
            raise InstallationError(run.reason(kind))


def _plain(desired: DesiredInstallation) -> dict[str, str]:
    """The hook environment without any secret (as kept in the store for pre_uninstall)."""
    return {k: v for k, v in desired.hook_env if desired.config.get(k) == v and MASK not in v}


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
