"""Incidents, their timelines and alerts, and silences (`incidents`, `incident_events`,
`incident_alerts`, `silences`).

Each method is one transaction that makes one change whole (an incident opened with its first
alert and timeline entry, say); what the changes mean is decided by `nebula.remediation`.
Timeline details and alert annotations go through `mask.mask_detail`, like audit details.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from nebula.errors import NotFoundError, StateError
from nebula.store.mask import mask_detail
from nebula.store.models import Incident, IncidentAlert, IncidentEvent, SilenceRow, new_id
from nebula.store.records import (
    AlertStatus,
    IncidentInfo,
    IncidentStatus,
    Matcher,
    SilenceInfo,
    TimelineEntry,
)
from nebula.store.store import Store


@dataclass(frozen=True)
class AlertFacts:
    """What the store keeps of an alert."""

    fingerprint: str
    name: str
    source: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]


@dataclass(frozen=True)
class Event:
    """A timeline entry to write. Entries with the same `fold` key (not None) that follow each
    other are kept as one, counting how many times it happened (`detail.count`, and `{count}`
    in the message)."""

    kind: str
    message: str
    actor: str | None = None
    detail: Mapping[str, Any] | None = None
    fold: str | None = None


class IncidentStore:
    """Queries over the incident and silence tables, on the shared `Store`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    # -- reading ---------------------------------------------------------------------------

    def get(self, incident_id: str) -> IncidentInfo | None:
        """One incident with its timeline, oldest entry first."""
        with self._store.transaction() as session:
            row = session.get(Incident, incident_id)
            if row is None:
                return None
            events = session.scalars(
                select(IncidentEvent)
                .where(IncidentEvent.incident_id == incident_id)
                .order_by(IncidentEvent.id)
            )
            return _info(row, tuple(_entry(e) for e in events))

    def incidents(
        self, status: IncidentStatus | None = None, limit: int = 100
    ) -> list[IncidentInfo]:
        """The newest incidents first, without timelines."""
        query = select(Incident).order_by(Incident.created_at.desc(), Incident.id).limit(limit)
        if status is not None:
            query = query.where(Incident.status == status)
        with self._store.transaction() as session:
            return [_info(row) for row in session.scalars(query)]

    def unresolved(self, group_key: str) -> IncidentInfo | None:
        """The incident of `group_key` not resolved yet, if any."""
        with self._store.transaction() as session:
            row = session.scalars(
                select(Incident)
                .where(Incident.group_key == group_key, Incident.status != "resolved")
                .order_by(Incident.created_at.desc())
                .limit(1)
            ).first()
            return _info(row) if row is not None else None

    def resolved_since(self, group_key: str, since: datetime) -> IncidentInfo | None:
        """The incident of `group_key` resolved latest, if at or after `since`."""
        with self._store.transaction() as session:
            row = session.scalars(
                select(Incident)
                .where(Incident.group_key == group_key, Incident.resolved_at >= since)
                .order_by(Incident.resolved_at.desc())
                .limit(1)
            ).first()
            return _info(row) if row is not None else None

    def alert_status(self, incident_id: str, fingerprint: str) -> AlertStatus | None:
        with self._store.transaction() as session:
            row = session.get(IncidentAlert, (incident_id, fingerprint))
            return row.status if row is not None else None

    # -- changing --------------------------------------------------------------------------

    def open(
        self,
        alert: AlertFacts,
        *,
        group_key: str,
        service_name: str,
        severity: str,
        title: str,
        description: str | None,
        at: datetime,
        event: Event,
    ) -> IncidentInfo:
        """A new incident opened by `alert`, with `event` first on its timeline."""
        with self._store.transaction() as session:
            row = Incident(
                id=new_id(),
                service_name=service_name,
                severity=severity,
                status="open",
                title=title,
                description=description,
                group_key=group_key,
                fingerprint=alert.fingerprint,
                labels=dict(alert.labels),
                reopened=0,
                escalated=False,
                created_at=at,
                last_alert_at=at,
            )
            session.add(row)
            session.flush()
            _set_alert(session, row.id, alert, "firing", at)
            _add_event(session, row.id, event, at)
            return _info(row)

    def fire(
        self,
        incident_id: str,
        alert: AlertFacts,
        *,
        at: datetime,
        severity: str,
        event: Event,
        reopen: bool = False,
    ) -> IncidentInfo:
        """`alert` fires (again) in the incident: recorded, the incident's severity set, and
        `event` added. `reopen`: the incident is resolved and opens again."""
        with self._store.transaction() as session:
            row = _locked(session, incident_id)
            _set_alert(session, incident_id, alert, "firing", at)
            row.severity, row.last_alert_at = severity, at
            if reopen:
                row.status, row.reopened = "open", row.reopened + 1
                row.resolved_at = row.resolution = None
                row.acknowledged_at = row.acknowledged_by = None
            _add_event(session, incident_id, event, at)
            return _info(row)

    def clear(self, incident_id: str, alert: AlertFacts, *, at: datetime, event: Event) -> int:
        """`alert` of the incident resolved; how many of its alerts still fire."""
        with self._store.transaction() as session:
            _locked(session, incident_id)
            _set_alert(session, incident_id, alert, "resolved", at)
            _add_event(session, incident_id, event, at)
            firing = session.scalar(
                select(func.count())
                .select_from(IncidentAlert)
                .where(IncidentAlert.incident_id == incident_id, IncidentAlert.status == "firing")
            )
            return int(firing or 0)

    def set_status(
        self,
        incident_id: str,
        status: Literal["acknowledged", "resolved"],
        *,
        at: datetime,
        event: Event,
        resolution: str | None = None,
    ) -> IncidentInfo:
        """Acknowledge or resolve the incident; `StateError` saying why when it cannot be
        (it is resolved already, or acknowledged already)."""
        with self._store.transaction() as session:
            row = _locked(session, incident_id)
            if row.status == "resolved":
                raise StateError(
                    f"incident {incident_id} is already resolved "
                    f"({row.resolution or 'no resolution given'}); it re-opens by itself when "
                    "its alerts fire again"
                )
            if status == "acknowledged" and row.status == "acknowledged":
                raise StateError(
                    f"incident {incident_id} was already acknowledged by {row.acknowledged_by}"
                )
            row.status = status
            if status == "acknowledged":
                row.acknowledged_at, row.acknowledged_by = at, event.actor
            else:
                row.resolved_at, row.resolution = at, resolution
            _add_event(session, incident_id, event, at)
            return _info(row)

    def set_fields(
        self,
        incident_id: str,
        *,
        at: datetime,
        event: Event,
        severity: str | None = None,
        runbook_id: str | None = None,
    ) -> None:
        """Change the incident's severity or runbook, with `event`."""
        values = {"severity": severity, "runbook_id": runbook_id}
        with self._store.transaction() as session:
            _locked(session, incident_id)
            changed = {k: v for k, v in values.items() if v is not None}
            if changed:
                session.execute(update(Incident).where(Incident.id == incident_id).values(changed))
            _add_event(session, incident_id, event, at)

    def escalate(self, incident_id: str, event: Event, at: datetime) -> bool:
        """Mark the incident escalated, with `event`, unless it was already: False then (an
        incident escalates once)."""
        with self._store.transaction() as session:
            row = _locked(session, incident_id)
            if row.escalated:
                return False
            row.escalated = True
            _add_event(session, incident_id, event, at)
            return True

    def note(self, incident_id: str, event: Event, at: datetime) -> None:
        """Add `event` to the incident's timeline."""
        with self._store.transaction() as session:
            _locked(session, incident_id)
            _add_event(session, incident_id, event, at)

    # -- silences --------------------------------------------------------------------------

    def add_silence(
        self,
        matchers: tuple[Matcher, ...],
        *,
        starts_at: datetime,
        ends_at: datetime,
        comment: str,
        created_by: str,
    ) -> SilenceInfo:
        with self._store.transaction() as session:
            row = SilenceRow(
                id=new_id(),
                matchers=[list(m) for m in matchers],
                starts_at=starts_at,
                ends_at=ends_at,
                comment=comment,
                created_by=created_by,
            )
            session.add(row)
            return _silence(row)

    def end_silence(self, silence_id: str, at: datetime, actor: str) -> SilenceInfo:
        """End a silence at `at` (`actor` removed it); `NotFoundError` or `StateError` when
        it is not in force."""
        with self._store.transaction() as session:
            row = session.get(SilenceRow, silence_id, with_for_update=True)
            if row is None:
                raise NotFoundError(f"no silence {silence_id}; `nebula silence list` shows them")
            if row.ends_at <= at:
                raise StateError(f"silence {silence_id} already ended at {row.ends_at:%F %T} UTC")
            row.ends_at, row.ended_by = at, actor
            return _silence(row)

    def silences(self, at: datetime) -> list[SilenceInfo]:
        """The silences in force at `at`, the ones ending first first."""
        with self._store.transaction() as session:
            rows = session.scalars(
                select(SilenceRow)
                .where(SilenceRow.starts_at <= at, SilenceRow.ends_at > at)
                .order_by(SilenceRow.ends_at, SilenceRow.id)
            )
            return [_silence(row) for row in rows]


