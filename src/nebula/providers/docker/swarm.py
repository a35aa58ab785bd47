"""Docker Swarm services on a manager's Docker Engine, through the DockerProvider's client.

The compose subset maps as `docker stack deploy` maps it: a service per compose service named
`INSTALLATION_SERVICE`, overlay networks `INSTALLATION_NETWORK` (attachable) on which each
service answers by its compose name, named volumes as volume mounts, `deploy:` as the service's
mode, update and restart policy and resources. Nebula's labels (managed, installation, service,
spec summary and hash) go on the service, networks and volumes; the tasks' containers carry the
user's labels and the spec hash only, so the packages kind never takes them for its own
containers. Every SDK error becomes a `ProviderError` naming the resource.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nebula.errors import ProviderError
from nebula.kinds.packages.types import (
    LABEL_INSTALLATION,
    LABEL_MANAGED,
    LABEL_SERVICE,
    LABEL_SPEC,
    LABEL_SPEC_HASH,
    NetworkSpec,
    ObservedNetwork,
    ObservedVolume,
    VolumeSpec,
    reveal,
)
from nebula.kinds.swarm.types import ObservedService, ServiceSpec, SwarmObserved
from nebula.providers.docker import DockerProvider, _labels, _ns, _revealed

_MANAGED_FILTER = {"label": [f"{LABEL_MANAGED}=true"]}
_POLL = 0.5  # seconds between looks at a converging service
_ALIVE = ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running")
_FAILED_UPDATE = ("paused", "rollback_started", "rollback_paused", "rollback_completed")
# what `docker service create` and `docker stack deploy` use when update_config leaves it out
_UPDATE_DEFAULTS = {"Parallelism": 1, "FailureAction": "pause", "Monitor": 5 * 10**9}


@dataclass(frozen=True)
class Converged:
    """A service whose tasks all run its current spec."""

    name: str
    running: int


class SwarmProvider:
    """Nebula's services, overlay networks and volumes on a swarm (its manager's engine)."""

    def __init__(self, docker: DockerProvider) -> None:
        self.docker = docker

    def observe(self) -> SwarmObserved:
        """Everything Nebula manages on the swarm, in three list requests."""
        with self.docker._call("swarm services"):
            services = self.docker.api.services(filters=_MANAGED_FILTER)
            networks = self.docker.api.networks(filters=_MANAGED_FILTER)
            volumes = self.docker.api.volumes(filters=_MANAGED_FILTER).get("Volumes") or []
        return SwarmObserved(
            tuple(sorted((_observed(s) for s in services), key=lambda s: s.name)),
            tuple(
                sorted(
                    (
                        ObservedNetwork(n["Id"], n["Name"], _installation(n))
                        for n in networks
                        if n.get("Scope") == "swarm"
                    ),
                    key=lambda n: n.name,
                )
            ),
            tuple(
                sorted(
                    (ObservedVolume(v["Name"], _installation(v)) for v in volumes),
                    key=lambda v: v.name,
                )
            ),
        )

    def create_network(self, spec: NetworkSpec) -> None:
        """An attachable overlay network (swarm-scoped), labelled as the installation's."""
        with self.docker._call(f"network {spec.name}"):
            self.docker.api.create_network(
                spec.name,
                driver=spec.driver,
                options=dict(spec.options) or None,
                labels=_labels(spec.installation),
                attachable=True,
                scope="swarm",
                check_duplicate=True,
            )

    def create_volume(self, spec: VolumeSpec) -> None:
        self.docker.create_volume(spec)

    def create_service(self, spec: ServiceSpec, secrets: Mapping[str, str]) -> None:
        """Create the service; Swarm schedules its tasks (`wait_converged` waits for them)."""
        import docker.errors

        with self.docker._call(f"service {spec.name}"):
            try:
                self.docker.api.create_service(name=spec.name, **service_spec(spec, secrets))
            except docker.errors.APIError as exc:
                if exc.status_code == 409:
                    raise ProviderError(
                        f"service {spec.name}",
                        "the name is taken by a service Nebula does not manage; rename or "
                        "remove that service",
                    ) from None
                raise

    def update_service(
        self, spec: ServiceSpec, current: ObservedService, secrets: Mapping[str, str]
    ) -> None:
        """Replace the service's spec: Swarm rolls its tasks over as `update_config` says."""
        with self.docker._call(f"service {spec.name}"):
            self.docker.api.update_service(
                current.id, current.version, name=spec.name, **service_spec(spec, secrets)
            )

    def remove_service(self, service: ObservedService) -> None:
        import docker.errors

        with self.docker._call(f"service {service.name}"):
            try:
                self.docker.api.remove_service(service.id)
            except docker.errors.NotFound:
                return

    def remove_network(self, network: ObservedNetwork, timeout: float) -> None:
        """Remove the network once the tasks of its removed services have let go of it, and
        wait until the engine no longer lists it (Swarm removes it in the background)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.docker.remove_network(network.id, network.name)
                with self.docker._call(f"network {network.name}"):
                    if not self.docker.api.networks(ids=[network.id]):
                        return
            except ProviderError:
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise ProviderError(f"network {network.name}", f"still there after {timeout:.0f}s")
            time.sleep(_POLL)

    def wait_converged(self, spec: ServiceSpec, timeout: float) -> Converged:
        """Wait until `spec.replicas` tasks run the service's current spec (healthy, where it
        has a health check: Swarm counts a task running only then); a rolling update that Swarm
        paused or rolled back, or tasks still failing at `timeout`, raise `ProviderError` with
        Swarm's reason."""
        deadline = time.monotonic() + timeout
        resource = f"service {spec.name}"
        while True:
            with self.docker._call(resource):
                service = self.docker.api.inspect_service(spec.name)
                tasks = self.docker.api.tasks(filters={"service": spec.name})
            update = service.get("UpdateStatus") or {}
            if update.get("State") in _FAILED_UPDATE:
                reason = update.get("Message") or update["State"]
                raise ProviderError(resource, f"rolling update stopped: {reason}{_last(tasks)}")
            current = [
                t
                for t in tasks
                if t.get("DesiredState") == "running"
                and _task_hash(t) == spec.spec_hash
                and _task_state(t) == "running"
            ]
            stale = [
                t for t in tasks if _task_hash(t) != spec.spec_hash and _task_state(t) in _ALIVE
            ]
            rolling = update.get("State") == "updating"  # the last batch is still monitored
            if len(current) >= spec.replicas and not stale and not rolling:
                return Converged(spec.name, len(current))
            if time.monotonic() > deadline:
                raise ProviderError(
                    resource,
                    f"{len(current)} of {spec.replicas} tasks running the new spec after "
                    f"{timeout:.0f}s{_last(tasks)}",
                )
            time.sleep(_POLL)


