"""The compose subset a Nebula package may use (compose file format, `services:` and friends).

Strings stay raw here: ports, volumes, sizes and environment may hold `${VAR}` references, so
their syntax is checked after interpolation, when an installation is resolved (see
`nebula.kinds`). A key of the compose specification Nebula does not do is listed in its model's
`unsupported` (key → why, and what to do instead): `spec.validate` says so at its line rather
than "unknown field". Extension keys (`x-*`) are ignored, as compose ignores them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from nebula.spec.base import Duration, StrictModel, Text
from nebula.spec.names import COMPOSE_NAME, COMPOSE_NAME_RULE, excerpt

Scalar = Text | None
_COUNT = re.compile(r"[0-9]{1,4}")  # ASCII digits (int() takes any) and no overflow at Docker


def _service_name(value: str) -> str:
    if not COMPOSE_NAME.fullmatch(value):
        raise ValueError(f"service name {excerpt(value)} is not valid: {COMPOSE_NAME_RULE}")
    return value


ServiceName = Annotated[str, AfterValidator(_service_name)]
Number = int | float | Text  # a count or size, or a `${VAR}` giving one: parsed once interpolated


def _octal(mode: object) -> object:
    """A mode written as text is octal, as compose reads it (`"0440"`, `"440"`)."""
    if isinstance(mode, str) and mode.strip().isdigit():
        return int(mode.strip(), 8)
    return mode


FileMode = Annotated[int, BeforeValidator(_octal), Field(ge=0, le=0o777)]

_PRIVILEGED = (
    "it gives the container powers over the host, which Nebula does not grant yet; "
    "run the app without it, or outside Nebula"
)


class ComposeModel(StrictModel):
    """A compose mapping: `unsupported` keys are refused with their reason; `x-*` are ignored."""

    unsupported: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _drop_extensions(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not str(k).startswith("x-")}
        return data


class Healthcheck(ComposeModel):
    unsupported: ClassVar[dict[str, str]] = {
        "start_interval": "not supported yet; leave it out (`interval` applies from the start)"
    }

    test: list[str] | str | None = None
    interval: Duration | None = None
    timeout: Duration | None = None
    retries: int | None = Field(default=None, ge=0, le=10_000)
    start_period: Duration | None = None
    disable: bool = False


class DependsOn(ComposeModel):
    condition: Literal["service_started", "service_healthy", "service_completed_successfully"] = (
        "service_started"
    )
    restart: bool = False
    required: bool = True


class PortMapping(ComposeModel):
    """Compose's long port syntax."""

    unsupported: ClassVar[dict[str, str]] = {
        "name": "ports are not named; leave it out",
        "app_protocol": "ports carry no application protocol; leave it out",
    }

    target: int | Text
    published: Text | None = None
    host_ip: Text | None = None
    protocol: Text = "tcp"
    mode: Literal["ingress", "host"] | None = Field(
        default=None,
        description="on an `engine: swarm` node: ingress (every node, the default) or host",
    )


class VolumeMount(ComposeModel):
    """Compose's long volume syntax."""

    unsupported: ClassVar[dict[str, str]] = {
        key: "not supported yet; leave it out"
        for key in ("bind", "volume", "tmpfs", "image", "consistency")
    }

    type: Literal["volume", "bind", "tmpfs"] = "volume"
    source: Text | None = None
    target: Text
    read_only: bool = False


class ServiceNetwork(ComposeModel):
    unsupported: ClassVar[dict[str, str]] = {
        key: "Docker gives the addresses of an installation's networks; reach the service by "
        "its name or an alias instead"
        for key in ("ipv4_address", "ipv6_address", "link_local_ips", "mac_address")
    } | {
        key: "not supported yet; leave it out"
        for key in ("driver_opts", "priority", "gw_priority", "interface_name")
    }

    aliases: list[str] = []


class GpuRequest(ComposeModel):
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


class Reservations(ComposeModel):
    unsupported: ClassVar[dict[str, str]] = {
        key: "reservations are not supported yet; give `limits:` for a hard limit, or leave it out"
        for key in ("pids", "generic_resources")
    }

    cpus: Number | None = Field(default=None, description="on an `engine: swarm` node: CPUs")
    memory: Number | None = Field(default=None, description="on an `engine: swarm` node: bytes")
    devices: list[DeviceReservation] = []


class Limits(ComposeModel):
    """`deploy.resources.limits`: what the container may use at most."""

    cpus: Number | None = Field(default=None, description="CPUs, e.g. 0.5")
    memory: Number | None = Field(default=None, description="bytes, or e.g. 512m, 2g")
    pids: Number | None = Field(default=None, description="processes")


