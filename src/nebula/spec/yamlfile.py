"""YAML reading that remembers where every value came from.

The parser's events carry a mark (line, column) for every value; we build plain Python data
from them and keep a map from each value's path (`("compose", "services", "web", "image")`) to
the mark of its key, so any later validation error can point at the exact line. Building from
events, iteratively, rather than from PyYAML's node tree lets the limits of `yaml_limits` be
checked as the file is read: nesting thousands deep or an alias bomb is refused at its line
before it costs anything (the node tree is built recursively, in C, first). Duplicate keys are
errors, as in octodns and compose-go: silently keeping the last one hides typos. So are tags
other than YAML's own (`!!python/object`, `!foo`). Plain scalars are read by YAML 1.2's rules, as
compose reads them (`yaml_scalars`): `53:53` and `yes` stay strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

from nebula.errors import ConfigError, ConfigIssue
from nebula.spec import yaml_limits as limits
from nebula.spec.names import excerpt
from nebula.spec.yaml_scalars import SCALAR_TAGS, read_tagged, resolve_plain

try:  # libyaml is much faster; the pure-Python loader is the fallback.
    _LOADER: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment,unused-ignore]
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _LOADER = yaml.SafeLoader

Path = tuple[str | int, ...]

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@/-]{0,63}")
"""What a key of a Nebula file looks like; any other key is quoted as an excerpt."""

_YAML = "tag:yaml.org,2002:"
_NON_SPECIFIC = (None, "!")
_MERGE_KEY = "<<"
_TAGS = {
    MappingStartEvent: (None, "!", "tag:yaml.org,2002:map"),
    SequenceStartEvent: (None, "!", "tag:yaml.org,2002:seq"),
}


class _Pending(Enum):
    """What a mapping does with the value it waits for, when not storing it under a key."""

    MERGE = "merge"  # after `<<`: merge it in
    SKIP = "skip"  # after a refused key: drop it


@dataclass(frozen=True)
class Mark:
    line: int
    column: int


@dataclass
class YamlDocument:
    """One YAML file: its data and the mark of every path in it."""

    file: str
    data: Any
    marks: dict[Path, Mark] = field(default_factory=dict)

    def mark_for(self, path: Sequence[str | int]) -> Mark:
        """The mark of the longest prefix of `path` that exists in the file."""
        for end in range(len(path), 0, -1):
            mark = self.marks.get(tuple(path[:end]))
            if mark is not None:
                return mark
        return self.marks.get((), Mark(1, 1))

    def issue(self, path: Sequence[str | int], message: str) -> ConfigIssue:
        mark = self.mark_for(path)
        return ConfigIssue(self.file, mark.line, mark.column, dotted(path), message)


def dotted(path: Sequence[str | int]) -> str:
    """`("services", "web", "ports", 0)` → `services.web.ports[0]`.

    A key that does not look like one (a line of some other file, a value where a key should
    be) is quoted as an excerpt: a file that is not what it should be must not be quoted back."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        key = part if _PLAIN_KEY.fullmatch(part) else excerpt(part)
        out += f".{key}" if out else key
    return out


