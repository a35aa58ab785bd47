"""The parameters of each runbook action, one model per action (`PARAMS`).

A step's `params` are checked against its action's model when the runbook loads; every string
may be a template (`{{ service.container_id }}`), rendered when the step runs, after which the
executor validates the rendered params against the same model.
"""

from __future__ import annotations

from typing import Literal, Self, get_args

from pydantic import Field, field_validator, model_validator

from nebula.spec.base import Duration, StrictModel
from nebula.spec.interpolate import SECRET_REFERENCE
from nebula.spec.names import Name


class LogParams(StrictModel):
    level: Literal["debug", "info", "warn", "warning", "error"] = "info"
    message: str


DockerCommand = Literal["restart", "start", "stop", "recreate", "exec", "logs", "usage"]
DOCKER_COMMANDS: tuple[str, ...] = get_args(DockerCommand)


class DockerParams(StrictModel):
    """`usage` reports the biggest volumes and unused images Nebula owns (it deletes nothing);
    the other commands act on one container."""

    command: DockerCommand
    container: str | None = Field(
        default=None, description="the container's name or id, e.g. {{ service.container }}"
    )
    cmd: list[str] | str | None = Field(default=None, description="exec: what to run")
    lines: int = Field(
        default=50, ge=1, le=10000, description="logs: last lines; usage: how many of each"
    )

    @model_validator(mode="after")
    def _fits_command(self) -> Self:
        if (self.command == "exec") != (self.cmd is not None):
            raise ValueError("cmd is what `exec` runs: give it with command: exec, and only then")
        if (self.command == "usage") != (self.container is None):
            raise ValueError(f"command {self.command} needs a container (and only usage has none)")
        return self


class WaitParams(StrictModel):
    duration: Duration


class HealthCheckParams(StrictModel):
    """An HTTP check (`url`, answered with `expected_status`) or a TCP one (`host` + `port`)."""

    url: str | None = None
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    expected_status: int = Field(default=200, ge=100, le=599)
    timeout: Duration = 10.0

    @model_validator(mode="after")
    def _http_or_tcp(self) -> Self:
        tcp = self.host is not None or self.port is not None
        if (self.url is not None) == tcp or (tcp and (self.host is None or self.port is None)):
            raise ValueError("give url (an HTTP check) or host and port (a TCP check)")
        return self


class HttpParams(StrictModel):
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: str
    headers: dict[str, str] = {}
    body: str | None = None
    expected_status: int | None = Field(
        default=None, ge=100, le=599, description="unset: any 2xx answer succeeds"
    )
    timeout: Duration = 30.0


class ShellParams(StrictModel):
    command: str = Field(description="run by /bin/sh on the node running nebulad")
    timeout: Duration = 60.0


class SshParams(StrictModel):
    node: str = Field(description="a node of nebula.yaml's `nodes:`")
    command: str
    timeout: Duration = 60.0


class NotifyParams(StrictModel):
    channel: str | None = Field(default=None, description="a channel of `notifications:`")
    channels: list[str] = []
    message: str
    title: str | None = None

    @model_validator(mode="after")
    def _somewhere(self) -> Self:
        if (self.channel is None) == (not self.channels):
            raise ValueError("give channel (one) or channels (a list)")
        return self

    @property
    def targets(self) -> list[str]:
        return [self.channel] if self.channel is not None else list(self.channels)


class IncidentParams(StrictModel):
    severity: Literal["info", "warning", "critical"] | None = None
    annotate: str | None = Field(default=None, description="a note for the incident's timeline")
    resolve: bool = False
    resolution: str = ""

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.severity is None and self.annotate is None and not self.resolve:
            raise ValueError("give severity, annotate or resolve: true")
        return self


class AgentParams(StrictModel):
    """An agent of the repo's `agents/` runs `task`; its answer is the step's output and, in a
    run answering an incident, goes on the incident's timeline."""

    agent: Name = Field(description="an agent of agents/*.yaml")
    task: str = Field(min_length=1, description="what to do, e.g. diagnose {{ incident.title }}")
    timeout: Duration | None = Field(
        default=None, description="how long the step waits for the answer (default: the step's)"
    )


class Forget(StrictModel):
    """Retention after a backup (`restic forget --prune`), per volume: the newest `keep_last`
    snapshots, and the newest of each of the last `keep_daily` days, weeks, months."""

    keep_last: int | None = Field(default=None, ge=1)
    keep_daily: int | None = Field(default=None, ge=1)
    keep_weekly: int | None = Field(default=None, ge=1)
    keep_monthly: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not any((self.keep_last, self.keep_daily, self.keep_weekly, self.keep_monthly)):
            raise ValueError("give keep_last, keep_daily, keep_weekly or keep_monthly")
        return self


class _Repository(StrictModel):
    installation: str
    repository: str = Field(
        description="a restic repository: a folder, or s3:..., sftp:..., b2:..., rest:..."
    )
    password: str = Field(description="the repository's password: ${secret:NAME}")
    volumes: list[str] = Field(
        default=[], description="named volumes (Docker's name or the compose one); default: all"
    )

    @field_validator("password")
    @classmethod
    def _a_secret(cls, password: str) -> str:
        if not SECRET_REFERENCE.fullmatch(password.strip()):
            raise ValueError(
                "write the password as ${secret:NAME} (stored with `nebula secrets set NAME`); "
                "a password in the repo would be readable by anyone with the repo"
            )
        return password.strip()

    @property
    def secret_name(self) -> str:
        return self.password[len("${secret:") : -1]


class BackupParams(_Repository):
    """A snapshot of each volume; the repository is created on the first backup."""

    stop: bool | Literal["pause"] = Field(
        default=False,
        description="true: the installation is stopped during the backup, pause: paused; "
        "it always runs again afterwards",
    )
    tags: list[str] = []
    forget: Forget | None = None

    @field_validator("tags")
    @classmethod
    def _plain_tags(cls, tags: list[str]) -> list[str]:
        for tag in tags:
            if not tag or "," in tag or tag.split("=")[0] in ("installation", "volume"):
                raise ValueError(
                    f"tag {tag!r}: a tag is non-empty text without commas, and installation= "
                    "and volume= are Nebula's own"
                )
        return tags


class RestoreParams(_Repository):
    """Each volume's contents replaced by a snapshot's; the installation is stopped meanwhile."""

    snapshot: str = Field(
        default="latest", description="latest (of each volume), or a snapshot id of one volume"
    )


PARAMS: dict[str, type[StrictModel]] = {
    "log": LogParams,
    "docker": DockerParams,
    "wait": WaitParams,
    "health_check": HealthCheckParams,
    "http": HttpParams,
    "shell": ShellParams,
    "ssh": SshParams,
    "notify": NotifyParams,
    "incident": IncidentParams,
    "agent": AgentParams,
    "backup": BackupParams,
    "restore": RestoreParams,
}
ACTIONS = tuple(PARAMS)
