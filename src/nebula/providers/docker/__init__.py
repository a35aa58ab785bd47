"""The Docker Engine adapter, on the docker SDK's low-level API.

Observing costs a fixed number of requests whatever the size of the homelab: one label-filtered
list each for containers, networks and volumes (the high-level SDK would inspect every
container); on local and plain-TCP engines they go through `EngineReader`, so a plan that
changes nothing never imports the SDK. An `ssh://user@host` engine is reached with Docker's own
SSH transport, its host key verified against the node's `known_hosts` (`ssh.py`). Waiting for containers uses one `/events` stream shared
by every waiter instead of polling. Every SDK error is translated here into `ProviderError`
naming the resource.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import struct
import tarfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from nebula.errors import ProviderError
from nebula.kinds.packages.types import (
    LABEL_INSTALLATION,
    LABEL_MANAGED,
    LABEL_SERVICE,
    LABEL_SPEC,
    LABEL_SPEC_HASH,
    BuildSpec,
    ContainerSpec,
    DeviceRequest,
    NetworkSpec,
    Observed,
    ObservedContainer,
    ObservedNetwork,
    ObservedVolume,
    RepoFile,
    RepoFolder,
    SecretFile,
    VolumeSpec,
    canonical_json,
    reveal,
)
from nebula.paths import repo_files_dir
from nebula.providers.docker.http import EngineReader
from nebula.providers.docker.secret_files import (
    SecretsFolderError,
    default_secrets_dir,
    remove_secret_files,
    write_secret_files,
)

if TYPE_CHECKING:
    import docker
    import requests

    from nebula.spec.config import Node, NodeSsh

_MANAGED_FILTER = {"label": [f"{LABEL_MANAGED}=true"]}
_EXITED = re.compile(r"Exited \((-?\d+)\)")
_NS = 1_000_000_000
BUILD_LOG_LINES = 50  # the tail of a build's output kept for the sync record
LABEL_FUNCTION = "io.nebula.function"  # a one-shot container of an agent's function (its name)
FUNCTION_PIDS = 64  # processes a function's container may run at once


@dataclass(frozen=True)
class ContainerEvent:
    """One event of a managed container: `action` as Docker names it (`die`, `oom`,
    `health_status: unhealthy`, ...), with the container's name, installation and service."""

    action: str
    container_id: str
    at: float  # unix time
    name: str = ""
    installation: str = ""
    service: str = ""
    exit_code: int | None = None

    @classmethod
    def of(cls, event: dict[str, Any]) -> ContainerEvent:
        attributes = (event.get("Actor") or {}).get("Attributes") or {}
        code = attributes.get("exitCode")
        return cls(
            action=event.get("Action") or "",
            container_id=event.get("id") or "",
            at=event.get("timeNano", 0) / 1e9 or time.time(),
            name=attributes.get("name", ""),
            installation=attributes.get(LABEL_INSTALLATION, ""),
            service=attributes.get(LABEL_SERVICE, ""),
            exit_code=int(code) if code not in (None, "") else None,
        )


def engine_ssh(base_url: str | None, nodes: Sequence[Node]) -> NodeSsh | None:
    """The `ssh:` settings (key_file, known_hosts) of the node an `ssh://` engine URL (else
    DOCKER_HOST) is: the node whose `docker` it is, else the one at its host's address; None:
    not an ssh:// engine, or no such node (NodeSsh's defaults then)."""
    given = base_url or os.environ.get("DOCKER_HOST") or ""
    url = urlsplit(given)
    if url.scheme != "ssh":
        return None
    found = [n for n in nodes if n.docker == given] or [
        n for n in nodes if str(n.address) == url.hostname
    ]
    return found[0].ssh if found else None


@dataclass(frozen=True)
class ContainerStatus:
    state: str  # running | exited | created | ...
    health: str | None
    exit_code: int | None


