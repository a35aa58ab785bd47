"""The compose subset a Nebula package may use (compose file format, `services:` and friends).

Strings stay raw here: ports, volumes and environment may hold `${VAR}` references, so their
syntax is checked after interpolation, when an installation is resolved (see `nebula.kinds`).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, field_validator, model_validator

from nebula.spec.base import Duration, StrictModel, Text
from nebula.spec.names import COMPOSE_NAME, COMPOSE_NAME_RULE, excerpt

Scalar = Text | None
_COUNT = re.compile(r"[0-9]{1,4}")  # ASCII digits (int() takes any) and no overflow at Docker


def _service_name(value: str) -> str:
    if not COMPOSE_NAME.fullmatch(value):
        raise ValueError(f"service name {excerpt(value)} is not valid: {COMPOSE_NAME_RULE}")
    return value


ServiceName = Annotated[str, AfterValidator(_service_name)]


class Healthcheck(StrictModel):
    test: list[str] | str | None = None
    interval: Duration | None = None
    timeout: Duration | None = None
    retries: int | None = Field(default=None, ge=0, le=10_000)
    start_period: Duration | None = None
    disable: bool = False


class DependsOn(StrictModel):
    condition: Literal["service_started", "service_healthy", "service_completed_successfully"] = (
        "service_started"
    )
    restart: bool = False
    required: bool = True


class PortMapping(StrictModel):
    """Compose's long port syntax."""

    target: int | Text
    published: Text | None = None
    host_ip: Text | None = None
    protocol: Literal["tcp", "udp"] = "tcp"


class VolumeMount(StrictModel):
    """Compose's long volume syntax."""

    type: Literal["volume", "bind", "tmpfs"] = "volume"
    source: Text | None = None
    target: Text
    read_only: bool = False


class ServiceNetwork(StrictModel):
    aliases: list[str] = []


class GpuRequest(StrictModel):
    """A device request (compose `gpus:` entry); `capabilities` defaults to [gpu]."""

    driver: Text | None = None
    count: int | Text | None = Field(default=None, description="a number of devices, or all")
    device_ids: list[Text] | None = None
    capabilities: list[str] = []
    options: dict[str, Text] = {}

    @model_validator(mode="after")
    def _count_or_ids(self) -> Self:
        if self.count is not None and self.device_ids is not None:
            raise ValueError('"count" and "device_ids" are exclusive: give one')
        return self


class DeviceReservation(GpuRequest):
    """`deploy.resources.reservations.devices[]`: here compose requires `capabilities`."""

    capabilities: list[str] = Field(min_length=1)


class Reservations(StrictModel):
    devices: list[DeviceReservation] = []


class Resources(StrictModel):
    reservations: Reservations = Reservations()


class Deploy(StrictModel):
    """Compose's `deploy:`; Nebula reads the device reservations (GPUs) from it."""

    resources: Resources = Resources()


class Service(StrictModel):
    image: Text
    ports: list[int | Text | PortMapping] = []
    environment: list[Text] | dict[str, Scalar] = {}
    volumes: list[Text | VolumeMount] = []
    command: Text | list[Text] | None = None
    entrypoint: Text | list[Text] | None = None
    depends_on: list[str] | dict[str, DependsOn] = []
    healthcheck: Healthcheck | None = None
    restart: Text = "no"
    labels: list[Text] | dict[str, Text] = {}
    networks: list[str] | dict[str, ServiceNetwork | None] = []
    init: bool | None = None
    user: Text | None = None
    working_dir: Text | None = None
    deploy: Deploy | None = None
    gpus: Literal["all"] | list[GpuRequest] | None = None

    @field_validator("restart")
    @classmethod
    def _restart_policy(cls, value: str) -> str:
        name, _, count = value.partition(":")
        if name not in ("no", "always", "on-failure", "unless-stopped") or (
            count and (name != "on-failure" or not _COUNT.fullmatch(count))
        ):
            raise ValueError(
                f"{excerpt(value)} is not a restart policy; use no, always, on-failure[:N] or unless-stopped"
            )
        return value

    def dependencies(self) -> dict[str, str]:
        """Service name → the condition it must reach before this one starts."""
        if isinstance(self.depends_on, list):
            return dict.fromkeys(self.depends_on, "service_started")
        return {name: dep.condition for name, dep in self.depends_on.items()}


class VolumeDeclaration(StrictModel):
    driver: str | None = None
    driver_opts: dict[str, Text] = {}
    labels: dict[str, Text] = {}
    name: Text | None = Field(
        default=None, description="the Docker volume's name, instead of INSTALLATION_KEY"
    )
    external: bool = Field(
        default=False,
        description="an existing volume (shared, e.g. with another installation): used, never "
        "created or claimed",
    )


class NetworkDeclaration(StrictModel):
    driver: str | None = None
    driver_opts: dict[str, Text] = {}
    labels: dict[str, Text] = {}


class Compose(StrictModel):
    services: dict[ServiceName, Service] = Field(min_length=1)
    volumes: dict[str, VolumeDeclaration | None] = {}
    networks: dict[str, NetworkDeclaration | None] = {}
