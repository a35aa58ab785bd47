"""The functions kind: records the commit's functions in the store, where the API lists them
(nebulad's AI runtime calls the last good commit's)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from nebula.kinds.base import Desired
from nebula.kinds.definitions import DefinitionsKind

if TYPE_CHECKING:
    from nebula.store import Store


class Functions(DefinitionsKind):
    name: ClassVar[str] = "functions"

    def records(self, desired: Desired) -> list[Any]:
        return [f.record for f in desired.functions]

    def stored(self, store: Store) -> list[Any]:
        return list(store.functions())

    def record(self, store: Store, records: list[Any]) -> None:
        store.replace_functions(records)
