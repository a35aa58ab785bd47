"""Plain values the store takes and returns; never ORM objects, so callers hold no session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

InstallationStatus = Literal["installing", "running", "stopped", "error"]
DeploymentStatus = Literal["pending", "deploying", "live", "failed"]
SyncStatus = Literal["running", "succeeded", "failed", "held", "superseded", "skipped"]


@dataclass(frozen=True)
class PackageRecord:
    """A catalog package as the store keeps it; `manifest` is the whole package document."""

    name: str
    display_name: str
    description: str | None
    category: str | None
    icon_url: str | None
    repository: str | None
    version: str | None
    manifest: dict[str, Any]


@dataclass(frozen=True)
class InstallationInfo:
    """An installed app; `package` is None for an inline compose app."""

    name: str
    package: str | None
    version: str | None
    status: InstallationStatus
    status_reason: str | None
    container_ids: tuple[str, ...]
    spec_hash: str | None
    commit: str | None
    installed_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class DeploymentInfo:
    """One deployment of an installation; kept after the installation is removed."""

    id: str
    installation: str
    status: DeploymentStatus
    version: str | None
    summary: str | None
    error: str | None
    hook_output: str | None
    environment: str
    created_at: datetime
    deployed_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class SyncInfo:
    """One sync of the daemon, as recorded."""

    id: int
    commit: str | None
    author: str | None
    message: str | None
    trigger: str
    status: SyncStatus
    errors: tuple[str, ...]
    summary: dict[str, Any]
    changes: tuple[dict[str, Any], ...]
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
