"""The installations the swarm kind deploys: those placed on a node with `engine: swarm`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nebula.kinds.packages.types import DesiredInstallation, engine
from nebula.kinds.swarm.types import ServiceSpec, SwarmInstallation, overlay

if TYPE_CHECKING:
    from nebula.kinds.base import Desired


def desired_on_swarm(desired: Desired) -> tuple[SwarmInstallation, ...]:
    """Every installation of the commit, when its node is a swarm (the first node, until
    installations are placed on nodes of their own)."""
    if engine(desired.repo.config.nodes[0]) != "swarm":
        return ()
    return tuple(as_services(i) for i in desired.installations)


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