class DockerProvider:
    def __init__(
        self,
        base_url: str | None = None,
        timeout: float = 120.0,
        files_dir: Path | None = None,
        secrets_dir: Path | None = None,
        ssh: NodeSsh | None = None,
    ) -> None:
        self.base_url = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        self.ssh = ssh  # an ssh:// engine's key_file and known_hosts; None: NodeSsh's defaults
        self.files_dir = files_dir or repo_files_dir()  # the repo's files, bound into containers
        self.secrets_dir = secrets_dir  # compose secrets, in memory; None: the default
        self._api: docker.APIClient | None = None
        self._timeout = timeout
        self._watcher: _EventWatcher | None = None
        self._lock = threading.Lock()  # guards the event watcher
        self._api_lock = threading.Lock()  # one client, even when threads ask for it at once
        self._images: set[tuple[str, str | None]] = set()  # (image, platform) present
        self._removed: deque[str] = deque(maxlen=1024)  # containers this process removed
        self._made: deque[str] = deque(maxlen=1024)  # names of containers this process created
        self._restarting: set[str] = set()  # containers this process is restarting
        self._held: set[str] = set()  # containers this process stopped or paused for a while
        self._reader: EngineReader | None = None
        if EngineReader.supports(self.base_url, dict(os.environ)):
            self._reader = EngineReader(self.base_url, timeout)

    @property
    def api(self) -> docker.APIClient:
        """The client, connected on first use (asking the engine which API version it speaks)."""
        with self._api_lock:
            if self._api is None:
                import docker

                with self._call(f"Docker Engine at {self.base_url}"):
                    if self.base_url.startswith("ssh://"):
                        from nebula.providers.docker.ssh import ssh_api_client

                        self._api = ssh_api_client(self.base_url, self.ssh, int(self._timeout))
                    else:
                        self._api = docker.APIClient(
                            base_url=self.base_url, version="auto", timeout=int(self._timeout)
                        )
            return self._api

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
        if self._api is not None:
            self._api.close()
        if self._reader is not None:
            self._reader.close()

    @contextmanager
    def _call(self, resource: str) -> Iterator[None]:
        import docker.errors
        import paramiko  # the docker SDK imports it already (its SSH transport)
        import requests.exceptions

        try:
            yield
        except docker.errors.ImageNotFound as exc:
            raise ProviderError(resource, _explain(exc)) from None
        except docker.errors.APIError as exc:
            raise ProviderError(resource, _explain(exc)) from None
        except (
            docker.errors.DockerException,
            requests.exceptions.RequestException,
            paramiko.SSHException,  # an ssh:// engine's connection failed under a request
        ) as exc:
            raise ProviderError(
                f"Docker Engine at {self.base_url}", f"cannot connect ({_root_cause(exc)})"
            ) from None

    # -- observe ---------------------------------------------------------------------------

    def observe(self) -> Observed:
        """Everything Nebula manages on this engine, in three list requests."""
        raw_containers = self._managed_containers()
        if self._reader is not None:
            raw_networks = self._reader.get("/networks", _MANAGED_FILTER)
            raw_volumes = self._reader.get("/volumes", _MANAGED_FILTER).get("Volumes") or []
        else:
            with self._call("managed containers"):
                raw_networks = self.api.networks(filters=_MANAGED_FILTER)
                raw_volumes = self.api.volumes(filters=_MANAGED_FILTER).get("Volumes") or []
        # sorted: the engine lists in no stable order, and plans must be deterministic
        containers = tuple(sorted((_observed_container(c) for c in raw_containers), key=_by_name))
        networks = tuple(
            sorted(
                (
                    ObservedNetwork(
                        n["Id"], n["Name"], (n.get("Labels") or {}).get(LABEL_INSTALLATION, "")
                    )
                    for n in raw_networks
                ),
                key=_by_name,
            )
        )
        volumes = tuple(
            sorted(
                (
                    ObservedVolume(v["Name"], (v.get("Labels") or {}).get(LABEL_INSTALLATION, ""))
                    for v in raw_volumes
                ),
                key=_by_name,
            )
        )
        return Observed(containers, networks, volumes)

    def _managed_containers(self) -> list[dict[str, Any]]:
        """The engine's list of every container Nebula manages, running or not."""
        if self._reader is not None:
            listed: list[dict[str, Any]] = self._reader.get(
                "/containers/json?all=1", _MANAGED_FILTER
            )
            return listed
        with self._call("managed containers"):
            return list(self.api.containers(all=True, filters=_MANAGED_FILTER))

    def status(self, container_id: str) -> ContainerStatus:
        with self._call(f"container {container_id[:12]}"):
            state = self.api.inspect_container(container_id)["State"]
        return _status(state)

    def inspect(self, container: str) -> dict[str, Any]:
        """The engine's whole view of a container (by name or id)."""
        with self._call(f"container {container}"):
            info: dict[str, Any] = self.api.inspect_container(container)
        return info

    def usage(self, limit: int) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        """The `limit` biggest volumes Nebula manages and unused images (no container uses
        them), each (name, bytes), biggest first; from one `/system/df` request."""
        with self._call(f"Docker Engine at {self.base_url}"):
            found = self.api.df()
        volumes = [
            (v["Name"], (v.get("UsageData") or {}).get("Size", 0))
            for v in found.get("Volumes") or []
            if (v.get("Labels") or {}).get(LABEL_MANAGED) == "true"
        ]
        images = [
            (", ".join(i.get("RepoTags") or []) or i["Id"][:19], i.get("Size", 0))
            for i in found.get("Images") or []
            if i.get("Containers", 0) == 0
        ]
        volumes.sort(key=lambda pair: -pair[1])
        images.sort(key=lambda pair: -pair[1])
        return volumes[:limit], images[:limit]

    def restart_container(self, container: str, timeout: float = 10.0) -> None:
        """Restart a container (by name or id); its events until Docker's `restart` event are
        this restart's (`restarting`), not drift."""
        with self._call(f"container {container}"):
            container_id = self.api.inspect_container(container)["Id"]
            self._restarting.add(container_id)
            try:
                self.api.restart(container_id, timeout=int(timeout))
            except Exception:
                self._restarting.discard(container_id)
                raise

    def restarting(self, event: ContainerEvent) -> bool:
        """Whether `event` is part of a restart this provider asked for (its kill, die, stop
        and start); Docker's `restart` event ends it."""
        if event.container_id not in self._restarting:
            return False
        if event.action == "restart":
            self._restarting.discard(event.container_id)
        return True

    def stop_container(self, container: str, timeout: float = 10.0) -> None:
        with self._call(f"container {container}"):
            self.api.stop(container, timeout=int(timeout))

    def logs(self, container_id: str, lines: int = 20) -> str:
        with self._call(f"container {container_id[:12]}"):
            raw: bytes = self.api.logs(container_id, tail=lines)
        return raw.decode(errors="replace").strip()

    def log_stream(
        self, container: str, *, follow: bool, tail: int | None, since: float | None
    ) -> LogStream:
        """A container's log (stdout and stderr, in the order written), each line with
        Docker's timestamp: the last `tail` lines (None: all) since `since` (unix time), then,
        if `follow`, each new line until the container stops or the stream is closed.

        The SDK's `logs()` drops which stream a frame came from (its `demux` is for exec and
        attach only), so this reads Docker's multiplexed frames itself."""
        params: dict[str, str | int] = {
            "stdout": 1,
            "stderr": 1,
            "timestamps": 1,
            "follow": int(follow),
            "tail": "all" if tail is None else tail,
        }
        if since is not None:
            params["since"] = f"{since:.6f}"
        resource = f"container {container}"
        with self._call(resource):
            tty = bool(self.api.inspect_container(container)["Config"].get("Tty"))
            path = f"/v{self.api.api_version}/containers/{quote(container)}/logs"
            response = self.api.get(
                self.api.base_url + path,
                params=params,
                stream=True,
                timeout=None if follow else self._timeout,  # a quiet service is no failure
            )
        if response.status_code != 200:
            message = response.text
            with suppress(ValueError):
                message = response.json().get("message", message)
            response.close()
            raise ProviderError(resource, f"logs: {response.status_code} {message}")
        return LogStream(container, response, tty)

    # -- change ----------------------------------------------------------------------------

    def ensure_image(self, image: str, platform: str | None = None) -> None:
        """Make sure `image` is present (for `platform`, e.g. `linux/arm64`, when given),
        pulling it when it is not."""
        if (image, platform) in self._images:
            return
        import docker.errors

        try:
            found = self.api.inspect_image(image)
            if platform is not None and not _built_for(found, platform):
                raise docker.errors.NotFound(f"{image} for {platform}")
        except docker.errors.NotFound:
            repository, tag = _split_reference(image)
            with self._call(f"image {image}"):
                try:
                    self.api.pull(repository, tag=tag, platform=platform)
                except docker.errors.APIError as exc:
                    raise ProviderError(
                        f"image {image}", f"not present locally and pull failed: {_explain(exc)}"
                    ) from None
        except docker.errors.APIError as exc:
            raise ProviderError(f"image {image}", _explain(exc)) from None
        self._images.add((image, platform))

    def ensure_built(self, image: str, build: BuildSpec) -> str | None:
        """Build `image` from `build` unless the engine has it already (its tag is the
        context's content hash); the tail of the build's output, or None when not built. A
        failed build is a `ProviderError` with the last lines of its output."""
        import docker.errors

        if (image, build.platform) in self._images:
            return None
        output: str | None = None
        with self._call(f"image {image}"):
            try:
                self.api.inspect_image(image)
            except docker.errors.NotFound:
                output = self._build(image, build)
            if build.also_tagged is not None:
                self.api.tag(image, *_split_reference(build.also_tagged))
        self._images.add((image, build.platform))
        return output

    def _build(self, image: str, build: BuildSpec) -> str:
        lines: deque[str] = deque(maxlen=BUILD_LOG_LINES)
        stream = self.api.build(
            fileobj=_context_tar(build),
            custom_context=True,
            tag=image,
            dockerfile=build.dockerfile,
            buildargs=dict(build.args) or None,
            target=build.target,
            platform=build.platform,
            rm=True,
            forcerm=True,
            decode=True,
        )
        for chunk in stream:
            lines.extend(line for line in str(chunk.get("stream") or "").splitlines() if line)
            if "error" in chunk:
                tail = "\n".join([*list(lines)[-10:], str(chunk["error"]).strip()])
                raise ProviderError(
                    f"image {image}",
                    f"build failed (fix the Dockerfile or its context); last lines:\n{tail}",
                )
        return "\n".join(lines)

    @property
    def is_local(self) -> bool:
        """Whether the engine runs on this machine (its networks share this machine's routes)."""
        return self.base_url.startswith("unix://")

    def used_subnets(self) -> list[str]:
        """The IPv4/IPv6 subnets of every network on the engine, Nebula's or not."""
        with self._call("networks"):
            networks = self.api.networks()
        return [
            config["Subnet"]
            for network in networks
            for config in ((network.get("IPAM") or {}).get("Config") or [])
            if config.get("Subnet")
        ]

    def create_network(self, spec: NetworkSpec, subnet: str | None) -> None:
        """Create the network, on `subnet` when given (else Docker picks from its own pools)."""
        from docker.types import IPAMConfig, IPAMPool

        ipam = None
        if subnet is not None:
            ipam = IPAMConfig(pool_configs=[IPAMPool(subnet=subnet)])
        with self._call(f"network {spec.name}"):
            self.api.create_network(
                spec.name,
                driver=spec.driver,
                options=dict(spec.options) or None,
                labels=_labels(spec.installation),
                ipam=ipam,
                check_duplicate=True,
            )

    def remove_network(self, network_id: str, name: str) -> None:
        import docker.errors

        with self._call(f"network {name}"), suppress(docker.errors.NotFound):
            self.api.remove_network(network_id)

    def create_volume(self, spec: VolumeSpec) -> None:
        import docker.errors

        with self._call(f"volume {spec.name}"):
            try:
                existing = self.api.inspect_volume(spec.name)
            except docker.errors.NotFound:
                self.api.create_volume(
                    spec.name,
                    driver=spec.driver,
                    driver_opts=dict(spec.options) or None,
                    labels=_labels(spec.installation),
                )
                return
        if (existing.get("Labels") or {}).get(LABEL_MANAGED) != "true":
            raise ProviderError(
                f"volume {spec.name}", "a volume of that name exists and is not managed by Nebula"
            )

    def remove_volumes_of(self, installation: str) -> list[str]:
        """Delete the volumes Nebula made for `installation` (its data); their names."""
        import docker.errors

        removed = []
        for volume in self.observe().volumes:
            if volume.installation == installation:
                with self._call(f"volume {volume.name}"), suppress(docker.errors.NotFound):
                    self.api.remove_volume(volume.name)
                removed.append(volume.name)
        return removed

    def volume_mountpoint(self, name: str) -> Path:
        """Where the engine keeps the volume's files (its `Mountpoint`)."""
        with self._call(f"volume {name}"):
            return Path(self.api.inspect_volume(name)["Mountpoint"])

    def hold_container(self, container_id: str, name: str, pause: bool) -> None:
        """Stop or pause a container for a while (a consistent backup); its events until it
        runs again are this hold's (`held`), not drift."""
        self._held.add(container_id)
        try:
            with self._call(f"container {name}"):
                if pause:
                    self.api.pause(container_id)
                else:
                    self.api.stop(container_id)
        except ProviderError:
            self._held.discard(container_id)
            raise

    def release_container(self, container_id: str, name: str, pause: bool) -> None:
        """Start or unpause a container `hold_container` stopped or paused."""
        try:
            with self._call(f"container {name}"):
                if pause:
                    self.api.unpause(container_id)
                else:
                    self.api.start(container_id)
        except ProviderError:
            self._held.discard(container_id)
            raise

    def held(self, event: ContainerEvent) -> bool:
        """Whether `event` is part of a hold this provider made (its stop or pause); the
        container's `start` or `unpause` ends it."""
        if event.container_id not in self._held:
            return False
        if event.action in ("start", "unpause"):
            self._held.discard(event.container_id)
        return True

    def create_container(
        self, spec: ContainerSpec, secrets: Mapping[str, str] | None = None
    ) -> str:
        """Create (not start) the container, attached to all its networks; returns its id.

        `secrets` (stand-in -> value) are swapped in only for what Docker runs: environment,
        command, entrypoint, healthcheck. Labels keep the stand-ins.
        """
        import docker.errors
        from docker.types import LogConfig, Mount, Ulimit

        labels = {**dict(spec.labels), **_labels(spec.installation)}
        labels |= {
            LABEL_SERVICE: spec.service,
            LABEL_SPEC: canonical_json(spec.summary()),
            LABEL_SPEC_HASH: spec.spec_hash,
        }
        api = self.api
        values = secrets or {}
        bindings: dict[str, list[tuple[str, int | str]]] = {}
        for port in spec.ports:
            key = f"{port.container_port}/{port.protocol}"
            bindings.setdefault(key, []).append((port.host_ip, port.host_port or ""))
        restart_name, _, retries = spec.restart.partition(":")
        host_config = api.create_host_config(
            port_bindings=bindings or None,
            mounts=[
                Mount(m.target, m.source or None, type=m.type, read_only=m.read_only)
                for m in spec.mounts
            ]
            + [
                Mount(f.target, str(self._materialise(f, spec.name)), type="bind", read_only=True)
                for f in spec.files
            ]
            + [
                Mount(f.target, str(path), type="bind", read_only=True)
                for f, path in self._secret_files(spec, values)
            ]
            or None,
            restart_policy={"Name": restart_name, "MaximumRetryCount": int(retries or 0)},
            init=spec.init,
            device_requests=[_device_request(d) for d in spec.device_requests] or None,
            nano_cpus=int(spec.cpus * 1e9) if spec.cpus else None,
            mem_limit=spec.memory,
            pids_limit=spec.pids,
            extra_hosts=list(spec.extra_hosts) or None,
            dns=list(spec.dns) or None,
            tmpfs=dict(spec.tmpfs) or None,
            shm_size=spec.shm_size,
            ulimits=[Ulimit(name=u.name, soft=u.soft, hard=u.hard) for u in spec.ulimits] or None,
            log_config=LogConfig(type=spec.logging.driver, config=dict(spec.logging.options))
            if spec.logging
            else None,
            read_only=spec.read_only or None,
            cap_drop=list(spec.cap_drop) or None,
            security_opt=list(spec.security_opt) or None,
            dns_search=list(spec.dns_search) or None,
            dns_opt=list(spec.dns_opt) or None,
            network_mode=spec.network_mode,
            privileged=spec.privileged,
            cap_add=list(spec.cap_add) or None,
            devices=list(spec.devices) or None,
            sysctls=dict(spec.sysctls) or None,
            pid_mode=spec.pid_mode,
            ipc_mode=spec.ipc_mode,
        )
        networking = None
        other_nets = spec.networks[1:]
        if spec.networks:  # none on the host's network
            first_net, first_aliases = spec.networks[0]
            networking = api.create_networking_config(
                {first_net: api.create_endpoint_config(aliases=list(first_aliases))}
            )
        health = None
        if spec.healthcheck is not None:
            h = spec.healthcheck
            health = {
                "test": [reveal(t, values) for t in h.test],
                "interval": _ns(h.interval),
                "timeout": _ns(h.timeout),
                "retries": h.retries,
                "start_period": _ns(h.start_period),
            }
        self._made.append(spec.name)  # before the call: its events may come first
        with self._call(f"container {spec.name}"):
            try:
                created = api.create_container(
                    spec.image,
                    command=_revealed(spec.command, values),
                    entrypoint=_revealed(spec.entrypoint, values),
                    environment=[f"{k}={reveal(v, values)}" for k, v in spec.environment],
                    labels=labels,
                    name=spec.name,
                    host_config=host_config,
                    networking_config=networking,
                    ports=[(p.container_port, p.protocol) for p in spec.ports]
                    + [tuple(port.split("/")) for port in spec.expose]
                    or None,
                    healthcheck=health,
                    user=spec.user,
                    working_dir=spec.working_dir,
                    hostname=spec.hostname,
                    domainname=spec.domainname,
                    platform=spec.platform,
                    stop_signal=spec.stop_signal,
                    stop_timeout=_seconds(spec.stop_grace_period),
                    stdin_open=spec.stdin_open,
                    tty=spec.tty,
                    detach=True,
                )
            except docker.errors.APIError as exc:
                if exc.status_code == 409:
                    raise ProviderError(
                        f"container {spec.name}",
                        "the name is taken by a container Nebula does not manage; "
                        "rename or remove that container",
                    ) from None
                raise
            container_id: str = created["Id"]
            for net, aliases in other_nets:
                api.connect_container_to_network(container_id, net, aliases=list(aliases))
        return container_id

    def _materialise(self, file: RepoFile | RepoFolder, container: str) -> Path:
        """The file or folder written under `files_dir`, named by its digest (content and
        modes): an unchanged one is written once, and a changed one never alters what a running
        container sees. It is written under a temporary name and renamed into place, so a
        digest's entry is always whole."""
        if not self.is_local:
            raise ProviderError(
                f"container {container}",
                f"{file.source} is from the config repo, bound from this machine: the "
                f"Docker Engine at {self.base_url} must run here (unix://)",
            )
        path = self.files_dir / file.digest
        if not path.exists():
            self.files_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}")
            if isinstance(file, RepoFile):
                partial.write_bytes(file.content)
                partial.chmod(file.mode)
            else:
                _write_tree(partial, file)
            try:
                partial.replace(path)
            except OSError:
                _remove(partial)
                if not path.exists():
                    raise
                # else a folder another thread put there first: the same content
        return path

    def _secret_files(
        self, spec: ContainerSpec, values: Mapping[str, str]
    ) -> list[tuple[SecretFile, Path]]:
        """The container's compose secrets written to memory, beside the engine (a bind)."""
        if not spec.secret_files:
            return []
        resource = f"container {spec.name}"
        if not self.is_local:
            raise ProviderError(
                resource,
                f"compose secrets are files bound from this machine: the Docker Engine at "
                f"{self.base_url} must run here (unix://)",
            )
        try:
            return write_secret_files(self._secrets_folder(spec.name), spec.secret_files, values)
        except (SecretsFolderError, OSError) as exc:
            raise ProviderError(resource, f"cannot serve its secrets: {exc}") from None

    def _secrets_folder(self, container: str) -> Path:
        if self.secrets_dir is None:
            self.secrets_dir = default_secrets_dir()
        return self.secrets_dir / container

    def prune_files(self) -> list[str]:
        """Delete the entries of `files_dir` that no managed container binds any more (one
        list call); the names deleted. Run it when no container is being created."""
        if not self.is_local or not self.files_dir.is_dir():
            return []
        used = {  # by name alone: however the folder's path was spelt, a used entry stays
            Path(mount.get("Source") or "/").name
            for container in self._managed_containers()
            for mount in container.get("Mounts") or []
        }
        unused = sorted(entry.name for entry in self.files_dir.iterdir() if entry.name not in used)
        for name in unused:
            _remove(self.files_dir / name)
        return unused

    def start_container(self, container_id: str, name: str) -> None:
        self.watcher()  # subscribe before the start, so no event is missed
        with self._call(f"container {name}"):
            self.api.start(container_id)

    def remove_container(self, container_id: str, name: str, stop_timeout: float) -> None:
        """Stop (with a grace period) and remove a container; its named volumes stay."""
        import docker.errors

        self._removed.append(container_id)  # before the call: its events may come first
        try:
            with self._call(f"container {name}"), suppress(docker.errors.NotFound):
                if stop_timeout:  # the service's own stop_grace_period comes first
                    config = self.api.inspect_container(container_id)["Config"]
                    stop_timeout = config.get("StopTimeout") or stop_timeout
                self.api.stop(container_id, timeout=int(stop_timeout))
                self.api.remove_container(container_id, v=False, force=True)
            remove_secret_files(self._secrets_folder(name))
        except ProviderError:
            self._removed.remove(container_id)  # not removed after all: later events are drift
            raise

    def exec_run(
        self, container: str, command: tuple[str, ...], timeout: float
    ) -> tuple[int | None, str]:
        """Run `command` in the running container named `container`: (exit code, output), or
        (None, output so far) when it did not finish within `timeout`."""
        with self._call(f"container {container}"):
            exec_id = self.api.exec_create(container, list(command), stdout=True, stderr=True)
        chunks: list[bytes] = []
        finished = threading.Event()

        def read() -> None:
            try:
                for chunk in self.api.exec_start(exec_id, stream=True):
                    chunks.append(chunk)
            except Exception:  # the engine went away; the inspect below says so
                pass
            finished.set()

        threading.Thread(target=read, name=f"exec-{container}", daemon=True).start()
        done = finished.wait(timeout)
        output = b"".join(chunks).decode(errors="replace")
        if not done:
            return None, output
        with self._call(f"container {container}"):
            code = self.api.exec_inspect(exec_id).get("ExitCode")
        return (int(code) if code is not None else None), output

    def run_once(
        self,
        image: str,
        command: tuple[str, ...],
        *,
        name: str,
        stdin: bytes,
        network: str | None,
        memory: str,
        cpus: float,
        timeout: float,
    ) -> tuple[int | None, str]:
        """Run `image` once (its `command`, or the image's own when empty) with `stdin` as its
        input: (exit code, stdout and stderr), or (None, output so far) when it did not end
        within `timeout` and was killed. Confined: no network unless `network` names one, a
        read-only root (a small tmpfs at /tmp), no capabilities, no new privileges, at most
        `FUNCTION_PIDS` processes, `memory` and `cpus`. Labelled `LABEL_FUNCTION`=`name`, not
        as managed: no sync or drift check takes it for an app. Removed however it ends."""
        import docker.errors
        import requests.exceptions

        resource = f"function {name} ({image})"
        self.ensure_image(image)
        api = self.api
        with self._call(resource):
            host_config = api.create_host_config(
                network_mode=network or "none",
                read_only=True,
                tmpfs={"/tmp": "size=16m"},
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                pids_limit=FUNCTION_PIDS,
                mem_limit=memory,
                nano_cpus=int(cpus * 1e9),
            )
            created = api.create_container(
                image,
                command=list(command) or None,
                labels={LABEL_FUNCTION: name},
                host_config=host_config,
                stdin_open=True,  # not detached: StdinOnce, so stdin ends when its writer leaves
                detach=False,
            )
        container_id: str = created["Id"]
        deadline = time.monotonic() + timeout
        try:
            with self._call(resource):
                attached = api.attach_socket(container_id, {"stdin": 1, "stream": 1})
                api.start(container_id)
                _write_stdin(attached, stdin, timeout)
                left = max(1, math.ceil(deadline - time.monotonic()))
                try:
                    code: int | None = int(api.wait(container_id, timeout=left)["StatusCode"])
                except requests.exceptions.RequestException:  # not ended in time
                    code = None
                    with suppress(docker.errors.APIError):  # it may just have ended
                        api.kill(container_id)
                raw: bytes = api.logs(container_id, stdout=True, stderr=True)
            return code, raw.decode(errors="replace")
        finally:
            with self._call(resource), suppress(docker.errors.NotFound):
                api.remove_container(container_id, force=True)

    # -- wait ------------------------------------------------------------------------------

    def watcher(self) -> _EventWatcher:
        with self._lock:
            if self._watcher is None or self._watcher.closed:  # e.g. the engine restarted
                self._watcher = _EventWatcher(self)
            return self._watcher

    def removed_by_us(self, container_id: str) -> bool:
        """Whether this provider removed that container itself (its events are not drift)."""
        return container_id in self._removed

    def made_by_us(self, event: ContainerEvent) -> bool:
        """Whether `event` is the creation or start of a container this provider created."""
        return event.action in ("create", "start") and event.name in self._made

    def follow(
        self,
        on_event: Callable[[ContainerEvent], None],
        stop: threading.Event,
        lost: Callable[[ProviderError], object],
    ) -> None:
        """Call `on_event` for every event of a managed container until `stop` is set. Losing
        the engine is told to `lost`; this reconnects every second and reports a `reconnect`
        event once it is back. Any other error (one `on_event` raises, the engine refusing the
        request) ends this and is raised."""
        for event in self._managed_events(stop, lost):
            on_event(event)

    def _managed_events(
        self, stop: threading.Event, lost: Callable[[ProviderError], object]
    ) -> Iterator[ContainerEvent]:
        import requests.exceptions
        import urllib3.exceptions

        disconnects = (
            OSError,  # requests' ConnectionError too
            requests.exceptions.ChunkedEncodingError,
            urllib3.exceptions.ProtocolError,
        )
        gone = False
        while not stop.is_set():
            try:
                stream = self.api.events(  # `api` raises ProviderError: cannot connect
                    decode=True, filters={"type": "container", "label": f"{LABEL_MANAGED}=true"}
                )
                if gone:
                    yield ContainerEvent("reconnect", "", time.time())
                    gone = False
                for event in stream:
                    if stop.is_set():
                        return
                    yield ContainerEvent.of(event)
            except ProviderError as exc:
                lost(exc)
            except disconnects as exc:
                reason = f"event stream lost ({_root_cause(exc)})"
                lost(ProviderError(f"Docker Engine at {self.base_url}", reason))
            gone = True
            stop.wait(1.0)

    def wait_for(
        self, container_id: str, until: Callable[[ContainerStatus], bool], timeout: float
    ) -> ContainerStatus:
        """Block until the container's status satisfies `until`, or `timeout` passes."""
        return self.watcher().wait(container_id, until, timeout)


