"""The state store: what Nebula has installed and deployed, in SQLite or PostgreSQL.

`Store(url)` opens (and migrates) the database; see `db` for URLs and migrations, `models` for
the tables, `records` for the values it returns. The names below load on first use, so a module
of this package that needs no SQLAlchemy (`audit_chain`, `mask`) can be imported without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nebula.store.records import (
        DeploymentInfo,
        DeploymentStatus,
        InstallationInfo,
        InstallationStatus,
        PackageRecord,
        SyncInfo,
        SyncStatus,
    )
    from nebula.store.store import Store

__all__ = [
    "DeploymentInfo",
    "DeploymentStatus",
    "InstallationInfo",
    "InstallationStatus",
    "PackageRecord",
    "Store",
    "SyncInfo",
    "SyncStatus",
]


def __getattr__(name: str) -> Any:
    if name == "Store":
        from nebula.store.store import Store

        return Store
    if name in __all__:
        from nebula.store import records

        return getattr(records, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