def parse_yaml(text: str, file: str) -> YamlDocument:
    """Parse one YAML document; `ConfigError` with file:line for any syntax problem, a tag
    that is not YAML's own, a duplicate key, or a file beyond the limits of `yaml_limits`."""
    reader = _Reader(file)
    if len(text) > limits.MAX_CHARS:
        raise reader.fatal(Mark(1, 1), limits.TOO_LARGE)
    loader = _LOADER(text)
    try:
        data = reader.read(loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or "invalid YAML"
        raise ConfigError(
            [ConfigIssue(file, line, column, "", f"invalid YAML: {problem}")]
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue(file, 1, 1, "", f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    if reader.issues:
        raise ConfigError(reader.issues)
    return YamlDocument(file=file, data=data, marks=reader.marks)


@dataclass(frozen=True)
class _Anchor:
    """An anchored value. Its marks are not copied when it closes (nested anchors would copy
    the same marks once each): they are `marks[first:last]`, a slice of the reader's ordered
    marks, with paths under its own `depth` parts; an alias, counted as `size` values, reads
    them."""

    value: Any
    size: int  # values it holds, itself included: what each alias of it repeats
    marks: list[tuple[Path, Mark]]
    first: int = 0
    last: int = 0
    depth: int = 0


@dataclass
class _Open:
    """A mapping or list being read."""

    value: dict[str, Any] | list[Any]
    path: Path | None  # None inside a key (which has no path, and whose parts get no marks)
    mark: Mark
    anchor: str | None
    nodes_before: int
    marks_before: int
    merge_list: bool = False  # the list of a merge key: its mappings merge into the parent
    key: str | _Pending | None = None  # a mapping's key waiting for its value
    merged: dict[str, Any] = field(default_factory=dict)


class _Scalars:
    """Scalars to values: quoted ones are strings, plain ones resolved by `yaml_scalars` (and
    remembered: keys and types repeat on every record), tagged ones read as their tag says."""

    def __init__(self) -> None:
        self._plain: dict[str, Any] = {}

    def value(self, event: ScalarEvent) -> Any:
        """The scalar's value; ValueError with the message when it cannot be read."""
        text = event.value
        if event.tag in _NON_SPECIFIC:
            if not event.implicit[0]:  # quoted, or tagged `!`
                return text
            if text not in self._plain:
                self._plain[text] = resolve_plain(text)[1]
            return self._plain[text]
        tag = str(event.tag)
        if tag not in SCALAR_TAGS:
            raise ValueError(_unreadable(tag, None))
        try:
            return read_tagged(tag, text)
        except ValueError:
            raise ValueError(_unreadable(tag, text)) from None


class _Reader:
    """Data and marks from the parser's events, one at a time (no recursion)."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.marks: dict[Path, Mark] = {}
        self.issues: list[ConfigIssue] = []
        self.scalars = _Scalars()
        self.anchors: dict[str, _Anchor] = {}
        self.open: list[_Open] = []
        self.data: Any = None
        self.nodes = 0
        self.aliases = 0
        self.anchoring = 0  # open anchored containers: marks are also listed in order for them
        self.ordered: list[tuple[Path, Mark]] = []

    def read(self, loader: yaml.SafeLoader) -> Any:
        next_event: Callable[[], Any] = loader.get_event
        next_event()  # the stream's start
        if isinstance(next_event(), StreamEndEvent):
            return None  # no document at all
        while True:
            event = next_event()
            kind = type(event)
            if kind is DocumentEndEvent:
                break
            mark = Mark(event.start_mark.line + 1, event.start_mark.column + 1)
            if kind is ScalarEvent:
                self._scalar(event, mark)
            elif kind is AliasEvent:
                self._alias(event, mark)
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                self._start(event, mark)
            else:
                self._end()
        event = next_event()
        if not isinstance(event, StreamEndEvent):
            at = Mark(event.start_mark.line + 1, event.start_mark.column + 1)
            raise self.fatal(at, "invalid YAML: expected one document, found another")
        return self.data

    def fatal(self, mark: Mark, message: str) -> ConfigError:
        """An error that ends the reading (a limit passed, a second document)."""
        where = (self.open[-1].path if self.open else None) or ()
        field = dotted(where[:6]) + ("…" if len(where) > 6 else "")
        return ConfigError([ConfigIssue(self.file, mark.line, mark.column, field, message)])

    def _count(self, mark: Mark, nodes: int = 1) -> None:
        self.nodes += nodes
        if self.nodes > limits.MAX_NODES:
            raise self.fatal(mark, limits.TOO_MANY_NODES)

    def _report(self, path: Path | None, mark: Mark, message: str) -> None:
        self.issues.append(
            ConfigIssue(self.file, mark.line, mark.column, dotted(path or ()), message)
        )

    def _mark(self, path: Path, mark: Mark) -> None:
        self.marks[path] = mark
        if self.anchoring:
            self.ordered.append((path, mark))

    def _child_path(self) -> tuple[Path | None, bool]:
        """Where the next value goes, and whether it is a merge key's value."""
        if not self.open:
            return (), False
        top = self.open[-1]
        if isinstance(top.value, list):
            if top.merge_list or top.path is None:
                return top.path, False
            return (*top.path, len(top.value)), False
        if top.key is _Pending.MERGE:
            return top.path, True
        if not isinstance(top.key, str) or top.path is None:
            return None, False  # a key, or the value of a refused one
        return (*top.path, top.key), False

    def _scalar(self, event: ScalarEvent, mark: Mark) -> None:
        self._count(mark)
        top = self.open[-1] if self.open else None
        if (
            event.value == _MERGE_KEY
            and event.implicit[0]
            and event.tag in _NON_SPECIFIC
            and top
            and top.key is None
            and isinstance(top.value, dict)
        ):
            top.key = _Pending.MERGE
            return
        value = None
        try:
            value = self.scalars.value(event)
        except ValueError as exc:
            path, _ = self._child_path()
            self._report(path, mark, str(exc))
        if event.anchor is not None:
            self.anchors[event.anchor] = _Anchor(value, 1, [])
        self._add(value, mark)

    def _alias(self, event: AliasEvent, mark: Mark) -> None:
        anchor = self.anchors.get(str(event.anchor))
        if anchor is None:
            path, merging = self._child_path()
            self._report(path, mark, f"invalid YAML: no anchor &{event.anchor} before this alias")
            top = self.open[-1] if self.open else None
            if top is not None and merging:
                top.key = None  # nothing to merge, and no second error saying so
            elif top is None or not top.merge_list:
                self._add(None, mark)
            return
        self.aliases += 1
        if self.aliases > limits.MAX_ALIASES:
            raise self.fatal(mark, limits.TOO_MANY_ALIASES)
        self._count(mark, anchor.size)
        path, _ = self._child_path()
        if path is not None:
            for below, at in anchor.marks[anchor.first : anchor.last]:
                if (*path, *below[anchor.depth :]) not in self.marks:
                    self._mark((*path, *below[anchor.depth :]), at)
        self._add(anchor.value, mark)

    def _start(self, event: MappingStartEvent | SequenceStartEvent, mark: Mark) -> None:
        self._count(mark)
        if len(self.open) == limits.MAX_DEPTH:
            raise self.fatal(mark, limits.TOO_DEEP)
        path, merging = self._child_path()
        if event.tag not in _TAGS[type(event)]:
            self._report(path, mark, _unreadable(str(event.tag), None))
        is_map = isinstance(event, MappingStartEvent)
        if event.anchor is not None:
            self.anchoring += 1
        self.open.append(
            _Open(
                {} if is_map else [],
                path,
                mark,
                event.anchor,
                self.nodes - 1,
                len(self.ordered),
                merge_list=merging and not is_map,
            )
        )

    def _end(self) -> None:
        done = self.open.pop()
        value = done.value
        if done.merged and isinstance(value, dict):
            value = {**done.merged, **value}
        if done.anchor is not None:
            self.anchoring -= 1
            self.anchors[done.anchor] = _Anchor(
                value,
                self.nodes - done.nodes_before,
                self.ordered,
                done.marks_before,
                len(self.ordered),
                len(done.path) if done.path is not None else 0,
            )
            if not self.anchoring:
                self.ordered = []  # the anchors keep the list they point into
        self._add(value, done.mark)

    def _add(self, value: Any, mark: Mark) -> None:
        """Put a finished value where it belongs: the root, a list, a mapping's key or value."""
        if not self.open:
            self.data = value
            self.marks[()] = mark
            return
        top = self.open[-1]
        if isinstance(top.value, list):
            if not top.merge_list and top.path is not None:
                self._mark((*top.path, len(top.value)), mark)
            top.value.append(value)
        elif top.key is None:
            self._key(top, value, mark)
        elif top.key is _Pending.MERGE:
            self._merge(top, value, mark)
        else:
            if isinstance(top.key, str):
                top.value[top.key] = value
            top.key = None

    def _key(self, top: _Open, key: Any, mark: Mark) -> None:
        top.key = _Pending.SKIP
        if not isinstance(key, str | int | float | bool):
            self._report(top.path, mark, "keys must be plain")
            return
        key = str(key)
        path = (*top.path, key) if top.path is not None else None
        if key in top.value:
            first = self.marks.get(path) if path is not None else None
            where = f" (first defined on line {first.line})" if first else ""
            self._report(path, mark, f"duplicate key{where}")
            return
        if path is not None:
            self._mark(path, mark)
        top.key = key

    def _merge(self, top: _Open, value: Any, mark: Mark) -> None:
        """`<<: *base` or `<<: [*a, *b]`: keys of the earlier sources win, the mapping's own
        keys over all."""
        top.key = None
        for source in value if isinstance(value, list) else [value]:
            if not isinstance(source, dict):
                self._report(top.path, mark, "`<<` merges a mapping or a list of mappings")
                return
            top.merged = {**source, **top.merged}


def _unreadable(tag: str, text: str | None) -> str:
    short = tag.replace(_YAML, "!!")
    if text is None or tag not in SCALAR_TAGS:
        return f"unsupported tag {excerpt(short)}: only plain YAML values are read"
    return f"cannot read {excerpt(text)} as {short}"