@dataclass(frozen=True)
class LogLine:
    """One line of a container's log."""

    container: str
    stream: str  # stdout | stderr
    time: str  # as Docker stamped it: RFC 3339 in UTC, nanoseconds, fixed width (sorts as text)
    message: str


class LogStream:
    """The lines of one `DockerProvider.log_stream` request. `close()`, from any thread, ends
    the iteration (a followed stream otherwise waits in a read for the next line)."""

    def __init__(self, container: str, response: requests.Response, tty: bool) -> None:
        from docker.types import CancellableStream

        self.container = container
        frames = _raw_frames(response) if tty else _multiplexed_frames(response)
        # CancellableStream: close() shuts the socket down, and the read it ends stops quietly
        self._frames = CancellableStream(frames, response)

    def __iter__(self) -> Iterator[LogLine]:
        pending = {"stdout": b"", "stderr": b""}
        for stream, data in self._frames:
            *lines, pending[stream] = (pending[stream] + data).split(b"\n")
            for line in lines:
                yield self._line(stream, line)
        for stream, rest in pending.items():
            if rest:
                yield self._line(stream, rest)

    def _line(self, stream: str, line: bytes) -> LogLine:
        stamp, _, message = line.partition(b" ")
        text = message.decode(errors="replace").rstrip("\r")
        return LogLine(self.container, stream, stamp.decode(errors="replace"), text)

    def close(self) -> None:
        self._frames.close()


