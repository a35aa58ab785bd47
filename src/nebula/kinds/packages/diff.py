"""Desired installations against observed Docker resources → a Plan. Pure: no I/O here.

A container is up to date when its `io.nebula.spec-hash` label equals the hash of the desired
spec; when it differs, the spec summary stored beside the hash says what changed. Removed
installations lose their containers and networks; named volumes are always kept.

A node plans only the installations placed on it. Containers on its engine of an installation
placed on another node now are a move: they are removed once the store says it runs there
(until then the plan says it waits), and their volumes stay.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nebula.kinds.packages.types import (
    ContainerSpec,
    DesiredInstallation,
    Move,
    Observed,
    ObservedContainer,
    PackagesPlan,
    Resource,
    ResourceChange,
)
from nebula.plan import Action
from nebula.spec.config import LOCAL_NODE
from nebula.stand_ins import MASK

if TYPE_CHECKING:
    from nebula.kinds.base import Desired

_MUST_RUN = ("always", "unless-stopped")


@dataclass(frozen=True)
class Snapshot:
    """A packages plan with what it was made from: the desired state, the node planned for and
    its installations, and what its Docker Engine ran."""

    desired: Desired
    observed: Observed
    plan: PackagesPlan
    node: str
    installations: tuple[DesiredInstallation, ...]  # those placed on `node`

    @classmethod
    def of(
        cls,
        desired: Desired,
        observed: Observed,
        node: str | None = None,
        running: Mapping[str, str] | None = None,
    ) -> Snapshot:
        """The plan of `node`'s share of `desired` (default: the first node's) against what its
        Docker Engine runs (`observed`); `running`: installation -> the node the store says it
        runs on, for those `moving` finds."""
        here = node or desired.repo.config.nodes[0].name
        mine = tuple(i for i in desired.installations if i.node == here)
        away = {i.name: i.node for i in desired.installations if i.node != here}
        plan = diff(mine, observed, here=here, elsewhere=away, running=running or {})
        return cls(desired, observed, plan, here, mine)


def moving(desired: Desired, observed: Observed, node: str) -> list[str]:
    """The installations `observed` on `node`'s engine that are placed on another node now."""
    away = {i.name for i in desired.installations if i.node != node}
    return sorted({c.installation for c in observed.containers if c.installation in away})


def diff(
    desired: Sequence[DesiredInstallation],
    observed: Observed,
    *,
    here: str = LOCAL_NODE.name,
    elsewhere: Mapping[str, str] | None = None,
    running: Mapping[str, str] | None = None,
) -> PackagesPlan:
    """`desired` (this node's installations) against `observed` (its engine); `elsewhere`:
    installation -> node of those placed on other nodes, `running`: installation -> the node
    the store says it runs on."""
    elsewhere, running = elsewhere or {}, running or {}
    changes: list[ResourceChange] = []
    by_service: dict[tuple[str, str], list[ObservedContainer]] = {}
    for container in observed.containers:
        by_service.setdefault((container.installation, container.service), []).append(container)
    networks = {n.name for n in observed.networks}
    volumes = {v.name for v in observed.volumes}
    wanted_networks: set[str] = set()
    wanted_volumes: set[str] = set()
    wanted_services: set[tuple[str, str]] = set()
    present = {installation for installation, _ in by_service}
    names = {inst.name for inst in desired}
    moves = {
        name: Move(name, elsewhere[name], running.get(name) == elsewhere[name])
        for name in sorted(present)
        if name in elsewhere
    }

    for inst in desired:
        new = inst.name not in present
        for net in inst.networks:
            wanted_networks.add(net.name)
            exists = net.name in networks
            changes.append(
                ResourceChange(
                    Action.NOOP if exists else Action.CREATE,
                    Resource.NETWORK,
                    inst.name,
                    net.name,
                    "exists" if exists else "new network",
                    net,
                )
            )
        for vol in inst.volumes:
            wanted_volumes.add(vol.name)
            exists = vol.name in volumes
            reason = "exists; data kept" if exists else "new volume"
            changes.append(
                ResourceChange(
                    Action.NOOP if exists else Action.CREATE,
                    Resource.VOLUME,
                    inst.name,
                    vol.name,
                    reason,
                    vol,
                )
            )
        for spec in inst.containers:
            wanted_services.add((inst.name, spec.service))
            found = by_service.get((inst.name, spec.service), [])
            for extra in found[1:]:
                changes.append(_delete(extra, "duplicate container for the same service"))
            changes.append(_container_change(spec, found[0] if found else None, new, inst.source))

    for (inst_name, service), found in by_service.items():
        if (inst_name, service) in wanted_services:
            continue
        move = moves.get(inst_name)
        if move is not None:
            changes.extend(_moved(c, move, here) for c in found)
            continue
        gone = inst_name not in names
        reason = (
            f"installation {inst_name!r} is no longer in the config repo"
            if gone
            else f"service {service!r} was removed"
        )
        changes.extend(_delete(c, reason) for c in found)
    for old_net in observed.networks:
        move = moves.get(old_net.installation)
        if move is not None and not move.ready:
            changes.append(
                ResourceChange(
                    Action.NOOP,
                    Resource.NETWORK,
                    old_net.installation,
                    old_net.name,
                    f"kept until it runs on node {move.to}",
                )
            )
        elif old_net.name not in wanted_networks:
            changes.append(
                ResourceChange(
                    Action.DELETE,
                    Resource.NETWORK,
                    old_net.installation,
                    old_net.name,
                    "no longer used",
                    None,
                    old_net.id,
                )
            )
    for old_vol in observed.volumes:
        if old_vol.name not in wanted_volumes:
            kept = "no longer used; kept so its data survives (docker volume rm to delete)"
            if old_vol.installation in moves:
                to = moves[old_vol.installation].to
                kept = f"stays on {here}: volumes do not move to node {to} (docker volume rm)"
            changes.append(
                ResourceChange(
                    Action.NOOP, Resource.VOLUME, old_vol.installation, old_vol.name, kept
                )
            )
    return PackagesPlan(tuple(changes), tuple(moves.values()))


