"""What the daemon offers its API: the operations and the plain records they return.

The HTTP API (`daemon.api`) and the CLI's client speak in these terms; `daemon.core.Daemon`
implements them. Records are plain frozen dataclasses that serialise to JSON as they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from nebula.errors import RequestError
from nebula.store.records import ExecutionInfo, IncidentInfo, RunbookRecord, SilenceInfo, SyncInfo

if TYPE_CHECKING:
    from nebula.ai.service import AI
    from nebula.daemon.projects import ProjectDesk
    from nebula.store.audit import AuditRecord

SyncTrigger = Literal[
    "start", "poll", "webhook", "hook", "watch", "manual", "drift", "rollback", "approve", "leader"
]


class ControlError(RequestError):
    """A request the daemon cannot carry out now."""


SyncRecord = SyncInfo  # one sync, as the store records it


@dataclass(frozen=True)
class DaemonStatus:
    node: str  # its --node, else the host's name
    source: str  # the git URL or folder followed (credentials masked)
    branch: str
    subfolder: str
    applied_commit: str | None  # the commit the homelab was last applied from
    suspended: bool
    pinned_commit: str | None  # set by rollback until resume
    last_sync: SyncRecord | None
    installations: int
    faults: dict[str, str] = field(default_factory=dict)  # failing parts of the daemon now
    leader: bool = True  # runs the cluster-wide work (the only node always does)


@dataclass(frozen=True)
class Event:
    """What the event stream carries. Kinds and their data:

    - `sync_started`: id, commit, trigger
    - `progress`: id, installation, message (one step of an apply)
    - `sync_finished`: id (None when the store could not record the sync), status, errors
    - `sync_held`: id, commit (waits for `approve`)
    - `suspended`, `resumed`: no data; `rollback`: commit
    - `health`: installation, check, status (healthy | unhealthy), previous (None at the first
      result), detail, consecutive_failures: a health check changed status
    - `incident`: id (None when no incident was touched), status, alert (its name), outcome
      (opened, joined, folded, reopened, cleared, resolved, silenced, ignored): an alert was
      received
    - `runbook`: id (the execution), runbook, status (running, then succeeded, failed or
      waiting: for a step's approval): a runbook run started or ended
    - `runbook_step`: id (the execution), step (its name), status (running, then ok, failed,
      skipped): one step of a run
    - `workflow`: name, id (the run; None when skipped), status (skipped, then succeeded,
      failed, cancelled or interrupted): a workflow run ended or was skipped
    - `workflow_step`: id (the run), step (its id), status (running, then ok, failed, skipped)
    - `agent`: id (the execution), agent, and status (running, then completed, failed,
      blocked, timed_out or waiting_approval; running again once approved, rejected,
      interrupted), or event (turn, tool_call, tool_result, approval, final, error) with its
      short data
    - `ai_model`: model, state (present, pulling, missing, failed), percent, error: an Ollama
      model an agent needs, checked or being pulled
    - `heartbeat`: no data, when nothing else happened for a while
    """

    kind: str
    data: dict[str, Any]
    at: datetime


class DaemonControl(Protocol):
    ai: AI  # agents, their executions, functions, chat, the providers (`nebula.ai.service`)
    project_desk: ProjectDesk  # the config repo's projects: declarations, files, deployments

    def status(self) -> DaemonStatus: ...

    def installations(self) -> list[dict[str, Any]]:
        """Each installation as last applied (store) with its containers now (Docker)."""
        ...

    def logs(self, installation: str, service: str | None, tail: int) -> list[dict[str, str]]:
        """The last `tail` lines of an installation's containers (one service's), merged in
        the order written, every vault secret masked. `ControlError` (not_found) as restart."""
        ...

    def follow_logs(self, installation: str, service: str | None, tail: int) -> Iterator[Event]:
        """As `logs`, then each new line as it is written: `log` events (service, container,
        stream, time, message), until the containers stop or the iterator is closed."""
        ...

    def plan(self) -> dict[str, Any]:
        """What a sync of the last good commit would change now: {changes: [each change, an
        installation's naming it], problems}; nothing is applied."""
        ...

    def restart(self, installation: str, service: str | None) -> list[str]:
        """Restart an installation's containers (one service's); the names restarted.
        `ControlError` (not_found) for an installation or service with no container."""
        ...

    def audit_entries(self, actor: str | None, target: str | None, limit: int) -> list[AuditRecord]:
        """The newest `limit` audit entries of `actor` and on `target` (either None: any),
        newest first; details masked as they were recorded."""
        ...

    def secret_names(self) -> list[dict[str, Any]]:
        """The vault's secrets: name and when each was set or rotated; never a value."""
        ...

    def syncs(self, limit: int = 20) -> list[SyncRecord]: ...

    def sync(self, sync_id: int) -> SyncRecord | None: ...

    def request_sync(self, trigger: SyncTrigger) -> None:
        """Ask for a sync soon; requests arriving during a sync coalesce into one next sync.
        A sync asked for explicitly (manual, hook, webhook) is always recorded, even when it
        finds nothing to do (`succeeded`) or the daemon is suspended (`skipped`)."""
        ...

    def approve(self, sync_id: int) -> SyncRecord:
        """Apply a held sync; `ControlError` if it is not the newest held one."""
        ...

    def suspend(self) -> None: ...

    def resume(self) -> None:
        """Apply again, and drop any rollback pin."""
        ...

    def rollback(self, commit: str) -> str:
        """Pin the desired state to an earlier commit (until resume); returns the full sha."""
        ...

    def webhook(self, headers: dict[str, str], body: bytes) -> bool:
        """Verify a push webhook; True when it asked for a sync. `WebhookError` if refused."""
        ...

    def nodes(self) -> list[dict[str, Any]]:
        """nebula.yaml's nodes: heartbeat, state, leader, installations and their health."""
        ...

    def domains(self) -> list[dict[str, Any]]:
        """Every zone as last synced: provider, record count, certificate status, last error."""
        ...

    def domain_records(self, domain: str) -> dict[str, Any]:
        """A domain (id or zone name) and its records as last read from the provider, each
        marked owned (Nebula's) or not. `ControlError` if there is no such domain."""
        ...

    def domain_ssl(self, domain: str, check: bool) -> dict[str, Any]:
        """A domain's (id or zone name) certificate status and its exposed hostnames'
        certificates; with `check`, read afresh from the proxy first. `ControlError` if none."""
        ...

    def marketplace_packages(self, query: str, category: str | None) -> list[dict[str, Any]]:
        """Catalog packages matching `query` (every package when empty), best first."""
        ...

    def marketplace_package(self, name: str) -> dict[str, Any]:
        """One package: its versions, variables (secret defaults hidden), requirements."""
        ...

    def install(self, request: dict[str, Any], actor: str) -> dict[str, Any]:
        """Commit the install `request` (package, and optionally name, version, values, node,
        expose) to the config repo as `actor` and sync; {commit, message, files}.
        `ControlError`: invalid (a bad request or values missing), conflict (refused)."""
        ...

    def uninstall(self, name: str, actor: str) -> dict[str, Any]:
        """Commit the removal of an installation; conflict while others depend on it."""
        ...

    def save_definition(
        self, folder: str, name: str, document: dict[str, Any], actor: str, create: bool
    ) -> dict[str, Any]:
        """Commit `document` as `FOLDER/NAME.yaml` (agents, functions) and sync; {commit,
        message, files}. `InvalidEditError` (with each problem's file:line) when the repo
        would not validate; conflict: it exists (create); not_found: it does not (update)."""
        ...

    def subscribe(self) -> Iterator[Event]:
        """Events from the moment of the call, until the daemon stops or the iterator is closed."""
        ...

    # Remediation. Errors: `RemediationError` (not_found, conflict, invalid), and the store's
    # `NotFoundError` / `StateError` (acknowledging a resolved incident, a silence ended).

    def incidents(self, status: str | None, limit: int) -> list[IncidentInfo]:
        """The newest incidents first, without timelines; of one status if given."""
        ...

    def incident(self, incident_id: str) -> IncidentInfo:
        """One incident with its timeline, oldest entry first."""
        ...

    def acknowledge_incident(self, incident_id: str, actor: str) -> IncidentInfo: ...

    def resolve_incident(self, incident_id: str, actor: str, resolution: str) -> IncidentInfo: ...

    def fire_alert(self, request: dict[str, Any], actor: str) -> dict[str, Any]:
        """An alert by hand ({name, labels, annotations, status}): {outcome, incident}."""
        ...

    def alertmanager(self, payload: Any) -> list[dict[str, Any]]:
        """Alertmanager's webhook payload: {outcome, incident} for each of its alerts, in order."""
        ...

    def silences(self) -> list[SilenceInfo]:
        """The silences in force."""
        ...

    def add_silence(
        self, matchers: list[str], duration: float, comment: str, actor: str
    ) -> SilenceInfo: ...

    def remove_silence(self, silence_id: str, actor: str) -> None: ...

    def runbooks(self) -> list[RunbookRecord]:
        """The runbooks of the last synced commit."""
        ...

    def run_runbook(
        self, name: str, labels: dict[str, str], actor: str, dry_run: bool
    ) -> dict[str, Any]:
        """Run a runbook now (to its end), or with `dry_run` list the steps it would take."""
        ...

    def executions(
        self, runbook: str | None, incident_id: str | None, limit: int
    ) -> list[ExecutionInfo]: ...

    def execution(self, execution_id: str) -> ExecutionInfo: ...

    def decide(self, execution_id: str, approved: bool, actor: str) -> ExecutionInfo:
        """Approve (the run goes on) or reject the step an execution waits on."""
        ...

    # Workflows. Errors: `ControlError` (not_found, conflict, invalid).

    def workflows(self) -> list[dict[str, Any]]:
        """The workflows of the last synced commit: name, file, on (schedule, event, manual),
        next_run (None without a schedule), last_run ({id, status, started_at} or None)."""
        ...

    def run_workflow(self, name: str, actor: str) -> str:
        """Start a run by hand; its id. conflict: skipped, a run is going (`concurrency: skip`);
        invalid: the workflow is not `on: {manual: true}`."""
        ...

    def workflow_runs(self, workflow: str | None, limit: int) -> list[ExecutionInfo]:
        """The latest workflow runs, newest first; of one workflow if given."""
        ...

    def workflow_run(self, run_id: str) -> ExecutionInfo:
        """One workflow run with each finished step's state."""
        ...

    def cancel_workflow_run(self, run_id: str, actor: str) -> None:
        """Ask a running run to stop: it ends `cancelled` once its current steps stop.
        conflict: it is not running."""
        ...
