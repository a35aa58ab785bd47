"""Compose short syntaxes, parsed after interpolation: ports, volumes, commands, healthchecks."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable

from nebula.kinds.packages.types import DeviceRequest, HealthSpec, Mount, PortBinding
from nebula.spec.base import check_ip_address
from nebula.spec.compose import GpuRequest, Healthcheck, PortMapping, Service, VolumeMount
from nebula.spec.names import COMPOSE_NAME, COMPOSE_NAME_RULE, excerpt


def split_command(value: str | list[str]) -> tuple[str, ...]:
    return tuple(shlex.split(value)) if isinstance(value, str) else tuple(value)


def parse_ports(value: int | str | PortMapping, bind_address: str) -> list[PortBinding]:
    """`80`, `8080:80`, `127.0.0.1:8080:80`, `::1:8080:80`, `[::1]::80/udp`, a range
    (`8000-8010:8000-8010`, `9000-9002`: each port of it) or the long form. As Docker, the
    protocol may be written in upper case (`53:53/UDP`)."""
    if isinstance(value, PortMapping):
        text = f"{value.published or ''}:{value.target}/{value.protocol}"
        host_ip = check_ip_address(value.host_ip) if value.host_ip else bind_address
        return _bindings(text, value.published or "", str(value.target), value.protocol, host_ip)
    # As Docker's ParsePortSpec: the last part is the container port (and protocol), the one
    # before it the host port, all before those the IP (`::1:8080:80`, `[::1]:8080:80`).
    text = str(value)
    *rest, last = text.split(":")
    container, _, protocol = last.partition("/")
    host = rest.pop() if rest else ""
    host_ip = ":".join(rest)
    if host_ip.startswith("[") and host_ip.endswith("]"):
        host_ip = host_ip[1:-1]
    address = check_ip_address(host_ip) if host_ip else bind_address
    return _bindings(text, host, container, protocol or "tcp", address)


def parse_expose(value: int | str) -> list[str]:
    """`3000`, `3000/udp` or `3000-3005` → Docker's exposed ports (`3000/tcp`, …)."""
    text = str(value)
    container, _, protocol = text.partition("/")
    proto = _protocol(text, protocol or "tcp")
    return [f"{port}/{proto}" for port in _port_range(container)]


def _bindings(
    text: str, host: str, container: str, protocol: str, host_ip: str
) -> list[PortBinding]:
    proto = _protocol(text, protocol)
    containers = _port_range(container)
    if not host:
        return [PortBinding(port, proto, host_ip, None) for port in containers]
    hosts = _port_range(host)
    if len(containers) == 1 < len(hosts):
        raise ValueError(
            f"port {excerpt(text)}: a host port range for one container port is not "
            "supported; give one host port"
        )
    if len(hosts) != len(containers):
        raise ValueError(
            f"port {excerpt(text)}: the host and container ranges must have as many ports"
        )
    return [PortBinding(c, proto, host_ip, h) for h, c in zip(hosts, containers, strict=True)]


def _protocol(text: str, protocol: str) -> str:
    if protocol.lower() not in ("tcp", "udp", "sctp"):
        raise ValueError(f"port {excerpt(text)}: protocol must be tcp, udp or sctp")
    return protocol.lower()


def _port_range(text: str) -> list[int]:
    """`80` → [80]; `8000-8002` → [8000, 8001, 8002]."""
    first, dash, last = text.partition("-")
    if not dash:
        return [_port_number(text)]
    try:
        start, end = _port_number(first), _port_number(last)
    except ValueError:
        raise ValueError(f"{excerpt(text)} is not a port range, e.g. 8000-8010") from None
    if end < start:
        raise ValueError(f"port range {excerpt(text)} ends before it starts")
    return list(range(start, end + 1))


