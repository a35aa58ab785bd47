"""Plain YAML data read straight from the parser's events: no marks, nothing unusual.

`yamlfile.parse_yaml` builds PyYAML's node tree to remember where every value came from, and
that tree costs twice the parse itself. A reader that only ever accepts, and hands anything
doubtful to the full load (`kinds.dns_lean`), needs no marks: it reads the events here. Any
anchor, alias, explicit tag, merge key, duplicate or non-string key, second document or
syntax error raises `UnusualYamlError`, and the full load reports it with file and line.
Scalars are resolved and constructed exactly as the node tree's (the same resolver and safe
constructor), so the data is the same as `parse_yaml(...).data`.
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

from nebula.spec.yamlfile import LOADER

_STR_TAG = "tag:yaml.org,2002:str"
_NON_SPECIFIC = (None, "!")
_RESOLVE: Callable[[type[ScalarNode], str, tuple[bool, bool]], str] = (
    yaml.resolver.Resolver().resolve
)


class UnusualYamlError(ValueError):
    """Not plain YAML data (see the module docstring): read it with `parse_yaml`."""


def plain_yaml(text: str) -> Any:
    """The data of one YAML document (None when there is none)."""
    loader = LOADER(text)
    try:
        return _document(loader, yaml.constructor.SafeConstructor())
    except yaml.YAMLError:
        raise UnusualYamlError from None
    finally:
        loader.dispose()


def _document(loader: yaml.SafeLoader, constructor: yaml.constructor.SafeConstructor) -> Any:
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
            value = _scalar(event, constructor)
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


def _scalar(event: ScalarEvent, constructor: yaml.constructor.SafeConstructor) -> Any:
    if not event.implicit[0]:  # quoted, or a block scalar: a string
        return event.value
    tag = _RESOLVE(ScalarNode, event.value, (True, False))
    if tag == _STR_TAG:
        return event.value
    return constructor.construct_object(ScalarNode(tag, event.value), deep=True)
