"""A package's `health_checks` → probes the node can run (HTTP, TCP, a command in a container).

Resolved after the services, so a TCP check written as `service` + `port` becomes the host port
that publishes it, and an `exec` check names the container it runs in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from nebula.kinds.packages.types import ContainerSpec, ExecCheck, HealthProbe, HttpCheck, TcpCheck
from nebula.spec.package import HealthCheck
from nebula.spec.yamlfile import Path

Interpolate = Callable[[str, Path], str]
Report = Callable[[Path, str], None]
_WILDCARDS = ("", "0.0.0.0", "::")


def resolve_probes(
    checks: Sequence[HealthCheck],
    containers: Sequence[ContainerSpec],
    text: Interpolate,
    report: Report,
) -> tuple[HealthProbe, ...]:
    """One probe per valid check; every invalid one is reported with its path."""
    probes: list[HealthProbe] = []
    by_service = {c.service: c for c in containers}
    names: set[str] = set()
    for i, check in enumerate(checks):
        base: Path = ("health_checks", i)
        if check.name in names:
            report((*base, "name"), f"health check {check.name!r} is listed twice")
        names.add(check.name)
        probe = _probe(check, base, by_service, text, report)
        if probe is not None:
            probes.append(probe)
    return tuple(probes)


def _probe(
    check: HealthCheck,
    base: Path,
    by_service: dict[str, ContainerSpec],
    text: Interpolate,
    report: Report,
) -> HealthProbe | None:
    timing = (check.interval, check.timeout)
    if check.url is not None:
        url = text(check.url, (*base, "url"))
        if not url.startswith(("http://", "https://")):
            report((*base, "url"), f"{url!r} is not an http:// or https:// URL")
            return None
        return HttpCheck(check.name, url, *timing, tuple(check.expect_status or ()))
    if check.tcp is not None:
        address = text(check.tcp, (*base, "tcp"))
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            report((*base, "tcp"), f"{address!r} is not host:port (e.g. 127.0.0.1:5432)")
            return None
        return TcpCheck(check.name, host, int(port), *timing)
    service = by_service.get(check.service or "")
    if service is None:
        known = ", ".join(sorted(by_service))
        report((*base, "service"), f"no service {check.service!r} (services: {known})")
        return None
    if check.exec is not None:
        command = tuple(text(part, (*base, "exec", j)) for j, part in enumerate(check.exec))
        return ExecCheck(check.name, service.name, command, *timing)
    for binding in service.ports:
        published = binding.container_port == check.port and binding.protocol == "tcp"
        if published and binding.host_port is not None:
            host = "127.0.0.1" if binding.host_ip in _WILDCARDS else binding.host_ip
            return TcpCheck(check.name, host, binding.host_port, *timing)
    report(
        (*base, "port"),
        f"service {service.service!r} publishes no host port for {check.port}/tcp; "
        "publish it, or check from inside with `exec`",
    )
    return None
