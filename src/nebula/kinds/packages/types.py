"""Plain data for the Docker resources Nebula manages, as desired and as observed.

These are what planning compares: `kinds.packages.resolve` turns the config repo into desired specs,
`providers.docker` reads observed ones back. A container's spec is summarised in a label
(`io.nebula.spec`) with its hash (`io.nebula.spec-hash`), so one list call tells whether each
container still matches, and what changed if not.

Secrets never enter these values: a `${secret:NAME}` reference resolves to the secret's stand-in
(`••••` + its keyed fingerprint), so summaries, labels and plans change when a secret does and
never hold it. Only apply swaps stand-ins for values (`reveal`), in what it hands to Docker.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from nebula.plan import Action
from nebula.spec.config import LOCAL_NODE
from nebula.spec.host_paths import bind_grant
from nebula.stand_ins import MASK

if TYPE_CHECKING:
    pass

LABEL_MANAGED = "io.nebula.managed"
LABEL_INSTALLATION = "io.nebula.installation"
LABEL_SERVICE = "io.nebula.service"
LABEL_SPEC = "io.nebula.spec"
LABEL_SPEC_HASH = "io.nebula.spec-hash"
RESERVED_LABEL_PREFIX = "io.nebula."


_STAND_IN = re.compile(re.escape(MASK) + r"[0-9a-f]{12}")  # the vault's fingerprints: 12 hex


def stand_ins_in(text: str) -> list[str]:
    """The secret stand-ins in `text`."""
    return _STAND_IN.findall(text) if MASK in text else []


def reveal(text: str, values: Mapping[str, str]) -> str:
    """`text` with each stand-in found in `values` (stand-in -> plain value) swapped back."""
    if MASK not in text or not values:
        return text
    return _STAND_IN.sub(lambda m: values.get(m[0], m[0]), text)


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class PortBinding:
    container_port: int
    protocol: str
    host_ip: str
    host_port: int | None  # None: Docker picks a free port
    mode: str | None = None  # a Swarm service's publish mode: ingress (None) or host

    def __str__(self) -> str:
        host = f"{self.host_ip}:{self.host_port or ''}"
        mode = f" ({self.mode})" if self.mode else ""
        return f"{host}->{self.container_port}/{self.protocol}{mode}"


@dataclass(frozen=True)
class Mount:
    type: str  # volume | bind | tmpfs
    source: str
    target: str
    read_only: bool = False

    def __str__(self) -> str:
        return f"{self.source}:{self.target}{':ro' if self.read_only else ''}"


@dataclass(frozen=True)
class RepoFile:
    """A file of the installation's folder mounted read-only at `target` (compose `configs:`
    and relative bind mounts). Its content is part of the spec through `digest`; apply writes
    it under Nebula's own files folder, named by digest and mode, and binds it."""

    source: str  # as written, inside the installation's folder
    target: str
    mode: int
    content: bytes = field(repr=False)

    @property
    def digest(self) -> str:
        return _hash_bytes(self.content + f"\n{self.mode:o}".encode())

    def __str__(self) -> str:
        return f"{self.source}@{self.digest}:{self.target}:{self.mode:o}"


@dataclass(frozen=True)
class SecretFile:
    """A compose secret served as a file at `target` (`/run/secrets/NAME`): `value` is the
    secret's stand-in, revealed only when apply writes the file to memory (tmpfs), never to
    disk."""

    source: str  # the compose secret's name
    target: str
    uid: int
    gid: int
    mode: int
    value: str = field(repr=False)

    def __str__(self) -> str:
        return f"{self.source}={self.value}:{self.target}:{self.uid}:{self.gid}:{self.mode:o}"


@dataclass(frozen=True)
class TreeEntry:
    """A file or sub-folder of a `RepoFolder`: its `/`-separated path inside the folder, its
    mode (0o555 for a folder or an executable file, else 0o444) and a file's content."""

    path: str
    mode: int
    content: bytes | None = field(default=None, repr=False)  # None: a sub-folder


