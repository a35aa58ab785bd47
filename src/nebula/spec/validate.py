"""Validate parsed YAML against a pydantic model, turning errors into file:line:column issues.

Pydantic reports a location such as `("compose", "services", "web", "function-before[...]", "x")`;
union members and validators add steps that are not keys of the file. We walk the data to keep
only real keys, point at the mark of the deepest one, and for unknown keys suggest the nearest
valid field ("did you mean 'image'?") when it is close and takes a value of the same shape
(mapping, list or scalar) as the one given. A key the model lists in `unsupported` (a compose key
Nebula does not do) gets its reason instead. A validator of a whole list or mapping may name the part
at fault: a `PydanticCustomError` whose context holds `at` (its path below the value) and
`first` (where it was first seen, whose line the message gets).
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from nebula.errors import ConfigError, ConfigIssue
from nebula.spec.yamlfile import Path, YamlDocument

M = TypeVar("M", bound=BaseModel)


def validate_document(doc: YamlDocument, model: type[M]) -> M:
    """The document's data as `model`, or `ConfigError` listing every problem with its line."""
    data = {} if doc.data is None else doc.data
    if not isinstance(data, dict):
        raise ConfigError([doc.issue((), f"expected a mapping of fields, got {_kind(data)}")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(issues_from(exc, doc, model)) from None


def issues_from(
    exc: ValidationError, doc: YamlDocument, model: type[BaseModel]
) -> list[ConfigIssue]:
    found: dict[Path, list[tuple[str, str]]] = {}
    for error in exc.errors(include_url=False):
        keep_last = error["type"] in ("missing", "extra_forbidden")
        context = error.get("ctx", {})
        path = _real_path(doc.data, error["loc"], keep_last)
        message = _message(error, path, model, doc.data)
        if "first" in context:
            message += f" (first on line {doc.mark_for((*path, *context['first'])).line})"
        path = (*path, *context.get("at", ()))
        found.setdefault(path, []).append((error["type"], message))
    # A union tries each member: keep the member that got deepest, drop "wrong type" at its parent.
    parents = {q[:end] for q in found for end in range(len(q))}
    deepest = [p for p in found if p not in parents]
    issues = []
    for path in deepest:
        messages = list(dict.fromkeys(message for _, message in found[path]))
        types_only = [m for m in messages if m.startswith("expected ")]
        if len(types_only) > 1:
            others = [m for m in messages if not m.startswith("expected ")]
            kinds = [m.removeprefix("expected ") for m in types_only]
            messages = [*others, "expected " + " or ".join(kinds)]
        issues.append(doc.issue(path, "; ".join(messages)))
    return issues


def _real_path(data: Any, loc: tuple[int | str, ...], keep_last: bool) -> Path:
    path: list[str | int] = []
    node = data
    for step in loc:
        if _has_step(node, step):
            node = node[step]
        elif keep_last and isinstance(node, dict) and isinstance(step, str) and step == loc[-1]:
            pass  # a missing or unknown key: keep it so the message can name it
        else:
            continue  # a union member or validator name, not a key of the file
        path.append(step)
    return tuple(path)


def _has_step(node: Any, step: int | str) -> bool:
    if isinstance(node, dict):
        return step in node
    return isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node)


def _message(error: Any, path: Path, model: type[BaseModel], data: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return _unknown_key(str(path[-1]), _models_at(model, path[:-1]), _value_at(data, path))
    if kind == "missing":
        return "required field is missing"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "expected a mapping"
    message = str(error["msg"])
    if message.startswith("Input should be a valid "):
        return "expected " + message.removeprefix("Input should be a valid ").split(",")[0]
    if message.startswith("Input should be "):
        return "expected " + message.removeprefix("Input should be ")
    return message.removeprefix("Value error, ")


def _unknown_key(key: str, models: list[type[BaseModel]], value: Any) -> str:
    for found in models:
        reason = getattr(found, "unsupported", {}).get(key)
        if reason is not None:
            return f"{key!r} is a compose key Nebula does not support yet: {reason}"
    fields = {name: f.annotation for m in models for name, f in m.model_fields.items()}
    valid = sorted(fields)
    close = [
        name
        for name in difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
        if _takes(fields[name], value)
    ]
    if close:
        return f"unknown field; did you mean {close[0]!r}?"
    return "unknown field; valid fields: " + ", ".join(valid) if valid else "unknown field"


def _takes(annotation: Any, value: Any) -> bool:
    """Whether a field of `annotation` takes a value of the shape of `value`."""
    if value is None:
        return True
    for option in _expand([annotation]):
        origin = typing.get_origin(option)
        if isinstance(value, dict) and (origin is dict or _is_model(option)):
            return True
        if isinstance(value, list) and origin is list:
            return True
        scalar = origin not in (dict, list) and not _is_model(option)
        if scalar and not isinstance(value, dict | list):
            return True
    return False


def _value_at(data: Any, path: Path) -> Any:
    for step in path:
        if not _has_step(data, step):
            return None
        data = data[step]
    return data


def _models_at(model: Any, path: Path) -> list[type[BaseModel]]:
    """The models found by following `path` from `model` (several through unions)."""
    candidates: list[Any] = [model]
    for step in path:
        following: list[Any] = []
        for candidate in _expand(candidates):
            if _is_model(candidate) and isinstance(step, str) and step in candidate.model_fields:
                following.append(candidate.model_fields[step].annotation)
            elif typing.get_origin(candidate) is dict:
                following.append(typing.get_args(candidate)[1])
            elif typing.get_origin(candidate) is list and isinstance(step, int):
                following.append(typing.get_args(candidate)[0])
        candidates = following
    return list(dict.fromkeys(c for c in _expand(candidates) if _is_model(c)))


def _expand(annotations: list[Any]) -> list[Any]:
    out = []
    for annotation in annotations:
        origin = typing.get_origin(annotation)
        if origin is typing.Union or origin is types.UnionType:
            out.extend(_expand(list(typing.get_args(annotation))))
        elif origin is typing.Annotated:
            out.extend(_expand([typing.get_args(annotation)[0]]))
        else:
            out.append(annotation)
    return out


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    return "a string" if isinstance(value, str) else type(value).__name__
