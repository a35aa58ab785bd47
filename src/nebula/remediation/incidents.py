"""Incidents: what alerts open, join, fold into, re-open and resolve, with a timeline a person
can read afterwards.

- A firing alert opens an incident, unless one of its `group_key` is not resolved yet: it then
  joins it, or, when it already fires there, folds into it (one timeline entry counts the
  repeats, so a flood of duplicates is one line).
- An incident of the same `group_key` resolved less than `reopen_window` seconds ago is
  re-opened rather than a new one opened.
- When every alert of an incident has resolved, it resolves by itself ("alerts cleared").
- An alert a silence matches is `silenced`: no incident opened; an open one's timeline says so.

Alerts of one process are taken one at a time (a lock), so two sources reporting the same
problem at once never open two incidents.
"""

from __future__ import annotations

import builtins
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast, get_args

from nebula.remediation.alerts import Alert
from nebula.remediation.silences import Silences
from nebula.store import Store
from nebula.store.incidents import AlertFacts, Event, IncidentStore
from nebula.store.records import IncidentInfo, IncidentStatus, TimelineEntry

__all__ = ["IncidentInfo", "Incidents", "Outcome", "Received", "TimelineEntry"]

Outcome = Literal[
    "opened",  # a new incident
    "joined",  # another alert of the incident's group
    "folded",  # a duplicate of an alert firing in the incident
    "reopened",  # the incident had resolved within the reopen window
    "cleared",  # an alert of the incident resolved; others still fire
    "resolved",  # its last alert resolved: the incident resolved by itself
    "silenced",  # a silence matched: nothing runs
    "ignored",  # a resolved alert no open incident holds
]
TimelineKind = Literal[
    "alert",
    "folded",
    "reopened",
    "silenced",
    "runbook",
    "step",
    "notification",
    "acknowledged",
    "resolved",
    "escalated",
    "note",
    "agent",
]
SEVERITIES = ("info", "warning", "critical")  # lowest first


@dataclass(frozen=True)
class Received:
    """What an alert did: `incident` is the one it opened or touched (None when none)."""

    incident: IncidentInfo | None
    outcome: Outcome