def service_spec(spec: ServiceSpec, secrets: Mapping[str, str]) -> dict[str, Any]:
    """The Engine API's ServiceSpec of `spec` (less its name), as the SDK's `create_service`
    and `update_service` take it. `secrets` (stand-in -> value) are swapped in only for what
    the tasks run; labels keep the stand-ins."""
    c = spec.container
    container: dict[str, Any] = {
        "Image": c.image,
        "Labels": {**dict(c.labels), LABEL_SPEC_HASH: spec.spec_hash},
        "Env": [f"{k}={reveal(v, secrets)}" for k, v in c.environment],
        "Mounts": [
            {
                "Target": m.target,
                "Source": m.source,
                "Type": m.type,
                "ReadOnly": m.read_only,
                **(
                    {"VolumeOptions": {"Labels": _labels(c.installation)}}
                    if m.type == "volume"
                    else {}
                ),
            }
            for m in c.mounts
        ],
    }
    optional = {
        "Command": _revealed(c.entrypoint, secrets),  # Swarm's Command is compose's entrypoint
        "Args": _revealed(c.command, secrets),
        "Hostname": c.hostname,
        "Dir": c.working_dir,
        "User": c.user,
        "Init": c.init,
        "TTY": c.tty or None,
        "OpenStdin": c.stdin_open or None,
        "ReadOnly": c.read_only or None,
        "StopSignal": c.stop_signal,
        "StopGracePeriod": _ns(c.stop_grace_period),
        "Hosts": [_host_entry(h) for h in c.extra_hosts] or None,
        "DNSConfig": {"Nameservers": list(c.dns), "Search": list(c.dns_search)}
        | {"Options": list(c.dns_opt)}
        if c.dns or c.dns_search or c.dns_opt
        else None,
        "CapabilityDrop": list(c.cap_drop) or None,
    }
    if c.healthcheck is not None:
        h = c.healthcheck
        health: dict[str, Any] = {
            "Test": [reveal(t, secrets) for t in h.test],
            "Interval": _ns(h.interval),
            "Timeout": _ns(h.timeout),
            "Retries": h.retries,
            "StartPeriod": _ns(h.start_period),
        }
        optional["Healthcheck"] = {k: v for k, v in health.items() if v is not None}
    container |= {k: v for k, v in optional.items() if v is not None}

    deploy = c.swarm
    limits = {"NanoCPUs": int(c.cpus * 1e9) if c.cpus else None, "MemoryBytes": c.memory}
    reservations = {
        "NanoCPUs": int(deploy.cpu_reservation * 1e9)
        if deploy and deploy.cpu_reservation
        else None,
        "MemoryBytes": deploy.memory_reservation if deploy else None,
    }
    task: dict[str, Any] = {
        "ContainerSpec": container,
        "Resources": {
            "Limits": {k: v for k, v in limits.items() if v},
            "Reservations": {k: v for k, v in reservations.items() if v},
        },
        "Networks": [
            {"Target": network, "Aliases": [c.service, *aliases]} for network, aliases in c.networks
        ],
    }
    if deploy is not None and deploy.restart_policy is not None:
        r = deploy.restart_policy
        policy = {
            "Condition": r.condition,
            "Delay": _ns(r.delay),
            "MaxAttempts": r.max_attempts,
            "Window": _ns(r.window),
        }
        task["RestartPolicy"] = {k: v for k, v in policy.items() if v is not None}
    if c.logging is not None:
        task["LogDriver"] = {"Name": c.logging.driver, "Options": dict(c.logging.options)}

    update = dict(_UPDATE_DEFAULTS)
    if deploy is not None and deploy.update_config is not None:
        u = deploy.update_config
        given = {
            "Parallelism": u.parallelism,
            "Delay": _ns(u.delay),
            "FailureAction": u.failure_action,
            "Monitor": _ns(u.monitor),
            "Order": u.order,
        }
        update |= {k: v for k, v in given.items() if v is not None}
    ports = [
        {
            "Protocol": p.protocol,
            "TargetPort": p.container_port,
            "PublishMode": p.mode or "ingress",
            **({"PublishedPort": p.host_port} if p.host_port else {}),
        }
        for p in c.ports
    ]
    return {
        "task_template": task,
        "labels": {
            **_labels(c.installation),
            LABEL_SERVICE: c.service,
            LABEL_SPEC: spec.label,
            LABEL_SPEC_HASH: spec.spec_hash,
        },
        "mode": {"Replicated": {"Replicas": spec.replicas}},
        "update_config": update,
        "endpoint_spec": {"Mode": "vip", "Ports": ports},
    }


