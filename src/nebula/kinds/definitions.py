"""Kinds whose desired state is a set of named definitions the store records (runbooks,
workflows, functions, agents): one way to load a commit's files of such a kind, one pure diff,
and one plan and apply; each kind says where its records are."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from nebula.errors import ConfigError, ConfigIssue, NebulaError
from nebula.kinds.base import Applied, Desired, World
from nebula.plan import Action, Part

if TYPE_CHECKING:
    from nebula.spec.yamlfile import YamlDocument
    from nebula.store import Store


class Definition(Protocol):
    """A record of one definition: equal records are the same definition."""

    @property
    def name(self) -> str: ...
    @property
    def file(self) -> str: ...


class Loaded(Protocol):
    """A definition as loaded: its name, and its record (which file it came from)."""

    @property
    def name(self) -> str: ...
    @property
    def record(self) -> Definition: ...


L = TypeVar("L", bound=Loaded)


def load_definitions(
    docs: Iterable[YamlDocument],
    load: Callable[[YamlDocument], L],
    twice: Callable[[str, L], str],
) -> tuple[L, ...]:
    """Each document loaded by `load` (which raises `ConfigError`), sorted by name. A name
    defined again is refused at that document's `name:` with `twice(name, first)`; any
    problem fails the whole load, and `ConfigError` lists every one."""
    issues: list[ConfigIssue] = []
    found: dict[str, L] = {}
    for doc in docs:
        try:
            loaded = load(doc)
        except ConfigError as exc:
            issues.extend(exc.issues)
            continue
        first = found.get(loaded.name)
        if first is not None:
            issues.append(doc.issue(("name",), twice(loaded.name, first)))
            continue
        found[loaded.name] = loaded
    if issues:
        raise ConfigError(issues)
    return tuple(found[name] for name in sorted(found))


def defined_twice(kind: str) -> Callable[[str, Loaded], str]:
    """The message for a second definition of a name, of a kind (`workflow`)."""
    return lambda name, first: (
        f"{kind} {name!r} is also defined in {first.record.file}; give each {kind} its own name"
    )


def digest(definition: dict[str, Any]) -> str:
    """The fingerprint of a definition's document: equal documents, equal digests."""
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class DefinitionChange:
    action: Action
    name: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action.value, "name": self.name, "reason": self.reason}


def definition_changes(
    desired: Sequence[Definition], stored: Sequence[Definition]
) -> tuple[DefinitionChange, ...]:
    """One change per definition created, updated or deleted, by name."""
    held = {r.name: r for r in stored}
    wanted = {r.name: r for r in desired}
    changes = []
    for name in sorted(held.keys() | wanted.keys()):
        new, old = wanted.get(name), held.get(name)
        if new is None:
            changes.append(DefinitionChange(Action.DELETE, name, "no longer in the repo"))
        elif old is None:
            changes.append(DefinitionChange(Action.CREATE, name, f"new, from {new.file}"))
        elif new != old:
            changes.append(DefinitionChange(Action.UPDATE, name, f"changed in {new.file}"))
    return tuple(changes)


class DefinitionsKind:
    """Plans the commit's definitions against the store's and records them; nothing outside
    Nebula changes, so the prune guard never holds a plan for them."""

    name: ClassVar[str]

    def records(self, desired: Desired) -> list[Any]:
        raise NotImplementedError

    def stored(self, store: Store) -> list[Any]:
        raise NotImplementedError

    def record(self, store: Store, records: list[Any]) -> None:
        raise NotImplementedError

    def part(self, desired: Sequence[Definition], stored: Sequence[Definition]) -> Part:
        """The kind's share of the plan; its detail is the records to store."""
        changes = definition_changes(desired, stored)
        return Part(self.name, changes, managed=len(stored), unit=self.name, detail=desired)

    def plan(self, desired: Desired, world: World) -> Part:
        records = self.records(desired)
        if not records and not world.store_open:
            return Part(self.name)  # nothing desired, and no store at hand to hold any
        try:
            stored = self.stored(world.store)
        except NebulaError as exc:
            return Part(self.name, problems=(f"{self.name}: cannot read the store: {exc}",))
        return self.part(records, stored)

    def apply(self, part: Part, desired: Desired, world: World) -> Applied:
        if not part.has_changes:
            return Applied(self.name)
        try:
            self.record(world.store, list(part.detail))
        except NebulaError as exc:
            error = f"{self.name}: cannot record the {self.name}: {exc}"
            return Applied(self.name, errors=(error,))
        return Applied(self.name, part.pending)