@dataclass(frozen=True)
class RepoFolder:
    """A folder of the installation's folder mounted read-only at `target` (a relative bind
    mount), with everything in it. Like a `RepoFile`, its content is part of the spec through
    `digest`, and apply writes it under Nebula's own files folder, named by digest."""

    source: str  # as written, inside the installation's folder
    target: str
    entries: tuple[TreeEntry, ...] = field(repr=False)

    @property
    def digest(self) -> str:
        listed = b"".join(
            f"{e.path}\0{e.mode:o}\0{-1 if e.content is None else len(e.content)}\0".encode()
            + (e.content or b"")
            for e in sorted(self.entries, key=lambda e: e.path)
        )
        return _hash_bytes(b"folder\0" + listed)

    def __str__(self) -> str:
        return f"{self.source}/@{self.digest}:{self.target}"


@dataclass(frozen=True)
class BuildSpec:
    """An image built from a folder of the installation's folder (compose `build:`). The
    files are read when resolving, so `digest` (every path, mode and content, and how it is
    built) names the image the plan shows, and apply sends exactly what was planned."""

    context: str  # as written, inside the installation's folder
    entries: tuple[TreeEntry, ...] = field(repr=False)
    dockerfile: str = "Dockerfile"
    args: tuple[tuple[str, str], ...] = ()
    target: str | None = None
    platform: str | None = None
    also_tagged: str | None = None  # the service's `image:`, which compose tags the build as

    @property
    def digest(self) -> str:
        listed = [
            [e.path, e.mode, None if e.content is None else hashlib.sha256(e.content).hexdigest()]
            for e in sorted(self.entries, key=lambda e: e.path)
        ]
        how = [self.dockerfile, list(self.args), self.target, self.platform, self.also_tagged]
        return _hash(canonical_json([listed, how]))


def build_tag(installation: str, service: str, build: BuildSpec) -> str:
    """The image a build makes: `nebula-build/INSTALLATION-SERVICE:DIGEST12` (an unchanged
    context keeps its tag, so it is never built again)."""
    repository = re.sub(r"[^a-z0-9]+", "-", f"{installation}-{service}".lower()).strip("-")
    return f"nebula-build/{repository}:{build.digest[:12]}"


@dataclass(frozen=True)
class HealthSpec:
    test: tuple[str, ...]
    interval: float | None = None
    timeout: float | None = None
    retries: int | None = None
    start_period: float | None = None


@dataclass(frozen=True)
class DeviceRequest:
    """A request for host devices (GPUs), as Docker's DeviceRequest: `count` -1 means all."""

    driver: str = ""
    count: int | None = None
    device_ids: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    options: tuple[tuple[str, str], ...] = ()

    @property
    def is_gpu(self) -> bool:
        return "gpu" in self.capabilities or self.driver == "nvidia"

    def __str__(self) -> str:
        what = ",".join(self.device_ids) if self.device_ids else f"count={self.count}"
        return f"{self.driver or 'default'}:{what}:{'+'.join(self.capabilities)}"


@dataclass(frozen=True)
class Ulimit:
    name: str
    soft: int
    hard: int

    def __str__(self) -> str:
        return f"{self.name}={self.soft}:{self.hard}"


@dataclass(frozen=True)
class LogConfig:
    driver: str
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class UpdateConfig:
    """How Swarm rolls out a changed service (compose `deploy.update_config`)."""

    parallelism: int | None = None
    delay: float | None = None  # seconds
    order: str | None = None  # stop-first | start-first
    failure_action: str | None = None  # continue | pause | rollback
    monitor: float | None = None  # seconds


@dataclass(frozen=True)
class RestartPolicy:
    """When Swarm restarts a service's tasks (compose `deploy.restart_policy`)."""

    condition: str | None = None  # none | on-failure | any
    delay: float | None = None  # seconds
    max_attempts: int | None = None
    window: float | None = None  # seconds


