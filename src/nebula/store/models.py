"""The state database's tables, after the seed schema.

Portable across SQLite and PostgreSQL: ids are UUID strings made in Python, JSON columns are
`JSON` (JSONB on PostgreSQL), statuses are strings with a CHECK constraint rather than native
enum types, and timestamps always come back timezone-aware in UTC. Every schema change here
needs a migration in `migrations/versions/`; a test compares the two.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sqlalchemy import (
    JSON,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from nebula.store.records import (
    AgentExecutionStatus,
    AgentStepKind,
    AlertStatus,
    Approval,
    DeploymentStatus,
    ExecutionKind,
    ExecutionStatus,
    IncidentStatus,
    InstallationStatus,
    SyncStatus,
)


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
        dict[str, str]: JSONDocument,
        list[str]: JSONDocument,
        list[list[str]]: JSONDocument,
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
    # the node whose engine runs it (nebula.yaml `nodes`); NULL: recorded before nodes were
    # placed, any node's
    node: Mapped[str | None] = mapped_column(String(255), index=True)


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
    # a project's deployment: its name (also in installation_name), kept after it is removed
    project: Mapped[str | None] = mapped_column(String(255), index=True)
    project_id: Mapped[str | None] = mapped_column(
        ForeignKey("projects.id", ondelete="SET NULL"), index=True
    )
    image: Mapped[str | None] = mapped_column(String(255))
    logs: Mapped[str | None] = mapped_column(Text)  # the build's output, masked


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
    node: Mapped[str | None] = mapped_column(String(64), index=True)  # None: the only node's


class DaemonSetting(Base):
    """The daemon's state that must survive a restart: suspended, pinned commit, ...; a
    node's own as `KEY@NODE` (`store.cluster.setting_key`)."""

    __tablename__ = "daemon_settings"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text)


class NodeRow(Base):
    """A node whose nebulad runs (or ran): what it said of itself at its last heartbeat."""

    __tablename__ = "nodes"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    address: Mapped[str] = mapped_column(String(255))
    labels: Mapped[dict[str, str]]
    engine: Mapped[str] = mapped_column(String(16))
    version: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    leader_since: Mapped[datetime | None]  # set while it holds the leader's lock


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


# -- vault: encrypted secrets and the master keys that wrap them -------------------------------


class VaultKey(Base):
    """A master key the vault knows by its key id (never the key itself).

    `state`: `active` wraps the data keys; `next` is a key a `rotate-key` is moving rows to;
    `retired` keys wrap nothing any more. `fingerprint_key` is the HMAC key of the fingerprints,
    sealed under this master key, so fingerprints survive a master-key rotation.
    """

    __tablename__ = "vault_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    fingerprint_key: Mapped[bytes] = mapped_column(LargeBinary)
    fingerprint_nonce: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None]


class Secret(Base):
    """One secret: its value sealed under its own data key, the data key under a master key."""

    __tablename__ = "secrets"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    key_nonce: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(32), index=True)
    fingerprint: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    rotated_at: Mapped[datetime | None]


# -- identity: users, refresh tokens, API keys and service tokens ------------------------------


class User(Base):
    """A local user. `password_hash` is scrypt (see `identity.passwords`), never the password.

    `failed_logins` counts consecutive wrong passwords and `locked_until` holds the lockout
    they earned: persisted, so a restart of the daemon does not reset a brute force.
    """

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(_status("user_role", Literal["viewer", "operator", "admin"]))
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RefreshToken(Base):
    """A refresh token, by its SHA-256 (the token is 256 random bits). A login starts a
    `family`; each use marks the token `used_at` and issues the next one in the family. Using
    a used token again means it was stolen: the whole family is revoked.
    """

    __tablename__ = "refresh_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    family_id: Mapped[str] = mapped_column(String(36), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class ApiKey(Base):
    """An API key (`kind` key, for automation) or a node's service token (`kind` service).

    Shown once at creation as `nbk_PREFIX_SECRET` / `nbs_PREFIX_SECRET`; kept as the prefix
    (the lookup id) and the SHA-256 of the secret. `scope` read/write/admin maps to the roles
    viewer/operator/admin.
    """

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(_status("api_key_kind", Literal["key", "service"]))
    scope: Mapped[str] = mapped_column(_status("api_key_scope", Literal["read", "write", "admin"]))
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


# -- installation runs: health check results, hook runs, uninstall hooks --------------------

HealthStatus = Literal["healthy", "unhealthy"]
HookKind = Literal["post_install", "pre_upgrade", "post_upgrade", "pre_uninstall"]
HookStatus = Literal["succeeded", "failed", "timed_out"]


