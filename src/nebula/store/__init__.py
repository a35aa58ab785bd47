"""The state store: what Nebula has installed and deployed, in SQLite or PostgreSQL.

`Store(url)` opens (and migrates) the database; see `db` for URLs and migrations, `models` for
the tables, `records` for the values it returns.
"""

from nebula.store.api import Store
from nebula.store.records import (
    DeploymentInfo,
    DeploymentStatus,
    InstallationInfo,
    InstallationStatus,
    PackageRecord,
    SyncInfo,
    SyncStatus,
)

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
