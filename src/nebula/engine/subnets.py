"""Choosing a subnet for each installation's network.

Docker's default address pools hold about 30 bridge networks, and every installation has its
own network: a homelab of 40 apps would run out. Nebula carves small subnets (a /26 by default)
out of its own pool instead, skipping any subnet that overlaps a network already on the engine.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Network, ip_network


class PoolExhaustedError(ValueError):
    pass


def free_subnet(pool: IPv4Network, size: int, used: Iterable[str]) -> IPv4Network:
    """The first /`size` subnet of `pool` that overlaps none of `used`."""
    taken = []
    for text in used:
        network = ip_network(text, strict=False)
        if isinstance(network, IPv4Network) and network.overlaps(pool):
            taken.append(network)
    for candidate in pool.subnets(new_prefix=size):
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise PoolExhaustedError(
        f"no free /{size} subnet left in {pool}; widen defaults.subnet_pool in nebula.yaml"
    )
