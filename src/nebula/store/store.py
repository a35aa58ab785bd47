"""`Store`: the queries the engine, daemon and CLI run against the state database."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Insert,
    String,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy import cast as sa_cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from nebula.errors import NotFoundError, StateError, StoreError
from nebula.store import applylock, db
from nebula.store.mask import mask_detail
from nebula.store.models import (
    AgentExecution,
    AgentRow,
    AgentStep,
    DaemonSetting,
    Deployment,
    FunctionRow,
    HookRunRow,
    Installation,
    MarketplacePackage,
    RunbookExecution,
    RunbookRow,
    Sync,
    WorkflowRow,
    new_id,
    utcnow,
)
from nebula.store.records import (
    AgentExecutionInfo,
    AgentExecutionStatus,
    AgentRecord,
    AgentStepInfo,
    AgentStepKind,
    Approval,
    DeploymentInfo,
    ExecutionInfo,
    ExecutionKind,
    ExecutionStatus,
    FunctionRecord,
    InstallationInfo,
    NewAgentStep,
    PackageRecord,
    RunbookRecord,
    SyncInfo,
    SyncStatus,
    WorkflowRecord,
)

_Definition = TypeVar("_Definition", RunbookRow, WorkflowRow, AgentRow, FunctionRow)
"""A table of definitions loaded from the config repo, by name."""

_DEFINITION_FIELDS = ("file", "digest", "definition")
# the seed's columns, read from the records' documents
_AGENT_FIELDS = (
    *_DEFINITION_FIELDS,
    *("description", "system_prompt", "model", "temperature", "tools", "config"),
)
_FUNCTION_FIELDS = (
    *_DEFINITION_FIELDS,
    *("description", "parameters", "implementation", "implementation_type"),
)

_PACKAGE_FIELDS = (
    "display_name",
    "description",
    "category",
    "icon_url",
    "repository",
    "version",
    "manifest",
)


class Store:
    """The state database (SQLite or PostgreSQL), migrated to the newest schema on open.

    Every method is one short transaction and returns plain frozen dataclasses. Database
    failures surface as `StoreError`.
    """

    def __init__(self, url: str) -> None:
        self._engine = db.open_engine(url)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)

    @property
    def engine(self) -> Engine:
        """The database's engine, for what keeps its own tables beside the store's (the
        workflow scheduler's jobs)."""
        return self._engine

    @staticmethod
    def default_url() -> str:
        return db.default_url()

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def apply_lock(
        self,
        holder: str,
        waiting: Callable[[str], None],
        stop: threading.Event | None = None,
        *,
        node: str | None = None,
        cluster: bool = True,
    ) -> Iterator[None]:
        """Hold this store's apply locks (see `store.applylock`) as `holder`: `node`'s, when
        given, then the cluster-wide one when `cluster`. When another apply holds one,
        `waiting` is told whose it is first, then this waits for it, until `stop` is set
        (`applylock.WaitStoppedError`)."""
        named = f"{holder} (pid {os.getpid()})"
        database = self._engine.url.database
        scopes = ([node] if node is not None else []) + ([None] if cluster else [])
        with contextlib.ExitStack() as held:
            for scope in scopes:
                lock: AbstractContextManager[None] = contextlib.nullcontext()  # in memory
                if self._engine.dialect.name == "postgresql":
                    key = applylock.node_key(scope)
                    lock = applylock.advisory_lock(self._engine, named, waiting, stop, key)
                elif database and database != ":memory:":
                    path = applylock.lock_file(database, scope)
                    lock = applylock.file_lock(path, named, waiting, stop)
                try:
                    held.enter_context(lock)
                except SQLAlchemyError as e:
                    raise StoreError(f"apply lock: {db.describe(e)}") from e
                except OSError as e:
                    raise StoreError(f"apply lock beside {database}: {e.strerror or e}") from None
            yield

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One session in one transaction; database errors become `StoreError`.

        Modules beside this one (`store.vault`, `store.audit`, ...) build their queries on it.
        """
        try:
            with self._sessions.begin() as session:
                yield session
        except SQLAlchemyError as e:
            shown = self._engine.url.render_as_string(hide_password=True)
            raise StoreError(f"database {shown}: {db.describe(e)}") from e

    def _insert(self, model: type[Any]) -> postgresql.Insert | sqlite.Insert:
        """An INSERT that can take ON CONFLICT, in this database's dialect."""
        if self._engine.dialect.name == "postgresql":
            return postgresql.insert(model)
        return sqlite.insert(model)

    def sync_packages(self, packages: Iterable[PackageRecord]) -> None:
        """Insert new packages and update changed ones, matched by name.

        A row's `updated_at` moves only when one of its fields really changed.
        """
        now = utcnow()
        by_name = {p.name: p for p in packages}  # one row per name, or ON CONFLICT fails
        if not by_name:
            return
        rows = [
            {
                "id": new_id(),
                "name": p.name,
                **{field: getattr(p, field) for field in _PACKAGE_FIELDS},
                "created_at": now,
                "updated_at": now,
            }
            for p in by_name.values()
        ]
        insert = self._insert(MarketplacePackage)
        table = MarketplacePackage.__table__.c
        statement = insert.on_conflict_do_update(
            index_elements=["name"],
            set_={**{f: insert.excluded[f] for f in _PACKAGE_FIELDS}, "updated_at": now},
            where=or_(*(table[f].is_distinct_from(insert.excluded[f]) for f in _PACKAGE_FIELDS)),
        )
        with self.transaction() as session:
            session.execute(statement, rows)

    def begin_deployment(
        self,
        installation: str,
        *,
        package: str | None,
        version: str | None,
        config: dict[str, Any],
        spec_hash: str,
        summary: str,
        commit: str | None = None,
        node: str | None = None,
    ) -> str:
        """Record that `installation` is being deployed (on `node`); return the new
        deployment's id.

        The installation row is created or updated (status 'installing'); its containers and
        post-install mark stay until the deployment finishes, unless it moved here from another
        node: it starts afresh there (its volumes stayed behind), so its post-install hooks run
        again. `package` must have been synced.
        """
        now = utcnow()
        with self.transaction() as session:
            package_id = None
            if package is not None:
                package_id = session.scalar(
                    select(MarketplacePackage.id).where(MarketplacePackage.name == package)
                )
                if package_id is None:
                    raise StoreError(f"package {package!r} is not in the store; sync it first")
            desired = {
                "package_id": package_id,
                "status": "installing",
                "status_reason": None,
                "config": config,
                "spec_hash": spec_hash,
                "version": version,
                "updated_at": now,
            }
            insert = self._insert(Installation).values(
                id=new_id(), name=installation, container_ids=[], installed_at=now, **desired
            )
            changes: dict[str, Any] = dict(desired)
            if node is not None:
                insert = insert.values(node=node)
                moved = Installation.node.is_not(None) & (Installation.node != node)
                changes["node"] = node
                changes["post_install_done_at"] = case(
                    (moved, None), else_=Installation.post_install_done_at
                )
            upsert = insert.on_conflict_do_update(index_elements=["name"], set_=changes)
            installation_id = session.execute(upsert.returning(Installation.id)).scalar_one()
            deployment = Deployment(
                id=new_id(),
                installation_id=installation_id,
                installation_name=installation,
                status="deploying",
                version=version,
                summary=summary,
                commit=commit,
                created_at=now,
            )
            session.add(deployment)
            return deployment.id

    def finish_deployment(
        self,
        deployment_id: str,
        *,
        ok: bool,
        reason: str | None,
        container_ids: list[str],
        hook_output: str | None = None,
    ) -> None:
        """Close a deployment as 'live' or 'failed' and set its installation's status.

        The installation is left alone when a newer deployment of it has begun since, so it
        always reflects its latest deployment.
        """
        now = utcnow()
        with self.transaction() as session:
            deployment = session.get(Deployment, deployment_id)
            if deployment is None:
                raise StoreError(f"no deployment {deployment_id}")
            if deployment.finished_at is not None:
                raise StoreError(f"deployment {deployment_id} already finished")
            deployment.status = "live" if ok else "failed"
            deployment.error = None if ok else reason
            deployment.hook_output = hook_output
            deployment.finished_at = now
            deployment.deployed_at = now if ok else None
            if deployment.installation_id is None:
                return
            newer = session.scalar(
                select(Deployment.id)
                .where(Deployment.installation_id == deployment.installation_id)
                .where(Deployment.created_at > deployment.created_at)
                .limit(1)
            )
            if newer is None:
                session.execute(
                    update(Installation)
                    .where(Installation.id == deployment.installation_id)
                    .values(
                        status="running" if ok else "error",
                        status_reason=reason,
                        container_ids=list(container_ids),
                        updated_at=now,
                        **({"commit": deployment.commit} if ok and deployment.commit else {}),
                    )
                )

    def settle(self, installations: Iterable[str], node: str | None = None) -> list[str]:
        """Mark `installations` `running` where they are `error` or `installing` though found
        running as deployed, with nothing left to change (an apply cut short by a Docker
        restart, or by a kill, whose containers came up anyway). A hook that failed in the
        last deployment keeps its `error`: hooks run again only with the next change. Only
        `node`'s rows are touched, when given. Returns the names settled."""
        now = utcnow()
        settled = []
        wanted = set(installations)
        with self.transaction() as session:
            rows = session.scalars(  # the few in question, not every name asked about
                select(Installation)
                .where(Installation.status.in_(["error", "installing"]))
                .where(on_node(node))
            )
            for row in rows:
                if row.name not in wanted:
                    continue
                since = session.scalar(
                    select(func.max(Deployment.created_at)).where(
                        Deployment.installation_id == row.id
                    )
                )
                hook_failed = session.scalar(
                    select(HookRunRow.id)
                    .where(HookRunRow.installation == row.name)
                    .where(HookRunRow.status != "succeeded")
                    .where(HookRunRow.started_at >= since)
                    .limit(1)
                )
                if since is None or hook_failed is None:
                    row.status, row.status_reason, row.updated_at = "running", None, now
                    settled.append(row.name)
        return settled

    def post_install_done(self, installation: str) -> bool:
        """Whether the post-install hooks of `installation` have run (they run once)."""
        with self.transaction() as session:
            done_at = session.scalar(
                select(Installation.post_install_done_at).where(Installation.name == installation)
            )
        return done_at is not None

    def mark_post_install_done(self, installation: str) -> None:
        now = utcnow()
        with self.transaction() as session:
            marked = session.scalar(
                update(Installation)
                .where(Installation.name == installation)
                .values(post_install_done_at=now, updated_at=now)
                .returning(Installation.id)
            )
            if marked is None:
                raise StoreError(f"no installation {installation!r}")

    def remove_installation(self, installation: str, node: str | None = None) -> None:
        """Forget an installation (only if `node`'s, when given: another node may run it now);
        its deployments stay, found by `installation_name`."""
        with self.transaction() as session:
            session.execute(
                delete(Installation).where(Installation.name == installation).where(on_node(node))
            )

    def running_nodes(self, installations: Iterable[str]) -> dict[str, str]:
        """Installation -> the node it runs on, for those of `installations` recorded as
        `running` on a node."""
        query = select(Installation.name, Installation.node).where(
            Installation.name.in_(list(installations)),
            Installation.status == "running",
            Installation.node.is_not(None),
        )
        with self.transaction() as session:
            return {name: node for name, node in session.execute(query) if node is not None}

    def installations(self) -> list[InstallationInfo]:
        """Every installation, by name."""
        query = (
            select(Installation, MarketplacePackage.name)
            .outerjoin(MarketplacePackage, Installation.package_id == MarketplacePackage.id)
            .order_by(Installation.name)
        )
        with self.transaction() as session:
            return [
                InstallationInfo(
                    name=row.name,
                    package=package,
                    version=row.version,
                    status=row.status,
                    status_reason=row.status_reason,
                    container_ids=tuple(row.container_ids),
                    spec_hash=row.spec_hash,
                    commit=row.commit,
                    installed_at=row.installed_at,
                    updated_at=row.updated_at,
                    node=row.node,
                )
                for row, package in session.execute(query)
            ]

    def deployments(self, installation: str | None = None, limit: int = 50) -> list[DeploymentInfo]:
        """The latest deployments of installations, newest first; of one if named (projects'
        are `store.projects.ProjectStore`'s)."""
        query = (
            select(Deployment)
            .where(Deployment.project.is_(None))
            .order_by(Deployment.created_at.desc())
            .limit(limit)
        )
        if installation is not None:
            query = query.where(Deployment.installation_name == installation)
        with self.transaction() as session:
            return [
                DeploymentInfo(
                    id=row.id,
                    installation=row.installation_name,
                    status=row.status,
                    version=row.version,
                    summary=row.summary,
                    error=row.error,
                    hook_output=row.hook_output,
                    environment=row.environment,
                    created_at=row.created_at,
                    deployed_at=row.deployed_at,
                    finished_at=row.finished_at,
                )
                for row in session.scalars(query)
            ]

    # -- the daemon's syncs and settings ---------------------------------------------------

    def start_sync(
        self,
        *,
        commit: str | None,
        author: str | None,
        message: str | None,
        trigger: str,
        node: str | None = None,
    ) -> int:
        with self.transaction() as session:
            sync = _new_sync(
                commit=commit,
                author=author,
                message=message,
                trigger=trigger,
                node=node,
                status="running",
            )
            session.add(sync)
            session.flush()
            return sync.id

    def finish_sync(
        self,
        sync_id: int,
        *,
        status: SyncStatus,
        errors: list[str] | None = None,
        summary: dict[str, int] | None = None,
        changes: list[dict[str, Any]] | None = None,
    ) -> SyncInfo:
        now = utcnow()
        with self.transaction() as session:
            sync = session.get(Sync, sync_id)
            if sync is None:
                raise StoreError(f"no sync {sync_id}")
            sync.status = status
            sync.errors = list(errors or [])
            sync.summary = dict(summary or {})
            sync.changes = list(changes or [])
            sync.finished_at = now
            sync.duration_ms = int((now - sync.started_at).total_seconds() * 1000)
            return _sync_info(sync)

    def record_sync(
        self,
        *,
        commit: str | None,
        author: str | None,
        message: str | None,
        trigger: str,
        node: str | None = None,
        status: SyncStatus,
        errors: list[str],
        summary: dict[str, int],
        changes: list[dict[str, Any]],
        setting: tuple[str, str] | None = None,
    ) -> SyncInfo:
        """A sync that begins and ends at once (it changed nothing, or was held or skipped),
        with `setting` (key, value) set in the same transaction."""
        with self.transaction() as session:
            sync = _new_sync(
                commit=commit,
                author=author,
                message=message,
                trigger=trigger,
                node=node,
                status=status,
            )
            sync.errors, sync.summary, sync.changes = list(errors), dict(summary), list(changes)
            sync.finished_at, sync.duration_ms = sync.started_at, 0
            session.add(sync)
            if setting is not None:
                session.merge(DaemonSetting(key=setting[0], value=setting[1]))
            session.flush()
            return _sync_info(sync)

    def interrupt_running_syncs(self, reason: str, node: str | None = None) -> int:
        """Close every sync of `node` still marked running (its process died) as failed; how
        many. Other nodes' syncs are theirs to close."""
        now = utcnow()
        with self.transaction() as session:
            result = session.execute(
                update(Sync)
                .where(Sync.status == "running")
                .where(Sync.node.is_(None) if node is None else Sync.node == node)
                .values(status="failed", errors=[reason], finished_at=now)
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def set_sync_status(self, sync_id: int, status: SyncStatus) -> None:
        with self.transaction() as session:
            session.execute(update(Sync).where(Sync.id == sync_id).values(status=status))

    def syncs(self, limit: int = 20, *, node: str | None = None) -> list[SyncInfo]:
        """Newest first; only `node`'s when given (else every node's)."""
        query = select(Sync).order_by(Sync.id.desc()).limit(limit)
        if node is not None:
            query = query.where(Sync.node == node)
        with self.transaction() as session:
            rows = session.scalars(query)
            return [_sync_info(row) for row in rows]

    def sync(self, sync_id: int) -> SyncInfo | None:
        with self.transaction() as session:
            row = session.get(Sync, sync_id)
            return _sync_info(row) if row is not None else None

    def setting(self, key: str) -> str | None:
        with self.transaction() as session:
            row = session.get(DaemonSetting, key)
            return row.value if row is not None else None

    def set_setting(self, key: str, value: str | None) -> None:
        with self.transaction() as session:
            row = session.get(DaemonSetting, key)
            if row is None:
                session.add(DaemonSetting(key=key, value=value))
            else:
                row.value = value

    # -- runbooks and their executions -----------------------------------------------------

    def runbooks(self) -> list[RunbookRecord]:
        """The runbooks as last loaded, by name."""
        with self.transaction() as session:
            rows = session.scalars(select(RunbookRow).order_by(RunbookRow.name))
            return [
                RunbookRecord(row.name, row.file, row.digest, dict(row.definition), row.builtin)
                for row in rows
            ]

    def replace_runbooks(self, records: Iterable[RunbookRecord]) -> None:
        """Make the stored runbooks exactly `records`: the others are removed, and a row's
        `updated_at` moves only when the runbook changed. Their executions stay."""
        self._replace_definitions(RunbookRow, records, ("file", "digest", "definition", "builtin"))

    def _replace_definitions(
        self, table: type[_Definition], records: Iterable[Any], fields: tuple[str, ...]
    ) -> None:
        """Make `table` hold exactly `records` (by name); a row's `updated_at` moves only when
        one of its `fields` changed."""
        now = utcnow()
        wanted = {record.name: record for record in records}
        with self.transaction() as session:
            for row in session.scalars(select(table)):
                record = wanted.pop(row.name, None)
                if record is None:
                    session.delete(row)
                elif any(getattr(row, f) != getattr(record, f) for f in fields):
                    for f in fields:
                        setattr(row, f, getattr(record, f))
                    row.updated_at = now
            session.add_all(
                table(name=r.name, updated_at=now, **{f: getattr(r, f) for f in fields})
                for r in wanted.values()
            )

    def start_execution(
        self,
        runbook_name: str,
        *,
        steps_total: int,
        trigger: dict[str, Any],
        incident_id: str | None = None,
        node: str | None = None,
        kind: ExecutionKind = "runbook",
    ) -> ExecutionInfo:
        """Record a run of a runbook that begins now (`running`); `trigger` (what started it)
        is masked."""
        with self.transaction() as session:
            row = RunbookExecution(
                id=new_id(),
                runbook_name=runbook_name,
                kind=kind,
                incident_id=incident_id,
                status="running",
                steps_completed=0,
                steps_total=steps_total,
                output={},
                trigger=mask_detail(trigger),
                step_states={},
                approval="none",
                node=node,
                started_at=utcnow(),
            )
            session.add(row)
            session.flush()
            return _execution_info(row)

    def record_step(
        self,
        execution_id: str,
        key: str,
        state: dict[str, Any],
        *,
        steps_completed: int,
        status: ExecutionStatus = "running",
        approval: Approval | None = None,
        approval_by: str | None = None,
    ) -> None:
        """Set one step's state (masked) and the run's progress in one transaction, so a run
        cut short by a crash shows exactly where it stopped. `approval`: the approval state
        moves with it (`pending` with `status` `waiting` while a step waits for a person).
        The state is set inside the stored document by the database (SQLite's `json_set`,
        PostgreSQL's `jsonb_set`): a run of many steps costs the same per step as a short one."""
        masked = mask_detail(state)
        column = RunbookExecution.step_states
        values: dict[str, Any] = {"steps_completed": steps_completed, "status": status}
        if approval is not None:
            values |= {"approval": approval, "approval_by": approval_by}
            values["approval_at"] = None if approval == "pending" else utcnow()
        with self.transaction() as session:
            if session.get_bind().dialect.name == "postgresql":
                path = sa_cast([key], postgresql.ARRAY(String))
                values["step_states"] = func.jsonb_set(column, path, literal(masked, JSONB))
            else:
                document = json.dumps(masked, ensure_ascii=False)
                values["step_states"] = func.json_set(column, f'$."{key}"', func.json(document))
            done = session.execute(
                update(RunbookExecution).where(RunbookExecution.id == execution_id).values(values)
            )
            if done.rowcount == 0:  # type: ignore[attr-defined]
                raise NotFoundError(f"no runbook execution {execution_id}")

    def decide_approval(self, execution_id: str, approved: bool, actor: str) -> ExecutionInfo:
        """A person's answer to the step an execution waits on; `StateError` when it waits for
        none (never asked, or answered already)."""
        with self.transaction() as session:
            row = _execution_row(session, execution_id, for_update=True)
            if row.approval != "pending":
                raise StateError(
                    f"execution {execution_id} is not waiting for an approval "
                    f"(its approval is {row.approval}, its status {row.status})"
                )
            row.approval = "approved" if approved else "rejected"
            row.approval_by, row.approval_at = actor, utcnow()
            return _execution_info(row)

    def finish_execution(
        self,
        execution_id: str,
        status: ExecutionStatus,
        *,
        output: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> ExecutionInfo:
        """Close a run with its final `status`, its `output` (masked) and why it failed."""
        with self.transaction() as session:
            row = _execution_row(session, execution_id, for_update=True)
            row.status, row.error, row.completed_at = status, error, utcnow()
            row.output = mask_detail(output or {})
            return _execution_info(row)

    def execution(self, execution_id: str) -> ExecutionInfo | None:
        with self.transaction() as session:
            row = session.get(RunbookExecution, execution_id)
            return _execution_info(row) if row is not None else None

    def executions(
        self,
        *,
        runbook: str | None = None,
        incident_id: str | None = None,
        limit: int = 50,
        kind: ExecutionKind = "runbook",
    ) -> list[ExecutionInfo]:
        """The latest runs of runbooks (or workflows), newest first; of one runbook (workflow)
        or one incident if given."""
        query = (
            select(RunbookExecution)
            .where(RunbookExecution.kind == kind)
            .order_by(RunbookExecution.started_at.desc())
            .limit(limit)
        )
        if runbook is not None:
            query = query.where(RunbookExecution.runbook_name == runbook)
        if incident_id is not None:
            query = query.where(RunbookExecution.incident_id == incident_id)
        with self.transaction() as session:
            return [_execution_info(row) for row in session.scalars(query)]

    def interrupt_executions(self, reason: str) -> list[str]:
        """Mark every run still `running` (its process died) `interrupted`; their ids. Runs
        `waiting` for an approval keep waiting."""
        with self.transaction() as session:
            ids = session.scalars(
                update(RunbookExecution)
                .where(RunbookExecution.status == "running")
                .values(status="interrupted", error=reason, completed_at=utcnow())
                .returning(RunbookExecution.id)
            ).all()
            return list(ids)

    # -- workflows -------------------------------------------------------------------------

    def workflows(self) -> list[WorkflowRecord]:
        """The workflows as last loaded, by name."""
        with self.transaction() as session:
            rows = session.scalars(select(WorkflowRow).order_by(WorkflowRow.name))
            return [
                WorkflowRecord(row.name, row.file, row.digest, dict(row.definition)) for row in rows
            ]

    def replace_workflows(self, records: Iterable[WorkflowRecord]) -> None:
        """Make the stored workflows exactly `records`: the others are removed, and a row's
        `updated_at` moves only when the workflow changed."""
        self._replace_definitions(WorkflowRow, records, _DEFINITION_FIELDS)

    # -- agents, functions and the agents' runs --------------------------------------------

    def agents(self) -> list[AgentRecord]:
        """The agents as last loaded, by name."""
        with self.transaction() as session:
            rows = session.scalars(select(AgentRow).order_by(AgentRow.name))
            return [AgentRecord(r.name, r.file, r.digest, dict(r.definition)) for r in rows]

    def replace_agents(self, records: Iterable[AgentRecord]) -> None:
        """Make the stored agents exactly `records` (see `replace_runbooks`). The runs of an
        agent removed stay, with its name."""
        self._replace_definitions(AgentRow, records, _AGENT_FIELDS)

    def functions(self) -> list[FunctionRecord]:
        """The functions as last loaded, by name."""
        with self.transaction() as session:
            rows = session.scalars(select(FunctionRow).order_by(FunctionRow.name))
            return [FunctionRecord(r.name, r.file, r.digest, dict(r.definition)) for r in rows]

    def replace_functions(self, records: Iterable[FunctionRecord]) -> None:
        """Make the stored functions exactly `records` (see `replace_runbooks`)."""
        self._replace_definitions(FunctionRow, records, _FUNCTION_FIELDS)

    def start_agent_execution(
        self, agent_name: str, input: str, *, actor: str, incident_id: str | None = None
    ) -> str:
        """Record a run of an agent that begins now (`running`) on the task `input` (masked);
        its id."""
        execution_id = new_id()
        agent_id = select(AgentRow.id).where(AgentRow.name == agent_name).scalar_subquery()
        with self.transaction() as session:
            session.execute(
                insert(AgentExecution).values(
                    id=execution_id,
                    agent_id=agent_id,
                    agent_name=agent_name,
                    input=mask_detail(input),
                    status="running",
                    tokens_used=0,
                    duration_ms=0,
                    actor=actor,
                    incident_id=incident_id,
                    state={},
                    created_at=utcnow(),
                )
            )
        return execution_id

    def record_agent_step(
        self,
        execution_id: str,
        kind: AgentStepKind,
        detail: dict[str, Any],
        *,
        tokens: int = 0,
        duration_ms: int = 0,
    ) -> None:
        """Add the next step of a run (numbered from 1); `detail` is masked."""
        with self.transaction() as session:
            _agent_row(session, execution_id, for_update=True)  # one writer numbers at a time
            session.execute(
                _next_agent_step(execution_id, NewAgentStep(kind, detail, tokens, duration_ms))
            )

    def save_agent_state(
        self,
        execution_id: str,
        state: dict[str, Any],
        *,
        status: AgentExecutionStatus,
        pending: dict[str, Any] | None = None,
        tokens_used: int,
        step: NewAgentStep | None = None,
    ) -> None:
        """Save a run's resumable state (masked) after a step: its status, the tool call it
        waits on (`waiting_approval`), the tokens used so far. `step`, the step just taken, is
        recorded in the same transaction (this runs after every turn and tool call)."""
        values = {
            "state": mask_detail(state),
            "status": status,
            "tokens_used": tokens_used,
            "pending": None if pending is None else mask_detail(pending),
        }
        with self.transaction() as session:
            _update_agent_run(session, execution_id, values, step)

    def finish_agent_execution(
        self,
        execution_id: str,
        status: AgentExecutionStatus,
        *,
        output: str | None = None,
        reason: str | None = None,
        tokens_used: int,
        duration_ms: int,
        step: NewAgentStep | None = None,
    ) -> None:
        """Close a run with its final `status`, its answer and why it ended so (masked);
        `step`, the run's last, is recorded in the same transaction."""
        values = {
            "status": status,
            "pending": None,
            "completed_at": utcnow(),
            "output": None if output is None else mask_detail(output),
            "reason": None if reason is None else mask_detail(reason),
            "tokens_used": tokens_used,
            "duration_ms": duration_ms,
        }
        with self.transaction() as session:
            _update_agent_run(session, execution_id, values, step)

    def agent_execution(self, execution_id: str) -> AgentExecutionInfo:
        """One run with its steps; `NotFoundError` if there is none."""
        with self.transaction() as session:
            return _agent_execution_info(session, _agent_row(session, execution_id))

    def agent_executions(
        self, agent: str | None = None, limit: int = 50, status: str | None = None
    ) -> list[AgentExecutionInfo]:
        """The latest runs (of one agent, in one status, if given), newest first, without
        their steps."""
        query = select(AgentExecution).order_by(AgentExecution.created_at.desc()).limit(limit)
        if agent is not None:
            query = query.where(AgentExecution.agent_name == agent)
        if status is not None:
            query = query.where(AgentExecution.status == status)
        with self.transaction() as session:
            return [_agent_execution_info(None, row) for row in session.scalars(query)]

    def decide_agent_execution(
        self, execution_id: str, approved: bool, by: str
    ) -> AgentExecutionInfo:
        """A person's answer to the tool call a run waits on, recorded as an `approval` step:
        approved, the run is `running` again (its `pending` call is the one to carry out);
        rejected, it ends `rejected`. `StateError` unless it is `waiting_approval`."""
        with self.transaction() as session:
            row = _agent_row(session, execution_id, for_update=True)
            if row.status != "waiting_approval":
                raise StateError(
                    f"agent execution {execution_id} is not waiting for an approval "
                    f"(its status is {row.status})"
                )
            row.approval_by = by
            if approved:
                row.status = "running"
            else:
                row.status, row.completed_at = "rejected", utcnow()
                row.reason = f"rejected by {by}"
            detail = {"approved": approved, "by": by, "call": row.pending}
            session.flush()
            session.execute(_next_agent_step(execution_id, NewAgentStep("approval", detail)))
            return _agent_execution_info(session, row)

    def interrupt_agent_executions(self, reason: str) -> list[str]:
        """Mark every run still `running` (its process died) `interrupted`; their ids. Runs
        waiting for an approval keep waiting: their state is saved."""
        with self.transaction() as session:
            ids = session.scalars(
                update(AgentExecution)
                .where(AgentExecution.status == "running")
                .values(status="interrupted", reason=reason, completed_at=utcnow())
                .returning(AgentExecution.id)
            ).all()
            return list(ids)


def on_node(node: str | None) -> ColumnElement[bool]:
    """The installations rows of `node` (and those recorded before nodes were placed); every
    row when None."""
    if node is None:
        return true()
    return or_(Installation.node == node, Installation.node.is_(None))


def _agent_row(session: Session, execution_id: str, *, for_update: bool = False) -> AgentExecution:
    row = session.get(AgentExecution, execution_id, with_for_update=for_update)
    if row is None:
        raise NotFoundError(f"no agent execution {execution_id}")
    return row


def _update_agent_run(
    session: Session, execution_id: str, values: dict[str, Any], step: NewAgentStep | None
) -> None:
    """Set a run's columns, then add `step` as its next (numbered by the database: the update
    locked the run's row, so one writer numbers at a time)."""
    done = session.execute(
        update(AgentExecution).where(AgentExecution.id == execution_id).values(values)
    )
    if done.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFoundError(f"no agent execution {execution_id}")
    if step is not None:
        session.execute(_next_agent_step(execution_id, step))


def _next_agent_step(execution_id: str, step: NewAgentStep) -> Insert:
    """The insert of a run's next step, numbered from 1 (lock the run's row first)."""
    last = select(func.max(AgentStep.seq)).where(AgentStep.execution_id == execution_id)
    return insert(AgentStep).values(
        execution_id=execution_id,
        seq=func.coalesce(last.scalar_subquery(), 0) + 1,
        kind=step.kind,
        detail=mask_detail(step.detail),
        tokens=step.tokens,
        duration_ms=step.duration_ms,
        created_at=utcnow(),
    )


def _agent_execution_info(session: Session | None, row: AgentExecution) -> AgentExecutionInfo:
    """A run as a record; with `session`, its steps too."""
    steps: tuple[AgentStepInfo, ...] = ()
    if session is not None:
        query = select(AgentStep).where(AgentStep.execution_id == row.id).order_by(AgentStep.seq)
        steps = tuple(
            AgentStepInfo(s.seq, s.kind, dict(s.detail), s.tokens, s.duration_ms, s.created_at)
            for s in session.scalars(query)
        )
    return AgentExecutionInfo(
        id=row.id,
        agent_name=row.agent_name,
        agent_id=row.agent_id,
        input=row.input,
        output=row.output,
        status=row.status,
        tokens_used=row.tokens_used,
        duration_ms=row.duration_ms,
        actor=row.actor,
        reason=row.reason,
        incident_id=row.incident_id,
        state=dict(row.state),
        pending=None if row.pending is None else dict(row.pending),
        approval_by=row.approval_by,
        created_at=row.created_at,
        completed_at=row.completed_at,
        steps=steps,
    )


def _execution_row(session: Session, execution_id: str, *, for_update: bool) -> RunbookExecution:
    row = session.get(RunbookExecution, execution_id, with_for_update=for_update)
    if row is None:
        raise NotFoundError(f"no runbook execution {execution_id}")
    return row


def _execution_info(row: RunbookExecution) -> ExecutionInfo:
    return ExecutionInfo(
        id=row.id,
        runbook_name=row.runbook_name,
        incident_id=row.incident_id,
        status=row.status,
        steps_completed=row.steps_completed,
        steps_total=row.steps_total,
        trigger=dict(row.trigger),
        step_states=dict(row.step_states),
        output=dict(row.output),
        approval=row.approval,
        approval_by=row.approval_by,
        approval_at=row.approval_at,
        error=row.error,
        node=row.node,
        started_at=row.started_at,
        completed_at=row.completed_at,
        kind=row.kind,
    )


def _new_sync(
    *,
    commit: str | None,
    author: str | None,
    message: str | None,
    trigger: str,
    node: str | None,
    status: SyncStatus,
) -> Sync:
    """A sync of `commit` beginning now, with nothing changed or failed yet."""
    return Sync(
        node=node,
        commit=commit,
        author=author,
        message=message,
        trigger=trigger,
        status=status,
        errors=[],
        summary={},
        changes=[],
        started_at=utcnow(),
    )


def _sync_info(row: Sync) -> SyncInfo:
    return SyncInfo(
        id=row.id,
        commit=row.commit,
        author=row.author,
        message=row.message,
        trigger=row.trigger,
        status=row.status,
        errors=tuple(row.errors),
        summary=dict(row.summary),
        changes=tuple(row.changes),
        started_at=row.started_at,
        finished_at=row.finished_at,
        duration_ms=row.duration_ms,
        node=row.node,
    )
