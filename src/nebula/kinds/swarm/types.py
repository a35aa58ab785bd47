"""Plain data of the swarm kind: the services, overlay networks and volumes of the installations
placed on a swarm, as desired and as observed, and the kind's plan.

A service is desired from the packages kind's resolved container specs (the same compose
subset), named `INSTALLATION_SERVICE` as `docker stack deploy` names it, and labelled like a
container: `io.nebula.managed`, the installation, the service, its spec summary and hash. One
list request tells whether each service still matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from nebula.kinds.packages.types import (
    ContainerSpec,
    NetworkSpec,
    ObservedNetwork,
    ObservedVolume,
    VolumeSpec,
    canonical_json,
)
from nebula.plan import Action


def service_name(installation: str, service: str) -> str:
    """`INSTALLATION_SERVICE`, as `docker stack deploy` names a stack's service."""
    return f"{installation}_{service}"


@dataclass(frozen=True)
class ServiceSpec:
    """One Swarm service: a compose service of an installation placed on a swarm."""

    container: ContainerSpec

    @property
    def installation(self) -> str:
        return self.container.installation

    @property
    def service(self) -> str:
        return self.container.service

    @property
    def name(self) -> str:
        return service_name(self.installation, self.service)

    @property
    def replicas(self) -> int:
        swarm = self.container.swarm
        return 1 if swarm is None or swarm.replicas is None else swarm.replicas

    def summary(self) -> dict[str, Any]:
        return self.container.summary()

    @property
    def spec_hash(self) -> str:
        return self.container.spec_hash

    @property
    def label(self) -> str:
        return canonical_json(self.summary())


@dataclass(frozen=True)
class SwarmInstallation:
    """An installation placed on a swarm: its services, networks and volumes."""

    name: str
    source: str  # the file it was declared in
    services: tuple[ServiceSpec, ...]
    networks: tuple[NetworkSpec, ...]
    volumes: tuple[VolumeSpec, ...]


@dataclass(frozen=True)
class ObservedService:
    id: str
    name: str
    installation: str
    service: str
    spec_hash: str
    spec: dict[str, Any]
    version: int  # the service object's version: an update names the one it replaces
    replicas: int | None  # as the swarm runs it now (None: not a replicated service)
    image: str  # as the swarm runs it now, without the digest `docker service update` pins


@dataclass(frozen=True)
class SwarmObserved:
    services: tuple[ObservedService, ...] = ()
    networks: tuple[ObservedNetwork, ...] = ()
    volumes: tuple[ObservedVolume, ...] = ()


class Resource(StrEnum):
    SERVICE = "service"
    NETWORK = "network"
    VOLUME = "volume"


@dataclass(frozen=True)
class SwarmChange:
    """A change to one service, overlay network or volume of an installation."""

    action: Action
    kind: Resource
    installation: str
    name: str
    reason: str
    desired: ServiceSpec | NetworkSpec | VolumeSpec | None = None
    observed: ObservedService | ObservedNetwork | None = None  # what is updated or removed

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "kind": self.kind.value,
            "installation": self.installation,
            "name": self.name,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class SwarmPlan:
    """The swarm kind's share of a plan, with what it was made from."""

    installations: tuple[SwarmInstallation, ...]
    changes: tuple[SwarmChange, ...]

    @property
    def pending(self) -> tuple[SwarmChange, ...]:
        return tuple(c for c in self.changes if c.action is not Action.NOOP)

    def for_installation(self, name: str) -> tuple[SwarmChange, ...]:
        return tuple(c for c in self.pending if c.installation == name)
