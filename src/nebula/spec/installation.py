"""An installation: one `packages/*.yaml` file of the config repo.

Either it names a catalog `package` (optionally pinning `version`), or it carries an inline
`compose:` app (with the same `variables`, `health_checks` and `hooks` a package has).
"""

from __future__ import annotations

from typing import Self

from pydantic import model_validator

from nebula.spec.base import StrictModel, Text
from nebula.spec.compose import Compose
from nebula.spec.package import HealthCheck, Hooks, ResourceName, Variable


class Installation(StrictModel):
    name: ResourceName | None = None
    package: str | None = None
    version: Text | None = None
    values: dict[str, Text] = {}
    compose: Compose | None = None
    variables: list[Variable] = []
    health_checks: list[HealthCheck] = []
    hooks: Hooks | None = None

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
        if self.compose is not None and self.version is not None:
            raise ValueError("`version` pins a catalog package; an inline `compose:` app has none")
        return self
