"""The grants (an installation's `allow:`) an app needs, known before any value is given.

`ContainerSpec.grants` is the one rule of which power over the host needs which grant, and the
resolver refuses a container whose grants the installation lacks. Here that rule reads a
compose file's services as the resolver carries those powers over (they take no variables), so
`nebula catalog show` and `nebula install` name exactly what validation will ask for.
"""

from __future__ import annotations

from typing import get_args

from nebula.kinds.packages.compose import parse_mount
from nebula.kinds.packages.types import ContainerSpec, Mount
from nebula.spec.compose import Compose, Service, VolumeMount
from nebula.spec.installation import Grant

GRANTS: tuple[str, ...] = get_args(Grant)  # every grant, in the order they are listed


def grants_needed(compose: Compose) -> dict[str, tuple[str, ...]]:
    """Grant -> the services that need it, in the order of `GRANTS`; empty when the app needs
    none. Services with `profiles:` are never started, so need nothing."""
    needing: dict[str, list[str]] = {}
    for name, service in compose.services.items():
        if not service.profiles:
            for grant in _powers(name, service).grants:
                needing.setdefault(grant, []).append(name)
    return {grant: tuple(needing[grant]) for grant in GRANTS if grant in needing}


def _powers(name: str, service: Service) -> ContainerSpec:
    """A container with only the service's powers over the host (whether each is used is what
    decides its grant, not the values)."""
    return ContainerSpec(
        installation="",
        service=name,
        name=name,
        image=service.image or "",
        network_mode=service.network_mode,
        privileged=service.privileged,
        cap_add=tuple(service.cap_add),
        devices=tuple(str(device) for device in service.devices),
        sysctls=tuple((str(sysctl), "") for sysctl in service.sysctls),
        pid_mode=service.pid,
        ipc_mode=service.ipc,
        mounts=tuple(mount for volume in service.volumes if (mount := _mount(volume))),
    )


def _mount(volume: str | VolumeMount) -> Mount | None:
    """A volume as written (one holding a `${VAR}` may not parse yet: validation sees it)."""
    try:
        return parse_mount(volume)
    except ValueError:
        return None
