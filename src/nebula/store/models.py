"""The state database's tables, after the seed schema.

Portable across SQLite and PostgreSQL: ids are UUID strings made in Python, JSON columns are
`JSON` (JSONB on PostgreSQL), statuses are strings with a CHECK constraint rather than native
enum types, and timestamps always come back timezone-aware in UTC. Every schema change here
needs a migration in `migrations/versions/`; a test compares the two.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, get_args

from sqlalchemy import JSON, DateTime, Enum, ForeignKey, MetaData, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from nebula.store.records import DeploymentStatus, InstallationStatus, SyncStatus


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and read back timezone-aware.

    SQLite keeps no offset, PostgreSQL answers in the session's time zone; both become UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}; use an aware UTC time")
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONDocument = JSON().with_variant(JSONB(), "postgresql")


def _status(name: str, literal: Any) -> Enum:
    return Enum(*get_args(literal), name=name, native_enum=False, create_constraint=True, length=16)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSONDocument,
        list[str]: JSONDocument,
    }


class MarketplacePackage(Base):
    """A catalog package, as last synced from the catalog."""

    __tablename__ = "marketplace_packages"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    display_name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(String(100))
    icon_url: Mapped[str | None] = mapped_column(String(500))
    repository: Mapped[str | None] = mapped_column(String(500))
    version: Mapped[str | None] = mapped_column(String(50))
    manifest: Mapped[dict[str, Any]]
    downloads: Mapped[int] = mapped_column(server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Installation(Base):
    """One installed app, by its name in the config repo.

    `package_id` is empty for apps defined by an inline compose file.
    """

    __tablename__ = "installations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    package_id: Mapped[str | None] = mapped_column(ForeignKey("marketplace_packages.id"))
    status: Mapped[InstallationStatus] = mapped_column(
        _status("installation_status", InstallationStatus)
    )
    status_reason: Mapped[str | None] = mapped_column(Text)
    config: Mapped[dict[str, Any] | None]
    container_ids: Mapped[list[str]] = mapped_column(default=list)
    spec_hash: Mapped[str | None] = mapped_column(String(128))
    version: Mapped[str | None] = mapped_column(String(50))
    post_install_done_at: Mapped[datetime | None]
    commit: Mapped[str | None] = mapped_column(String(64))  # config-repo commit last applied
    installed_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Deployment(Base):
    """One attempt to bring an installation to a new desired state.

    `installation_name` keeps the history readable after the installation row is gone.
    """

    __tablename__ = "deployments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    installation_id: Mapped[str | None] = mapped_column(
        ForeignKey("installations.id", ondelete="SET NULL"), index=True
    )
    installation_name: Mapped[str] = mapped_column(String(255), index=True)
    environment: Mapped[str] = mapped_column(String(50), default="production")
    status: Mapped[DeploymentStatus] = mapped_column(_status("deployment_status", DeploymentStatus))
    version: Mapped[str | None] = mapped_column(String(50))
    summary: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    hook_output: Mapped[str | None] = mapped_column(Text)
    commit: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    deployed_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class Sync(Base):
    """One pass of the daemon: a commit loaded, validated, planned and applied (or not)."""

    __tablename__ = "syncs"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    commit: Mapped[str | None] = mapped_column(String(64))
    author: Mapped[str | None] = mapped_column(String(255))
    message: Mapped[str | None] = mapped_column(Text)
    trigger: Mapped[str] = mapped_column(String(16))
    status: Mapped[SyncStatus] = mapped_column(_status("sync_status", SyncStatus))
    errors: Mapped[list[str]] = mapped_column(default=list)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    changes: Mapped[list[dict[str, Any]]] = mapped_column(JSONDocument, default=list)
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None]
    duration_ms: Mapped[int | None]


class DaemonSetting(Base):
    """The daemon's state that must survive a restart: suspended, pinned commit, ..."""

    __tablename__ = "daemon_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text)


# -- audit log ---------------------------------------------------------------------------------


class AuditEntry(Base):
    """One mutation: who, when, what, on what, and a detail with secrets masked.

    Hash-chained: `hash` is SHA-256 over a canonical JSON of the other fields and `prev_hash`
    (see `store.audit`), so an edited, deleted or reordered row breaks the chain.
    """

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(255), index=True)
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(500))
    detail: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The newest entry's number and hash, moved in the same transaction as each append.

    Its one row is the lock appenders take (so two processes never fork the chain) and the
    anchor that makes a truncated tail visible to `verify`.
    """

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    seq: Mapped[int]
    hash: Mapped[str] = mapped_column(String(64))
