"""Plain YAML data read straight from the parser's events: no marks, nothing unusual.

`yamlfile.parse_yaml` remembers where every value came from and reads anchors, aliases and merge
keys, at a cost. A reader that only ever accepts, and hands anything doubtful to the full load
(`kinds.dns.lean`), needs none of that: it reads the events here. Any anchor, alias, explicit
tag, merge key, duplicate or non-string key, second document, syntax error or file beyond the
size and depth limits (`yaml_limits`) raises `UnusualYamlError`, and the full load reports it
with file and line. Scalars are resolved and constructed exactly as the full load's (the same
`Scalars`), so the data is the same as `parse_yaml(...).data`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml
from yaml.events import (
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import ScalarNode

from nebula.spec.yaml_limits import MAX_CHARS, MAX_DEPTH

try:  # libyaml is much faster; the pure-Python loader is the fallback.
    LOADER: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment,unused-ignore]
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    LOADER = yaml.SafeLoader

_STR_TAG = "tag:yaml.org,2002:str"
_VALUE_TAG = "tag:yaml.org,2002:value"  # YAML 1.1's `=`, which nothing constructs: a string
_NON_SPECIFIC = (None, "!")
_RESOLVE: Callable[[type[ScalarNode], str, tuple[bool, bool]], str] = (
    yaml.resolver.Resolver().resolve
)


class UnusualYamlError(ValueError):
    """Not plain YAML data (see the module docstring): read it with `parse_yaml`."""


def plain_yaml(text: str) -> Any:
    """The data of one YAML document (None when there is none)."""
    if len(text) > MAX_CHARS:
        raise UnusualYamlError
    loader = LOADER(text)
    try:
        return _document(loader, Scalars())
    except yaml.YAMLError:
        raise UnusualYamlError from None
    finally:
        loader.dispose()


def _document(loader: yaml.SafeLoader, scalars: Scalars) -> Any:
    next_event: Callable[[], Any] = loader.get_event
    next_event()  # the stream's start
    if not isinstance(next_event(), DocumentStartEvent):
        return None  # an empty stream
    containers: list[dict[str, Any] | list[Any]] = []
    keys: list[str | None] = []  # for each container, a mapping's key waiting for its value
    data: Any = None
    while True:
        event = next_event()
        kind = type(event)
        if kind is MappingEndEvent or kind is SequenceEndEvent:
            data = containers.pop()
            keys.pop()
            continue
        if kind is DocumentEndEvent:
            break
        if event.anchor is not None or event.tag not in _NON_SPECIFIC:
            raise UnusualYamlError
        if kind is ScalarEvent:
            value = scalars.value(event)
        elif kind is MappingStartEvent:
            value = {}
        elif kind is SequenceStartEvent:
            value = []
        else:  # an alias
            raise UnusualYamlError
        if containers:
            _add(containers[-1], keys, value)
        else:
            data = value
        if kind is not ScalarEvent:
            if len(containers) == MAX_DEPTH:
                raise UnusualYamlError  # nesting this deep: the full load names the line
            containers.append(value)
            keys.append(None)
    if not isinstance(next_event(), StreamEndEvent):
        raise UnusualYamlError  # a second document
    return data


def _add(container: dict[str, Any] | list[Any], keys: list[str | None], value: Any) -> None:
    if isinstance(container, list):
        container.append(value)
        return
    key = keys[-1]
    if key is not None:
        container[key] = value
        keys[-1] = None
    elif type(value) is not str or value in container or value == "<<":
        raise UnusualYamlError  # a key that is not a plain string, a duplicate, a merge
    else:
        keys[-1] = value


class Scalars:
    """Scalars to values, as the node tree's: the tag of a plain scalar by the resolver
    (remembered: keys and types repeat on every record), its value by the safe constructor."""

    def __init__(self) -> None:
        self._tags: dict[str, str] = {}
        self._constructor = yaml.constructor.SafeConstructor()

    def value(self, event: ScalarEvent) -> Any:
        """The value of a scalar written without a tag (as all plain YAML is)."""
        text = event.value
        if not event.implicit[0]:  # quoted, or a block scalar: a string
            return text
        tag = self._tags.get(text) or self._resolve(text)
        return text if tag == _STR_TAG else self.construct(tag, text)

    def tag(self, event: ScalarEvent) -> str:
        """The scalar's tag: as written, or resolved as PyYAML's composer does."""
        if event.tag not in _NON_SPECIFIC:
            return str(event.tag)
        if not event.implicit[0]:
            return _STR_TAG
        return self._tags.get(event.value) or self._resolve(event.value)

    def construct(self, tag: str, text: str) -> Any:
        """The value of a scalar with `tag`; `yaml.YAMLError` or `ValueError` when it has none."""
        if tag == _STR_TAG:
            return text
        return self._constructor.construct_object(ScalarNode(tag, text), deep=True)

    def _resolve(self, text: str) -> str:
        tag = _RESOLVE(ScalarNode, text, (True, False))
        tag = self._tags[text] = _STR_TAG if tag == _VALUE_TAG else tag
        return tag
