"""The workflows kind: records the commit's workflows in the store, where the API lists them
(nebulad's workflow engine runs the last good commit's)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from nebula.kinds.base import Desired
from nebula.kinds.definitions import DefinitionsKind

if TYPE_CHECKING:
    from nebula.store import Store


class Workflows(DefinitionsKind):
    name: ClassVar[str] = "workflows"

    def records(self, desired: Desired) -> list[Any]:
        return [w.record for w in desired.workflows]

    def stored(self, store: Store) -> list[Any]:
        return list(store.workflows())

    def record(self, store: Store, records: list[Any]) -> None:
        store.replace_workflows(records)
