"""Plain values the store takes and returns; never ORM objects, so callers hold no session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

InstallationStatus = Literal["installing", "running", "stopped", "error"]
DeploymentStatus = Literal["pending", "building", "deploying", "live", "failed"]
SyncStatus = Literal["running", "succeeded", "failed", "held", "superseded", "skipped"]
IncidentStatus = Literal["open", "acknowledged", "resolved"]
AlertStatus = Literal["firing", "resolved"]
ExecutionStatus = Literal[
    "running", "waiting", "succeeded", "failed", "interrupted", "rejected", "cancelled"
]
ExecutionKind = Literal["runbook", "workflow"]
Approval = Literal["none", "pending", "approved", "rejected"]
AgentExecutionStatus = Literal[
    "running",
    "waiting_approval",
    "completed",
    "failed",
    "blocked",
    "timed_out",
    "rejected",
    "interrupted",
]
AgentStepKind = Literal["turn", "tool_call", "approval"]
Matcher = tuple[str, str, str]
"""A silence's matcher: (label, operator, value); the operator is `=`, `!=`, `=~` or `!~`."""


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
    node: str | None = None  # the node whose engine runs it (None: recorded before placement)


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
    node: str | None = None  # the node whose nebulad ran it; None: a single-node homelab's


@dataclass(frozen=True)
class TimelineEntry:
    """One entry of an incident's timeline; `detail` is masked like audit details."""

    id: int
    at: datetime
    kind: str  # alert, folded, reopened, silenced, runbook, step, notification, ...
    message: str
    actor: str | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class IncidentInfo:
    """An incident, after the seed's `incidents`; `timeline` is filled only by a lookup of one
    incident, oldest entry first."""

    id: str
    service_name: str
    severity: str
    status: IncidentStatus
    title: str
    description: str | None
    group_key: str
    fingerprint: str
    labels: dict[str, str]
    runbook_id: str | None
    resolution: str | None
    created_at: datetime
    resolved_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    reopened: int
    last_alert_at: datetime
    escalated: bool
    timeline: tuple[TimelineEntry, ...] = ()


@dataclass(frozen=True)
class SilenceInfo:
    """A silence: alerts whose labels match every matcher are muted from `starts_at` to
    `ends_at`."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_by: str
    ended_by: str | None = None  # who removed it before its time


@dataclass(frozen=True)
class RunbookRecord:
    """A runbook as loaded from the config repo (or a built-in one): `definition` is its
    validated document, `digest` the hash of its file."""

    name: str
    file: str
    digest: str
    definition: dict[str, Any]
    builtin: bool


@dataclass(frozen=True)
class WorkflowRecord:
    """A workflow as loaded from the config repo: `definition` is its validated document,
    `digest` the hash of that document."""

    name: str
    file: str
    digest: str
    definition: dict[str, Any]


@dataclass(frozen=True)
class ExecutionInfo:
    """One run of a runbook, after the seed's `runbook_executions`; `step_states` maps each
    step's key to its state as last recorded, so a run can go on after a crash."""

    id: str
    runbook_name: str
    incident_id: str | None
    status: ExecutionStatus
    steps_completed: int
    steps_total: int
    trigger: dict[str, Any]
    step_states: dict[str, Any]
    output: dict[str, Any]
    approval: Approval
    approval_by: str | None
    approval_at: datetime | None
    error: str | None
    node: str | None
    started_at: datetime
    completed_at: datetime | None
    kind: ExecutionKind = "runbook"


@dataclass(frozen=True)
class FunctionRecord:
    """A function as loaded from the config repo: `definition` is its validated document (a
    built-in's description and parameters filled in), `digest` the hash of that document."""

    name: str
    file: str
    digest: str
    definition: dict[str, Any]

    # the seed's columns of `functions`, from the document
    @property
    def description(self) -> str:
        return str(self.definition.get("description") or "")

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self.definition.get("parameters") or {})

    @property
    def implementation(self) -> str:
        return str(self.definition["implementation"])

    @property
    def implementation_type(self) -> str:
        return str(self.definition["implementation_type"])


_AGENT_COLUMNS = ("name", "description", "systemPrompt", "model", "temperature", "tools")


@dataclass(frozen=True)
class AgentRecord:
    """An agent as loaded from the config repo: `definition` is its validated document (the
    seed's camelCase keys), `digest` the hash of that document."""

    name: str
    file: str
    digest: str
    definition: dict[str, Any]

    # the seed's columns of `agents`, from the document; `config` is the rest of it
    @property
    def description(self) -> str:
        return str(self.definition.get("description") or "")

    @property
    def system_prompt(self) -> str:
        return str(self.definition["systemPrompt"])

    @property
    def model(self) -> str:
        return str(self.definition["model"])

    @property
    def temperature(self) -> float:
        return float(self.definition.get("temperature", 0.7))

    @property
    def tools(self) -> list[str]:
        return list(self.definition.get("tools") or [])

    @property
    def config(self) -> dict[str, Any]:
        return {k: v for k, v in self.definition.items() if k not in _AGENT_COLUMNS}


@dataclass(frozen=True)
class NewAgentStep:
    """A step to add to an agent's run (`AgentStepInfo` once recorded: the store numbers it
    and masks `detail`)."""

    kind: AgentStepKind
    detail: dict[str, Any]
    tokens: int = 0
    duration_ms: int = 0


@dataclass(frozen=True)
class AgentStepInfo:
    """One step of an agent's run: a model reply (`turn`), a tool call and its result
    (`tool_call`), a person's answer (`approval`); `detail` is masked."""

    seq: int
    kind: AgentStepKind
    detail: dict[str, Any]
    tokens: int
    duration_ms: int
    created_at: datetime


@dataclass(frozen=True)
class AgentExecutionInfo:
    """One run of an agent, after the seed's `agent_executions`. `state` is the loop's
    resumable state as last saved, `pending` the tool call waiting for approval; `steps` are
    filled by `Store.agent_execution` only (lists leave them out)."""

    id: str
    agent_name: str
    agent_id: str | None  # None once the agent is removed from the repo
    input: str
    output: str | None
    status: AgentExecutionStatus
    tokens_used: int
    duration_ms: int
    actor: str
    reason: str | None
    incident_id: str | None
    state: dict[str, Any]
    pending: dict[str, Any] | None
    approval_by: str | None
    created_at: datetime
    completed_at: datetime | None
    steps: tuple[AgentStepInfo, ...] = ()


@dataclass(frozen=True)
class ProjectRecord:
    """A project of the config repo as last loaded: `definition` is its validated document,
    `digest` the hash of that document."""

    name: str
    file: str
    digest: str
    definition: dict[str, Any]

    @property
    def git_url(self) -> str | None:
        value = self.definition.get("git_url")
        return str(value) if value else None

    @property
    def path(self) -> str | None:
        value = self.definition.get("path")
        return str(value) if value else None

    @property
    def branch(self) -> str:
        return str(self.definition.get("branch") or "main")


@dataclass(frozen=True)
class ProjectDeployment:
    """One deployment of a project's environment: a commit built (or an image kept, for a
    rollback) and switched in behind Caddy. `status`: pending → building → deploying → live,
    or failed at any step (what was serving before keeps serving)."""

    id: str
    project: str
    environment: str
    status: DeploymentStatus
    commit: str | None  # the project's commit (not the config repo's)
    image: str | None  # nebula-project/NAME:COMMIT12, once built or chosen
    summary: str | None  # why: "new commit on main", "rollback to 1a2b3c4d5e6f", ...
    error: str | None
    created_at: datetime
    deployed_at: datetime | None
    finished_at: datetime | None
