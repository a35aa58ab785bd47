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

import dataclasses
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
from nebula.remediation import metrics
from nebula.remediation.actions import ACTIONS, Services
from nebula.remediation.alerts import Alert
from nebula.remediation.executor import Executor, Finished, StepState, runbook_tasks
from nebula.remediation.incidents import Incidents, Received
from nebula.store.records import ExecutionInfo

log = logging.getLogger("nebulad.remediation")
_KEPT = 86400.0  # seconds restarts are remembered (longer than any sensible window)
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
    waiting: str = ""  # a run of it waiting for a person: no other starts meanwhile


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
        self._scheduler: Any = None  # APScheduler's, once a runbook has a schedule
        self._lock = threading.Lock()
        self._runbooks: list[Runbook] = []
        self._endpoints: dict[str, str] = {}
        self._firing: dict[str, tuple[Alert, str]] = {}  # fingerprint -> alert, incident id
        self._groups: dict[tuple[str, str], _Group] = {}
        self._restarts: dict[str, deque[float]] = {}

    # -- configuration ---------------------------------------------------------------------

    def update(self, runbooks: Sequence[Runbook], endpoints: Mapping[str, str]) -> None:
        """The runbooks and health endpoints of the last good commit."""
        with self._lock:
            self._runbooks = list(runbooks)
            self._endpoints = dict(endpoints)
        self._schedule(runbooks)

    def close(self) -> None:
        self.stop.set()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
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
        incident = received.incident
        with self._lock:
            if alert.status == "firing" and incident is not None:
                self._firing[alert.fingerprint] = (alert, incident.id)
            else:
                self._firing.pop(alert.fingerprint, None)
        if received.outcome == "resolved" and incident is not None and incident.resolved_at:
            recovered = incident.resolved_at - incident.created_at
            metrics.TIME_TO_RECOVERY.observe(recovered.total_seconds())
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
        for runbook in self._matching("alert", alert.name):
            key = (runbook.name, alert.fingerprint)  # one run at a time per runbook and alert
            wait = self._take(key, self._cooldown(runbook))
            if wait is None:
                continue
            if wait > 0:
                with self._lock:
                    self._retry_later(key, alert.fingerprint, wait)
                continue
            context = self.context(alert, incident, runbook)
            if not self._holds(runbook, context, key):
                continue
            self._pool().submit(self._execute, runbook, context, incident.id, key, alert)

    def _take(self, key: tuple[str, str], cooldown: float) -> float | None:
        """Take the run of `key`: 0 when taken; None when one runs already (or waits for a
        person); else the seconds of cooldown left."""
        with self._lock:
            group = self._groups.setdefault(key, _Group())
            waiting = group.waiting
        if waiting:
            execution = self.store.execution(waiting)
            if execution is not None and execution.status == "waiting":
                return None
        with self._lock:
            group.waiting = ""
            if group.running:
                return None
            wait = group.last_finished + cooldown - self.clock()
            if wait > 0:
                return wait
            group.running = True
            return 0.0

    def _cooldown(self, runbook: Runbook) -> float:
        return self.safety.cooldown if runbook.cooldown is None else runbook.cooldown

    def _holds(self, runbook: Runbook, context: dict[str, Any], key: tuple[str, str]) -> bool:
        """Whether the trigger's condition holds; if not, the run taken is given back."""
        condition = runbook.trigger.condition
        if condition is None or _holds(condition, context):
            return True
        with self._lock:
            self._groups[key].running = False
        return False

    # -- events and schedules --------------------------------------------------------------

    def on_event(self, kind: str, data: Mapping[str, Any]) -> None:
        """One of nebulad's events: runbooks triggered by it (`kind`, or `kind.status`) run."""
        names = {kind, f"{kind}.{data.get('status')}"}
        for runbook in self._runbooks_of("event"):
            if runbook.trigger.event in names:
                event = {"kind": kind, **data}
                self._start(runbook, {"event": event}, {"event": event})

    def _scheduled(self, name: str) -> None:
        runbook = next((r for r in self._runbooks_of("schedule") if r.name == name), None)
        if runbook is not None:
            self._start(runbook, {"schedule": runbook.trigger.schedule}, {"schedule": name})

    def _start(self, runbook: Runbook, facts: dict[str, Any], trigger: dict[str, Any]) -> None:
        """Run a runbook that answers no alert (an event, a schedule), unless one runs already
        or its cooldown is not over."""
        key = (runbook.name, runbook.trigger.type)
        if self._take(key, self._cooldown(runbook)) != 0.0:
            return
        context = {**facts, "now": datetime.now(UTC).isoformat(timespec="seconds")}
        if not self._holds(runbook, context, key):
            return

        def run() -> None:
            try:
                self.run(runbook, context, None, trigger)
            except Exception:
                log.exception("runbook %s broke", runbook.name)
            with self._lock:
                self._groups[key].running = False
                self._groups[key].last_finished = self.clock()

        self._pool().submit(run)

    def next_runs(self) -> dict[str, datetime]:
        """When each scheduled runbook runs next."""
        if self._scheduler is None:
            return {}
        return {job.id: job.next_run_time for job in self._scheduler.get_jobs()}

    def run_now(self, name: str) -> None:
        """Bring a scheduled runbook's next run to now (its schedule then goes on as before)."""
        if self._scheduler is not None:
            self._scheduler.get_job(name).modify(next_run_time=datetime.now(UTC))

    def _schedule(self, runbooks: Sequence[Runbook]) -> None:
        """One cron job per scheduled runbook (APScheduler, in UTC), made anew on each update."""
        scheduled = [r for r in runbooks if r.trigger.type == "schedule"]
        if self._scheduler is None and not scheduled:
            return
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.cron import CronTrigger

        if self._scheduler is None:
            self._scheduler = BackgroundScheduler(timezone="UTC")
            self._scheduler.start()
        self._scheduler.remove_all_jobs()
        for runbook in scheduled:
            assert runbook.trigger.schedule is not None
            self._scheduler.add_job(
                self._scheduled,
                CronTrigger.from_crontab(runbook.trigger.schedule, timezone="UTC"),
                args=[runbook.name],
                id=runbook.name,
                max_instances=1,
                coalesce=True,
            )

    def _matching(self, trigger: str, alert: str) -> list[Runbook]:
        return [
            r
            for r in self._runbooks_of(trigger)
            if r.trigger.alert is None or r.trigger.alert == alert
        ]

    def _runbooks_of(self, trigger: str) -> list[Runbook]:
        with self._lock:
            return [r for r in self._runbooks if r.trigger.type == trigger]

    def _retry_later(self, key: tuple[str, str], fingerprint: str, wait: float) -> None:
        """Look at the alert again once the cooldown is over (called under the lock)."""
        group = self._groups[key]
        if group.retry is not None or self.stop.is_set():
            return

        def again() -> None:
            with self._lock:
                group.retry = None
                firing = self._firing.get(fingerprint)
            if firing is None or self.stop.is_set():
                return
            alert, incident_id = firing
            incident = self.incidents.get(incident_id)
            if incident is not None and incident.status != "resolved":
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
            finished = self.run(runbook, context, incident_id, trigger=trigger_of(alert))
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
            waiting = finished is not None and finished.status == "waiting"
            group.waiting = finished.execution if waiting and finished else ""
            if alert.fingerprint in self._firing and not self.stop.is_set() and not waiting:
                self._retry_later(key, alert.fingerprint, self._cooldown(runbook))
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
        tasks = runbook_tasks(runbook)
        finished = self.executor.run(runbook, tasks, context, record, done=done, approved=approved)
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
        metrics.RUNBOOK_EXECUTIONS.labels(runbook=runbook.name, result=finished.status).inc()
        return dataclasses.replace(finished, execution=execution)

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
        context = self.context(alert, incident, runbook)
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

    def _restart_allowed(self, container: str, runbook: Runbook | None) -> str | None:
        """Why `container` (its name) may not be restarted now (the cap, the runbook's or
        nebula.yaml's), or None: then this restart is counted."""
        most, window = self._limits(runbook)
        now = self.clock()
        with self._lock:
            recent = self._restarts.setdefault(container, deque())
            while recent and recent[0] <= now - _KEPT:
                recent.popleft()
            count = sum(1 for at in recent if at > now - window)
            if count >= most:
                return (
                    f"restart cap reached: {container} was restarted {count} times in "
                    f"the last {window:g}s; left alone until then"
                )
            recent.append(now)
        return None

    def restart_count(self, container: str, runbook: Runbook | None = None) -> int:
        """Restarts runbooks made of `container` within the (runbook's) restart window."""
        window = self._limits(runbook)[1]
        now = self.clock()
        with self._lock:
            return sum(1 for at in self._restarts.get(container, ()) if at > now - window)

    def _limits(self, runbook: Runbook | None) -> tuple[int, float]:
        """(max restarts, window): the runbook's own, else nebula.yaml's."""
        most = runbook.max_restarts if runbook is not None else None
        window = runbook.restart_window if runbook is not None else None
        return (
            self.safety.max_restarts if most is None else most,
            self.safety.restart_window if window is None else window,
        )

    # -- context ---------------------------------------------------------------------------

    def context(
        self, alert: Alert, incident: Any | None, runbook: Runbook | None = None
    ) -> dict[str, Any]:
        """What templates and conditions see (`runbook`: whose restart window counts)."""
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
                "restart_count": self.restart_count(container, runbook),
                "health_endpoint": self._endpoints.get(installation, ""),
                "image": (state.get("Config") or {}).get("Image", ""),
                "memory_limit": _bytes((state.get("HostConfig") or {}).get("Memory") or 0),
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


def _bytes(size: int) -> str:
    """A memory limit as people write it (`256 MiB`); "" when none is set."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} B" if size else ""


def _holds(condition: str, context: Mapping[str, Any]) -> bool:
    try:
        return evaluate(condition, context)
    except ValueError as exc:
        log.warning("trigger condition %r: %s", condition, exc)
        return False


def trigger_of(alert: Alert) -> dict[str, Any]:
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
