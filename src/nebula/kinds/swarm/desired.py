"""The installations the swarm kind deploys: those placed on a node with `engine: swarm`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nebula.kinds.packages.types import DesiredInstallation, NetworkSpec, engine
from nebula.kinds.swarm.types import ServiceSpec, SwarmInstallation

if TYPE_CHECKING:
    from nebula.kinds.base import Desired


def on_swarm(desired: Desired) -> bool:
    """Whether the node this run plans is a swarm (the first node, until installations are
    placed on nodes of their own)."""
    return engine(desired.repo.config.nodes[0]) == "swarm"


def desired_on_swarm(desired: Desired) -> tuple[SwarmInstallation, ...]:
    """The installations of the commit placed on the swarm: every one, for now."""
    return tuple(as_services(i) for i in desired.installations) if on_swarm(desired) else ()


def as_services(installation: DesiredInstallation) -> SwarmInstallation:
    """The packages kind's resolved installation as Swarm services, overlay networks and
    volumes."""
    return SwarmInstallation(
        installation.name,
        installation.source,
        tuple(ServiceSpec(c) for c in installation.containers),
        tuple(overlay(n) for n in installation.networks),
        installation.volumes,
    )


def overlay(network: NetworkSpec) -> NetworkSpec:
    """The installation's network as a swarm's: an overlay, unless compose named a driver."""
    return NetworkSpec(
        network.installation,
        network.name,
        "overlay" if network.driver == "bridge" else network.driver,
        network.options,
    )
