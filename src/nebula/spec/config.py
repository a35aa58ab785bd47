"""`nebula.yaml`: where the homelab's Docker Engine is and the defaults Nebula applies with."""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import Any, Self

from pydantic import Field, model_validator

from nebula.spec.base import Duration, StrictModel


class DockerEndpoint(StrictModel):
    host: str | None = Field(
        default=None,
        description="Docker Engine URL, e.g. unix:///var/run/docker.sock or tcp://nas:2375; "
        "unset means DOCKER_HOST or the local socket",
    )


class Defaults(StrictModel):
    bind_address: str = Field(
        default="0.0.0.0",
        description="host address for published ports that name none (compose's default)",
    )
    parallelism: int = Field(default=8, ge=1, le=64, description="installations applied at once")
    health_timeout: Duration = Field(
        default=120.0, description="how long apply waits for containers to become healthy"
    )
    hook_timeout: Duration = Field(default=60.0, description="how long one hook may run")
    stop_timeout: Duration = Field(default=10.0, description="grace period before a kill")
    subnet_pool: IPv4Network | None = Field(
        default=IPv4Network("10.213.0.0/16"),
        description="where installation networks get their subnets; null lets Docker choose "
        "(its default pools hold about 30 networks)",
    )
    subnet_size: int = Field(default=26, ge=16, le=29, description="prefix length of each subnet")

    @model_validator(mode="after")
    def _pool_fits(self) -> Self:
        if self.subnet_pool is not None and self.subnet_pool.prefixlen > self.subnet_size:
            raise ValueError(
                f"subnet_size /{self.subnet_size} is larger than subnet_pool {self.subnet_pool}"
            )
        return self


class NebulaConfig(StrictModel):
    docker: DockerEndpoint = DockerEndpoint()
    defaults: Defaults = Defaults()

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        """`docker:` with nothing under it (all commented out) means the defaults."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data