@dataclass(frozen=True)
class SwarmDeploy:
    """What compose's `deploy:` says only Swarm does: read on a node with `engine: swarm`,
    refused on others."""

    replicas: int | None = None
    update_config: UpdateConfig | None = None
    restart_policy: RestartPolicy | None = None
    cpu_reservation: float | None = None
    memory_reservation: int | None = None  # bytes

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "replicas": self.replicas,
            "update_config": dataclasses.asdict(self.update_config) if self.update_config else None,
            "restart_policy": dataclasses.asdict(self.restart_policy)
            if self.restart_policy
            else None,
            "cpu_reservation": self.cpu_reservation,
            "memory_reservation": self.memory_reservation,
        }
        return {key: value for key, value in data.items() if value is not None}


@dataclass(frozen=True)
class ContainerSpec:
    installation: str
    service: str
    name: str
    image: str
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    ports: tuple[PortBinding, ...] = ()
    mounts: tuple[Mount, ...] = ()
    files: tuple[RepoFile | RepoFolder, ...] = ()
    secret_files: tuple[SecretFile, ...] = field(default=(), repr=False)
    build: BuildSpec | None = None  # `image` is then its `build_tag`
    healthcheck: HealthSpec | None = None
    restart: str = "no"
    labels: tuple[tuple[str, str], ...] = ()
    networks: tuple[tuple[str, tuple[str, ...]], ...] = ()  # network name, aliases
    init: bool | None = None
    user: str | None = None
    working_dir: str | None = None
    depends_on: tuple[tuple[str, str], ...] = ()  # service, condition: ordering, not content
    device_requests: tuple[DeviceRequest, ...] = ()
    expose: tuple[str, ...] = ()  # container ports published on no host port: "3000/tcp"
    hostname: str | None = None
    platform: str | None = None
    stop_signal: str | None = None
    stop_grace_period: float | None = None  # seconds; None: nebula.yaml's stop_timeout
    stdin_open: bool = False
    tty: bool = False
    cpus: float | None = None
    memory: int | None = None  # bytes
    pids: int | None = None
    extra_hosts: tuple[str, ...] = ()  # "host:address"
    dns: tuple[str, ...] = ()
    tmpfs: tuple[tuple[str, str], ...] = ()  # target, mount options
    shm_size: int | None = None  # bytes
    ulimits: tuple[Ulimit, ...] = ()
    logging: LogConfig | None = None
    read_only: bool = False
    cap_drop: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()  # no-new-privileges only
    domainname: str | None = None
    dns_search: tuple[str, ...] = ()
    dns_opt: tuple[str, ...] = ()
    # powers over the host, each allowed by a grant of the installation (see `grants`)
    network_mode: str | None = None  # host: no networks of its own
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()  # "host path:container path:permissions"
    sysctls: tuple[tuple[str, str], ...] = ()
    pid_mode: str | None = None
    ipc_mode: str | None = None
    swarm: SwarmDeploy | None = None  # the Swarm-only `deploy:` keys, when any is given

    @property
    def grants(self) -> tuple[str, ...]:
        """The grants (an installation's `allow:`) this container needs."""
        used = {
            "host_network": self.network_mode == "host",
            "privileged": self.privileged,
            "cap_add": bool(self.cap_add),
            "devices": bool(self.devices),
            "sysctls": bool(self.sysctls),
            "host_pid": self.pid_mode == "host",
            "host_ipc": self.ipc_mode == "host",
        }
        binds = {bind_grant(m.source, m.read_only) for m in self.mounts if m.type == "bind"}
        used |= {grant: grant in binds for grant in ("docker_socket", "host_system")}
        return tuple(grant for grant, needed in used.items() if needed)

    def summary(self) -> dict[str, Any]:
        """What the container is made of, for display and for its label (secrets appear as
        their stand-ins: the summary changes when a secret does, and never contains one)."""
        health = None
        if self.healthcheck is not None:
            h = self.healthcheck
            health = {"test": list(h.test), "interval": h.interval, "timeout": h.timeout}
            health |= {"retries": h.retries, "start_period": h.start_period}
        summary: dict[str, Any] = {
            "image": self.image,
            "command": list(self.command) if self.command is not None else None,
            "entrypoint": list(self.entrypoint) if self.entrypoint is not None else None,
            "environment": dict(self.environment),
            "ports": [str(p) for p in self.ports],
            "volumes": [str(m) for m in self.mounts],
            "healthcheck": health,
            "restart": self.restart,
            "labels": dict(self.labels),
            "networks": {name: list(aliases) for name, aliases in self.networks},
            "init": self.init,
            "user": self.user,
            "working_dir": self.working_dir,
        }
        logging = None
        if self.logging is not None:
            logging = {"driver": self.logging.driver, "options": dict(self.logging.options)}
        optional = {  # each only when set (0 is Docker's unset): older containers keep their hash
            "device_requests": [str(d) for d in self.device_requests],
            "files": [str(f) for f in self.files],
            "secrets": [str(f) for f in self.secret_files],
            "expose": list(self.expose),
            "hostname": self.hostname,
            "platform": self.platform,
            "stop_signal": self.stop_signal,
            "stop_grace_period": self.stop_grace_period,
            "stdin_open": self.stdin_open,
            "tty": self.tty,
            "cpus": self.cpus,
            "memory": self.memory,
            "pids": self.pids,
            "extra_hosts": list(self.extra_hosts),
            "dns": list(self.dns),
            "tmpfs": {target: options for target, options in self.tmpfs},
            "shm_size": self.shm_size,
            "ulimits": [str(u) for u in self.ulimits],
            "logging": logging,
            "read_only": self.read_only,
            "cap_drop": list(self.cap_drop),
            "security_opt": list(self.security_opt),
            "domainname": self.domainname,
            "dns_search": list(self.dns_search),
            "dns_opt": list(self.dns_opt),
            "network_mode": self.network_mode,
            "privileged": self.privileged,
            "cap_add": list(self.cap_add),
            "devices": list(self.devices),
            "sysctls": dict(self.sysctls),
            "pid": self.pid_mode,
            "ipc": self.ipc_mode,
            "deploy": self.swarm.summary() if self.swarm else None,
        }
        summary |= {key: value for key, value in optional.items() if value}
        return summary

    @property
    def spec_hash(self) -> str:
        return _hash(canonical_json(self.summary()))


