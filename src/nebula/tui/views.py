"""What the screens show of the API's records, as plain text: one function per cell kind.

Times go through a `Clock` so snapshot tests can hold them still (`Clock(frozen=True)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

INSTALLATION_COLUMNS = ("name", "status", "health", "containers", "commit")
SYNC_COLUMNS = ("id", "started", "trigger", "status", "commit", "changes")
APPROVAL_COLUMNS = ("what", "id", "waits on")
INCIDENT_COLUMNS = ("id", "status", "severity", "title", "last alert")
AUDIT_COLUMNS = ("at", "actor", "action", "target", "detail")
CATALOG_COLUMNS = ("name", "version", "category", "description")


@dataclass(frozen=True)
class Clock:
    """Shows the API's ISO 8601 times in local time; `frozen` masks them, and what differs from
    one machine to another (the node's name, the source's path), so a rendering is stable."""

    frozen: bool = False

    def time(self, iso: str | None) -> str:
        if not iso:
            return "-"
        if self.frozen:
            return "--:--:--"
        try:
            return datetime.fromisoformat(iso).astimezone().strftime("%m-%d %H:%M:%S")
        except ValueError:
            return iso

    def local(self, text: str) -> str:
        return "..." if self.frozen else text


def short(commit: str | None) -> str:
    return commit[:8] if commit else "-"


def arguments(call: dict[str, Any], most: int = 60) -> str:
    """A tool call's arguments in a line: `installation=blog, lines=20`, cut at `most`."""
    given = call.get("arguments")
    text = (
        ", ".join(f"{k}={v}" for k, v in given.items()) if isinstance(given, dict) else str(given)
    )
    return text if len(text) <= most else text[: most - 1] + "…"


def daemon_state(status: dict[str, Any]) -> str:
    """following, suspended, pinned (to a rollback's commit) or held (a sync waits approval)."""
    if status.get("suspended"):
        return "suspended"
    if status.get("pinned_commit"):
        return f"pinned to {short(status['pinned_commit'])}"
    last = status.get("last_sync") or {}
    if last.get("status") == "held":
        return f"held: sync {last.get('id')} waits for approval"
    return "following"


def health(checks: list[dict[str, Any]]) -> str:
    if not checks:
        return "-"
    bad = [c.get("check", "?") for c in checks if c.get("status") != "healthy"]
    return f"unhealthy: {', '.join(bad)}" if bad else f"{len(checks)} healthy"


def containers(found: list[dict[str, Any]]) -> str:
    if not found:
        return "none"
    up = sum(1 for c in found if c.get("state") == "running")
    return f"{up}/{len(found)} running"


def installation_row(i: dict[str, Any]) -> tuple[str, ...]:
    return (
        str(i["name"]),
        str(i.get("status") or "-"),
        health(i.get("health") or []),
        containers(i.get("containers") or []),
        short(i.get("commit")),
    )


def changes(summary: dict[str, Any]) -> str:
    counted = [f"{summary[k]} {k}" for k in ("create", "update", "delete") if summary.get(k)]
    return ", ".join(counted) or "-"


def sync_row(s: dict[str, Any], clock: Clock) -> tuple[str, ...]:
    return (
        str(s["id"]),
        clock.time(s.get("started_at")),
        str(s.get("trigger", "")),
        str(s.get("status", "")),
        short(s.get("commit")),
        changes(s.get("summary") or {}),
    )


def pending_syncs(syncs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Only the newest sync can wait for approval: a later one ends the wait."""
    return syncs[:1] if syncs and syncs[0].get("status") == "held" else []


def incident_row(i: dict[str, Any], clock: Clock) -> tuple[str, ...]:
    return (
        str(i["id"])[:8],
        str(i.get("status", "")),
        str(i.get("severity", "")),
        str(i.get("title", "")),
        clock.time(i.get("last_alert_at")),
    )


def audit_row(e: dict[str, Any], clock: Clock) -> tuple[str, ...]:
    detail = e.get("detail")
    shown = " ".join(f"{k}={v}" for k, v in detail.items()) if detail else "-"
    return (
        clock.time(e.get("at")),
        str(e.get("actor", "")),
        str(e.get("action", "")),
        str(e.get("target") or "-"),
        shown,
    )


def package_row(p: dict[str, Any]) -> tuple[str, ...]:
    return (str(p["name"]), str(p.get("version", "")), str(p.get("category", "")),
            str(p.get("description", "")))  # fmt: skip
