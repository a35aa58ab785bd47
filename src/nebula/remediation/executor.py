"""Runs one runbook's steps in order: conditions, templates, retries, timeouts, outputs.

Each step's state is written through the `ExecutionLog` before the next step starts, so an
execution cut short (nebulad killed) continues from its first unfinished step and a finished
step never runs twice. Templates and conditions go through the runbooks kind's sandbox; a
step's params are rendered, then checked against its action's model, then acted on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ValidationError

from nebula.kinds.runbooks.expressions import evaluate, render
from nebula.kinds.runbooks.params import PARAMS
from nebula.kinds.runbooks.spec import Runbook

StepStatus = Literal["ok", "failed", "skipped", "waiting"]
OUTPUT_LIMIT = 4000  # characters of a step's output kept
# Params a shell runs: the values templates put in are quoted, one word each.
SHELL_PARAMS = frozenset({("shell", "command"), ("ssh", "command"), ("docker", "cmd")})


@dataclass
class StepState:
    """What a step did: read by later steps as `steps.<key>` (`ok`, `failed`, `skipped`,
    `output`, and the action's named outputs)."""

    key: str
    status: StepStatus
    output: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    attempts: int = 0

    def view(self) -> dict[str, Any]:
        return {
            **self.outputs,
            "outputs": self.outputs,
            "ok": self.status == "ok",
            "failed": self.status == "failed",
            "skipped": self.status == "skipped",
            "output": self.output,
            "error": self.error,
        }

    def to_dict(self) -> dict[str, Any]:
        """As the store keeps it, under the step's key."""
        return {
            "status": self.status,
            "output": self.output,
            "outputs": self.outputs,
            "error": self.error,
            "attempts": self.attempts,
        }

    @classmethod
    def from_dict(cls, key: str, data: Mapping[str, Any]) -> StepState:
        return cls(
            key=key,
            status=data["status"],
            output=data.get("output", ""),
            outputs=dict(data.get("outputs") or {}),
            error=data.get("error", ""),
            attempts=data.get("attempts", 0),
        )


@dataclass(frozen=True)
class ActionResult:
    ok: bool
    output: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)


class ActionError(Exception):
    """An action could not do its work; the message says why (it is the step's error)."""


class Action(Protocol):
    def __call__(self, params: Any, run: RunContext) -> ActionResult: ...


class ExecutionLog(Protocol):
    """Where an execution's progress goes (the store, the incident's timeline)."""

    def step_started(self, step: Any, index: int) -> None: ...
    def step_finished(self, step: Any, index: int, state: StepState) -> None: ...
    def waiting_for_approval(self, step: Any, index: int) -> None: ...


@dataclass
class RunContext:
    """What an action may reach: the execution's template context and the runtime around it."""

    context: dict[str, Any]
    deadline: float  # monotonic time the step must finish by
    stop: threading.Event
    services: Any  # the remediation runtime (docker, notifier, incidents, ...): see actions
    runbook: Any = None  # the runbook or workflow whose step this is (its own limits)

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


@dataclass(frozen=True)
class Finished:
    status: Literal["succeeded", "failed", "waiting", "interrupted"]
    steps: dict[str, StepState]
    error: str = ""
    execution: str = ""  # its id in the store, once recorded

    @property
    def completed(self) -> int:
        return sum(1 for s in self.steps.values() if s.status in ("ok", "failed", "skipped"))


DEFAULT_STEP_TIMEOUT = 300.0


@dataclass(frozen=True)
class Task:
    """One step as the executor runs it: a runbook's or a workflow's step, with the steps it
    needs (a DAG), whether its dependants run even when it fails, and how long to wait before
    its first retry (`doubling`: each next wait twice as long)."""

    step: Any  # the spec's step: name, key, action, params, condition, timeout, retries, ...
    needs: tuple[str, ...] = ()
    tolerated: bool = False  # its failure does not stop its dependants
    fails_run: bool = True  # its failure makes the run failed (tolerated or not)
    delay: float = 5.0
    doubling: bool = False

    @property
    def key(self) -> str:
        return str(self.step.key)


def runbook_tasks(runbook: Runbook) -> list[Task]:
    """A runbook's steps are a chain: each needs the one before it."""
    before = ["", *(step.key for step in runbook.steps)]
    return [
        Task(
            step,
            (before[i],) if before[i] else (),
            tolerated=step.on_failure == "continue",
            delay=step.retry_delay,
        )
        for i, step in enumerate(runbook.steps)
    ]


