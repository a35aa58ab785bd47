"""One alert model for every source: Docker events, health checks, syncs, certificates,
Prometheus Alertmanager, and a person firing one by hand.

An alert is known by its `fingerprint` (its name and labels, without the severity: the same
problem getting worse is the same alert), and joins the incident of its `group_key`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast, get_args

AlertState = Literal["firing", "resolved"]

_ALERTMANAGER_VERSION = "4"


class Labels(Mapping[str, str]):
    """A read-only, hashable mapping of strings, kept sorted by key."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items = dict(sorted((items or {}).items()))

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(self._items.items()))

    def __repr__(self) -> str:
        return repr(self._items)


@dataclass(frozen=True)
class Alert:
    """One alert, as any source reports it; `labels` name what it is about (installation,
    service, container, node, severity, ...)."""

    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=Labels)
    status: AlertState = "firing"
    source: str = "manual"
    starts_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("an alert needs a name")
        if self.status not in get_args(AlertState):
            raise ValueError(f"alert status {self.status!r}: use firing or resolved")
        if self.starts_at.tzinfo is None:
            raise ValueError(f"starts_at {self.starts_at!r} has no time zone")
        for what in ("labels", "annotations"):
            mapping = getattr(self, what)
            bad = next((k for k, v in mapping.items() if not isinstance(v, str)), None)
            if bad is not None:
                raise ValueError(f"{what}.{bad}: {mapping[bad]!r} is not a string")
            object.__setattr__(self, what, Labels(mapping))

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "warning")

    @property
    def fingerprint(self) -> str:
        """A stable hash of the name and labels, without the severity."""
        labels = {k: v for k, v in self.labels.items() if k != "severity"}
        text = json.dumps([self.name, labels], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def group_key(self) -> str:
        """What groups alerts into one incident: their installation (every service of an
        installation failing at once is one incident), else their service, else their name."""
        for label in ("installation", "service"):
            if label in self.labels:
                return f"{label}={self.labels[label]}"
        return f"alert={self.name}"


def from_alertmanager(payload: Any) -> list[Alert]:
    """The alerts of an Alertmanager `webhook_config` notification (payload version 4);
    `ValueError` naming the field that is missing or wrong. An alert's name is its
    `alertname` label; its fingerprint is Nebula's own (Alertmanager's counts the severity)."""
    body = _mapping(payload, "the payload")
    version = body.get("version")
    if version != _ALERTMANAGER_VERSION:
        raise ValueError(
            f"version: {version!r}; Nebula reads Alertmanager's webhook payload version "
            f"{_ALERTMANAGER_VERSION} (Alertmanager 0.x's webhook_config)"
        )
    alerts = body.get("alerts")
    if not isinstance(alerts, list):
        raise ValueError("alerts: missing or not a list of alerts")
    return [_alertmanager_alert(item, f"alerts[{i}]") for i, item in enumerate(alerts)]


def _alertmanager_alert(item: Any, where: str) -> Alert:
    alert = _mapping(item, where)
    status = alert.get("status")
    if status not in get_args(AlertState):
        raise ValueError(f"{where}.status: {status!r}; Alertmanager sends firing or resolved")
    labels = _strings(alert.get("labels"), f"{where}.labels")
    name = labels.get("alertname")
    if not name:
        raise ValueError(f"{where}.labels.alertname: missing; every Alertmanager alert has one")
    annotations = _strings(alert.get("annotations", {}), f"{where}.annotations")
    starts = alert.get("startsAt")
    try:
        starts_at = datetime.fromisoformat(str(starts))
    except ValueError:
        raise ValueError(f"{where}.startsAt: {starts!r} is not an RFC 3339 time") from None
    if starts_at.tzinfo is None:
        raise ValueError(f"{where}.startsAt: {starts!r} has no time zone")
    state = cast(AlertState, status)
    return Alert(name, labels, annotations, state, "alertmanager", starts_at.astimezone(UTC))


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: not a JSON object")
    return value


def _strings(value: Any, where: str) -> dict[str, str]:
    mapping = _mapping(value, where)
    for key, item in mapping.items():
        if not isinstance(item, str):
            raise ValueError(f"{where}.{key}: {item!r} is not a string")
    return dict(mapping)
