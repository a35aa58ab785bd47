"""Workflows as nebulad runs them: a DAG of steps on the runbooks' step engine and actions,
started by a cron schedule, one of nebulad's events, or by hand.

Schedules are APScheduler jobs kept in Nebula's database, so a restart neither loses a due run
nor doubles one: the scheduler starts paused, the workflows are loaded, then missed runs follow
each workflow's `catch_up` (`none`: skipped; `once`: one run, however many were missed). Each
step's state is recorded as it finishes; a run cut short by a stop is marked `interrupted` at the
next start and carries on from its first unfinished step. `concurrency` says what a start does
while a run of the same workflow is going: `skip` it, `queue` behind it, or `cancel_previous`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nebula.errors import RequestError
from nebula.kinds.workflows.spec import Workflow, WorkflowStep
from nebula.remediation import metrics
from nebula.remediation.actions import ACTIONS, Services
from nebula.remediation.executor import Executor, Finished, StepState, Task
from nebula.store.records import ExecutionInfo

if TYPE_CHECKING:
    from nebula.kinds.workflows.types import DesiredWorkflow
    from nebula.store import Store

log = logging.getLogger("nebulad.workflows")
JOBS_TABLE = "nebula_scheduled_jobs"
_RUNNING: dict[str, Workflows] = {}  # "daemon": nebulad's, for the jobs APScheduler keeps


def fire(name: str) -> None:
    """A scheduled workflow is due (APScheduler's job: stored as a reference to this)."""
    workflows = _RUNNING.get("daemon")
    if workflows is not None:
        workflows.start(name, {"schedule": name})


class WorkflowError(RequestError):
    """A request about workflows that cannot be answered: not_found or invalid."""


@dataclass
class _Run:
    id: str
    name: str
    stop: threading.Event = field(default_factory=threading.Event)
    cancelled_by: str = ""


class Workflows:
    def __init__(
        self,
        store: Store,
        services: Services,
        publish: Callable[..., None],
        stop: threading.Event,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.services = services
        self.publish = publish
        self.stop = stop  # nebulad's: set when it stops
        self.clock = clock
        self._lock = threading.Lock()
        self._workflows: dict[str, Workflow] = {}
        self._runs: dict[str, _Run] = {}  # run id -> the run in progress
        self._queues: dict[str, threading.Lock] = {}  # `queue` concurrency: one after another
        self._scheduler: Any = None
        self._scheduling = True  # fire the schedules here (see `lead`)

    # -- configuration ---------------------------------------------------------------------

    def update(self, workflows: Sequence[DesiredWorkflow]) -> None:
        """The workflows of the last good commit; their schedules are brought in line."""
        _RUNNING["daemon"] = self
        with self._lock:
            self._workflows = {w.name: w.spec for w in workflows}
        if self._scheduling:
            self._schedule()

    def lead(self, scheduling: bool) -> None:
        """Whether this nebulad fires the schedules: the jobs are shared in the database, so
        of several nodes only the leader may (a single node always does). A node that takes
        over finds each job's next run, and what was missed, as the last leader left them."""
        self._scheduling = scheduling
        if scheduling:
            if self._workflows:
                self._schedule()
        elif self._scheduler is not None:
            # Shut down, not paused: shutting down waits for a look for due jobs already under
            # way, which would otherwise start a run the new leader starts too.
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    def _schedule(self) -> None:
        from apscheduler.triggers.cron import CronTrigger

        scheduler = self._scheduler_started()
        wanted = {
            name: spec for name, spec in self._workflows.items() if spec.on.schedule is not None
        }
        for job in scheduler.get_jobs():
            if job.id not in wanted:
                job.remove()
        for name, spec in wanted.items():
            assert spec.on.schedule is not None
            trigger = CronTrigger.from_crontab(spec.on.schedule, timezone="UTC")
            grace = None if spec.catch_up == "once" else 1
            job = scheduler.get_job(name)
            if job is not None and (str(job.trigger), job.misfire_grace_time) == (
                str(trigger),
                grace,
            ):
                continue  # unchanged: its next run (and a missed one) stays as stored
            scheduler.add_job(
                fire,
                trigger,
                args=[name],
                id=name,
                replace_existing=True,
                coalesce=True,  # many missed runs are one
                max_instances=1,
                misfire_grace_time=grace,
            )
        scheduler.resume()

    def _scheduler_started(self) -> Any:
        """APScheduler, its jobs in Nebula's database; started paused, so missed runs wait
        until the workflows are known."""
        if self._scheduler is None:
            from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
            from apscheduler.schedulers.background import BackgroundScheduler

            jobs = SQLAlchemyJobStore(engine=self.store.engine, tablename=JOBS_TABLE)
            self._scheduler = BackgroundScheduler(jobstores={"default": jobs}, timezone="UTC")
            self._scheduler.start(paused=True)
        return self._scheduler

    def next_runs(self) -> dict[str, datetime]:
        if self._scheduler is None:
            return {}
        return {job.id: job.next_run_time for job in self._scheduler.get_jobs()}

    def close(self) -> None:
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.stop.set()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)

    # -- starting --------------------------------------------------------------------------

    def on_event(self, kind: str, data: Mapping[str, Any]) -> None:
        names = {kind, f"{kind}.{data.get('status')}"}
        with self._lock:
            answering = [n for n, w in self._workflows.items() if w.on.event in names]
        for name in answering:
            self.start(name, {"event": {"kind": kind, **data}})

    def run_by_hand(self, name: str, actor: str) -> str | None:
        """`nebula workflows run NAME`: the run's id (None: skipped, one is going)."""
        with self._lock:
            spec = self._workflows.get(name)
        if spec is None:
            known = ", ".join(sorted(self._workflows)) or "none"
            raise WorkflowError("not_found", f"no workflow {name!r} (workflows: {known})")
        if not spec.on.manual:
            raise WorkflowError("invalid", f"workflow {name!r} is not run by hand (on: manual)")
        return self.start(name, {"manual": actor})

    def start(self, name: str, trigger: dict[str, Any]) -> str | None:
        """Start a run of `name` after its concurrency policy; its id, or None if skipped."""
        with self._lock:
            spec = self._workflows.get(name)
            going = [r for r in self._runs.values() if r.name == name]
        if spec is None or self.stop.is_set():
            return None
        if going and spec.concurrency == "skip":
            log.info("workflow %s: a run is going (%s); this start is skipped", name, going[0].id)
            self.publish("workflow", name=name, id=None, status="skipped")
            metrics.WORKFLOW_RUNS.labels(workflow=name, result="skipped").inc()
            return None
        if spec.concurrency == "cancel_previous":
            for run in going:
                self.cancel(run.id, "a newer run")
        execution = self.store.start_execution(
            name, steps_total=len(spec.steps), trigger=trigger, kind="workflow"
        )
        self._begin(spec, execution, trigger, {})
        return execution.id

    def resume(self, execution: ExecutionInfo) -> None:
        """Carry on a run cut short by a stop, from its first unfinished step."""
        with self._lock:
            spec = self._workflows.get(execution.runbook_name)
        if spec is None:  # at start, before the first commit is loaded: as last applied
            record = next(
                (r for r in self.store.workflows() if r.name == execution.runbook_name), None
            )
            spec = Workflow.model_validate(record.definition) if record else None
        if spec is None:
            self.store.finish_execution(
                execution.id, "failed", error="its workflow is no longer in the config repo"
            )
            return
        done = {k: StepState.from_dict(k, v) for k, v in execution.step_states.items()}
        self._begin(spec, execution, execution.trigger, done)

    def _begin(
        self,
        spec: Workflow,
        execution: ExecutionInfo,
        trigger: dict[str, Any],
        done: dict[str, StepState],
    ) -> None:
        run = _Run(execution.id, spec.name)
        with self._lock:
            self._runs[run.id] = run
        threading.Thread(
            target=self._run, args=(spec, run, trigger, done), name=f"workflow-{spec.name}"
        ).start()

    def cancel(self, run_id: str, actor: str) -> None:
        with self._lock:
            run = self._runs.get(run_id)
        if run is None:
            raise WorkflowError("not_found", f"no run {run_id} is going")
        run.cancelled_by = actor
        run.stop.set()

    # -- running ---------------------------------------------------------------------------

    def _run(
        self, spec: Workflow, run: _Run, trigger: dict[str, Any], done: dict[str, StepState]
    ) -> None:
        queue = self._queues.setdefault(spec.name, threading.Lock())
        started = time.monotonic()
        try:
            with queue if spec.concurrency == "queue" else contextlib.nullcontext():
                finished = self._steps(spec, run, trigger, done)
        except Exception:
            log.exception("workflow %s broke", spec.name)
            finished = Finished("failed", {}, "the workflow engine broke: see nebulad's log")
        finally:
            with self._lock:
                self._runs.pop(run.id, None)
        if finished.status == "interrupted" and run.cancelled_by:
            status, error = "cancelled", f"cancelled by {run.cancelled_by}"
            self.store.finish_execution(run.id, "cancelled", error=error)
        elif finished.status == "interrupted":
            status = "interrupted"  # nebulad stops: left running, resumed at the next start
        else:
            status = finished.status
            self.store.finish_execution(
                run.id,
                finished.status,
                output={k: v.to_dict() for k, v in finished.steps.items()},
                error=finished.error or None,
            )
        self.publish("workflow", name=spec.name, id=run.id, status=status)
        metrics.WORKFLOW_RUNS.labels(workflow=spec.name, result=status).inc()
        metrics.WORKFLOW_DURATION.labels(workflow=spec.name).observe(time.monotonic() - started)

    def _steps(
        self, spec: Workflow, run: _Run, trigger: dict[str, Any], done: dict[str, StepState]
    ) -> Finished:
        tasks = [
            Task(
                step,
                tuple(step.needs),
                tolerated=step.continue_on_error,
                fails_run=not step.continue_on_error,
                delay=step.backoff,
                doubling=True,
            )
            for step in spec.steps
        ]
        context = {
            "workflow": {"name": spec.name},
            "run": {"id": run.id, "trigger": trigger},
            "now": datetime.now(UTC).isoformat(timespec="seconds"),
            **{k: v for k, v in trigger.items() if k in ("event", "schedule")},
        }
        executor = Executor(ACTIONS, self.services, run.stop)  # set by a cancel or by close()
        return executor.run(spec, tasks, context, _RunLog(self, run, len(done)), done=done)


class _RunLog:
    """A run's progress, into the store (each step as it finishes) and onto the event stream."""

    def __init__(self, workflows: Workflows, run: _Run, completed: int) -> None:
        self.workflows, self.run, self.completed = workflows, run, completed

    def step_started(self, step: WorkflowStep, index: int) -> None:
        self.workflows.publish("workflow_step", id=self.run.id, step=step.id, status="running")

    def step_finished(self, step: WorkflowStep, index: int, state: StepState) -> None:
        self.completed += 1
        self.workflows.store.record_step(
            self.run.id, step.id, state.to_dict(), steps_completed=self.completed
        )
        self.workflows.publish("workflow_step", id=self.run.id, step=step.id, status=state.status)

    def waiting_for_approval(self, step: WorkflowStep, index: int) -> None:
        raise AssertionError("workflow steps never wait for approval")
