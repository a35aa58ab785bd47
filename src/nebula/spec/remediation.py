"""The remediation sections of `nebula.yaml`: notification channels, the safety limits every
runbook runs under, maintenance windows, and the built-in runbooks a repo enables."""

from __future__ import annotations

import difflib
from typing import Annotated, Self

from pydantic import AfterValidator, AwareDatetime, Field, model_validator

from nebula.paths import builtin_runbooks_dir
from nebula.spec.base import Duration, StrictModel, Text
from nebula.spec.names import Name, excerpt


def check_cron(text: str) -> str:
    """`text` if it is a five-field crontab expression (`*/5 * * * *`), else ValueError."""
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(text, timezone="UTC")
    except ValueError as exc:
        raise ValueError(
            f"{excerpt(text)} is not a cron expression ({exc}); write five fields: "
            "minute hour day-of-month month day-of-week, e.g. '0 3 * * *'"
        ) from None
    return text


Cron = Annotated[str, AfterValidator(check_cron)]


def builtin_runbook_names() -> list[str]:
    """The names of the runbooks shipped with Nebula (one `NAME.yml` each)."""
    return sorted(p.stem for p in builtin_runbooks_dir().glob("*.yml"))


def _builtin_runbook(name: str) -> str:
    known = builtin_runbook_names()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "built-in runbooks: " + ", ".join(known)
        raise ValueError(f"no built-in runbook {name!r}; {hint}")
    return name


BuiltinRunbook = Annotated[Name, AfterValidator(_builtin_runbook)]


class NotificationChannel(StrictModel):
    """Where a notification goes: Apprise URLs (`discord://…`, `mailto://…`, `ntfy://…`)."""

    urls: list[Text] = Field(
        min_length=1,
        description="Apprise URLs; write credentials as ${secret:NAME}, never in the repo",
    )


class Remediation(StrictModel):
    """The limits every runbook runs under; a runbook may lower or raise the restart ones."""

    max_restarts: int = Field(
        default=3, ge=0, le=100, description="restarts of one service within restart_window"
    )
    restart_window: Duration = Field(default=3600.0, description="the window max_restarts counts")
    cooldown: Duration = Field(
        default=60.0, description="the least time between two runs of a runbook for one service"
    )
    concurrency: int = Field(default=4, ge=1, le=64, description="runbooks running at once")
    reopen_window: Duration = Field(
        default=3600.0,
        description="an alert coming back within this time re-opens its resolved incident",
    )
    notify: list[Name] = Field(
        default=[], description="channels told when an incident opens, re-opens or resolves"
    )


class MaintenanceWindow(StrictModel):
    """A time when runbooks and notifications stay quiet for what `match` names: every
    `cron` start for `duration`, or once from `start` to `end`."""

    match: dict[str, Text] = Field(
        min_length=1, description="alert labels to match, e.g. {installation: blog}"
    )
    cron: Cron | None = Field(default=None, description="when each window starts: '0 3 * * 0'")
    duration: Duration | None = Field(default=None, description="how long each window lasts")
    start: AwareDatetime | None = Field(default=None, description="2026-05-01T22:00:00+02:00")
    end: AwareDatetime | None = None
    comment: str = ""

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        recurring = self.cron is not None or self.duration is not None
        once = self.start is not None or self.end is not None
        if recurring == once:
            raise ValueError("give either cron and duration, or start and end")
        if recurring and (self.cron is None or not self.duration):
            raise ValueError("a recurring window needs both cron and a duration above 0")
        if self.start is not None and (self.end is None or self.end <= self.start):
            raise ValueError("a window needs an end after its start")
        if self.end is not None and self.start is None:
            raise ValueError("a window needs a start before its end")
        return self
