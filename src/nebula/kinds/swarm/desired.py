"""The installations the swarm kind deploys: those placed on a node with `engine: swarm`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nebula.kinds.packages.types import DesiredInstallation, NetworkSpec
from nebula.kinds.swarm.types import ServiceSpec, SwarmInstallation

if TYPE_CHECKING:
    from nebula.kinds.base import Desired, World


def on_swarm(desired: Desired, world: World) -> bool:
    """Whether the node this run plans (`World.node`) is a swarm."""
    return world.node_spec(desired).engine == "swarm"


def desired_on_swarm(desired: Desired, world: World) -> tuple[SwarmInstallation, ...]:
    """The installations of the commit placed on the world's node, when it is a swarm."""
    if not on_swarm(desired, world):
        return ()
    node = world.node_spec(desired).name
    return tuple(as_services(i) for i in desired.installations if i.node == node)


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
