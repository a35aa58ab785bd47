"""Runs one runbook's steps in order: conditions, templates, retries, timeouts, outputs.

Each step's state is written through the `ExecutionLog` before the next step starts, so an
execution cut short (nebulad killed) continues from its first unfinished step and a finished
step never runs twice. Templates and conditions go through the runbooks kind's sandbox; a
step's params are rendered, then checked against its action's model, then acted on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ValidationError

from nebula.kinds.runbooks.expressions import evaluate, render
from nebula.kinds.runbooks.params import PARAMS
from nebula.kinds.runbooks.spec import Runbook, Step

StepStatus = Literal["ok", "failed", "skipped", "waiting"]
OUTPUT_LIMIT = 4000  # characters of a step's output kept


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

    def step_started(self, step: Step, index: int) -> None: ...
    def step_finished(self, step: Step, index: int, state: StepState) -> None: ...
    def waiting_for_approval(self, step: Step, index: int) -> None: ...


@dataclass
class RunContext:
    """What an action may reach: the execution's template context and the runtime around it."""

    context: dict[str, Any]
    deadline: float  # monotonic time the step must finish by
    stop: threading.Event
    services: Any  # the remediation runtime (docker, notifier, incidents, ...): see actions

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


@dataclass(frozen=True)
class Finished:
    status: Literal["succeeded", "failed", "waiting", "interrupted"]
    steps: dict[str, StepState]
    error: str = ""

    @property
    def completed(self) -> int:
        return sum(1 for s in self.steps.values() if s.status in ("ok", "failed", "skipped"))


DEFAULT_STEP_TIMEOUT = 300.0


class Executor:
    def __init__(
        self,
        actions: Mapping[str, Action],
        services: Any,
        stop: threading.Event,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.actions = actions
        self.services = services
        self.stop = stop
        self.sleep = sleep or stop.wait

    def run(
        self,
        runbook: Runbook,
        context: dict[str, Any],
        log: ExecutionLog,
        done: Mapping[str, StepState] | None = None,
        approved: frozenset[str] = frozenset(),
    ) -> Finished:
        """Run the steps not in `done` (finished before: kept, never run again). A step that
        requires approval waits unless its key is in `approved`."""
        states: dict[str, StepState] = dict(done or {})
        context = {**context, "steps": {k: s.view() for k, s in states.items()}}
        failed = ""
        for index, step in enumerate(runbook.steps):
            if step.key in states and states[step.key].status != "waiting":
                continue
            if self.stop.is_set():
                return Finished("interrupted", states, "nebulad stopped")
            state = self._step(step, index, context, log, approved)
            if state.status == "failed" and self.stop.is_set():  # cut short: not its failure
                return Finished("interrupted", states, "nebulad stopped")
            states[step.key] = state
            context["steps"][step.key] = state.view()
            if state.status == "waiting":
                return Finished("waiting", states)
            log.step_finished(step, index, state)
            if state.status == "failed" and step.on_failure == "stop":
                failed = f"step {step.name!r} failed: {state.error}"
                break
            if state.status == "failed":
                failed = failed or f"step {step.name!r} failed: {state.error}"
        return Finished("failed" if failed else "succeeded", states, failed)

    def _step(
        self,
        step: Step,
        index: int,
        context: dict[str, Any],
        log: ExecutionLog,
        approved: frozenset[str],
    ) -> StepState:
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
        for attempt in range(1, step.retries + 2):
            state = self._attempt(step, params, context)
            state.attempts = attempt
            if state.status == "ok" or attempt > step.retries or self.stop.is_set():
                break
            self.sleep(step.retry_delay)
        return state

    def _params(self, step: Step, context: dict[str, Any]) -> BaseModel:
        rendered = _render_all(step.params, context)
        try:
            return PARAMS[step.action].model_validate(rendered)
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(p) for p in problem["loc"])
            raise ValueError(f"params.{where}: {problem['msg']} (once rendered)") from None

    def _attempt(self, step: Step, params: BaseModel, context: dict[str, Any]) -> StepState:
        timeout = step.timeout or DEFAULT_STEP_TIMEOUT
        run = RunContext(context, time.monotonic() + timeout, self.stop, self.services)
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


def _render_all(value: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return render(value, context)
    if isinstance(value, list):
        return [_render_all(v, context) for v in value]
    if isinstance(value, dict):
        return {k: _render_all(v, context) for k, v in value.items()}
    return value