class Resources(ComposeModel):
    limits: Limits = Limits()
    reservations: Reservations = Reservations()


_SWARM = "not supported yet: Swarm schedules the services of an `engine: swarm` node; leave it out"


class UpdateConfig(ComposeModel):
    """`deploy.update_config`: how Swarm rolls a changed service out (`engine: swarm` nodes)."""

    unsupported: ClassVar[dict[str, str]] = {
        "max_failure_ratio": "not supported yet; leave it out (any failed task counts)"
    }

    parallelism: int | None = Field(default=None, ge=0, le=10_000, description="0: all at once")
    delay: Duration | None = None
    order: Literal["stop-first", "start-first"] | None = None
    failure_action: Literal["continue", "pause", "rollback"] | None = None
    monitor: Duration | None = None


class RestartPolicy(ComposeModel):
    """`deploy.restart_policy`: when Swarm restarts a service's tasks (`engine: swarm` nodes)."""

    condition: Literal["none", "on-failure", "any"] | None = None
    delay: Duration | None = None
    max_attempts: int | None = Field(default=None, ge=0, le=10_000)
    window: Duration | None = None


class Deploy(ComposeModel):
    """Compose's `deploy:`; Nebula reads the limits and device reservations (GPUs) from it,
    and on an `engine: swarm` node the replicas, rolling updates and restart policy."""

    unsupported: ClassVar[dict[str, str]] = {
        "labels": "use the service's `labels:`",
        **{key: _SWARM for key in ("mode", "endpoint_mode", "placement", "rollback_config")},
    }

    replicas: int | None = Field(
        default=None, ge=0, le=10_000, description="on an `engine: swarm` node: tasks to run"
    )
    update_config: UpdateConfig | None = None
    restart_policy: RestartPolicy | None = None
    resources: Resources = Resources()


class Ulimit(ComposeModel):
    soft: int
    hard: int


class DeviceMapping(ComposeModel):
    """Compose's long device syntax."""

    source: Text
    target: Text | None = None
    permissions: Text = "rwm"


class Logging(ComposeModel):
    driver: Text | None = None
    options: dict[str, Text] = {}


_SERVICE_UNSUPPORTED: dict[str, str] = {
    "label_file": "label files are not read (env_file and configs are); list the labels under "
    "`labels:`",
    "extends": "write the service out in full",
    "links": "every service is reachable by its name on the installation's network; use that",
    "external_links": "join the other installation through `dependencies:`, or publish a port",
    "volumes_from": "mount the same named volume in both services",
    "scale": "Nebula runs one container per service; declare another service for more",
    "pull_policy": "Nebula pulls an image when it is missing; pin a tag or digest to change it",
    "post_start": "use the installation's `hooks:` (post_install, post_upgrade)",
    "pre_stop": "use the installation's `hooks:` (pre_uninstall)",
    "provider": "services are containers; run the provider's resource outside Nebula",
    "models": "AI models are not provisioned; run the model server as a service",
    "use_api_socket": _PRIVILEGED,
    "attach": "Nebula attaches to no output; read it with `docker logs`",
    **{
        key: _PRIVILEGED
        for key in (
            "device_cgroup_rules",
            "uts",
            "userns_mode",
            "cgroup",
            "cgroup_parent",
            "credential_spec",
            "isolation",
            "runtime",
            "group_add",
            "oom_kill_disable",
            "oom_score_adj",
        )
    },
    **{
        key: "not supported yet; use `deploy.resources.limits` (cpus, memory, pids) or leave it out"
        for key in (
            "cpu_count",
            "cpu_percent",
            "cpu_period",
            "cpu_quota",
            "cpu_rt_period",
            "cpu_rt_runtime",
            "cpu_shares",
            "cpuset",
            "mem_reservation",
            "mem_swappiness",
            "memswap_limit",
            "blkio_config",
            "storage_opt",
        )
    },
    **{
        key: "not supported yet; leave it out"
        for key in ("annotations", "driver_opts", "mac_address")
    },
}


class EnvFile(ComposeModel):
    """Compose's long `env_file` syntax: a file of the installation's folder."""

    unsupported: ClassVar[dict[str, str]] = {
        "format": "Nebula reads compose's own env-file format only; leave it out"
    }

    path: Text
    required: bool = Field(default=True, description="false: a missing file is passed over")