class Executor:
    def __init__(
        self,
        actions: Mapping[str, Action],
        services: Any,
        stop: threading.Event,
        sleep: Callable[[float], None] | None = None,
        width: int = 8,
    ) -> None:
        self.actions = actions
        self.services = services
        self.stop = stop
        self.sleep = sleep or stop.wait
        self.width = width  # steps of one run running at once

    def run(
        self,
        owner: Any,
        tasks: Sequence[Task],
        context: dict[str, Any],
        log: ExecutionLog,
        *,
        done: Mapping[str, StepState] | None = None,
        approved: frozenset[str] = frozenset(),
    ) -> Finished:
        """Run the tasks not in `done` (finished before: kept, never run again), each once the
        steps it needs have finished, as many at once as are ready (up to `width`). A failed
        step skips its dependants unless it is tolerated; a step skipped by its condition does
        not. A step that requires approval waits unless its key is in `approved`. `owner` is
        the runbook or workflow (its own limits)."""
        states: dict[str, StepState] = {
            k: v for k, v in (done or {}).items() if v.status != "waiting"
        }
        context = {**context, "steps": {k: s.view() for k, s in states.items()}}
        index = {task.key: i for i, task in enumerate(tasks)}
        by_key = {task.key: task for task in tasks}
        pending = [task for task in tasks if task.key not in states]
        running: dict[Future[StepState], Task] = {}
        waiting: dict[str, StepState] = {}  # steps waiting for a person
        pool = ThreadPoolExecutor(max_workers=self.width, thread_name_prefix="step")
        lock = threading.Lock()  # the context's steps, read by steps starting in parallel
        try:
            while pending or running:
                for task in [t for t in pending if all(n in states for n in t.needs)]:
                    pending.remove(task)
                    blocker = next((n for n in task.needs if _blocks(states[n], by_key[n])), None)
                    if blocker is not None:
                        state = StepState(
                            task.key, "skipped", output=f"needs {blocker}, which failed"
                        )
                        state.outputs["blocked"] = True
                        states[task.key] = state
                        context["steps"][task.key] = state.view()
                        log.step_finished(task.step, index[task.key], state)
                        continue
                    if self.stop.is_set():
                        pending.append(task)
                        break
                    with lock:
                        seen = {**context, "steps": dict(context["steps"])}
                    future = pool.submit(
                        self._step,
                        owner,
                        task,
                        index=index[task.key],
                        context=seen,
                        log=log,
                        approved=approved,
                    )
                    running[future] = task
                if not running:
                    break  # what is left waits for an approval, a stop or a failed need
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    task = running.pop(future)
                    state = future.result()
                    if state.status == "failed" and self.stop.is_set():
                        continue  # cut short by a stop, not failed: it runs again on resuming
                    if state.status == "waiting":
                        waiting[task.key] = state  # its dependants wait with it
                        continue
                    states[task.key] = state
                    with lock:
                        context["steps"][task.key] = state.view()
                    log.step_finished(task.step, index[task.key], state)
        finally:
            pool.shutdown(wait=True)
        if waiting:
            return Finished("waiting", {**states, **waiting})
        if self.stop.is_set() and len(states) < len(tasks):
            return Finished("interrupted", states, "nebulad stopped")
        error = "; ".join(
            f"step {by_key[k].step.title!r} failed: {state.error}"
            for k, state in states.items()
            if state.status == "failed" and by_key[k].fails_run
        )
        return Finished("failed" if error else "succeeded", states, error)

    def _step(
        self,
        owner: Any,
        task: Task,
        *,
        index: int,
        context: dict[str, Any],
        log: ExecutionLog,
        approved: frozenset[str],
    ) -> StepState:
        step = task.step
        try:
            if step.condition and not evaluate(step.condition, context):
                return StepState(step.key, "skipped", output="condition is false")
        except ValueError as exc:
            return StepState(step.key, "failed", error=f"condition: {exc}")
        if step.requires_approval and step.key not in approved:
            log.waiting_for_approval(step, index)
            return StepState(step.key, "waiting", output="waiting for approval")
        log.step_started(step, index)
        try:
            params = self._params(step, context)
        except ValueError as exc:
            return StepState(step.key, "failed", error=str(exc))
        state = StepState(step.key, "failed")
        delay = task.delay
        for attempt in range(1, step.retries + 2):
            state = self._attempt(owner, step, params, context)
            state.attempts = attempt
            if state.status == "ok" or attempt > step.retries or self.stop.is_set():
                break
            self.sleep(delay)
            delay = delay * 2 if task.doubling else delay
        return state

    def _params(self, step: Any, context: dict[str, Any]) -> BaseModel:
        rendered = {
            key: render(value, context, shell=True)
            if (step.action, key) in SHELL_PARAMS and isinstance(value, str)
            else _render_all(value, context)
            for key, value in step.params.items()
        }
        try:
            return PARAMS[step.action].model_validate(rendered)
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(p) for p in problem["loc"])
            raise ValueError(f"params.{where}: {problem['msg']} (once rendered)") from None

    def _attempt(
        self, owner: Any, step: Any, params: BaseModel, context: dict[str, Any]
    ) -> StepState:
        timeout = step.timeout or DEFAULT_STEP_TIMEOUT
        run = RunContext(context, time.monotonic() + timeout, self.stop, self.services, owner)
        action = self.actions[step.action]
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"step-{step.key}")
        future = pool.submit(action, params, run)
        try:
            result = future.result(timeout=timeout)
        except FutureTimeout:  # the action is left to end by itself: its deadline has passed
            return StepState(step.key, "failed", error=f"timed out after {timeout:g}s")
        except ActionError as exc:
            return StepState(step.key, "failed", error=str(exc))
        except Exception as exc:  # an action's bug fails its step, never the executor
            return StepState(step.key, "failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return StepState(
            step.key,
            "ok" if result.ok else "failed",
            output=result.output[-OUTPUT_LIMIT:],
            outputs=result.outputs,
            error="" if result.ok else result.output[-OUTPUT_LIMIT:],
        )


def _blocks(state: StepState, task: Task) -> bool:
    """Whether a finished need keeps its dependants from running: it failed (and is not
    tolerated), or was itself skipped for a failed need."""
    failed = state.status == "failed" and not task.tolerated
    return failed or bool(state.status == "skipped" and state.outputs.get("blocked"))


def _render_all(value: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return render(value, context)
    if isinstance(value, list):
        return [_render_all(v, context) for v in value]
    if isinstance(value, dict):
        return {k: _render_all(v, context) for k, v in value.items()}
    return value