class HealthResult(Base):
    """The latest result of one health check of one installation (the daemon runs them)."""

    __tablename__ = "health_results"

    installation: Mapped[str] = mapped_column(String(255), primary_key=True)
    check_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # http | tcp | exec
    target: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(_status("health_status", HealthStatus))
    detail: Mapped[str] = mapped_column(Text)
    latency_ms: Mapped[float] = mapped_column(Float)
    consecutive_failures: Mapped[int] = mapped_column(default=0)
    checked_at: Mapped[datetime]
    since: Mapped[datetime]  # when the status last changed


class HookRunRow(Base):
    """One run of an installation's hooks of one kind; output scrubbed of secrets, bounded."""

    __tablename__ = "hook_runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    installation: Mapped[str] = mapped_column(String(255), index=True)
    hook: Mapped[str] = mapped_column(_status("hook_kind", HookKind))
    status: Mapped[str] = mapped_column(_status("hook_status", HookStatus))
    exit_code: Mapped[int | None]
    output: Mapped[str] = mapped_column(Text)
    version: Mapped[str | None] = mapped_column(String(50))
    started_at: Mapped[datetime] = mapped_column(index=True)
    finished_at: Mapped[datetime]


class UninstallHooks(Base):
    """The pre_uninstall hooks of an installation as last deployed, kept for its removal (when
    the config repo no longer has them). `env` holds only non-secret variables."""

    __tablename__ = "uninstall_hooks"

    installation: Mapped[str] = mapped_column(String(255), primary_key=True)
    lines: Mapped[list[str]] = mapped_column(JSONDocument)
    env: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


# -- DNS: domains (one row per zone) and their records, as last read from the provider ---------


class Domain(Base):
    """A zone of the config repo, after the seed's `domains`. `zone_id` is the provider's id;
    `ssl_status`/`ssl_expires_at` are written by the TLS side. `last_error` holds why the
    zone's last sync failed (empty once one succeeds)."""

    __tablename__ = "domains"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    provider: Mapped[str | None] = mapped_column(String(50))
    zone_id: Mapped[str | None] = mapped_column(String(255))
    ssl_status: Mapped[str | None] = mapped_column(String(50))
    ssl_expires_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    synced_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DnsRecord(Base):
    """One record of a zone (one value of a record set), after the seed's `dns_records`.
    `owned`: it carries Nebula's ownership marker; the others are foreign, shown, never changed."""

    __tablename__ = "dns_records"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    domain_id: Mapped[str] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), index=True)
    record_type: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(String(255))
    content: Mapped[str] = mapped_column(String(500))
    ttl: Mapped[int] = mapped_column(default=3600)
    proxied: Mapped[bool] = mapped_column(default=False)
    provider_id: Mapped[str | None] = mapped_column(String(255))
    owned: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# -- remediation: incidents and their timelines, silences, runbooks and their runs -------------


class Incident(Base):
    """An incident, after the seed's `incidents`: opened by an alert, joined by the alerts of
    its `group_key`, re-opened (`reopened` + 1) when they come back soon after it resolved."""

    __tablename__ = "incidents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    service_name: Mapped[str] = mapped_column(String(255))
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[IncidentStatus] = mapped_column(_status("incident_status", IncidentStatus))
    title: Mapped[str] = mapped_column(String(500))
    description: Mapped[str | None] = mapped_column(Text)
    runbook_id: Mapped[str | None] = mapped_column(String(255))
    resolution: Mapped[str | None] = mapped_column(Text)
    group_key: Mapped[str] = mapped_column(String(500), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # of the alert that opened it
    labels: Mapped[dict[str, str]]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(255))
    reopened: Mapped[int] = mapped_column(default=0)
    escalated: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    last_alert_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]


class IncidentEvent(Base):
    """One entry of an incident's timeline: an alert, a fold of duplicates, a runbook step, a
    notification, a silence, a person's action."""

    __tablename__ = "incident_events"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[dict[str, Any]]


class IncidentAlert(Base):
    """An alert (by fingerprint) of an incident, and whether it still fires."""

    __tablename__ = "incident_alerts"

    incident_id: Mapped[str] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True
    )
    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(32))
    labels: Mapped[dict[str, str]]
    annotations: Mapped[dict[str, Any]]
    status: Mapped[AlertStatus] = mapped_column(_status("alert_status", AlertStatus))
    received: Mapped[int] = mapped_column(default=1)  # how many times it was received
    first_at: Mapped[datetime]
    last_at: Mapped[datetime]


class SilenceRow(Base):
    """A silence: alerts matching every matcher ([label, op, value]) are muted until `ends_at`
    (set to the time of removal when removed early)."""

    __tablename__ = "silences"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    matchers: Mapped[list[list[str]]]
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime] = mapped_column(index=True)
    comment: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(255))
    ended_by: Mapped[str | None] = mapped_column(String(255))  # who removed it early