_FRAME_STREAMS = {1: "stdout", 2: "stderr"}


def _multiplexed_frames(response: requests.Response) -> Iterator[tuple[str, bytes]]:
    """Docker's frames: an 8-byte header (stream, 3 zero bytes, big-endian length), then data."""
    while len(header := response.raw.read(8)) == 8:
        kind, length = struct.unpack(">BxxxL", header)
        data = response.raw.read(length)
        if len(data) < length:
            return
        yield _FRAME_STREAMS.get(kind, "stdout"), data


def _raw_frames(response: requests.Response) -> Iterator[tuple[str, bytes]]:
    """A TTY container's log: no frames, everything is stdout."""
    for chunk in response.iter_content(chunk_size=None):
        yield "stdout", chunk


class _EventWatcher:
    """One `/events` stream of managed containers; threads wait on it for a container's state."""

    def __init__(self, provider: DockerProvider) -> None:
        self._provider = provider
        self._cond = threading.Condition()
        self._status: dict[str, ContainerStatus] = {}
        self._closed = False
        since = int(time.time()) - 1
        self._stream = provider.api.events(
            since=since,
            decode=True,
            filters={"type": "container", "label": f"{LABEL_MANAGED}=true"},
        )
        self._thread = threading.Thread(target=self._run, name="docker-events", daemon=True)
        self._thread.start()

    @property
    def closed(self) -> bool:
        return self._closed

    def _run(self) -> None:
        try:
            for event in self._stream:
                self._handle(event)
        except Exception:  # the stream ends on close() or when the engine goes away
            pass
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _handle(self, event: dict[str, Any]) -> None:
        action: str = event.get("Action") or event.get("status") or ""
        container_id = event.get("id") or event.get("Actor", {}).get("ID")
        if not container_id:
            return
        with self._cond:
            current = self._status.get(container_id, ContainerStatus("created", None, None))
            if action == "start":
                current = ContainerStatus("running", current.health, None)
            elif action == "die":
                code = event.get("Actor", {}).get("Attributes", {}).get("exitCode")
                current = ContainerStatus("exited", current.health, int(code) if code else None)
            elif action.startswith("health_status: "):
                current = ContainerStatus(
                    current.state, action.split(": ", 1)[1], current.exit_code
                )
            elif action == "destroy":
                current = ContainerStatus("removed", None, current.exit_code)
            else:
                return
            self._status[container_id] = current
            self._cond.notify_all()

    def wait(
        self, container_id: str, until: Callable[[ContainerStatus], bool], timeout: float
    ) -> ContainerStatus:
        deadline = time.monotonic() + timeout
        status = self._provider.status(container_id)  # after subscribing: nothing is missed
        with self._cond:
            status = self._status.setdefault(container_id, status)
            while not until(status):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    break
                self._cond.wait(remaining)
                status = self._status[container_id]
        return status

    def close(self) -> None:
        self._stream.close()


