"""The models of a runbook (`runbooks/*.yml`): a trigger, steps and an escalation.

The models check the shape; `check.py` checks what needs more than one field or the repo's
`nebula.yaml`: each step's params against its action, templates, conditions, channels, nodes.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from nebula.kinds.runbooks.params import ACTIONS, DOCKER_COMMANDS
from nebula.spec.base import Duration, StrictModel
from nebula.spec.names import Name, excerpt
from nebula.spec.remediation import Cron

_NOT_KEY = re.compile(r"[^a-z0-9]+")
_FIELD_OF_TYPE = {"alert": "alert", "event": "event", "schedule": "schedule"}
# nebulad's events a runbook may answer (see daemon.control.Event), with `.STATUS` optional
EVENT_KINDS = (
    "sync_started", "sync_finished", "sync_held", "health", "certificate_expiring",
    "dns_changed", "proxy_changed", "incident", "runbook", "suspended", "resumed", "rollback",
)  # fmt: skip


def check_event(event: str) -> str:
    """`event` if it names a daemon event (`KIND` or `KIND.STATUS`), else ValueError."""
    kind = event.partition(".")[0]
    if kind not in EVENT_KINDS:
        close = difflib.get_close_matches(kind, EVENT_KINDS, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "events: " + ", ".join(EVENT_KINDS)
        raise ValueError(f"no event {excerpt(kind)} (write KIND or KIND.STATUS); {hint}")
    return event


def check_action(action: str) -> str:
    """`action` if it is one of `ACTIONS`, else ValueError with the nearest one."""
    if action not in ACTIONS:
        close = difflib.get_close_matches(action, ACTIONS, n=1)
        docker = difflib.get_close_matches(action, DOCKER_COMMANDS, n=1)
        if close and not (docker and _likeness(action, docker[0]) > _likeness(action, close[0])):
            hint = f"did you mean {close[0]!r}?"
        elif docker:  # `restat` is docker's restart rather than the restore action
            command = docker[0]
            hint = f"for `docker {command}` write action: docker, params: {{command: {command}}}"
        else:
            hint = "actions: " + ", ".join(ACTIONS)
        raise ValueError(f"unknown action {excerpt(action)}; {hint}")
    return action


class Trigger(StrictModel):
    """When a runbook runs: an alert (narrowed by `alert` and `condition`), an event, a cron
    schedule, or only when asked (`manual`)."""

    type: Literal["alert", "event", "schedule", "manual"]
    condition: str | None = Field(
        default=None, description="over the alert's context: service, alert, labels"
    )
    alert: str | None = Field(default=None, description="the alert it answers, e.g. unhealthy")
    event: str | None = Field(
        default=None, description="a daemon event: KIND or KIND.STATUS, e.g. sync_finished.failed"
    )
    schedule: Cron | None = Field(default=None, description="a cron expression: '0 3 * * *'")

    @field_validator("event")
    @classmethod
    def _known_event(cls, event: str | None) -> str | None:
        return None if event is None else check_event(event)

    @model_validator(mode="after")
    def _fields_of_type(self) -> Self:
        for name, owner in _FIELD_OF_TYPE.items():
            given = getattr(self, name) is not None
            if given and self.type != owner:
                raise ValueError(f"{name} is for triggers of type {owner}, not {self.type}")
            if not given and self.type == owner and owner != "alert":
                raise ValueError(f"a trigger of type {owner} needs {name}")
        return self


class Step(StrictModel):
    name: str = Field(min_length=1, description="later steps read it as steps.<key>")
    action: str = Field(description="one of " + ", ".join(ACTIONS))
    params: dict[str, Any] = {}
    condition: str | None = Field(default=None, description="run the step only when it holds")
    timeout: Duration | None = None
    retries: int = Field(default=0, ge=0, le=10)
    retry_delay: Duration = 5.0
    on_failure: Literal["stop", "continue"] = "stop"
    requires_approval: bool = False

    @property
    def title(self) -> str:
        return self.name

    @property
    def key(self) -> str:
        """What `steps.<key>` calls this step: "Check health" → "check_health"."""
        return _NOT_KEY.sub("_", self.name.lower()).strip("_")

    @field_validator("action")
    @classmethod
    def _known_action(cls, action: str) -> str:
        return check_action(action)

    @field_validator("name")
    @classmethod
    def _has_key(cls, name: str) -> str:
        if not _NOT_KEY.sub("", name.lower()):
            raise ValueError("a step's name needs a letter or digit (steps.<key> is made of them)")
        return name


def _likeness(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


class Escalation(StrictModel):
    """Whom to tell, once per incident, when the runbook has failed `after_failures` times."""

    after_failures: int = Field(default=3, ge=1, le=100)
    notify: list[str] = Field(default=[], description="channels of nebula.yaml's notifications")


class Runbook(StrictModel):
    name: Name
    description: str = ""
    trigger: Trigger
    steps: list[Step] = Field(min_length=1)
    escalation: Escalation | None = None
    max_restarts: int | None = Field(
        default=None, ge=0, le=100, description="default: nebula.yaml's remediation.max_restarts"
    )
    restart_window: Duration | None = None
    cooldown: Duration | None = None

    @field_validator("steps")
    @classmethod
    def _unique_keys(cls, steps: list[Step]) -> list[Step]:
        first: dict[str, int] = {}
        for index, step in enumerate(steps):
            if first.setdefault(step.key, index) != index:
                raise PydanticCustomError(
                    "step_twice",
                    f"another step is also steps.{step.key}; give each step its own name",
                    {"at": (index, "name"), "first": (first[step.key],)},
                )
        return steps
