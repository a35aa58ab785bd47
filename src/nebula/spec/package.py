"""A catalog package, in exactly the seed's package format."""

from __future__ import annotations

import re
from typing import Annotated, Self

from pydantic import AfterValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from nebula.spec.base import Duration, StrictModel, Text
from nebula.spec.compose import Compose
from nebula.spec.names import Name, excerpt

VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Variable(StrictModel):
    name: str
    description: str = ""
    default: Text | None = None
    required: bool = False
    secret: bool = False
    expose_to_hooks: bool = Field(
        default=False,
        description="give this secret variable to hooks too; non-secret ones always are",
    )

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not VARIABLE_NAME.fullmatch(value):
            raise ValueError(f"{excerpt(value)} is not a variable name (letters, digits and _)")
        return value


def _declared_once(variables: list[Variable]) -> list[Variable]:
    first: dict[str, int] = {}
    for index, variable in enumerate(variables):
        if first.setdefault(variable.name, index) != index:
            raise PydanticCustomError(
                "declared_twice",
                f"variable {variable.name} is declared twice",
                {"at": (index, "name"), "first": (first[variable.name],)},
            )
    return variables


Variables = Annotated[list[Variable], AfterValidator(_declared_once)]
"""An app's variables, each name declared once (pydantic errors point at the second)."""


class HealthCheck(StrictModel):
    """One of: `url` (HTTP GET from the node), `tcp` (a connection from the node, to
    `host:port` or to the host port publishing `service`'s `port`), or `exec` (a command in
    `service`'s container, healthy when it exits 0)."""

    name: str
    url: Text | None = None
    expect_status: list[int] | None = Field(
        default=None, description="HTTP statuses that count as healthy; default any 2xx or 3xx"
    )
    tcp: Text | None = Field(default=None, description="host:port to connect to")
    service: str | None = Field(default=None, description="the compose service for port/exec")
    port: int | None = Field(default=None, ge=1, le=65535, description="container port (TCP)")
    exec: list[Text] | None = Field(default=None, min_length=1, description="command to run")
    interval: Duration = 30.0
    timeout: Duration = 10.0

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        kinds = [k for k in ("url", "tcp", "port", "exec") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                "give exactly one of `url` (HTTP), `tcp: host:port`, `service` + `port` (TCP) "
                "or `service` + `exec` (a command in the container)"
            )
        if kinds[0] in ("port", "exec") and self.service is None:
            raise ValueError(f"`{kinds[0]}` needs `service`: the compose service it concerns")
        if kinds[0] in ("url", "tcp") and self.service is not None:
            raise ValueError("`service` goes with `port` or `exec`, not with `url` or `tcp`")
        if self.expect_status is not None and self.url is None:
            raise ValueError("`expect_status` belongs to HTTP checks (`url`)")
        if self.expect_status is not None and not all(100 <= s <= 599 for s in self.expect_status):
            raise ValueError("`expect_status` holds HTTP status codes (100-599)")
        return self

    def summary(self) -> str:
        """`GET http://…`, `tcp 127.0.0.1:5432`, `tcp db:5432` or `exec in db: pg_isready`."""
        if self.url is not None:
            codes = ", ".join(map(str, self.expect_status or ()))
            return f"GET {self.url}" + (f" (expect {codes})" if codes else "")
        if self.tcp is not None:
            return f"tcp {self.tcp}"
        if self.port is not None:
            return f"tcp {self.service}:{self.port}"
        return f"exec in {self.service}: {' '.join(self.exec or ())}"


class Hooks(StrictModel):
    """Shell lines run on the node. post_install: once, after the first healthy install;
    pre_upgrade / post_upgrade: around a version change (before the containers change / after
    they are healthy); pre_uninstall: before the containers of a removed installation go."""

    post_install: list[Text] = []
    pre_upgrade: list[Text] = []
    post_upgrade: list[Text] = []
    pre_uninstall: list[Text] = []


class AppDefinition(StrictModel):
    """What a package and an inline-compose installation share: the app itself."""

    compose: Compose
    variables: Variables = []
    health_checks: list[HealthCheck] = []
    hooks: Hooks = Hooks()


def _specifier(value: str) -> str:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        SpecifierSet(value)
    except InvalidSpecifier:
        raise ValueError(
            f"{excerpt(value)} is not a version constraint: use e.g. '>=15', '>=15,<17' or '==16.4'"
        ) from None
    return value


class Requirement(StrictModel):
    """Another package this one needs installed beside it (e.g. a shared database)."""

    package: Name
    version: Annotated[str, AfterValidator(_specifier)] = Field(
        default="", description="PEP 440 constraint on its version, e.g. '>=15,<17'"
    )
    prefix: str | None = Field(
        default=None,
        description="prefix of the values it provides, e.g. DB gives DB_HOST, DB_PORT; "
        "default: the package name in capitals (postgres: POSTGRES_HOST)",
    )

    @field_validator("prefix")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        if value is not None and not VARIABLE_NAME.fullmatch(value):
            raise ValueError(f"{excerpt(value)} is not a variable name (letters, digits and _)")
        return value

    @property
    def value_prefix(self) -> str:
        return self.prefix or self.package.upper().replace("-", "_").replace(".", "_")


class Provides(StrictModel):
    """What dependants get: `<PREFIX>_HOST` (the service's container, reachable from them) and
    each of `values` as `<PREFIX>_<KEY>`, interpolated with this package's own variables."""

    service: str = Field(description="the compose service dependants connect to")
    values: dict[str, Text] = {}

    @field_validator("values")
    @classmethod
    def _keys(cls, values: dict[str, str]) -> dict[str, str]:
        for key in values:
            if not VARIABLE_NAME.fullmatch(key) or key == "HOST":
                raise ValueError(
                    f"{excerpt(key)}: keys are variable names, and HOST is given already"
                )
        return values


class Package(AppDefinition):
    name: Name
    version: Text
    description: str = ""
    category: str = ""
    icon: str | None = None
    repository: str | None = None
    requires: list[Requirement] = []
    provides: Provides | None = None