def _write_stdin(attached: Any, data: bytes, timeout: float) -> None:
    """Write `data` to a container's attached stdin and close it (the container reads EOF).
    A container that does not read holds the write up to `timeout` at most."""
    sock = getattr(attached, "_sock", attached)  # the SDK's SocketIO wraps the socket
    sock.settimeout(timeout)
    try:
        sock.sendall(data)
    except OSError:
        pass  # it ended, or never read its input: its exit code and output say what it did
    finally:
        attached.close()
        sock.close()


def _write_tree(path: Path, folder: RepoFolder) -> None:
    """The folder's files and sub-folders written at `path`, read-only once complete."""
    path.mkdir(mode=0o700)
    for entry in sorted(folder.entries, key=lambda e: e.path):  # a folder before what it holds
        if entry.content is None:
            (path / entry.path).mkdir(mode=0o700)
        else:
            (path / entry.path).write_bytes(entry.content)
            (path / entry.path).chmod(entry.mode)
    for entry in folder.entries:
        if entry.content is None:
            (path / entry.path).chmod(entry.mode)
    path.chmod(0o555)


def _remove(path: Path) -> None:
    """Delete a file or a read-only folder tree of Nebula's files folder."""
    if not path.is_dir() or path.is_symlink():
        path.unlink(missing_ok=True)
        return
    for folder, _, _ in os.walk(path):
        os.chmod(folder, 0o700)  # read-only folders: their entries could not be unlinked
    shutil.rmtree(path)