class Incidents:
    """The incidents of the store. `clock` gives the time (seconds since the epoch)."""

    def __init__(
        self,
        store: Store,
        reopen_window: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = IncidentStore(store)
        self._silences = Silences(store, clock)
        self.reopen_window = timedelta(seconds=reopen_window)  # nebula.yaml may change it
        self._clock = clock
        self._lock = threading.Lock()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def receive(self, alert: Alert) -> Received:
        """Take one alert from any source; see the module's docstring for what it does."""
        with self._lock:
            if alert.status == "resolved":
                return self._clear(alert, self._now())
            return self._fire(alert, self._now())

    def _fire(self, alert: Alert, now: datetime) -> Received:
        facts = _facts(alert)
        unresolved = self._store.unresolved(alert.group_key)
        silence = self._silences.matching(alert.labels)
        if silence is not None:
            if unresolved is not None:
                event = Event(
                    "silenced",
                    f"{_about(alert)} silenced by {silence.id} ({silence.comment or 'no comment'})"
                    " ×{count}",
                    detail={"silence": silence.id, "fingerprint": alert.fingerprint},
                    fold=f"silenced:{alert.fingerprint}",
                )
                self._store.note(unresolved.id, event, now)
            return Received(unresolved, "silenced")
        if unresolved is not None:
            duplicate = self._store.alert_status(unresolved.id, alert.fingerprint) == "firing"
            event = (
                Event(
                    "folded",
                    f"{_about(alert)} fired again ×{{count}}, folded into this incident",
                    detail={"fingerprint": alert.fingerprint},
                    fold=f"folded:{alert.fingerprint}",
                )
                if duplicate
                else _alert_event(alert)
            )
            severity = _higher(unresolved.severity, alert.severity)
            incident = self._store.fire(
                unresolved.id, facts, at=now, severity=severity, event=event
            )
            return Received(incident, "folded" if duplicate else "joined")
        recent = self._store.resolved_since(alert.group_key, now - self.reopen_window)
        if recent is not None:
            ago = int((now - (recent.resolved_at or now)).total_seconds())
            event = Event(
                "reopened",
                f"re-opened: {_about(alert)} fired {ago}s after the incident resolved",
                detail=_alert_detail(alert),
            )
            incident = self._store.fire(
                recent.id, facts, at=now, severity=alert.severity, event=event, reopen=True
            )
            return Received(incident, "reopened")
        incident = self._store.open(
            facts,
            group_key=alert.group_key,
            service_name=_service(alert),
            severity=alert.severity,
            title=alert.annotations.get("summary") or _about(alert),
            description=alert.annotations.get("description"),
            at=now,
            event=_alert_event(alert),
        )
        return Received(incident, "opened")

    def _clear(self, alert: Alert, now: datetime) -> Received:
        unresolved = self._store.unresolved(alert.group_key)
        if unresolved is None:
            return Received(None, "ignored")
        if self._store.alert_status(unresolved.id, alert.fingerprint) != "firing":
            return Received(unresolved, "ignored")
        event = Event("alert", f"{_about(alert)} resolved", detail=_alert_detail(alert))
        if self._store.clear(unresolved.id, _facts(alert), at=now, event=event):
            return Received(unresolved, "cleared")
        resolved = Event("resolved", "every alert cleared: resolved by itself")
        incident = self._store.set_status(
            unresolved.id, "resolved", at=now, event=resolved, resolution="alerts cleared"
        )
        return Received(incident, "resolved")

    def acknowledge(self, incident_id: str, actor: str) -> IncidentInfo:
        """A person takes the incident on; `StateError` when it is acknowledged or resolved
        already, `NotFoundError` when there is no such incident."""
        event = Event("acknowledged", f"acknowledged by {actor}", actor=actor)
        with self._lock:
            return self._store.set_status(incident_id, "acknowledged", at=self._now(), event=event)

    def resolve(self, incident_id: str, actor: str, resolution: str = "") -> IncidentInfo:
        """A person resolves the incident; `StateError` when it is resolved already."""
        said = f": {resolution}" if resolution else ""
        event = Event("resolved", f"resolved by {actor}{said}", actor=actor)
        with self._lock:
            return self._store.set_status(
                incident_id,
                "resolved",
                at=self._now(),
                event=event,
                resolution=resolution or f"resolved by {actor}",
            )

    def note(
        self,
        incident_id: str,
        kind: str,
        message: str,
        detail: Mapping[str, Any] | None = None,
        actor: str | None = None,
    ) -> None:
        """Add an entry to the incident's timeline (a runbook step, a notification, ...);
        `detail` is masked."""
        if kind not in get_args(TimelineKind):
            raise ValueError(
                f"timeline kind {kind!r}: use one of {', '.join(get_args(TimelineKind))}"
            )
        self._store.note(incident_id, Event(kind, message, actor, detail), self._now())

    def set_severity(self, incident_id: str, severity: str, actor: str) -> None:
        _check_severity(severity)
        event = Event("note", f"severity set to {severity} by {actor}", actor=actor)
        self._store.set_fields(incident_id, at=self._now(), event=event, severity=severity)

    def set_runbook(self, incident_id: str, runbook: str) -> None:
        """Record the runbook answering the incident (the seed's `runbook_id`)."""
        event = Event("runbook", f"runbook {runbook} answers this incident")
        self._store.set_fields(incident_id, at=self._now(), event=event, runbook_id=runbook)

    def escalate(
        self, incident_id: str, message: str, detail: Mapping[str, Any] | None = None
    ) -> bool:
        """Mark the incident escalated with a timeline entry, once: False when it already was
        (the caller then notifies nobody again)."""
        event = Event("escalated", message, detail=detail)
        return self._store.escalate(incident_id, event, self._now())

    def list(self, status: str | None = None, limit: int = 100) -> builtins.list[IncidentInfo]:
        """The newest incidents first (without timelines); of one status if given."""
        return self._store.incidents(_status(status) if status is not None else None, limit)

    def get(self, incident_id: str) -> IncidentInfo | None:
        """One incident with its timeline, oldest entry first."""
        return self._store.get(incident_id)


def _facts(alert: Alert) -> AlertFacts:
    return AlertFacts(alert.fingerprint, alert.name, alert.source, alert.labels, alert.annotations)


def _about(alert: Alert) -> str:
    """`unhealthy on blog/web`: the alert and what it is about."""
    where = "/".join(alert.labels[k] for k in ("installation", "service") if k in alert.labels)
    return f"{alert.name} on {where}" if where else alert.name


def _service(alert: Alert) -> str:
    labels = alert.labels
    return labels.get("service") or labels.get("installation") or alert.name


def _alert_detail(alert: Alert) -> dict[str, Any]:
    return {
        "name": alert.name,
        "fingerprint": alert.fingerprint,
        "source": alert.source,
        "severity": alert.severity,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
    }


def _alert_event(alert: Alert) -> Event:
    return Event("alert", f"{_about(alert)} firing ({alert.source})", detail=_alert_detail(alert))


def _higher(first: str, second: str) -> str:
    rank = {name: i for i, name in enumerate(SEVERITIES)}
    return max(first, second, key=lambda s: rank.get(s, rank["warning"]))


def _check_severity(severity: str) -> None:
    if severity not in SEVERITIES:
        raise ValueError(f"severity {severity!r}: use one of {', '.join(SEVERITIES)}")


def _status(status: str) -> IncidentStatus:
    if status in get_args(IncidentStatus):
        return cast(IncidentStatus, status)
    raise ValueError(
        f"incident status {status!r}: use one of {', '.join(get_args(IncidentStatus))}"
    )
