"""The remediation engine: alert → incident → runbook → recovery or escalation.

nebulad hands every alert to `Remediator.receive`. The incident it belongs to is opened, folded
into or re-opened (`incidents`); unless silenced, each runbook whose trigger matches runs in a
worker, at most `concurrency` at once. The safety rules are here rather than in each runbook:
a restart cap per container per window, a cooldown per runbook and alert group, and no runbook
run twice at once for one group. While the alert keeps firing, the runbook is tried again after
the cooldown (its condition sees the restarts so far), and after `escalation.after_failures`
failed runs the incident is escalated once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nebula.kinds.runbooks.expressions import evaluate
from nebula.kinds.runbooks.spec import Runbook, Step
from nebula.remediation.actions import ACTIONS, Services
from nebula.remediation.alerts import Alert
from nebula.remediation.executor import Executor, Finished, StepState
from nebula.remediation.incidents import Incidents, Received
from nebula.store.records import ExecutionInfo

log = logging.getLogger("nebulad.remediation")
_ACTED_ON = frozenset({"opened", "joined", "folded", "reopened"})  # a firing alert's outcomes


@dataclass(frozen=True)
class Safety:
    max_restarts: int = 3
    restart_window: float = 3600.0
    cooldown: float = 60.0
    concurrency: int = 4


@dataclass
class _Group:
    """What the engine remembers of one (runbook, alert group)."""

    running: bool = False
    last_finished: float = 0.0
    failures: int = 0
    escalated: bool = False
    retry: threading.Timer | None = None


class Remediator:
    def __init__(
        self,
        store: Any,
        incidents: Incidents,
        docker: Any,
        notify: Callable[[list[str], str, str], list[Any]],
        *,
        safety: Safety | None = None,
        publish: Callable[..., None] | None = None,
        recreate: Callable[[str], None] = lambda container: None,
        busy: Callable[[str], bool] = lambda container: False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.incidents = incidents
        self.services = Services(
            docker=docker,
            notify=notify,
            incidents=incidents,
            restart_allowed=self._restart_allowed,
            recreate=recreate,
            busy=busy,
        )
        self.notify = notify
        self.safety = safety or Safety()
        self.publish = publish or (lambda kind, **data: None)
        self.clock = clock
        self.stop = threading.Event()
        self.executor = Executor(ACTIONS, self.services, self.stop)
        self._workers: ThreadPoolExecutor | None = None  # made at the first run (limits known)
        self._lock = threading.Lock()
        self._runbooks: list[Runbook] = []
        self._endpoints: dict[str, str] = {}
        self._firing: dict[str, Alert] = {}  # fingerprint -> the alert, while it fires
        self._groups: dict[tuple[str, str], _Group] = {}
        self._restarts: dict[str, deque[float]] = {}

    # -- configuration ---------------------------------------------------------------------

    def update(self, runbooks: Sequence[Runbook], endpoints: Mapping[str, str]) -> None:
        """The runbooks and health endpoints of the last good commit."""
        with self._lock:
            self._runbooks = list(runbooks)
            self._endpoints = dict(endpoints)

    def close(self) -> None:
        self.stop.set()
        with self._lock:
            for group in self._groups.values():
                if group.retry is not None:
                    group.retry.cancel()
        if self._workers is not None:
            self._workers.shutdown(wait=True, cancel_futures=True)

    def _pool(self) -> ThreadPoolExecutor:
        """The runbook workers: `concurrency` of them, as nebula.yaml said at the first run."""
        with self._lock:
            if self._workers is None:
                self._workers = ThreadPoolExecutor(
                    self.safety.concurrency, thread_name_prefix="runbook"
                )
            return self._workers

    # -- alerts ----------------------------------------------------------------------------

    def receive(self, alert: Alert) -> Received:
        received = self.incidents.receive(alert)
        with self._lock:
            if alert.status == "firing":
                self._firing[alert.fingerprint] = alert
            else:
                self._firing.pop(alert.fingerprint, None)
        incident = received.incident
        self.publish(
            "incident",
            outcome=received.outcome,
            alert=alert.name,
            id=incident.id if incident else None,
            status=incident.status if incident else None,
        )
        if incident is not None and received.outcome in _ACTED_ON:
            self._trigger(alert, incident)
        return received

    def _trigger(self, alert: Alert, incident: Any) -> None:
        for runbook in self._matching(alert):
            key = (runbook.name, alert.group_key)
            with self._lock:
                group = self._groups.setdefault(key, _Group())
                if group.running:
                    continue
                wait = group.last_finished + self.safety.cooldown - self.clock()
                if wait > 0:
                    self._retry_later(key, alert.fingerprint, wait)
                    continue
                group.running = True  # taken: no second run of it for this group
            context = self.context(alert, incident)
            if runbook.trigger.condition and not _holds(runbook.trigger.condition, context):
                with self._lock:
                    group.running = False
                continue
            self._pool().submit(self._execute, runbook, context, incident.id, key, alert)

    def _matching(self, alert: Alert) -> list[Runbook]:
        with self._lock:
            runbooks = list(self._runbooks)
        found = []
        for runbook in runbooks:
            trigger = runbook.trigger
            if trigger.type != "alert":
                continue
            if trigger.alert is None or alert.name == trigger.alert:
                found.append(runbook)
        return found

    def _retry_later(self, key: tuple[str, str], fingerprint: str, wait: float) -> None:
        """Look at the alert again once the cooldown is over (called under the lock)."""
        group = self._groups[key]
        if group.retry is not None or self.stop.is_set():
            return

        def again() -> None:
            with self._lock:
                group.retry = None
                alert = self._firing.get(fingerprint)
            if alert is not None and not self.stop.is_set():
                incident = self.incidents.receive(alert).incident
                if incident is not None:
                    self._trigger(alert, incident)

        group.retry = threading.Timer(wait, again)
        group.retry.daemon = True
        group.retry.start()

    # -- running ---------------------------------------------------------------------------

    def _execute(
        self,
        runbook: Runbook,
        context: dict[str, Any],
        incident_id: str,
        key: tuple[str, str],
        alert: Alert,
    ) -> None:
        finished: Finished | None = None
        try:
            finished = self.run(runbook, context, incident_id, trigger=_trigger_of(alert))
        except Exception:
            log.exception("runbook %s broke", runbook.name)
        with self._lock:
            group = self._groups[key]
            group.running = False
            group.last_finished = self.clock()
            failed = finished is None or finished.status == "failed"
            group.failures = group.failures + 1 if failed else 0
            escalate = (
                failed
                and runbook.escalation is not None
                and not group.escalated
                and group.failures >= runbook.escalation.after_failures
            )
            group.escalated = group.escalated or escalate
            if alert.fingerprint in self._firing and not self.stop.is_set():
                self._retry_later(key, alert.fingerprint, self.safety.cooldown)
        if escalate and runbook.escalation is not None:
            self._escalate(runbook, incident_id, context, group.failures)

    def run(
        self,
        runbook: Runbook,
        context: dict[str, Any],
        incident_id: str | None,
        trigger: dict[str, Any],
        resume: ExecutionInfo | None = None,
    ) -> Finished:
        """One execution, recorded from start to end (and on the incident's timeline); or,
        `resume`d, the rest of one: its finished steps are kept, never run again."""
        done: dict[str, StepState] = {}
        approved: frozenset[str] = frozenset()
        if resume is None:
            execution = self.store.start_execution(
                runbook.name,
                steps_total=len(runbook.steps),
                trigger=trigger,
                incident_id=incident_id,
            ).id
            self._note(incident_id, "runbook", f"runbook {runbook.name} started ({execution})")
        else:
            execution = resume.id
            done = {k: StepState.from_dict(k, v) for k, v in resume.step_states.items()}
            waiting = [k for k, state in done.items() if state.status == "waiting"]
            if resume.approval == "approved":
                approved = frozenset(waiting)
        self.publish("runbook", id=execution, runbook=runbook.name, status="running")
        finished_before = Finished("waiting", done).completed  # not the step awaiting approval
        record = _Record(self, execution, incident_id, runbook, finished_before)
        finished = self.executor.run(runbook, context, record, done, approved)
        # interrupted: left `running`, so the next start marks it and resumes it
        if finished.status not in ("waiting", "interrupted"):
            self.store.finish_execution(
                execution,
                finished.status,
                output={k: v.to_dict() for k, v in finished.steps.items()},
                error=finished.error or None,
            )
            self._note(
                incident_id,
                "runbook",
                f"runbook {runbook.name} {finished.status}"
                + (f": {finished.error}" if finished.error else ""),
            )
        self.publish("runbook", id=execution, runbook=runbook.name, status=finished.status)
        return finished

    def resume(self, execution: ExecutionInfo) -> None:
        """Carry on an execution (approved, or interrupted by a stop) in a worker, from the
        first step it has not finished, with the context its trigger gives now."""
        record = next((r for r in self.store.runbooks() if r.name == execution.runbook_name), None)
        if record is None:
            self.store.finish_execution(
                execution.id, "failed", error="its runbook is no longer in the config repo"
            )
            return
        runbook = Runbook.model_validate(record.definition)
        alert = _alert_of(execution.trigger)
        incident = self.incidents.get(execution.incident_id) if execution.incident_id else None
        context = self.context(alert, incident)
        self._pool().submit(
            self.run, runbook, context, execution.incident_id, execution.trigger, execution
        )

    def _escalate(
        self, runbook: Runbook, incident_id: str, context: dict[str, Any], failures: int
    ) -> None:
        assert runbook.escalation is not None
        about = context.get("service", {})
        service = "/".join(p for p in (about.get("installation"), about.get("name")) if p)
        service = service or "a service"
        title = f"Nebula: {runbook.name} could not recover {service}"
        body = f"{failures} runs of {runbook.name} failed; incident {incident_id} needs a person."
        if not self.incidents.escalate(incident_id, f"escalated after {failures} failed runs"):
            return  # escalated already (by another runbook, or before a restart)
        deliveries = self.notify(list(runbook.escalation.notify), title, body)
        for delivery in deliveries:
            sent = "sent" if delivery.ok else f"not sent: {delivery.error}"
            self._note(incident_id, "notification", f"{delivery.channel}: {sent}")

    def _note(self, incident_id: str | None, kind: str, message: str) -> None:
        if incident_id is not None:
            self.incidents.note(incident_id, kind, message)

    # -- safety ----------------------------------------------------------------------------

    def _restart_allowed(self, container: str) -> str | None:
        """Why `container` may not be restarted now (the cap), or None: then it is counted."""
        now = self.clock()
        with self._lock:
            recent = self._restarts.setdefault(container, deque())
            while recent and recent[0] <= now - self.safety.restart_window:
                recent.popleft()
            if len(recent) >= self.safety.max_restarts:
                return (
                    f"restart cap reached: {container} was restarted {len(recent)} times in "
                    f"the last {self.safety.restart_window:g}s; left alone until then"
                )
            recent.append(now)
        return None

    def restart_count(self, container: str) -> int:
        now = self.clock()
        with self._lock:
            recent = self._restarts.get(container, deque())
            return sum(1 for at in recent if at > now - self.safety.restart_window)

    # -- context ---------------------------------------------------------------------------

    def context(self, alert: Alert, incident: Any | None) -> dict[str, Any]:
        """What templates and conditions see."""
        labels = dict(alert.labels)
        installation = labels.get("installation", "")
        service = labels.get("service", "")
        container = labels.get("container") or (
            f"{installation}-{service}" if installation and service else ""
        )
        state: dict[str, Any] = {}
        if container:
            try:
                state = self.services.docker.inspect(container)
            except Exception:  # gone, or the engine away: the runbook sees what is known
                state = {}
        docker_health = ((state.get("State") or {}).get("Health") or {}).get("Status")
        unhealthy = alert.name in ("unhealthy", "container_died", "oom_killed")
        return {
            "service": {
                "name": service or installation or container,
                "installation": installation,
                "container": container,
                "container_id": state.get("Id", ""),
                "health": docker_health or ("unhealthy" if unhealthy else "healthy"),
                "restart_count": self.restart_count(container),
                "health_endpoint": self._endpoints.get(installation, ""),
                "image": (state.get("Config") or {}).get("Image", ""),
                "node": labels.get("node", ""),
            },
            "alert": {
                "name": alert.name,
                "severity": alert.severity,
                "status": alert.status,
                "labels": labels,
                "annotations": dict(alert.annotations),
                "fingerprint": alert.fingerprint,
                "source": alert.source,
            },
            "labels": labels,
            "incident": {
                "id": incident.id,
                "title": incident.title,
                "severity": incident.severity,
                "status": incident.status,
            }
            if incident is not None
            else {},
            "now": datetime.now(UTC).isoformat(timespec="seconds"),
        }


def _holds(condition: str, context: Mapping[str, Any]) -> bool:
    try:
        return evaluate(condition, context)
    except ValueError as exc:
        log.warning("trigger condition %r: %s", condition, exc)
        return False


def _trigger_of(alert: Alert) -> dict[str, Any]:
    """What started a run, kept with it: enough to rebuild its context when it resumes."""
    return {
        "alert": {
            "name": alert.name,
            "labels": dict(alert.labels),
            "annotations": dict(alert.annotations),
            "status": alert.status,
            "source": alert.source,
        }
    }


def _alert_of(trigger: Mapping[str, Any]) -> Alert:
    given = trigger.get("alert") or {}
    return Alert(
        name=str(given.get("name") or "manual"),
        labels=dict(given.get("labels") or {}),
        annotations=dict(given.get("annotations") or {}),
        status="firing",
        source=str(given.get("source") or "manual"),
    )


class _Record:
    """An execution's progress, into the store and onto the incident's timeline."""

    def __init__(
        self,
        engine: Remediator,
        execution: str,
        incident_id: str | None,
        runbook: Runbook,
        completed: int,
    ) -> None:
        self.engine, self.execution, self.incident_id = engine, execution, incident_id
        self.runbook = runbook
        self.completed = completed

    def step_started(self, step: Step, index: int) -> None:
        self.engine.publish("runbook_step", id=self.execution, step=step.name, status="running")

    def step_finished(self, step: Step, index: int, state: StepState) -> None:
        self.completed += 1
        self.engine.store.record_step(
            self.execution, step.key, state.to_dict(), steps_completed=self.completed
        )
        detail = state.error or state.output
        self.engine._note(
            self.incident_id,
            "step",
            f"{step.name}: {state.status}" + (f" — {detail[:300]}" if detail else ""),
        )
        self.engine.publish("runbook_step", id=self.execution, step=step.name, status=state.status)

    def waiting_for_approval(self, step: Step, index: int) -> None:
        self.engine.store.record_step(
            self.execution,
            step.key,
            StepState(step.key, "waiting").to_dict(),
            steps_completed=self.completed,
            status="waiting",
            approval="pending",
        )
        self.engine._note(self.incident_id, "step", f"{step.name}: waiting for approval")
