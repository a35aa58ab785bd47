"""Installations placed on a swarm against the services, networks and volumes observed there →
the swarm kind's plan. Pure: no I/O here.

A service is up to date when its spec-hash label equals the desired spec's hash and it runs the
desired replicas and image (what `docker service scale` and `docker service update --image` change
by hand, labels left alone); otherwise the spec summary beside the hash says what changed, and
Swarm rolls the update out. A service, network
or volume without Nebula's label is never seen, so never touched. Removed installations lose
their services and networks; named volumes are always kept, as for containers.
"""

from __future__ import annotations

from collections.abc import Sequence

from nebula.kinds.packages.diff import describe_changes
from nebula.kinds.swarm.types import (
    ObservedService,
    Resource,
    ServiceSpec,
    SwarmChange,
    SwarmInstallation,
    SwarmObserved,
    SwarmPlan,
)
from nebula.plan import Action


def diff(installations: Sequence[SwarmInstallation], observed: SwarmObserved) -> SwarmPlan:
    changes: list[SwarmChange] = []
    services = {s.name: s for s in observed.services}
    networks = {n.name for n in observed.networks}
    volumes = {v.name for v in observed.volumes}
    wanted: set[str] = set()
    for inst in installations:
        for net in inst.networks:
            wanted.add(net.name)
            exists = net.name in networks
            action = Action.NOOP if exists else Action.CREATE
            reason = "exists" if exists else "new overlay network"
            changes.append(SwarmChange(action, Resource.NETWORK, inst.name, net.name, reason, net))
        for vol in inst.volumes:
            exists = vol.name in volumes
            action = Action.NOOP if exists else Action.CREATE
            reason = "exists; data kept" if exists else "new volume"
            changes.append(SwarmChange(action, Resource.VOLUME, inst.name, vol.name, reason, vol))
        for spec in inst.services:
            wanted.add(spec.name)
            changes.append(_service_change(spec, services.get(spec.name), inst.source))
    names = {inst.name for inst in installations}
    for service in observed.services:
        if service.name not in wanted:
            reason = (
                f"installation {service.installation!r} is no longer in the config repo"
                if service.installation not in names
                else f"service {service.service!r} was removed"
            )
            changes.append(
                SwarmChange(
                    Action.DELETE,
                    Resource.SERVICE,
                    service.installation,
                    service.name,
                    reason,
                    observed=service,
                )
            )
    for network in observed.networks:
        if network.name not in wanted:
            changes.append(
                SwarmChange(
                    Action.DELETE,
                    Resource.NETWORK,
                    network.installation,
                    network.name,
                    "no longer used",
                    observed=network,
                )
            )
    kept = "no longer used; kept so its data survives (docker volume rm to delete)"
    used = {v.name for inst in installations for v in inst.volumes}
    for volume in observed.volumes:
        if volume.name not in used:
            changes.append(
                SwarmChange(Action.NOOP, Resource.VOLUME, volume.installation, volume.name, kept)
            )
    return SwarmPlan(tuple(installations), tuple(changes))


def _service_change(spec: ServiceSpec, current: ObservedService | None, source: str) -> SwarmChange:
    def change(action: Action, reason: str) -> SwarmChange:
        return SwarmChange(
            action, Resource.SERVICE, spec.installation, spec.name, reason, spec, current
        )

    replicas = f"{spec.replicas} replica{'s' if spec.replicas != 1 else ''}"
    if current is None:  # new, or removed by hand: created either way
        return change(Action.CREATE, f"not on the swarm; from {source} ({replicas})")
    if current.spec_hash != spec.spec_hash:
        return change(
            Action.UPDATE, f"rolling update: {describe_changes(current.spec, spec.summary())}"
        )
    if current.replicas != spec.replicas:
        return change(
            Action.UPDATE, f"replicas changed by hand: {current.replicas} → {spec.replicas}"
        )
    if current.image != spec.container.image:
        return change(
            Action.UPDATE, f"image changed by hand: {current.image} → {spec.container.image}"
        )
    return change(Action.NOOP, f"up to date ({replicas})")
