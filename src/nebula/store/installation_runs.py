"""Queries of the marketplace's tables: health check results, hook runs, uninstall hooks; and
the version an installation last deployed successfully (from its deployments)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import delete, func, select, tuple_, update

from nebula.store.models import (
    Deployment,
    HealthResult,
    HookRunRow,
    Installation,
    UninstallHooks,
    utcnow,
)
from nebula.store.store import Store, on_node

HookKind = Literal["post_install", "pre_upgrade", "post_upgrade", "pre_uninstall"]


@dataclass(frozen=True)
class HealthRecord:
    """The latest result of one check; `since` is when its status last changed."""

    installation: str
    check: str
    kind: str  # http | tcp | exec
    target: str
    status: str  # healthy | unhealthy
    detail: str
    latency_ms: float
    consecutive_failures: int
    checked_at: datetime
    since: datetime

    def to_dict(self) -> dict[str, Any]:
        """As the API and `nebula status --output json` show it."""
        return {
            "check": self.check,
            "kind": self.kind,
            "target": self.target,
            "status": self.status,
            "detail": self.detail,
            "latency_ms": round(self.latency_ms, 1),
            "consecutive_failures": self.consecutive_failures,
            "checked_at": self.checked_at,
            "since": self.since,
        }


@dataclass(frozen=True)
class HookRunRecord:
    id: str
    installation: str
    hook: str
    status: str  # succeeded | failed | timed_out
    exit_code: int | None
    output: str
    version: str | None
    started_at: datetime
    finished_at: datetime


def record_health(
    store: Store,
    installation: str,
    check: str,
    *,
    kind: str,
    target: str,
    ok: bool,
    detail: str,
    latency_ms: float,
) -> tuple[HealthRecord, str | None]:
    """Store a check's newest result; returns it and the status it had before (None: first)."""
    now = utcnow()
    status = "healthy" if ok else "unhealthy"
    with store.transaction() as session:
        row = session.get(HealthResult, (installation, check))
        previous = row.status if row is not None else None
        if row is None:
            row = HealthResult(installation=installation, check_name=check, since=now)
            session.add(row)
        elif row.status != status:
            row.since = now
        failures = 0 if ok else (row.consecutive_failures or 0) + 1
        row.kind, row.target, row.status, row.detail = kind, target[:500], status, detail
        row.latency_ms, row.consecutive_failures, row.checked_at = latency_ms, failures, now
        session.flush()
        return _health(row), previous


def health(store: Store, installation: str | None = None) -> list[HealthRecord]:
    """The latest result of every check (of one installation if named), by installation."""
    query = select(HealthResult).order_by(HealthResult.installation, HealthResult.check_name)
    if installation is not None:
        query = query.where(HealthResult.installation == installation)
    with store.transaction() as session:
        return [_health(row) for row in session.scalars(query)]