class RunbookRow(Base):
    """A runbook of the config repo or a built-in one, as last loaded."""

    __tablename__ = "runbooks"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    file: Mapped[str] = mapped_column(String(500))
    digest: Mapped[str] = mapped_column(String(128))
    definition: Mapped[dict[str, Any]]
    builtin: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WorkflowRow(Base):
    """A workflow of the config repo, as last loaded."""

    __tablename__ = "workflows"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    file: Mapped[str] = mapped_column(String(500))
    digest: Mapped[str] = mapped_column(String(128))
    definition: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RunbookExecution(Base):
    """One run of a runbook, after the seed's `runbook_executions`. `step_states` holds each
    step's state (by the step's key) as it goes, so a run interrupted by a crash shows where it
    stopped; `approval` is the state of a step waiting for a person."""

    __tablename__ = "runbook_executions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    incident_id: Mapped[str | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), index=True
    )
    runbook_name: Mapped[str] = mapped_column(String(255), index=True)  # or the workflow's
    kind: Mapped[ExecutionKind] = mapped_column(
        _status("execution_kind", ExecutionKind), default="runbook", index=True
    )
    status: Mapped[ExecutionStatus] = mapped_column(_status("execution_status", ExecutionStatus))
    steps_completed: Mapped[int] = mapped_column(default=0)
    steps_total: Mapped[int]
    output: Mapped[dict[str, Any]]
    trigger: Mapped[dict[str, Any]]
    step_states: Mapped[dict[str, Any]]
    approval: Mapped[Approval] = mapped_column(_status("approval", Approval), default="none")
    approval_by: Mapped[str | None] = mapped_column(String(255))
    approval_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    node: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    completed_at: Mapped[datetime | None]


class AgentRow(Base):
    """An agent of the config repo, as last loaded: the seed's columns, then its file and
    whole document."""

    __tablename__ = "agents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    system_prompt: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(255))
    temperature: Mapped[float] = mapped_column(Float)
    tools: Mapped[list[str]]
    config: Mapped[dict[str, Any]]
    file: Mapped[str] = mapped_column(String(500))
    digest: Mapped[str] = mapped_column(String(128))
    definition: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class FunctionRow(Base):
    """A function of the config repo, as last loaded: the seed's columns, then its file and
    whole document."""

    __tablename__ = "functions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    parameters: Mapped[dict[str, Any]]
    implementation: Mapped[str | None] = mapped_column(Text)
    implementation_type: Mapped[str | None] = mapped_column(String(50))
    file: Mapped[str] = mapped_column(String(500))
    digest: Mapped[str] = mapped_column(String(128))
    definition: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AgentExecution(Base):
    """One run of an agent, after the seed's `agent_executions`. `state` is the loop's
    resumable state (saved after every step), `pending` the tool call waiting for a person."""

    __tablename__ = "agent_executions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    agent_id: Mapped[str | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL"), index=True
    )
    agent_name: Mapped[str] = mapped_column(String(255), index=True)
    input: Mapped[str] = mapped_column(Text)
    output: Mapped[str | None] = mapped_column(Text)
    status: Mapped[AgentExecutionStatus] = mapped_column(
        _status("agent_execution_status", AgentExecutionStatus)
    )
    tokens_used: Mapped[int] = mapped_column(default=0)
    duration_ms: Mapped[int] = mapped_column(default=0)
    actor: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str | None] = mapped_column(Text)
    incident_id: Mapped[str | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), index=True
    )
    state: Mapped[dict[str, Any]]
    pending: Mapped[dict[str, Any] | None]
    approval_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    completed_at: Mapped[datetime | None]


class AgentStep(Base):
    """One step of an agent's run, numbered from 1 (`seq`): a model reply, a tool call, a
    person's answer."""

    __tablename__ = "agent_steps"
    __table_args__ = (UniqueConstraint("execution_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    execution_id: Mapped[str] = mapped_column(
        ForeignKey("agent_executions.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int]
    kind: Mapped[AgentStepKind] = mapped_column(_status("agent_step_kind", AgentStepKind))
    detail: Mapped[dict[str, Any]]
    tokens: Mapped[int] = mapped_column(default=0)
    duration_ms: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProjectRow(Base):
    """A project of the config repo, as last loaded: where its code is, then its file and
    whole document."""

    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    git_url: Mapped[str | None] = mapped_column(Text)
    path: Mapped[str | None] = mapped_column(String(500))
    branch: Mapped[str] = mapped_column(String(255))
    file: Mapped[str] = mapped_column(String(500))
    digest: Mapped[str] = mapped_column(String(128))
    definition: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
