"""Alerts from what nebulad already sees: Docker events, health checks, syncs, certificates,
other nodes' heartbeats.

Each function turns one observation into an `Alert` (firing, or resolved when the thing is
well again), or None when it is nothing to act on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from nebula.providers.docker import ContainerEvent
from nebula.remediation.alerts import Alert

# A clean exit, or one on SIGTERM/SIGKILL (143/137): someone stopped it (`docker stop`, a
# restart, an update); an out-of-memory kill has its own `oom` event.
_NOT_A_CRASH = frozenset({None, 0, 137, 143})


def _at(unix: float | None = None) -> datetime:
    return datetime.fromtimestamp(unix, UTC) if unix else datetime.now(UTC)


def from_container_event(event: ContainerEvent, node: str = "") -> Alert | None:
    """A crash (`die` with another exit code than a stop's), `oom` and `health_status:
    unhealthy` fire; `start` and `health_status: healthy` resolve what they fired."""
    if not event.installation:
        return None
    container, action, exit_code = event.name, event.action, event.exit_code
    labels = {"installation": event.installation, "service": event.service}
    labels |= {"container": container} | ({"node": node} if node else {})

    def alert(name: str, status: str, severity: str, summary: str) -> Alert:
        return Alert(
            name=name,
            labels=labels | {"severity": severity},
            annotations={"summary": summary},
            status="firing" if status == "firing" else "resolved",
            source="docker",
            starts_at=_at(event.at),
        )

    if action == "oom":
        return alert("oom_killed", "firing", "critical", f"{container} ran out of memory")
    if action == "die" and exit_code not in _NOT_A_CRASH:
        return alert(
            "container_died", "firing", "warning", f"{container} exited with code {exit_code}"
        )
    if action == "start":
        return alert("container_died", "resolved", "warning", f"{container} runs again")
    if action == "health_status: unhealthy":
        return alert("unhealthy", "firing", "warning", f"{container} is unhealthy")
    if action == "health_status: healthy":
        return alert("unhealthy", "resolved", "warning", f"{container} is healthy again")
    return None


def from_health(data: Mapping[str, Any], containers: Sequence[str], node: str = "") -> Alert | None:
    """A package health check changed status (the daemon's `health` event). `containers` are
    the installation's: the alert names the container when there is one."""
    status = data.get("status")
    if status not in ("healthy", "unhealthy"):
        return None
    installation = str(data["installation"])
    labels = {"installation": installation, "check": str(data.get("check", ""))}
    if len(containers) == 1:
        labels["container"] = containers[0]
        labels["service"] = containers[0].removeprefix(f"{installation}-")
    labels |= {"node": node} if node else {}
    return Alert(
        name="unhealthy",
        labels=labels | {"severity": "warning"},
        annotations={"summary": f"{installation}: {data.get('check')} {data.get('detail', '')}"},
        status="firing" if status == "unhealthy" else "resolved",
        source="health",
        starts_at=_at(),
    )


def from_sync(data: Mapping[str, Any], node: str = "") -> Alert | None:
    """A sync finished (the daemon's `sync_finished` event): failed fires, succeeded resolves."""
    status = data.get("status")
    if status not in ("failed", "succeeded"):
        return None
    errors = [str(e) for e in data.get("errors") or []]
    return Alert(
        name="sync_failed",
        labels={"severity": "warning"} | ({"node": node} if node else {}),
        annotations={"summary": "the sync failed", "errors": "\n".join(errors[:20])},
        status="firing" if status == "failed" else "resolved",
        source="sync",
        starts_at=_at(),
    )


def from_certificate(data: Mapping[str, Any]) -> Alert:
    """A certificate close to expiry (the daemon's `certificate_expiring` event)."""
    host = str(data.get("host") or "")
    labels = {"host": host, "installation": str(data.get("installation") or "")}
    expires = data.get("expires_at")
    left = ""
    if isinstance(expires, str):
        with contextlib.suppress(ValueError):
            left = str((datetime.fromisoformat(expires) - datetime.now(UTC)).days)
    return Alert(
        name="certificate_expiring",
        labels=labels | {"severity": "warning"},
        annotations={
            **_texts(data),
            "summary": f"the certificate of {host} expires soon",
            "expires": str(expires or ""),
            "days_left": left,
        },
        status="firing",
        source="tls",
        starts_at=_at(),
    )


def from_node(node: str, down: bool, heartbeat_at: datetime) -> Alert:
    """A node's nebulad stopped sending heartbeats (`down`), or sends them again."""
    last = heartbeat_at.isoformat(timespec="seconds")
    summary = f"node {node} sends no heartbeat since {last}" if down else f"node {node} is back"
    return Alert(
        name="node_down",
        labels={"node": node, "severity": "critical"},
        annotations={"summary": summary, "last_heartbeat": last},
        status="firing" if down else "resolved",
        source="nebulad",
        starts_at=heartbeat_at if down else _at(),
    )


def _texts(data: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str | int | float)}