def _port_number(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise ValueError(f"{excerpt(text)} is not a port number (1-65535)")
    return int(text)


_BYTES = re.compile(r"([0-9]+(?:\.[0-9]+)?) ?([kmgtp]?)i?b?", re.IGNORECASE)
_BYTE_UNITS = "kmgtp"
_CPUS = re.compile(r"[0-9]*\.?[0-9]+")


def parse_bytes(text: str) -> int:
    """A size as compose reads one: bytes, or `512m`, `1.5g`, `2GiB`, `64kb` (powers of 1024)."""
    match = _BYTES.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{excerpt(text)} is not a size; use e.g. 512m, 2g or a number of bytes")
    power = _BYTE_UNITS.find(match[2].lower()) + 1 if match[2] else 0
    return int(float(match[1]) * 1024**power)


def parse_cpus(text: str) -> float:
    """A number of CPUs, e.g. `0.5` or `2`."""
    if not _CPUS.fullmatch(text) or not 0 < float(text) <= 1024:
        raise ValueError(f"{excerpt(text)} is not a number of CPUs, e.g. 0.5 or 2")
    return float(text)


def parse_count(text: str) -> int:
    """A positive count (processes), or -1 for unlimited."""
    if text == "-1":
        return -1
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 2**31:
        raise ValueError(f"{excerpt(text)} is not a count: a positive number, or -1 (unlimited)")
    return int(text)


def parse_extra_host(entry: str) -> str:
    """`host:address` or `host=address` (compose takes both) → Docker's `host:address`."""
    sep = "=" if "=" in entry else ":"
    host, _, address = entry.partition(sep)
    if not host or not address:
        raise ValueError(f"{excerpt(entry)}: expected HOST:ADDRESS, e.g. db.local:10.0.0.5")
    if address != "host-gateway":
        address = check_ip_address(address.removeprefix("[").removesuffix("]"))
    return f"{host}:{address}"


def parse_device(entry: str) -> str:
    """`/dev/ttyUSB0`, `/dev/ttyUSB0:/dev/zigbee` or with permissions (`:rw`) → Docker's
    `host:container:permissions`."""
    parts = entry.split(":")
    if len(parts) > 3 or not all(parts):
        raise ValueError(f"{excerpt(entry)}: expected HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]]")
    host = parts[0]
    target = parts[1] if len(parts) > 1 else host
    permissions = parts[2] if len(parts) > 2 else "rwm"
    if not host.startswith("/") or not target.startswith("/"):
        raise ValueError(f"device {excerpt(entry)}: paths are absolute, e.g. /dev/ttyUSB0")
    if not set(permissions) <= set("rwm"):
        raise ValueError(f"device {excerpt(entry)}: permissions are r, w and m (e.g. rwm)")
    return f"{host}:{target}:{permissions}"


def parse_tmpfs(entry: str) -> tuple[str, str]:
    """`/run` or `/run:size=64m,mode=1777` → (target, options)."""
    target, _, options = entry.partition(":")
    if not target.startswith("/"):
        raise ValueError(f"tmpfs {excerpt(target)} must be an absolute path in the container")
    return target, options


def parse_mount(value: str | VolumeMount) -> Mount:
    """`name:/path[:ro]`, `/host/path:/path[:ro]`, `./file:/path[:ro]` (a file of the
    installation's folder) or the long form. Anonymous volumes are refused."""
    if isinstance(value, VolumeMount):
        source = value.source or ""
        if value.type != "tmpfs" and not source:
            raise ValueError(
                "a volume needs a `source`: anonymous volumes lose their data on recreate"
            )
        mount = Mount(value.type, source, value.target, value.read_only)
    else:
        parts = value.split(":")
        if len(parts) == 1:
            raise ValueError(
                f"{excerpt(value)} is an anonymous volume, whose data is lost on recreate; "
                "name it: NAME:TARGET"
            )
        if len(parts) > 3 or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise ValueError(f"{excerpt(value)}: expected SOURCE:TARGET[:ro]")
        source, target = parts[0], parts[1]
        kind = "bind" if source.startswith(("/", ".", "~")) else "volume"
        mount = Mount(kind, source, target, len(parts) == 3 and parts[2] == "ro")
    if mount.type == "bind" and mount.source.startswith("~"):
        raise ValueError(
            f"bind mount {excerpt(mount.source)}: use an absolute host path, a file of the "
            "installation's folder (./NAME) or a named volume"
        )
    if mount.type == "volume" and not COMPOSE_NAME.fullmatch(mount.source):
        raise ValueError(f"volume name {excerpt(mount.source)} is not valid: {COMPOSE_NAME_RULE}")
    if not mount.target.startswith("/"):
        raise ValueError(
            f"mount target {excerpt(mount.target)} must be an absolute path in the container"
        )
    return mount


def parse_security_opt(text: str) -> str:
    """`no-new-privileges` (`:true`, `=true`, `:false`): the one security option that only
    confines the container; the others (seccomp, apparmor, label, ...) loosen or replace its
    confinement."""
    name, _, value = text.partition(":") if ":" in text else text.partition("=")
    if name != "no-new-privileges" or value not in ("", "true", "false"):
        raise ValueError(
            f"{excerpt(text)}: Nebula takes only `no-new-privileges` here; other security "
            "options change the container's confinement, which Nebula does not grant yet"
        )
    return f"no-new-privileges:{value or 'true'}"


def parse_healthcheck(check: Healthcheck, test: list[str] | str | None) -> HealthSpec | None:
    if check.disable:
        return HealthSpec(("NONE",))
    if test is None:
        return None
    if isinstance(test, str):
        parts: tuple[str, ...] = ("CMD-SHELL", test)
    else:
        parts = tuple(test)
        if not parts or parts[0] not in ("CMD", "CMD-SHELL", "NONE"):
            raise ValueError(
                "healthcheck test must start with CMD, CMD-SHELL or NONE, or be a string"
            )
    return HealthSpec(parts, check.interval, check.timeout, check.retries, check.start_period)


def device_requests(
    service: Service,
    text: Callable[[str, tuple[str | int, ...]], str],
    report: Callable[[tuple[str | int, ...], str], None],
) -> tuple[DeviceRequest, ...]:
    """`gpus:` and `deploy.resources.reservations.devices` as Docker device requests.

    As compose does: `gpus: all` is every GPU; a `gpus:` entry without capabilities asks for
    [gpu]; neither count nor device_ids means all devices."""
    requests: list[tuple[GpuRequest, tuple[str | int, ...]]] = []
    if service.gpus == "all":
        requests.append((GpuRequest(count="all"), ("gpus",)))
    elif service.gpus:
        requests += [(g, ("gpus", i)) for i, g in enumerate(service.gpus)]
    if service.deploy is not None:
        path: tuple[str | int, ...] = ("deploy", "resources", "reservations", "devices")
        devices = service.deploy.resources.reservations.devices
        requests += [(d, (*path, i)) for i, d in enumerate(devices)]
    out = []
    for request, path in requests:
        ids = tuple(
            text(d, (*path, "device_ids", j)) for j, d in enumerate(request.device_ids or ())
        )
        try:
            count = _device_count(request.count, text, (*path, "count"), bool(ids))
        except ValueError as exc:
            report((*path, "count"), str(exc))
            continue
        out.append(
            DeviceRequest(
                driver=text(request.driver, (*path, "driver")) if request.driver else "",
                count=None if ids else count,
                device_ids=ids,
                capabilities=tuple(request.capabilities or ("gpu",)),
                options=tuple(
                    sorted((k, text(v, (*path, "options", k))) for k, v in request.options.items())
                ),
            )
        )
    return tuple(out)


def _device_count(
    count: int | str | None,
    text: Callable[[str, tuple[str | int, ...]], str],
    path: tuple[str | int, ...],
    has_ids: bool,
) -> int | None:
    """Docker's count: -1 for all (also when neither count nor device_ids is given)."""
    if has_ids:
        return None
    if count is None:
        return -1
    value = text(count, path) if isinstance(count, str) else str(count)
    if value in ("all", "-1"):  # compose writes all as -1
        return -1
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 1024:
        raise ValueError(f"{excerpt(value)} is not a device count: a number of devices, or all")
    return int(value)
