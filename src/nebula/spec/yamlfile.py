"""YAML reading that remembers where every value came from.

PyYAML's node tree carries a mark (line, column) for every node; we build plain Python data from it
and keep a map from each value's path (`("compose", "services", "web", "image")`) to the mark of its
key, so any later validation error can point at the exact line. Duplicate keys are errors, as in
octodns and compose-go: silently keeping the last one hides typos.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from nebula.errors import ConfigError, ConfigIssue
from nebula.spec.yaml_plain import LOADER

Path = tuple[str | int, ...]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"


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
    """`("services", "web", "ports", 0)` → `services.web.ports[0]`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.marks: dict[Path, Mark] = {}
        self.issues: list[ConfigIssue] = []
        self.constructor = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, path: Path) -> Any:
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            out = []
            for index, item in enumerate(node.value):
                self.marks[(*path, index)] = _mark(item)
                out.append(self.build(item, (*path, index)))
            return out
        if node.tag == _STR_TAG and isinstance(node, yaml.ScalarNode):
            return node.value  # most values: what the constructor would return, sooner
        return self.constructor.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                sources = (
                    value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                )
                for source in sources:
                    value = self.build(source, path)
                    if isinstance(value, dict):
                        merged = {**value, **merged}
                continue
            key = (
                key_node.value
                if key_node.tag == _STR_TAG and isinstance(key_node, yaml.ScalarNode)
                else self.constructor.construct_object(key_node, deep=True)
            )
            if not isinstance(key, str | int | float | bool):
                mark = _mark(key_node)
                self.issues.append(
                    ConfigIssue(
                        self.file, mark.line, mark.column, dotted(path), "keys must be plain"
                    )
                )
                continue
            if key in out:
                mark = _mark(key_node)
                first = self.marks[(*path, str(key))]
                self.issues.append(
                    ConfigIssue(
                        self.file,
                        mark.line,
                        mark.column,
                        dotted((*path, str(key))),
                        f"duplicate key (first defined on line {first.line})",
                    )
                )
                continue
            self.marks[(*path, str(key))] = _mark(key_node)
            out[str(key) if not isinstance(key, str) else key] = self.build(
                value_node, (*path, str(key))
            )
        return {**merged, **out} if merged else out


def parse_yaml(text: str, file: str) -> YamlDocument:
    """Parse one YAML document, raising `ConfigError` with file:line for any syntax problem."""
    loader = LOADER(text)
    try:
        node = loader.get_single_node()
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
    builder = _Builder(file)
    data = builder.build(node, ()) if node is not None else None
    if builder.issues:
        raise ConfigError(builder.issues)
    if node is not None:
        builder.marks[()] = _mark(node)
    return YamlDocument(file=file, data=data, marks=builder.marks)
