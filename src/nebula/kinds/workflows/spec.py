"""The models of a workflow (`workflows/*.yaml`): when it runs (`on`), what a missed or an
overlapping run does, and its steps, a DAG through each step's `needs`.

The models check the shape; `check.py` checks what needs the whole workflow or the repo's
`nebula.yaml`: the DAG (unknown needs, cycles), each step's params against its action,
templates, conditions, channels and nodes.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from nebula.kinds.runbooks.params import ACTIONS
from nebula.kinds.runbooks.spec import check_action, check_event
from nebula.spec.base import Duration, StrictModel
from nebula.spec.names import Name, excerpt
from nebula.spec.remediation import Cron

_STEP_ID = re.compile(r"[a-z][a-z0-9_]{0,62}")


def _step_id(text: str) -> str:
    if not _STEP_ID.fullmatch(text):
        raise ValueError(
            f"{excerpt(text)} is not a step id: lowercase letters, digits and '_', starting "
            "with a letter (templates read it as steps.<id>), e.g. stop_db"
        )
    return text


StepId = Annotated[str, AfterValidator(_step_id)]
EventName = Annotated[str, AfterValidator(check_event)]


class On(StrictModel):
    """What starts a run: a cron schedule (UTC), a daemon event, a person; any of them."""

    schedule: Cron | None = Field(default=None, description="a cron expression: '0 3 * * *'")
    event: EventName | None = Field(
        default=None, description="a daemon event: KIND or KIND.STATUS, e.g. sync_finished.failed"
    )
    manual: bool = Field(default=False, description="`nebula workflows run NAME` may start it")

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.schedule is None and self.event is None and not self.manual:
            raise ValueError("say when it runs: schedule, event or manual: true (any of them)")
        return self

    def next_time(self, after: datetime) -> datetime | None:
        """When the schedule fires next, strictly after `after` (UTC); None without one."""
        if self.schedule is None:
            return None
        from apscheduler.triggers.cron import CronTrigger

        trigger = CronTrigger.from_crontab(self.schedule, timezone="UTC")
        # cron fires on whole minutes: a second later skips `after` itself and nothing else
        fire: datetime | None = trigger.get_next_fire_time(None, after + timedelta(seconds=1))
        return fire


class WorkflowStep(StrictModel):
    id: StepId = Field(description="what `needs` names and templates read as steps.<id>")
    name: str | None = Field(default=None, min_length=1, description="shown instead of the id")
    action: str = Field(description="one of " + ", ".join(ACTIONS))
    params: dict[str, Any] = {}
    needs: list[StepId] = Field(default=[], description="the steps that must finish first")
    condition: str | None = Field(default=None, description="run the step only when it holds")
    timeout: Duration | None = None
    retries: int = Field(default=0, ge=0, le=10)
    backoff: Duration = Field(default=5.0, description="the first delay between tries, doubling")
    continue_on_error: bool = Field(
        default=False,
        description="a failure of this step neither fails the run nor skips its dependants",
    )

    @property
    def title(self) -> str:
        return self.name or self.id

    @property
    def key(self) -> str:
        """What the step engine and templates (`steps.<key>`) call it: its id."""
        return self.id

    @property
    def requires_approval(self) -> bool:
        return False

    @field_validator("action")
    @classmethod
    def _known_action(cls, action: str) -> str:
        return check_action(action)

    @field_validator("needs")
    @classmethod
    def _once_each(cls, needs: list[str]) -> list[str]:
        seen: dict[str, int] = {}
        for index, need in enumerate(needs):
            if seen.setdefault(need, index) != index:
                raise PydanticCustomError(
                    "need_twice", f"{need!r} is needed twice; name it once", {"at": (index,)}
                )
        return needs


class Workflow(StrictModel):
    name: Name
    description: str = ""
    on: On
    catch_up: Literal["none", "once"] = Field(
        default="none", description="runs missed while nebulad was down: none, or once"
    )
    concurrency: Literal["skip", "queue", "cancel_previous"] = Field(
        default="skip", description="a run starting while another runs: skip, queue or cancel it"
    )
    steps: list[WorkflowStep] = Field(min_length=1)

    @field_validator("steps")
    @classmethod
    def _unique_ids(cls, steps: list[WorkflowStep]) -> list[WorkflowStep]:
        first: dict[str, int] = {}
        for index, step in enumerate(steps):
            if first.setdefault(step.id, index) != index:
                raise PydanticCustomError(
                    "step_twice",
                    f"another step is also {step.id!r}; give each step its own id",
                    {"at": (index, "id"), "first": (first[step.id], "id")},
                )
        return steps