def _locked(session: Session, incident_id: str) -> Incident:
    row = session.get(Incident, incident_id, with_for_update=True)
    if row is None:
        raise NotFoundError(f"no incident {incident_id}; `nebula incidents list` shows them")
    return row


def _set_alert(
    session: Session, incident_id: str, alert: AlertFacts, status: AlertStatus, at: datetime
) -> None:
    row = session.get(IncidentAlert, (incident_id, alert.fingerprint))
    annotations = mask_detail(dict(alert.annotations))
    if row is None:
        session.add(
            IncidentAlert(
                incident_id=incident_id,
                fingerprint=alert.fingerprint,
                name=alert.name,
                source=alert.source,
                labels=dict(alert.labels),
                annotations=annotations,
                status=status,
                received=1,
                first_at=at,
                last_at=at,
            )
        )
        return
    row.status, row.annotations, row.last_at = status, annotations, at
    row.received += 1


def _add_event(session: Session, incident_id: str, event: Event, at: datetime) -> None:
    detail = mask_detail(dict(event.detail or {}))
    if event.fold is not None:
        last = session.scalars(
            select(IncidentEvent)
            .where(IncidentEvent.incident_id == incident_id)
            .order_by(IncidentEvent.id.desc())
            .limit(1)
        ).first()
        if last is not None and last.kind == event.kind and last.detail.get("fold") == event.fold:
            count = int(last.detail.get("count", 1)) + 1
            last.detail = {**detail, "fold": event.fold, "count": count, "last_at": at.isoformat()}
            last.message = event.message.replace("{count}", str(count))
            return
        detail = {**detail, "fold": event.fold, "count": 1, "last_at": at.isoformat()}
    message = event.message.replace("{count}", str(detail.get("count", 1)))
    session.add(
        IncidentEvent(
            incident_id=incident_id,
            at=at,
            kind=event.kind,
            message=message,
            actor=event.actor,
            detail=detail,
        )
    )


def _info(row: Incident, timeline: tuple[TimelineEntry, ...] = ()) -> IncidentInfo:
    return IncidentInfo(
        id=row.id,
        service_name=row.service_name,
        severity=row.severity,
        status=row.status,
        title=row.title,
        description=row.description,
        group_key=row.group_key,
        fingerprint=row.fingerprint,
        labels=dict(row.labels),
        runbook_id=row.runbook_id,
        resolution=row.resolution,
        created_at=row.created_at,
        resolved_at=row.resolved_at,
        acknowledged_at=row.acknowledged_at,
        acknowledged_by=row.acknowledged_by,
        reopened=row.reopened,
        last_alert_at=row.last_alert_at,
        escalated=row.escalated,
        timeline=timeline,
    )


def _entry(row: IncidentEvent) -> TimelineEntry:
    return TimelineEntry(row.id, row.at, row.kind, row.message, row.actor, dict(row.detail))


def _silence(row: SilenceRow) -> SilenceInfo:
    matchers = tuple((m[0], m[1], m[2]) for m in row.matchers)
    return SilenceInfo(
        row.id, matchers, row.starts_at, row.ends_at, row.comment, row.created_by, row.ended_by
    )
