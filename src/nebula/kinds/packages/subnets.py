"""Choosing a subnet for each installation's network.

Docker's default address pools hold about 30 bridge networks, and every installation has its
own network: a homelab of 40 apps would run out. Nebula carves small subnets (a /26 by default)
out of its own pool instead (the node's `subnet_pool`, else `defaults.subnet_pool`), skipping any subnet that overlaps a network already on the engine
or, for an engine on this machine, a route of this machine (a VPN, the LAN, another engine's
bridge): like Docker's own allocator, since an overlapping bridge would hijack that traffic.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, ip_network
from pathlib import Path

from nebula.spec.config import Defaults, Node


class PoolExhaustedError(ValueError):
    pass


def node_pool(node: Node, defaults: Defaults) -> tuple[IPv4Network | None, str]:
    """The pool `node`'s installation networks take their subnets from (None: Docker chooses),
    and the setting of nebula.yaml it comes from. Several engines on one host, or nodes on
    LANs of their own, each get a pool of their own."""
    if node.subnet_pool is not None:
        return node.subnet_pool, f"subnet_pool of node {node.name}"
    return defaults.subnet_pool, "defaults.subnet_pool"


def free_subnet(
    pool: IPv4Network, size: int, used: Iterable[str], setting: str = "defaults.subnet_pool"
) -> IPv4Network:
    """The first /`size` subnet of `pool` that overlaps none of `used`; `setting` names where
    the pool is set, for the error when it is full."""
    taken = []
    for text in used:
        network = ip_network(text, strict=False)
        if isinstance(network, IPv4Network) and network.overlaps(pool):
            taken.append(network)
    for candidate in pool.subnets(new_prefix=size):
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise PoolExhaustedError(
        f"no free /{size} subnet left in {pool}; widen {setting} in nebula.yaml"
    )


def local_routes(table: Path = Path("/proc/net/route")) -> list[str]:
    """This machine's IPv4 routes (the default route aside), as CIDR strings."""
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return []
    routes = []
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        # the kernel prints addresses as hex numbers in the machine's own byte order
        destination, mask = (
            IPv4Address(struct.pack("=I", int(f, 16))) for f in (fields[1], fields[7])
        )
        if int(mask) == 0:
            continue
        routes.append(str(IPv4Network(f"{destination}/{mask}", strict=False)))
    return routes
