"""The model of a project (`projects/*.yaml`): where its code is (`git_url` and `branch`, or
`path:` a folder of the config repo), how it is built (`dockerfile`, `build_args`; without a
Dockerfile, a detected default), how it runs (`port`, `health`, `resources`) and its
environments, each with its own branch, values, hostname and node."""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, field_validator, model_validator

from nebula.spec.base import Duration, StrictModel, Text
from nebula.spec.installation import Hostname
from nebula.spec.interpolate import secret_references
from nebula.spec.names import Name, excerpt

EnvironmentName = Literal["development", "staging", "production"]
_BRANCH = re.compile(r"[A-Za-z0-9._/-]{1,200}")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MEMORY = r"^[0-9]+[bkmg]?$"


def _branch(value: str) -> str:
    if not _BRANCH.fullmatch(value) or value.startswith(("-", "/")) or ".." in value:
        raise ValueError(f"{excerpt(value)} is not a branch name (e.g. main, release/2)")
    return value


Branch = Annotated[str, AfterValidator(_branch)]


class HealthSpec(StrictModel):
    """When a new container may take traffic."""

    path: str = Field(
        default="/", pattern=r"^/", description="answers 2xx or 3xx over HTTP once ready"
    )
    timeout: Duration = Field(
        default=60.0, description="not healthy by then: the deployment fails, nothing switches"
    )
    interval: Duration = Field(default=0.5, description="between two checks")


class Resources(StrictModel):
    cpus: float | None = Field(default=None, gt=0, le=256, description="CPUs it may use")
    memory: str | None = Field(
        default=None, pattern=_MEMORY, description="a memory limit, e.g. 256m, 1g"
    )


class EnvironmentSpec(StrictModel):
    """One environment: its own branch, values, hostname and node."""

    branch: Branch | None = Field(default=None, description="unset: the project's branch")
    values: dict[str, Text] = Field(
        default={}, description="environment variables; secrets as ${secret:NAME}"
    )
    expose: Hostname | None = Field(
        default=None, description="the hostname Caddy routes to it; unset: not exposed"
    )
    node: Name | None = Field(default=None, description="the node it runs on; unset: the first")

    @field_validator("values")
    @classmethod
    def _names(cls, values: dict[str, str]) -> dict[str, str]:
        for key in values:
            if not _VARIABLE.fullmatch(key):
                raise ValueError(
                    f"{excerpt(key)} is not an environment variable name (letters, digits, _)"
                )
        return values


class Project(StrictModel):
    name: Name = Field(description="the project's name: its images are nebula-project/NAME")
    git_url: str | None = Field(
        default=None, min_length=1, description="the git remote its code is fetched from"
    )
    path: str | None = Field(
        default=None, min_length=1, description="or: a folder of the config repo with its code"
    )
    branch: Branch = Field(default="main", description="the branch deployed (per environment too)")
    dockerfile: str | None = Field(
        default=None,
        description="the Dockerfile's path in the code; unset: Dockerfile, else a detected one",
    )
    build_args: dict[str, Text] = Field(default={}, description="--build-arg values (no secrets)")
    port: int = Field(default=8080, ge=1, le=65535, description="the port the app serves on")
    health: HealthSpec = HealthSpec()
    resources: Resources = Resources()
    keep: int = Field(default=5, ge=1, le=100, description="images kept for rollback")
    build_timeout: Duration = Field(default=600.0, gt=0, description="a build running longer fails")
    drain: Duration = Field(
        default=10.0, description="how long the old container keeps serving after the switch"
    )
    environments: dict[EnvironmentName, EnvironmentSpec] = Field(
        min_length=1, description="development, staging and/or production"
    )

    @field_validator("build_args")
    @classmethod
    def _no_secrets(cls, args: dict[str, str]) -> dict[str, str]:
        for key, value in args.items():
            if secret_references(value):
                raise ValueError(
                    f"build_args.{key}: a secret passed as a build argument stays in the image's "
                    "history; give it to the app as an environment value instead"
                )
        return args

    @field_validator("git_url")
    @classmethod
    def _no_password(cls, url: str | None) -> str | None:
        if url is not None and re.match(r"^[a-z][a-z0-9+.-]*://[^/@]*:[^/@]*@", url, re.I):
            raise ValueError(
                "a password in git_url would be stored and shown with the project; use an SSH "
                "key or git's credential helper for the node's git instead"
            )
        return url

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.git_url is None) == (self.path is None):
            raise ValueError(
                "give either `git_url:` (a git remote) or `path:` (a folder of "
                "the config repo) for the project's code"
            )
        return self