class Build(ComposeModel):
    """Compose's long `build:` syntax: a context folder of the installation's folder."""

    unsupported: ClassVar[dict[str, str]] = {
        "dockerfile_inline": "write the Dockerfile into the context folder and give `dockerfile:`",
        "additional_contexts": "a build has one context; copy what it needs into its folder",
        "ssh": "no SSH agent is forwarded to builds; put what the build fetches into the "
        "context folder",
        "secrets": "builds get no secrets; put what the build needs into the context folder, "
        "or build the image elsewhere and give it as `image:`",
        "tags": "the build is tagged by its content (and as `image:` when given); give `image:`",
        "platforms": "one image is built, for the service's `platform:` (the node's by default); "
        "give `platform:` on the service",
        "cache_from": "the engine's own build cache is used; leave it out",
        "cache_to": "the engine's own build cache is used; leave it out",
        "no_cache": "a context is built once per content; change a file to build again",
        "pull": "the base image is pulled when the engine does not have it; leave it out",
        "network": "builds use the engine's default network; leave it out",
        "labels": "not supported yet; write `LABEL` lines in the Dockerfile",
        "privileged": _PRIVILEGED,
        "entitlements": _PRIVILEGED,
        **{
            key: "not supported yet; leave it out"
            for key in ("extra_hosts", "isolation", "shm_size", "ulimits", "provenance", "sbom")
        },
    }

    context: Text = Field(default=".", description="a folder of the installation's folder")
    dockerfile: Text = Field(default="Dockerfile", description="inside the context")
    args: list[Text] | dict[str, Scalar] = {}
    target: Text | None = None


class ServiceConfig(ComposeModel):
    """Compose's long syntax of a service's `configs:` entry."""

    unsupported: ClassVar[dict[str, str]] = {
        key: "the file keeps the owner it has on the node; give `mode` to let others read it, "
        "or leave it out"
        for key in ("uid", "gid")
    }

    source: Text
    target: Text | None = Field(default=None, description="default: /SOURCE")
    mode: FileMode = Field(default=0o444, description="e.g. 0440")


class ConfigDeclaration(ComposeModel):
    """A top-level `configs:` entry: a file of the installation's folder."""

    unsupported: ClassVar[dict[str, str]] = {
        "content": "write the content into a file of the installation's folder and give `file:`",
        "environment": "write the value into a file of the installation's folder and give `file:`",
        "external": "configs come from the installation's folder; give `file:`",
        "name": "configs are not named on the engine; leave it out",
        "template_driver": "not supported yet; leave it out",
    }

    file: Text = Field(description="a file of the installation's folder (packages/NAME/)")


class ServiceSecret(ComposeModel):
    """Compose's long syntax of a service's `secrets:` entry."""

    source: Text
    target: Text | None = Field(
        default=None, description="default: /run/secrets/SOURCE; a bare name goes there too"
    )
    uid: Text | None = Field(default=None, description="owner; default: the service's user id")
    gid: Text | None = Field(default=None, description="group; default: the service's group id")
    mode: FileMode = Field(default=0o400, description="e.g. 0440")


