"""The state store: what Nebula has installed and deployed, in SQLite or PostgreSQL.

`Store(url)` opens (and migrates) the database; see `db` for URLs and migrations, `models` for
the tables, `records` for the values it returns. The names below load on first use, so a module
of this package that needs no SQLAlchemy (`audit_chain`, `mask`) can be imported without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nebula.lazy import lazy_exports

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


__getattr__ = lazy_exports(
    __name__,
    {
        "Store": "nebula.store.store",
        "DeploymentInfo": "nebula.store.records",
        "DeploymentStatus": "nebula.store.records",
        "InstallationInfo": "nebula.store.records",
        "InstallationStatus": "nebula.store.records",
        "PackageRecord": "nebula.store.records",
        "SyncInfo": "nebula.store.records",
        "SyncStatus": "nebula.store.records",
    },
)
