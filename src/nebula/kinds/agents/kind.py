"""The agents kind: records the commit's agents in the store, where the API lists them
(nebulad's AI runtime runs the last good commit's)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from nebula.kinds.base import Desired
from nebula.kinds.definitions import DefinitionsKind

if TYPE_CHECKING:
    from nebula.store import Store


class Agents(DefinitionsKind):
    name: ClassVar[str] = "agents"

    def records(self, desired: Desired) -> list[Any]:
        return [a.record for a in desired.agents]

    def stored(self, store: Store) -> list[Any]:
        return list(store.agents())

    def record(self, store: Store, records: list[Any]) -> None:
        store.replace_agents(records)
