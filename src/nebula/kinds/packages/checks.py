"""Checks across installations, run after they resolve and before anything is touched.

Each installation may be valid alone and still clash with another on the same node: two
publishing the same host port, two claiming the same Docker volume. An installation may also
ask for a GPU on a node without one (the node it was placed on, `placement.place`), or depend
on an installation placed on another node. Every issue points at
the line to fix and, for a clash, at the other side too (`packages/b.yaml:7: host port 8080/tcp
is also published by packages/a.yaml:4`). For a catalog package the line is the installation's
value that set it (or its `package:` line), with the catalog file's line beside it. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nebula.catalog import Catalog
from nebula.errors import ConfigIssue
from nebula.kinds.packages.types import ContainerSpec, DesiredInstallation, PortBinding
from nebula.spec.config import NebulaConfig, Node
from nebula.spec.interpolate import InterpolationError, references
from nebula.spec.repo import InstallationSource
from nebula.spec.yamlfile import Path, YamlDocument

Resolved = tuple[InstallationSource, DesiredInstallation]
_WILDCARDS = ("", "0.0.0.0", "::")


@dataclass(frozen=True)
class _Claim:
    """Something one installation takes on a node, and where it was written."""

    installation: str
    what: str  # e.g. "service 'web'"
    at: ConfigIssue  # the mark; its message is filled in when a clash is found

    @property
    def where(self) -> str:
        return f"{self.at.file}:{self.at.line}"


def check_installations(
    resolved: Sequence[Resolved], catalog: Catalog, config: NebulaConfig
) -> list[ConfigIssue]:
    """Every problem between the installations and the nodes they are placed on."""
    issues: list[ConfigIssue] = []
    ports: dict[tuple[str, str, int], list[tuple[str, _Claim]]] = {}  # node, proto, port
    volumes: dict[str, _Claim] = {}
    nodes = {desired.name: desired.node for _, desired in resolved}
    for source, desired in resolved:
        locate = _Locator(source, _app_doc(source, desired, catalog))
        node = config.node(desired.node)
        if node is None:  # cannot happen after `placement.place`, which reports unknown nodes
            continue
        issues.extend(_elsewhere(source, desired, nodes))
        for container in desired.containers:
            base: Path = ("compose", "services", container.service)
            what = f"service {container.service!r}"
            issues += _engine_issues(container, node, locate, base)
            if not node.gpu and any(d.is_gpu for d in container.device_requests):
                field = "gpus" if _has(locate.app_doc, (*base, "gpus")) else "deploy"
                issues.append(
                    _message(
                        locate.site((*base, field)),
                        f"{what} requests a GPU, but node {node.name!r} has none; set "
                        "`gpu: true` on that node in nebula.yaml or place this installation "
                        "on a GPU node with `node:` or `placement: {gpu: true}`",
                    )
                )
            for index, port in enumerate(container.ports):
                if port.host_port is None:
                    continue
                claim = _Claim(desired.name, what, locate.site((*base, "ports", index)))
                key = (node.name, port.protocol, port.host_port)
                others = ports.setdefault(key, [])
                for ip, other in others:
                    if _overlap(ip, port.host_ip):
                        issues.append(_port_clash(claim, other, port))
                        break
                others.append((port.host_ip, claim))
            owned = {v.name for v in desired.volumes}  # not external ones: those are shared
            for index, mount in enumerate(container.mounts):
                if mount.source not in owned:
                    continue
                claim = _Claim(desired.name, what, locate.site((*base, "volumes", index)))
                first = volumes.setdefault(mount.source, claim)
                if first.installation != desired.name:
                    issues.append(
                        _message(
                            claim.at,
                            f"volume {mount.source!r} is also claimed by installation "
                            f"{first.installation!r} ({first.where}); rename one, or "
                            "declare it `external: true` in the one that shares it",
                        )
                    )
    return issues


def _elsewhere(
    source: InstallationSource, desired: DesiredInstallation, nodes: dict[str, str]
) -> list[ConfigIssue]:
    """An installation reaches what it depends on over that one's network, on one engine:
    each dependency must be placed on the same node."""
    issues = []
    for provider in desired.requires:
        there = nodes.get(provider)
        if there is None or there == desired.node:
            continue
        named = [k for k, v in source.spec.dependencies.items() if v == provider]
        path: Path = ("dependencies", named[0]) if named else ("package",)
        issues.append(
            source.doc.issue(
                path,
                f"it depends on {provider!r}, placed on node {there!r}, but it is placed on "
                f"{desired.node!r}; an installation reaches its dependencies on its own node: "
                "place both on one node",
            )
        )
    return issues


_WHY_NOT_ON_SWARM = "not supported on an `engine: swarm` node yet"
_NOT_ON_SWARM: tuple[tuple[tuple[str, ...], str, Callable[[ContainerSpec], bool]], ...] = (
    (
        ("build",),
        "a swarm's nodes pull their images: push the image to a registry and give `image:`",
        lambda c: c.build is not None,
    ),
    (
        ("configs", "volumes"),
        "files of the config repo are not served to services; build them into the image",
        lambda c: bool(c.files),
    ),
    (("secrets",), _WHY_NOT_ON_SWARM, lambda c: bool(c.secret_files)),
    (("gpus", "deploy"), _WHY_NOT_ON_SWARM, lambda c: bool(c.device_requests)),
    (("platform",), _WHY_NOT_ON_SWARM, lambda c: c.platform is not None),
    (("tmpfs",), _WHY_NOT_ON_SWARM, lambda c: bool(c.tmpfs)),
    (("shm_size",), _WHY_NOT_ON_SWARM, lambda c: c.shm_size is not None),
    (("ulimits",), _WHY_NOT_ON_SWARM, lambda c: bool(c.ulimits)),
    (("pids_limit", "deploy"), _WHY_NOT_ON_SWARM, lambda c: c.pids is not None),
    (("domainname",), _WHY_NOT_ON_SWARM, lambda c: c.domainname is not None),
    (("security_opt",), _WHY_NOT_ON_SWARM, lambda c: bool(c.security_opt)),
    (
        ("network_mode", "privileged", "cap_add", "devices", "sysctls", "pid", "ipc"),
        "Swarm services get no powers over the host from Nebula; leave it out",
        lambda c: bool(c.grants and set(c.grants) - {"docker_socket", "host_system"}),
    ),
)


def _engine_issues(
    container: ContainerSpec, node: Node, locate: _Locator, base: Path
) -> list[ConfigIssue]:
    """What `container` asks of an engine that `node`'s does not do: Swarm's `deploy:` keys
    on a Docker node, what the Swarm backend does not map on a swarm node."""
    issues: list[ConfigIssue] = []
    swarm = node.engine == "swarm"
    if not swarm and container.swarm is not None:
        issues.append(
            _message(
                locate.site((*base, "deploy")),
                f"replicas, update_config, restart_policy and reservations are for a node with "
                f"`engine: swarm`; node {node.name!r} runs one container per service: leave "
                "them out (`restart:` restarts the container)",
            )
        )
    for index, port in enumerate(container.ports):
        if not swarm and port.mode is not None:
            message = (
                f"a publish mode is for a node with `engine: swarm`; node {node.name!r} "
                "publishes on itself: leave `mode` out"
            )
            issues.append(_message(locate.site((*base, "ports", index)), message))
        elif swarm and port.host_ip not in _WILDCARDS:
            message = (
                f"a swarm publishes ports on every address of its nodes, not on {port.host_ip}; "
                "leave the address out"
            )
            issues.append(_message(locate.site((*base, "ports", index)), message))
    if not swarm:
        return issues
    for keys, why, used in _NOT_ON_SWARM:
        if used(container):
            key = next((k for k in keys if _has(locate.app_doc, (*base, k))), keys[0])
            issues.append(_message(locate.site((*base, key)), why))
    return issues


def _port_clash(claim: _Claim, other: _Claim, port: PortBinding) -> ConfigIssue:
    by = (
        f"{other.what} of this installation ({other.where})"
        if other.installation == claim.installation
        else other.where
    )
    address = "" if port.host_ip in _WILDCARDS else f" on {port.host_ip}"
    return _message(
        claim.at, f"host port {port.host_port}/{port.protocol}{address} is also published by {by}"
    )


def _overlap(a: str, b: str) -> bool:
    """Whether two bind addresses can collide: the same, or either is a wildcard."""
    return a == b or a in _WILDCARDS or b in _WILDCARDS


def _message(at: ConfigIssue, message: str) -> ConfigIssue:
    note = f" ({at.message})" if at.message else ""
    return ConfigIssue(at.file, at.line, at.column, at.field, message + note)


def _app_doc(
    source: InstallationSource, desired: DesiredInstallation, catalog: Catalog
) -> YamlDocument:
    if desired.package is None:
        return source.doc
    entry = catalog.get(desired.package, desired.version)
    return entry.doc if entry is not None else source.doc


def _has(doc: YamlDocument, path: Path) -> bool:
    return tuple(path) in doc.marks


@dataclass(frozen=True)
class _Locator:
    """Where in the installation's own file a path of its app is fixed."""

    source: InstallationSource
    app_doc: YamlDocument

    def site(self, path: Path) -> ConfigIssue:
        """The mark to report at; for a catalog app its message holds the catalog line."""
        if self.app_doc is self.source.doc:
            return self.source.doc.issue(path, "")
        mark = self.app_doc.mark_for(path)
        in_catalog = f"set in {self.app_doc.file}:{mark.line}"
        for name in _variables(_value_at(self.app_doc.data, path)):
            if name in self.source.spec.values:
                return self.source.doc.issue(("values", name), in_catalog)
        return self.source.doc.issue(("package",), in_catalog)


def _value_at(data: Any, path: Path) -> Any:
    for part in path:
        if isinstance(data, dict) and isinstance(part, str):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def _variables(value: Any) -> list[str]:
    """The variables a port or volume entry uses (short text, or the long form's fields)."""
    texts = [value] if isinstance(value, str) else []
    if isinstance(value, dict):
        texts = [v for v in value.values() if isinstance(v, str)]
    names: list[str] = []
    for text in texts:
        try:
            names += [name for name, _ in references(text)]
        except InterpolationError:
            continue
    return names