def _by_name(resource: ObservedContainer | ObservedNetwork | ObservedVolume) -> str:
    return resource.name


def _observed_container(raw: dict[str, Any]) -> ObservedContainer:
    labels = raw.get("Labels") or {}
    status_text = raw.get("Status") or ""
    health = None
    if "(healthy)" in status_text:
        health = "healthy"
    elif "(unhealthy)" in status_text:
        health = "unhealthy"
    elif "(health: starting)" in status_text:
        health = "starting"
    exited = _EXITED.search(status_text)
    try:
        spec = json.loads(labels.get(LABEL_SPEC, "{}"))
    except ValueError:
        spec = {}
    return ObservedContainer(
        id=raw["Id"],
        name=(raw.get("Names") or ["/"])[0].lstrip("/"),
        installation=labels.get(LABEL_INSTALLATION, ""),
        service=labels.get(LABEL_SERVICE, ""),
        spec_hash=labels.get(LABEL_SPEC_HASH, ""),
        spec=spec,
        state=raw.get("State", ""),
        health=health,
        exit_code=int(exited[1]) if exited else None,
        addresses=_addresses(raw),
    )


def _addresses(raw: dict[str, Any]) -> tuple[str, ...]:
    networks = (raw.get("NetworkSettings") or {}).get("Networks") or {}
    found = (
        networks[name].get("IPAddress") or networks[name].get("GlobalIPv6Address")
        for name in sorted(networks)
    )
    return tuple(address for address in found if address)