class SecretDeclaration(ComposeModel):
    """A top-level `secrets:` entry: a value of Nebula's vault, never a file of the repo."""

    unsupported: ClassVar[dict[str, str]] = {
        "file": "a secret kept as a file of the config repo is plain text in git; store it in "
        "the vault (`nebula secrets set NAME < FILE`) and declare it `external: true`",
        "content": "a secret written into the compose file is plain text in git; store it in "
        "the vault (`nebula secrets set NAME`) and declare it `external: true`",
        "driver": "secrets come from Nebula's vault; leave it out",
        "driver_opts": "secrets come from Nebula's vault; leave it out",
        "template_driver": "not supported yet; leave it out",
        "labels": "secrets are not objects on the engine; leave it out",
    }

    external: bool = Field(
        default=False, description="true: the vault's secret of this name (or of `name:`)"
    )
    name: Text | None = Field(default=None, description="the vault secret's name, if not the key")
    environment: Text | None = Field(
        default=None,
        description="a variable whose value is served, e.g. one given as ${secret:NAME}",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.external == (self.environment is not None):
            raise ValueError(
                "give `external: true` (the vault's secret of this name) or `environment: VAR` "
                "(a variable of the installation), one of the two"
            )
        if self.name is not None and not self.external:
            raise ValueError("`name:` names a vault secret: use it with `external: true`")
        return self


class Service(ComposeModel):
    """A compose service. `develop` (watch rules of `compose watch`) is accepted and ignored."""

    unsupported: ClassVar[dict[str, str]] = _SERVICE_UNSUPPORTED

    image: Text | None = Field(
        default=None, description="the image to run; with `build:`, a name the build gets too"
    )
    build: Text | Build | None = Field(
        default=None, description="a context folder of the installation's folder (packages/NAME/)"
    )
    ports: list[int | Text | PortMapping] = []
    environment: list[Text] | dict[str, Scalar] = {}
    env_file: Text | list[Text | EnvFile] = Field(
        default=[],
        description="files of the installation's folder (packages/NAME/), under `environment:`",
    )
    volumes: list[Text | VolumeMount] = []
    configs: list[Text | ServiceConfig] = Field(
        default=[], description="top-level configs mounted read-only, at /NAME by default"
    )
    secrets: list[Text | ServiceSecret] = Field(
        default=[], description="top-level secrets served as files, at /run/secrets/NAME"
    )
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
    expose: list[int | Text] = Field(
        default=[], description="container ports other services use, published on no host port"
    )
    container_name: Text | None = Field(
        default=None,
        description="another name other services reach it by: Nebula names the container "
        "INSTALLATION-SERVICE",
    )
    hostname: Text | None = None
    platform: Text | None = Field(default=None, description="e.g. linux/arm64")
    stop_signal: Text | None = None
    stop_grace_period: Duration | None = None
    stdin_open: bool = False
    tty: bool = False
    cpus: Number | None = Field(default=None, description="as deploy.resources.limits.cpus")
    mem_limit: Number | None = Field(default=None, description="as deploy.resources.limits.memory")
    pids_limit: Number | None = Field(default=None, description="as deploy.resources.limits.pids")
    extra_hosts: list[Text] | dict[str, Text | list[Text]] = []
    dns: Text | list[Text] = []
    tmpfs: Text | list[Text] = []
    shm_size: Number | None = None
    ulimits: dict[str, int | Ulimit] = {}
    logging: Logging | None = None
    profiles: list[Text] = Field(
        default=[], description="a service with profiles is not started (compose's default)"
    )
    develop: Any = Field(default=None, description="ignored: `compose watch` is for development")
    read_only: bool = False
    cap_drop: list[Text] = []
    security_opt: list[Text] = Field(
        default=[], description="`no-new-privileges` only: it confines, where others loosen"
    )
    domainname: Text | None = None
    dns_search: Text | list[Text] = []
    dns_opt: list[Text] = []
    # Powers over the host: each needs its grant in the installation's `allow:`.
    network_mode: Text | None = Field(
        default=None, description="host: the node's network (grant host_network)"
    )
    privileged: bool = Field(default=False, description="grant privileged")
    cap_add: list[Text] = Field(default=[], description="grant cap_add")
    devices: list[Text | DeviceMapping] = Field(default=[], description="grant devices")
    sysctls: list[Text] | dict[str, Text] = Field(default={}, description="grant sysctls")
    pid: Text | None = Field(default=None, description="host (grant host_pid)")
    ipc: Text | None = Field(default=None, description="host (grant host_ipc)")

    @model_validator(mode="after")
    def _image_or_build(self) -> Self:
        if self.image is None and self.build is None:
            raise ValueError(
                "give `image:` (an image to pull), or `build:` (a context folder of the "
                "installation's folder to build it from)"
            )
        return self

    @field_validator("network_mode", "pid", "ipc")
    @classmethod
    def _host_only(cls, value: str | None) -> str | None:
        if value not in (None, "host"):
            raise ValueError(
                f"{excerpt(value)} is not supported yet: Nebula takes only `host` here (with "
                "its grant); leave it out to keep the container's own"
            )
        return value

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


class VolumeDeclaration(ComposeModel):
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


class NetworkDeclaration(ComposeModel):
    unsupported: ClassVar[dict[str, str]] = {
        "external": "each installation has its own networks; reach another installation "
        "through `dependencies:`",
        "name": "Nebula names networks INSTALLATION_NETWORK; leave it out",
        **{
            key: "not supported yet; leave it out"
            for key in ("ipam", "internal", "attachable", "enable_ipv4", "enable_ipv6")
        },
    }

    driver: str | None = None
    driver_opts: dict[str, Text] = {}
    labels: dict[str, Text] = {}


class Compose(ComposeModel):
    """A compose file. `version` is ignored, as compose ignores it, and so is `name`: the
    installation's name is the project's."""

    unsupported: ClassVar[dict[str, str]] = {
        "include": "write the included services into this file",
        "models": "AI models are not provisioned; run the model server as a service",
    }

    version: Text | None = None
    name: Text | None = None
    services: dict[ServiceName, Service] = Field(min_length=1)
    volumes: dict[str, VolumeDeclaration | None] = {}
    networks: dict[str, NetworkDeclaration | None] = {}
    configs: dict[str, ConfigDeclaration] = {}
    secrets: dict[str, SecretDeclaration] = {}
