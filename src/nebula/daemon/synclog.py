"""The daemon's record of its syncs: a row per sync in the store, an audit entry per finished
sync, the metrics, and the `sync_finished` event.

A sync begun is `current` until its end is recorded. When the store refuses to record an end
(a full disk), the row is remembered as unfinished and closed as failed at the next sync, and
the failure is still published, without an id.
"""

from __future__ import annotations

import logging
from typing import Any

from nebula.daemon import metrics
from nebula.daemon.audit import AuditTrail
from nebula.daemon.control import SyncRecord
from nebula.daemon.events import EventBus
from nebula.daemon.gitsync import Commit
from nebula.plan import Plan
from nebula.store import Store, SyncStatus
from nebula.store.cluster import setting_key

log = logging.getLogger("nebulad")

_AUDITED_CHANGES = 500  # a sync's audit entry lists at most this many changes


class SyncLog:
    def __init__(self, store: Store, bus: EventBus, node: str | None = None) -> None:
        self.store = store
        self.bus = bus
        self.node = node  # the node whose syncs these are (None: the only one)
        self.audit = AuditTrail(store)
        self.current: int | None = None  # the sync row begun and not yet finished
        self._unfinished: set[int] = set()  # rows left "running": the store refused the end

    def close_unfinished(self) -> None:
        """Close as failed the rows whose end the store refused before (only ours: other
        nodes may share the store)."""
        for sync_id in sorted(self._unfinished):
            self.store.finish_sync(
                sync_id,
                status="failed",
                errors=["nebulad could not record the end of this sync; see its log"],
            )
            self._unfinished.discard(sync_id)

    def failed(self, commit: Commit | None, trigger: str, errors: list[str]) -> None:
        """A sync that failed before planning (the commit invalid, git failed)."""
        sync_id = self.begin(commit, trigger)
        self.finish(sync_id, status="failed", errors=errors)
        metrics.SYNCS.labels(status="failed").inc()
        self.bus.publish("sync_finished", id=sync_id, status="failed", errors=errors)

    def fail(self, trigger: str, message: str, *, explicit: bool) -> None:
        """Close the sync in progress as failed; a failed explicit request gets its own record.
        When the store refuses that too, the failure is still published, without an id."""
        metrics.SYNCS.labels(status="failed").inc()
        sync_id = self.current
        try:
            if sync_id is None and explicit:
                sync_id = self.begin(None, trigger)
            if sync_id is not None:
                self.finish(sync_id, status="failed", errors=[message])
        except Exception as exc:  # the store refuses writes too (a full disk)
            if sync_id is not None:
                self._unfinished.add(sync_id)
            self.current = None
            log.error("cannot record the failed sync: %s", exc)
            errors = [message, f"not recorded: {exc}"]
            self.bus.publish("sync_finished", id=None, status="failed", errors=errors)
            return
        if sync_id is not None:
            self.bus.publish("sync_finished", id=sync_id, status="failed", errors=[message])

    def finish(self, sync_id: int, **outcome: Any) -> SyncRecord:
        info = self.store.finish_sync(sync_id, **outcome)
        self.current = None  # only now: a sync whose end was refused is closed as failed
        self._audit(info)
        return info

    def _audit(self, info: SyncRecord) -> None:
        applied = info.status == "succeeded" and any(
            info.summary.get(action) for action in ("create", "update", "delete")
        )
        self.audit.record(
            "daemon:sync",
            "sync.applied" if applied else f"sync.{info.status}",
            info.commit[:12] if info.commit else None,
            {
                "sync": info.id,
                "trigger": info.trigger,
                "commit": info.commit,
                "summary": info.summary,
                "errors": list(info.errors),
                "changes": list(info.changes[:_AUDITED_CHANGES]),
            },
        )

    def begin(self, commit: Commit | None, trigger: str) -> int:
        sync_id = self.store.start_sync(
            commit=commit.sha if commit else None,
            author=commit.author if commit else None,
            message=commit.message if commit else None,
            trigger=trigger,
            node=self.node,
        )
        self.current = sync_id
        return sync_id

    def record(
        self,
        commit: Commit | None,
        trigger: str,
        status: SyncStatus,
        plan: Plan,
        errors: list[str] | None = None,
    ) -> int:
        info = self.store.record_sync(
            commit=commit.sha if commit else None,
            author=commit.author if commit else None,
            message=commit.message if commit else None,
            trigger=trigger,
            node=self.node,
            status=status,
            errors=errors or [],
            summary=plan.counts(),
            changes=plan.change_records(),
            setting=(setting_key("applied_commit", self.node), commit.sha)
            if status == "succeeded" and commit is not None
            else None,
        )
        sync_id = info.id
        self._audit(info)
        self.count(info, plan, drift=False)
        self.bus.publish("sync_finished", id=sync_id, status=status, errors=errors or [])
        return sync_id

    def count(self, info: SyncRecord, plan: Plan, *, drift: bool) -> None:
        metrics.SYNCS.labels(status=info.status).inc()
        if info.duration_ms is not None:
            metrics.SYNC_DURATION.observe(info.duration_ms / 1000)
        for change in plan.pending:
            metrics.CHANGES_APPLIED.labels(action=str(change.action)).inc()
        if info.errors:
            metrics.APPLY_ERRORS.inc(len(info.errors))
        if drift and info.status == "succeeded":
            metrics.DRIFT_CORRECTIONS.inc()
        if info.status == "succeeded":
            metrics.LAST_SUCCESSFUL_SYNC.set_to_current_time()