def _revealed(parts: tuple[str, ...] | None, values: Mapping[str, str]) -> list[str] | None:
    return None if parts is None else [reveal(p, values) for p in parts]


def _status(state: dict[str, Any]) -> ContainerStatus:
    health = (state.get("Health") or {}).get("Status")
    status = state.get("Status", "")
    return ContainerStatus(status, health, state.get("ExitCode") if status == "exited" else None)


def _device_request(request: DeviceRequest) -> docker.types.DeviceRequest:
    """As compose passes it: the capabilities listed are all required (one AND-group)."""
    from docker.types import DeviceRequest as Request

    return Request(
        driver=request.driver,
        count=request.count or 0,
        device_ids=list(request.device_ids) or None,
        capabilities=[list(request.capabilities)],
        options=dict(request.options) or None,
    )


def _context_tar(build: BuildSpec) -> io.BytesIO:
    """The build context as the engine takes it: a tar of its files and folders (times
    zeroed: the content decides, as it decides the tag)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for entry in build.entries:
            info = tarfile.TarInfo(entry.path)
            info.mode = entry.mode
            if entry.content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(entry.content)
                tar.addfile(info, io.BytesIO(entry.content))
    buffer.seek(0)
    return buffer


def _labels(installation: str) -> dict[str, str]:
    return {LABEL_MANAGED: "true", LABEL_INSTALLATION: installation}


def _seconds(seconds: float | None) -> int | None:
    """Docker's whole seconds, rounded up: a grace period is never shortened."""
    return None if seconds is None else math.ceil(seconds)