@dataclass(frozen=True)
class NetworkSpec:
    installation: str
    name: str
    driver: str = "bridge"
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class VolumeSpec:
    installation: str
    name: str
    driver: str = "local"
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class HttpCheck:
    """A package health check: an HTTP GET from the node, healthy on one of `expect_status`
    (empty: any 2xx or 3xx)."""

    name: str
    url: str
    interval: float
    timeout: float
    expect_status: tuple[int, ...] = ()

    @property
    def target(self) -> str:
        return self.url


@dataclass(frozen=True)
class TcpCheck:
    """A package health check: a TCP connection from the node to `host:port`."""

    name: str
    host: str
    port: int
    interval: float
    timeout: float

    @property
    def target(self) -> str:
        return f"tcp://{self.host}:{self.port}"


@dataclass(frozen=True)
class ExecCheck:
    """A package health check: `command` run in `container`, healthy when it exits 0."""

    name: str
    container: str
    command: tuple[str, ...]
    interval: float
    timeout: float

    @property
    def target(self) -> str:
        return f"{self.container}: {' '.join(self.command)}"


HealthProbe = HttpCheck | TcpCheck | ExecCheck


@dataclass(frozen=True)
class DesiredInstallation:
    name: str
    source: str  # the file it was declared in
    package: str | None
    version: str | None
    containers: tuple[ContainerSpec, ...]
    networks: tuple[NetworkSpec, ...]
    volumes: tuple[VolumeSpec, ...]
    requires: tuple[str, ...] = ()  # installations it depends on (applied and healthy first)
    health_checks: tuple[HealthProbe, ...] = ()
    post_install: tuple[str, ...] = ()
    pre_upgrade: tuple[str, ...] = ()
    post_upgrade: tuple[str, ...] = ()
    pre_uninstall: tuple[str, ...] = ()
    # the variables hooks see: every non-secret one, and secret ones marked `expose_to_hooks`
    hook_env: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    config: dict[str, str] = field(default_factory=dict)  # values as given, secrets masked
    # the vault secrets it refers to: (name, fingerprint), by name
    secrets: tuple[tuple[str, str], ...] = ()
    node: str = LOCAL_NODE.name  # the node it is placed on (`packages.placement`)

    @property
    def spec_hash(self) -> str:
        return _hash("".join(c.spec_hash for c in self.containers))