def _host_entry(entry: str) -> str:
    """`host:address` → Swarm's `address host`."""
    host, _, address = entry.partition(":")
    return f"{address} {host}"


def _observed(raw: dict[str, Any]) -> ObservedService:
    labels = raw["Spec"].get("Labels") or {}
    try:
        spec = json.loads(labels.get(LABEL_SPEC, "{}"))
    except ValueError:
        spec = {}
    return ObservedService(
        id=raw["ID"],
        name=raw["Spec"]["Name"],
        installation=labels.get(LABEL_INSTALLATION, ""),
        service=labels.get(LABEL_SERVICE, ""),
        spec_hash=labels.get(LABEL_SPEC_HASH, ""),
        spec=spec if isinstance(spec, dict) else {},
        version=int(raw["Version"]["Index"]),
        replicas=((raw["Spec"].get("Mode") or {}).get("Replicated") or {}).get("Replicas"),
        image=str(raw["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]).partition("@")[0],
    )


def _installation(raw: dict[str, Any]) -> str:
    return str((raw.get("Labels") or {}).get(LABEL_INSTALLATION, ""))


def _task_hash(task: dict[str, Any]) -> str:
    labels = ((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Labels") or {}
    return str(labels.get(LABEL_SPEC_HASH, ""))


def _task_state(task: dict[str, Any]) -> str:
    return str((task.get("Status") or {}).get("State", ""))


def _last(tasks: list[dict[str, Any]]) -> str:
    """`; last task error: …` from the most recent task that failed, if any."""
    failed = [
        t
        for t in tasks
        if _task_state(t) in ("failed", "rejected") and (t.get("Status") or {}).get("Err")
    ]
    if not failed:
        return ""
    latest = max(failed, key=lambda t: t.get("UpdatedAt", ""))
    return f"; last task error: {latest['Status']['Err']}"
