"""A Plan: the changes that would make the observed world match the config repo, as pure data.

`nebula plan` prints exactly the plan that `nebula apply` executes. Each change names one resource
(a container, network or volume of an installation), what will happen to it and why.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from nebula.kinds.packages.types import ContainerSpec, NetworkSpec, VolumeSpec


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"  # recreate the container; named volumes are kept
    DELETE = "delete"
    NOOP = "noop"


class Kind(StrEnum):
    CONTAINER = "container"
    NETWORK = "network"
    VOLUME = "volume"


@dataclass(frozen=True)
class Change:
    action: Action
    kind: Kind
    installation: str
    name: str
    reason: str
    desired: ContainerSpec | NetworkSpec | VolumeSpec | None = None
    observed_id: str | None = None  # the Docker id of what is replaced or removed

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "kind": self.kind.value,
            "installation": self.installation,
            "name": self.name,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]

    @property
    def pending(self) -> tuple[Change, ...]:
        """The changes that do something."""
        return tuple(c for c in self.changes if c.action is not Action.NOOP)

    @property
    def has_changes(self) -> bool:
        return bool(self.pending)

    def installations(self) -> list[str]:
        """Installations with at least one pending change, in plan order."""
        return list(dict.fromkeys(c.installation for c in self.pending))

    def for_installation(self, name: str) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.installation == name)

    def counts(self) -> dict[str, int]:
        counted = Counter(c.action.value for c in self.changes)
        return {action.value: counted.get(action.value, 0) for action in Action}

    def summary(self) -> str:
        return summarize(self.counts())

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.counts(), "changes": [c.to_dict() for c in self.changes]}


def summarize(counts: dict[str, int]) -> str:
    """`2 to create, 1 to update, 0 to delete, 9 unchanged`."""
    return (
        f"{counts['create']} to create, {counts['update']} to update, "
        f"{counts['delete']} to delete, {counts['noop']} unchanged"
    )