def _moved(container: ObservedContainer, move: Move, here: str) -> ResourceChange:
    """A container of an installation placed on another node: removed once it runs there."""
    if move.ready:
        return _delete(container, f"moved to {move.to}; volumes stay on {here}")
    return ResourceChange(
        Action.NOOP,
        Resource.CONTAINER,
        container.installation,
        container.name,
        f"moving to {move.to}: removed once it runs there",
        None,
        container.id,
    )


def _container_change(
    spec: ContainerSpec, current: ObservedContainer | None, new_installation: bool, source: str
) -> ResourceChange:
    def change(action: Action, reason: str) -> ResourceChange:
        observed_id = current.id if current else None
        if spec.grants:  # powers over the host are never given unseen
            reason += f" (granted: {', '.join(spec.grants)})"
        return ResourceChange(
            action, Resource.CONTAINER, spec.installation, spec.name, reason, spec, observed_id
        )

    if current is None:
        reason = f"new installation from {source}" if new_installation else "new service"
        if spec.build is not None:  # the image's tag is the context's hash: show it
            reason += f" ({spec.image}, built from {spec.build.context})"
        return change(Action.CREATE, reason)
    if current.spec_hash != spec.spec_hash:
        return change(Action.UPDATE, describe_changes(current.spec, spec.summary()))
    if current.state == "created":
        return change(Action.UPDATE, "container was created but never started")
    if current.state in ("exited", "dead") and (
        spec.restart in _MUST_RUN
        or (spec.restart.startswith("on-failure") and current.exit_code != 0)
    ):
        code = f" (exit code {current.exit_code})" if current.exit_code is not None else ""
        return change(
            Action.UPDATE, f"container is {current.state}{code} but restart is {spec.restart}"
        )
    return change(Action.NOOP, "up to date")


def _delete(container: ObservedContainer, reason: str) -> ResourceChange:
    return ResourceChange(
        Action.DELETE,
        Resource.CONTAINER,
        container.installation,
        container.name,
        reason,
        None,
        container.id,
    )


def describe_changes(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Human reasons for a spec change: `image changed wordpress:6.4-apache → 6.5-apache`."""
    reasons = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if isinstance(before, dict) and isinstance(after, dict):
            for sub in sorted(set(before) | set(after)):
                b, a = before.get(sub), after.get(sub)
                if b == a:
                    continue
                if b is None:
                    reasons.append(f"{key} {sub} added")
                elif a is None:
                    reasons.append(f"{key} {sub} removed")
                elif _secret(b) or _secret(a):  # stand-ins: fingerprints, never values
                    reasons.append(f"{key} {sub} changed (secret {_masked(b)} → {_masked(a)})")
                else:
                    reasons.append(f"{key} {sub} changed {_show(b)} → {_show(a)}")
        else:
            reasons.append(f"{key} changed {_show(before)} → {_show(after)}")
    return "; ".join(reasons) or "spec changed"


def _secret(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(MASK)


def _masked(value: Any) -> str:
    return str(value) if _secret(value) else MASK


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)