def forget_health(store: Store, keep: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Delete the results of checks not in `keep` (installation, check); returns those."""
    wanted = set(keep)
    with store.transaction() as session:
        stored = session.execute(select(HealthResult.installation, HealthResult.check_name))
        gone = [(i, c) for i, c in stored if (i, c) not in wanted]
        if gone:
            session.execute(
                delete(HealthResult).where(
                    tuple_(HealthResult.installation, HealthResult.check_name).in_(gone)
                )
            )
        return gone


def record_hook_run(
    store: Store,
    installation: str,
    hook: HookKind,
    *,
    status: str,
    exit_code: int | None,
    output: str,
    version: str | None,
    started_at: datetime,
) -> HookRunRecord:
    with store.transaction() as session:
        row = HookRunRow(
            installation=installation,
            hook=hook,
            status=status,
            exit_code=exit_code,
            output=output,
            version=version,
            started_at=started_at,
            finished_at=utcnow(),
        )
        session.add(row)
        session.flush()
        return _hook_run(row)


def hook_runs(
    store: Store, installation: str | None = None, limit: int = 50
) -> list[HookRunRecord]:
    """The latest hook runs, newest first; of one installation if named."""
    query = select(HookRunRow).order_by(HookRunRow.started_at.desc()).limit(limit)
    if installation is not None:
        query = query.where(HookRunRow.installation == installation)
    with store.transaction() as session:
        return [_hook_run(row) for row in session.scalars(query)]


def last_hook_runs(store: Store) -> list[HookRunRecord]:
    """The latest run of each hook of each installation."""
    latest = (
        select(
            HookRunRow.installation, HookRunRow.hook, func.max(HookRunRow.started_at).label("at")
        )
        .group_by(HookRunRow.installation, HookRunRow.hook)
        .subquery()
    )
    query = (
        select(HookRunRow)
        .join(
            latest,
            (HookRunRow.installation == latest.c.installation)
            & (HookRunRow.hook == latest.c.hook)
            & (HookRunRow.started_at == latest.c.at),
        )
        .order_by(HookRunRow.installation, HookRunRow.started_at)
    )
    with store.transaction() as session:
        return [_hook_run(row) for row in session.scalars(query)]


def deployed_version(
    store: Store, installation: str, node: str | None = None
) -> tuple[bool, str | None]:
    """(whether the installation has ever been deployed successfully, the version it was).

    Only deployments of the current installation row count, and only when it is `node`'s (if
    given): a re-install after a removal, or on the node it moves to, starts afresh."""
    query = (
        select(Deployment.version)
        .join(Installation, Deployment.installation_id == Installation.id)
        .where(Installation.name == installation, Deployment.status == "live")
        .where(on_node(node))
        .order_by(Deployment.created_at.desc())
        .limit(1)
    )
    with store.transaction() as session:
        rows = session.execute(query).all()
    return (True, rows[0][0]) if rows else (False, None)


def mark_failed(store: Store, installation: str, reason: str, node: str | None = None) -> None:
    """Set the installation's status to error with `reason` (e.g. a failed pre_uninstall);
    only if it is `node`'s, when given."""
    with store.transaction() as session:
        session.execute(
            update(Installation)
            .where(Installation.name == installation)
            .where(on_node(node))
            .values(status="error", status_reason=reason, updated_at=utcnow())
        )


def set_uninstall_hooks(
    store: Store, installation: str, lines: tuple[str, ...], env: dict[str, str]
) -> None:
    """Remember the pre_uninstall hooks (and their non-secret environment); none: forget."""
    with store.transaction() as session:
        row = session.get(UninstallHooks, installation)
        if not lines:
            if row is not None:
                session.delete(row)
            return
        if row is None:
            session.add(UninstallHooks(installation=installation, lines=list(lines), env=env))
        elif row.lines != list(lines) or row.env != env:
            row.lines, row.env, row.updated_at = list(lines), env, utcnow()


def uninstall_hooks(store: Store, installation: str) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The remembered pre_uninstall hooks and environment; empty when there are none."""
    with store.transaction() as session:
        row = session.get(UninstallHooks, installation)
        return (tuple(row.lines), dict(row.env)) if row is not None else ((), {})


def forget_installation(store: Store, installation: str) -> None:
    """Drop what this module keeps of a removed installation (its hook runs stay as history)."""
    with store.transaction() as session:
        session.execute(delete(UninstallHooks).where(UninstallHooks.installation == installation))
        session.execute(delete(HealthResult).where(HealthResult.installation == installation))


def _health(row: HealthResult) -> HealthRecord:
    return HealthRecord(
        row.installation,
        row.check_name,
        row.kind,
        row.target,
        row.status,
        row.detail,
        row.latency_ms,
        row.consecutive_failures,
        row.checked_at,
        row.since,
    )


def _hook_run(row: HookRunRow) -> HookRunRecord:
    return HookRunRecord(
        row.id,
        row.installation,
        row.hook,
        row.status,
        row.exit_code,
        row.output,
        row.version,
        row.started_at,
        row.finished_at,
    )