def _ns(seconds: float | None) -> int | None:
    return int(seconds * _NS) if seconds is not None else None


def _split_reference(image: str) -> tuple[str, str | None]:
    """`registry:5000/app:1.2` → (`registry:5000/app`, `1.2`); digests stay whole."""
    if "@" in image:
        return image, None
    name, sep, tag = image.rpartition(":")
    if sep and "/" not in tag:
        return name, tag
    return image, "latest"


def _root_cause(exc: BaseException) -> str:
    """The OS-level reason of a connection failure ('Connection refused'), else the message."""
    pending: list[object] = [exc]
    seen: set[int] = set()
    while pending:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, OSError) and item.strerror:
            return item.strerror
        pending.extend(
            [*item.args, item.__cause__, item.__context__, getattr(item, "reason", None)]
        )
    return str(exc)


def _explain(exc: docker.errors.APIError) -> str:
    explanation = exc.explanation
    if isinstance(explanation, bytes):
        explanation = explanation.decode(errors="replace")
    return str(explanation or exc)


def _built_for(image: dict[str, Any], platform: str) -> bool:
    """Whether an inspected image is for `platform` (`os/arch[/variant]`)."""
    wanted = platform.lower().split("/")
    have = [image.get("Os", ""), image.get("Architecture", ""), image.get("Variant", "")]
    return [w for w in wanted if w] == [h.lower() for h in have[: len(wanted)]]