@dataclass(frozen=True)
class ObservedContainer:
    id: str
    name: str
    installation: str
    service: str
    spec_hash: str
    spec: dict[str, Any]
    state: str  # created | running | restarting | paused | exited | dead | removing
    health: str | None = None  # starting | healthy | unhealthy
    exit_code: int | None = None
    addresses: tuple[str, ...] = ()  # its IP on each of its networks, by network name


@dataclass(frozen=True)
class ObservedNetwork:
    id: str
    name: str
    installation: str


@dataclass(frozen=True)
class ObservedVolume:
    name: str
    installation: str


@dataclass(frozen=True)
class Observed:
    containers: tuple[ObservedContainer, ...] = ()
    networks: tuple[ObservedNetwork, ...] = ()
    volumes: tuple[ObservedVolume, ...] = ()


def _hash(text: str) -> str:
    return _hash_bytes(text.encode())


def _hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:20]


# -- the packages' plan ------------------------------------------------------------------


class Resource(StrEnum):
    """What a change of an installation acts on."""

    CONTAINER = "container"
    NETWORK = "network"
    VOLUME = "volume"


@dataclass(frozen=True)
class ResourceChange:
    """A change to one container, network or volume of an installation."""

    action: Action
    kind: Resource
    installation: str
    name: str
    reason: str
    desired: ContainerSpec | NetworkSpec | VolumeSpec | None = None
    observed_id: str | None = None  # the Docker id of what is replaced or removed

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "kind": self.kind.value,
            "installation": self.installation,
            "name": self.name,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Move:
    """An installation with containers on this node's engine that is placed on another node
    now. Its containers here go once it runs there (`ready`); its volumes stay here."""

    installation: str
    to: str  # the node it is placed on now
    ready: bool  # the store says it runs there

    def note(self, here: str) -> str:
        """What waits, for a plan that cannot remove it yet."""
        return (
            f"{self.installation}: moving to node {self.to}; its containers here are removed "
            f"once it runs there (volumes stay on {here})"
        )


@dataclass(frozen=True)
class PackagesPlan:
    """The packages' share of a plan: every installation's resources, changed or not."""

    changes: tuple[ResourceChange, ...]
    moves: tuple[Move, ...] = ()  # installations leaving this node

    @property
    def pending(self) -> tuple[ResourceChange, ...]:
        """The changes that do something."""
        return tuple(c for c in self.changes if c.action is not Action.NOOP)

    @property
    def has_changes(self) -> bool:
        return bool(self.pending)

    def installations(self) -> list[str]:
        """Installations with at least one pending change, in plan order."""
        return list(dict.fromkeys(c.installation for c in self.pending))

    def for_installation(self, name: str) -> tuple[ResourceChange, ...]:
        return tuple(c for c in self.changes if c.installation == name)

    def counts(self) -> dict[str, int]:
        counted = Counter(c.action.value for c in self.changes)
        return {action.value: counted.get(action.value, 0) for action in Action}

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.counts(), "changes": [c.to_dict() for c in self.changes]}
