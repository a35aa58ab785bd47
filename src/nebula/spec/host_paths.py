"""Which host paths a bind mount may take without a grant.

Binding the Docker socket gives a container the whole engine, hence root on the node; binding
the node's system folders (`/`, `/etc`, `/proc`, `/sys`, `/dev`, ...) lets it read keys or
rewrite the system. Both need the installation's grant (`docker_socket`, `host_system`), like
`privileged`. The node's time zone, read-only, is what many apps bind and gives nothing away.
Kept in `spec` so the resolver and the store importers apply the one rule.
"""

from __future__ import annotations

import posixpath

SOCKETS = frozenset({"docker.sock", "containerd.sock", "podman.sock"})
SYSTEM_FOLDERS = (
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/root", "/run",
    "/sbin", "/sys", "/usr", "/var/lib/docker", "/var/lib/containerd", "/var/run",
)  # fmt: skip
TIME_ZONE = ("/etc/localtime", "/etc/timezone", "/usr/share/zoneinfo")


def bind_grant(source: str, read_only: bool) -> str | None:
    """The grant a bind of the host's absolute path `source` needs, or None."""
    path = posixpath.normpath(source)
    if posixpath.basename(path) in SOCKETS:
        return "docker_socket"
    if read_only and any(_under(path, zone) for zone in TIME_ZONE):
        return None
    if path in ("/", "//") or any(_under(path, folder) for folder in SYSTEM_FOLDERS):
        return "host_system"
    return None


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder + "/")
