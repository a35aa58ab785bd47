"""A catalog package, in exactly the seed's package format."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, field_validator

from nebula.spec.base import Duration, StrictModel, Text
from nebula.spec.compose import Compose

VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RESOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")


def _resource_name(value: str) -> str:
    if not _RESOURCE_NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid name: use lowercase letters, digits, '.', '_' and '-', "
            "starting with a letter or digit (at most 63 characters)"
        )
    return value


ResourceName = Annotated[str, AfterValidator(_resource_name)]


class Variable(StrictModel):
    name: str
    description: str = ""
    default: Text | None = None
    required: bool = False
    secret: bool = False

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not VARIABLE_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a variable name (letters, digits and _)")
        return value


class HealthCheck(StrictModel):
    name: str
    url: Text
    interval: Duration = 30.0
    timeout: Duration = 10.0


class Hooks(StrictModel):
    post_install: list[Text] = []


class AppDefinition(StrictModel):
    """What a package and an inline-compose installation share: the app itself."""

    compose: Compose
    variables: list[Variable] = []
    health_checks: list[HealthCheck] = []
    hooks: Hooks = Hooks()


class Package(AppDefinition):
    name: ResourceName
    version: Text
    description: str = ""
    category: str = ""
    icon: str | None = None
    repository: str | None = None
