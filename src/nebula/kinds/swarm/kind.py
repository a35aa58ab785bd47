"""The swarm kind: the installations placed on an `engine: swarm` node, as Swarm services.

Plan observes the swarm's labelled services, overlay networks and volumes (three list requests)
and diffs them (`diff.py`, pure). Apply removes what went first, then deploys each installation:
its networks and volumes, then its services (a changed spec is one `update_service`: Swarm
rolls the tasks over as `deploy.update_config` says), waiting until every service runs its
replicas on the new spec; a rolling update Swarm paused or rolled back fails the installation
with Swarm's reason. Each deployment is recorded in the store as the packages kind records its
own, so `nebula status` lists both.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

from nebula.errors import NebulaError, ProviderError
from nebula.kinds.base import Applied, Desired, World
from nebula.kinds.packages.types import (
    NetworkSpec,
    ObservedNetwork,
    VolumeSpec,
    stand_ins_in,
)
from nebula.kinds.swarm.desired import desired_on_swarm, on_swarm
from nebula.kinds.swarm.diff import diff
from nebula.kinds.swarm.types import (
    ObservedService,
    Resource,
    ServiceSpec,
    SwarmChange,
    SwarmInstallation,
    SwarmPlan,
)
from nebula.plan import Action, Part
from nebula.stand_ins import stand_in

if TYPE_CHECKING:
    from nebula.providers.docker.swarm import SwarmProvider
    from nebula.spec.config import Defaults
    from nebula.store import Store


class Swarm:
    name: ClassVar[str] = "swarm"

    def plan(self, desired: Desired, world: World) -> Part:
        if not on_swarm(desired, world):
            return Part(self.name, unit="installations", detail=SwarmPlan((), ()))
        installations = desired_on_swarm(desired, world)
        try:
            observed = _provider(desired, world).observe()
        except ProviderError as exc:
            return Part(self.name, unit="installations", problems=(str(exc),))
        plan = diff(installations, observed)
        wanted = {i.name for i in installations}
        removed = {
            c.installation
            for c in plan.pending
            if c.kind is Resource.SERVICE and c.installation not in wanted
        }
        return Part(
            self.name,
            plan.changes,
            removed=frozenset(removed),
            managed=len(removed | wanted),
            unit="installations",
            detail=plan,
        )

    def apply(self, part: Part, desired: Desired, world: World) -> Applied:
        plan: SwarmPlan | None = part.detail
        if plan is None or not plan.pending:
            return Applied(self.name)
        provider = _provider(desired, world)
        defaults = desired.repo.config.defaults
        store = world.store
        done: list[SwarmChange] = []
        errors: list[str] = []
        temporary = False
        wanted = {i.name: i for i in plan.installations}
        gone = [n for n in dict.fromkeys(c.installation for c in plan.pending) if n not in wanted]
        for name in gone:
            try:
                done += _remove(name, plan.for_installation(name), provider, world, defaults)
                store.remove_installation(name)
            except NebulaError as exc:
                errors.append(f"{name}: {exc}")
                temporary |= isinstance(exc, ProviderError) and exc.temporary
        known = {stand_in(fp): (n, fp) for d in desired.installations for n, fp in d.secrets}
        for installation in plan.installations:
            changes = plan.for_installation(installation.name)
            if not changes:
                continue
            try:
                revealed = _reveal(installation, known, store)
                done += _deploy(
                    installation,
                    changes,
                    provider=provider,
                    world=world,
                    store=store,
                    defaults=defaults,
                    revealed=revealed,
                )
            except NebulaError as exc:
                errors.append(f"{installation.name}: {exc}")
                temporary |= isinstance(exc, ProviderError) and exc.temporary
        return Applied(self.name, tuple(done), tuple(errors), detail=plan, temporary=temporary)


def _provider(desired: Desired, world: World) -> SwarmProvider:
    from nebula.providers.docker.swarm import SwarmProvider

    return SwarmProvider(world.docker(desired))


def _remove(
    name: str,
    changes: tuple[SwarmChange, ...],
    provider: SwarmProvider,
    world: World,
    defaults: Defaults,
) -> list[SwarmChange]:
    """An installation no longer in the repo: its services, then its networks (volumes stay)."""
    for change in changes:
        if isinstance(change.observed, ObservedService):
            world.progress(name, f"removing service {change.name}")
            provider.remove_service(change.observed)
    for change in changes:
        if isinstance(change.observed, ObservedNetwork):
            provider.remove_network(change.observed, defaults.stop_timeout + 30)
    world.progress(name, "removed (volumes kept)")
    return list(changes)


def _deploy(
    installation: SwarmInstallation,
    changes: tuple[SwarmChange, ...],
    *,
    provider: SwarmProvider,
    world: World,
    store: Store,
    defaults: Defaults,
    revealed: dict[str, str],
) -> list[SwarmChange]:
    """Make the installation's services match, recorded as one deployment."""
    name = installation.name
    deployment = store.begin_deployment(
        name,
        package=None,
        version=None,
        config={},
        spec_hash="".join(s.spec_hash for s in installation.services),
        commit=world.commit,
        summary="; ".join(f"{c.action.value} {c.kind.value} {c.name}: {c.reason}" for c in changes),
    )
    try:
        for change in changes:
            if change.action is Action.CREATE and isinstance(change.desired, NetworkSpec):
                world.progress(name, f"creating overlay network {change.name}")
                provider.create_network(change.desired)
            elif change.action is Action.CREATE and isinstance(change.desired, VolumeSpec):
                world.progress(name, f"creating volume {change.name}")
                provider.create_volume(change.desired)
        rolled: list[ServiceSpec] = []
        for change in changes:
            if isinstance(change.observed, ObservedService) and change.action is Action.DELETE:
                world.progress(name, f"removing service {change.name}")
                provider.remove_service(change.observed)
            elif isinstance(change.desired, ServiceSpec):
                spec = change.desired
                if isinstance(change.observed, ObservedService):
                    world.progress(name, f"updating {spec.name}: {change.reason}")
                    provider.update_service(spec, change.observed, revealed)
                else:
                    world.progress(name, f"creating service {spec.name}")
                    provider.create_service(spec, revealed)
                rolled.append(spec)
        for spec in rolled:
            world.progress(name, f"waiting for {spec.replicas} task(s) of {spec.name}")
            provider.wait_converged(spec, _timeout(spec, defaults))
        for change in changes:
            if isinstance(change.observed, ObservedNetwork):
                provider.remove_network(change.observed, defaults.stop_timeout + 30)
    except NebulaError as exc:
        store.finish_deployment(deployment, ok=False, reason=str(exc), container_ids=[])
        world.progress(name, f"failed: {exc}")
        raise
    store.finish_deployment(deployment, ok=True, reason=None, container_ids=[])
    world.progress(name, "running")
    return list(changes)


def _timeout(spec: ServiceSpec, defaults: Defaults) -> float:
    """How long a service may take to converge: the health timeout per batch of its rolling
    update (`parallelism` tasks at a time)."""
    update = spec.container.swarm.update_config if spec.container.swarm else None
    parallelism = update.parallelism if update and update.parallelism else 1
    return defaults.health_timeout * math.ceil(max(spec.replicas, 1) / parallelism)


def _reveal(
    installation: SwarmInstallation, known: dict[str, tuple[str, str]], store: Store
) -> dict[str, str]:
    """Stand-in -> value of the vault secrets the installation's services run with, checked
    against the fingerprints planned."""
    planned = dict(
        known[found]
        for service in installation.services
        for text in _handed_over(service)
        for found in stand_ins_in(text)
        if found in known
    )
    if not planned:
        return {}
    from nebula.secrets import open_vault

    values = open_vault(store).reveal_planned(planned)
    return {stand_in(planned[name]): value for name, value in values.items()}


def _handed_over(service: ServiceSpec) -> list[str]:
    c = service.container
    health = c.healthcheck.test if c.healthcheck else ()
    return [v for _, v in c.environment] + [*(c.command or ()), *(c.entrypoint or ()), *health]
