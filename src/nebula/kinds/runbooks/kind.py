"""The runbooks kind: records the commit's runbooks in the store, where the API lists them and
runs them by hand (nebulad's engine takes the last good commit's)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from nebula.kinds.base import Desired
from nebula.kinds.definitions import DefinitionsKind

if TYPE_CHECKING:
    from nebula.store import Store


class Runbooks(DefinitionsKind):
    name: ClassVar[str] = "runbooks"

    def records(self, desired: Desired) -> list[Any]:
        return [r.record for r in desired.runbooks]

    def stored(self, store: Store) -> list[Any]:
        return list(store.runbooks())

    def record(self, store: Store, records: list[Any]) -> None:
        store.replace_runbooks(records)
