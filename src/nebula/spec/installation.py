"""An installation: one `packages/*.yaml` file of the config repo.

Either it names a catalog `package`, or it carries an inline `compose:` app (with the same
`variables`, `health_checks` and `hooks` a package has). A package installation pins an exact
`version`, or follows a `channel`: `latest` (the default) takes the newest version in the
catalog, a prefix such as `"16"` or `"16.4"` the newest version within it. Following a channel,
a catalog update is an upgrade at the next sync; a pin changes only by editing it
(`nebula upgrade NAME --to V`).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from nebula.spec.base import StrictModel, Text
from nebula.spec.compose import Compose
from nebula.spec.names import Name, excerpt
from nebula.spec.package import HealthCheck, Hooks, Variables

_HOSTNAME = re.compile(
    r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+"
)


def _hostname(value: str) -> str:
    value = value.lower().rstrip(".")
    if not _HOSTNAME.fullmatch(value):
        raise ValueError(
            f"{excerpt(value)} is not a fully qualified hostname (e.g. photos.example.com)"
        )
    return value


Hostname = Annotated[str, AfterValidator(_hostname)]


def _at(path: tuple[str, ...], message: str) -> PydanticCustomError:
    """An error of the whole installation reported at the line of `path`."""
    return PydanticCustomError("installation", message, {"at": path})


class Expose(StrictModel):
    """A service port published at a hostname: Nebula derives its DNS record and proxy route."""

    host: Hostname
    service: str | None = Field(
        default=None, description="the compose service; optional when the app has only one"
    )
    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="the container port; optional when the service declares exactly one",
    )
    auth: Literal["nebula"] | None = Field(
        default=None,
        description="`nebula`: only users logged in to Nebula's dashboard (operator or admin) "
        "reach it; Caddy asks nebulad, which must serve its dashboard over TCP (--tcp-listen, "
        "--ui), and others are sent to its login page on this hostname",
    )


Grant = Literal[
    "host_network",
    "privileged",
    "cap_add",
    "devices",
    "sysctls",
    "host_pid",
    "host_ipc",
    "docker_socket",
    "host_system",
]


class Installation(StrictModel):
    name: Name | None = None
    package: Name | None = Field(default=None, description="the catalog package's name")
    version: Text | None = Field(default=None, description="an exact catalog version")
    channel: Text | None = Field(
        default=None,
        description="follow the newest version: `latest`, or a version prefix such as `16`",
    )
    node: Name | None = Field(
        default=None, description="the node it runs on (nebula.yaml `nodes`); default the first"
    )
    placement: dict[str, Text] | None = Field(
        default=None,
        description="instead of `node:`, what its node must have: `gpu: true` matches a node "
        "with a GPU, any other key the node's `labels`; the matching node with the fewest "
        "installations is chosen",
    )
    expose: list[Expose] = []
    dependencies: dict[str, Name] = Field(
        default={},
        description="which installation satisfies a required package, e.g. {postgres: shared-db}; "
        "needed only when several installations could",
    )
    values: dict[str, Text] = {}
    compose: Compose | None = None
    variables: Variables = []
    health_checks: list[HealthCheck] = []
    hooks: Hooks | None = None
    allow: list[Grant] = Field(
        default=[],
        description="powers over the host its app may use: host_network (network_mode: host), "
        "privileged, cap_add, devices, sysctls, host_pid (pid: host), host_ipc (ipc: host), "
        "docker_socket (a bind of the Docker socket), host_system (a bind of /, /etc, /proc, "
        "/sys, /dev and the node's other system folders)",
    )

    @model_validator(mode="after")
    def _package_or_compose(self) -> Self:
        if (self.package is None) == (self.compose is None):
            raise ValueError(
                "give either `package:` (a catalog package) or `compose:` (a custom app)"
            )
        if self.package is not None and (self.variables or self.health_checks or self.hooks):
            raise ValueError(
                "`variables`, `health_checks` and `hooks` belong to inline `compose:` apps; "
                "a catalog package brings its own"
            )
        if self.compose is not None and (self.version is not None or self.channel is not None):
            raise ValueError(
                "`version` and `channel` choose a catalog package's version; "
                "an inline `compose:` app has none"
            )
        if self.node is not None and self.placement is not None:
            raise _at(
                ("placement",),
                "give `node:` (one node) or `placement:` (a selector of nodes), not both",
            )
        if self.placement == {}:
            raise _at(
                ("placement",),
                "`placement:` is empty: say what the node must have (e.g. gpu: true), or leave "
                "it out for the first node",
            )
        if (self.placement or {}).get("gpu", "true") not in ("true", "false"):
            raise _at(("placement", "gpu"), "`gpu:` is true or false")
        if self.version is not None and self.channel is not None:
            raise ValueError("give `version` (a pin) or `channel` (follow updates), not both")
        return self
