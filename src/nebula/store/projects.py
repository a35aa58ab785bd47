"""Projects and their deployments (`projects`, and the `deployments` rows with a `project_id`).

A project's deployment moves pending → building → deploying → live, or to failed at any step;
its build's output is appended to `logs` as it comes (masked like audit details). The latest
`live` deployment of an environment is what serves it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import Select, select, update

from nebula.errors import NotFoundError, StoreError
from nebula.store.mask import mask_detail
from nebula.store.models import Deployment, ProjectRow, new_id, utcnow
from nebula.store.records import DeploymentStatus, ProjectDeployment, ProjectRecord
from nebula.store.store import Store

_PROJECT_FIELDS = ("file", "digest", "definition", "git_url", "path", "branch")
UNFINISHED: tuple[DeploymentStatus, ...] = ("pending", "building", "deploying")


class ProjectStore:
    """Queries over the projects and their deployments, on the shared `Store`."""

    def __init__(self, store: Store, known: Mapping[str, str] | None = None) -> None:
        self._store = store
        self._known = known  # secret values → fingerprints, masked out of build logs

    # -- projects --------------------------------------------------------------------------

    def projects(self) -> list[ProjectRecord]:
        """The projects as last loaded, by name."""
        with self._store.transaction() as session:
            rows = session.scalars(select(ProjectRow).order_by(ProjectRow.name))
            return [ProjectRecord(r.name, r.file, r.digest, dict(r.definition)) for r in rows]

    def replace_projects(self, records: Iterable[ProjectRecord]) -> None:
        """Make the stored projects exactly `records`; a removed project's deployments stay,
        with its name."""
        now = utcnow()
        wanted = {record.name: record for record in records}
        with self._store.transaction() as session:
            for row in session.scalars(select(ProjectRow)):
                record = wanted.pop(row.name, None)
                if record is None:
                    session.delete(row)
                elif any(getattr(row, f) != getattr(record, f) for f in _PROJECT_FIELDS):
                    for f in _PROJECT_FIELDS:
                        setattr(row, f, getattr(record, f))
                    row.updated_at = now
            session.add_all(
                ProjectRow(
                    id=new_id(),
                    name=r.name,
                    created_at=now,
                    updated_at=now,
                    **{f: getattr(r, f) for f in _PROJECT_FIELDS},
                )
                for r in wanted.values()
            )

    # -- deployments -----------------------------------------------------------------------

    def start(
        self,
        project: str,
        environment: str,
        *,
        commit: str | None,
        summary: str,
        image: str | None = None,
        version: str | None = None,
    ) -> ProjectDeployment:
        """Record a deployment that begins now (`pending`); `version` says which of the
        project's settings it is made with."""
        now = utcnow()
        with self._store.transaction() as session:
            project_id = session.scalar(select(ProjectRow.id).where(ProjectRow.name == project))
            row = Deployment(
                id=new_id(),
                project_id=project_id,
                project=project,
                installation_name=project,
                environment=environment,
                status="pending",
                commit=commit,
                image=image,
                summary=summary,
                version=version,
                created_at=now,
            )
            session.add(row)
            session.flush()
            return _info(row)

    def advance(
        self,
        deployment_id: str,
        status: DeploymentStatus,
        *,
        commit: str | None = None,
        image: str | None = None,
    ) -> None:
        """Move an unfinished deployment on to `status` (building, deploying), noting the
        commit and image once known."""
        values: dict[str, object] = {"status": status}
        if commit is not None:
            values["commit"] = commit
        if image is not None:
            values["image"] = image
        with self._store.transaction() as session:
            session.execute(update(Deployment).where(Deployment.id == deployment_id).values(values))

    def append_log(self, deployment_id: str, text: str) -> None:
        """Add `text` (lines of the build's output) to the deployment's logs, masked."""
        if not text:
            return
        masked = str(mask_detail(text, self._known))
        with self._store.transaction() as session:
            row = session.get(Deployment, deployment_id)
            if row is None:
                raise NotFoundError(f"no deployment {deployment_id}")
            row.logs = (row.logs or "") + masked

    def finish(self, deployment_id: str, *, ok: bool, error: str | None = None) -> None:
        """Close a deployment as `live` (now serving) or `failed` (with why, masked)."""
        now = utcnow()
        with self._store.transaction() as session:
            row = session.get(Deployment, deployment_id)
            if row is None:
                raise NotFoundError(f"no deployment {deployment_id}")
            if row.finished_at is not None:
                raise StoreError(f"deployment {deployment_id} already finished")
            row.status = "live" if ok else "failed"
            row.error = None if ok else str(mask_detail(error or "failed", self._known))
            row.finished_at = now
            row.deployed_at = now if ok else None

    def fail_unfinished(self, reason: str) -> int:
        """Mark every project deployment left unfinished (a stop mid-build) `failed`; how
        many. Run at start, before any deployment begins."""
        with self._store.transaction() as session:
            result = session.execute(
                update(Deployment)
                .where(Deployment.project.is_not(None))
                .where(Deployment.status.in_(UNFINISHED))
                .where(Deployment.finished_at.is_(None))
                .values(status="failed", error=reason, finished_at=utcnow())
            )
            return int(getattr(result, "rowcount", 0) or 0)

    def get(self, deployment_id: str) -> ProjectDeployment:
        with self._store.transaction() as session:
            row = session.get(Deployment, deployment_id)
            if row is None or row.project is None:
                raise NotFoundError(f"no deployment {deployment_id}")
            return _info(row)

    def logs(self, deployment_id: str) -> str:
        """The build output kept with a deployment ('' when nothing was built)."""
        with self._store.transaction() as session:
            row = session.get(Deployment, deployment_id)
            if row is None or row.project is None:
                raise NotFoundError(f"no deployment {deployment_id}")
            return row.logs or ""

    def deployments(
        self, project: str, environment: str | None = None, limit: int = 50
    ) -> list[ProjectDeployment]:
        """A project's deployments, newest first."""
        query = _of(project).order_by(Deployment.created_at.desc()).limit(limit)
        if environment is not None:
            query = query.where(Deployment.environment == environment)
        with self._store.transaction() as session:
            return [_info(row) for row in session.scalars(query)]

    def deployed(self, project: str, environment: str, commit: str, version: str) -> bool:
        """Whether a deployment of `commit` with these settings was made (whatever became of
        it): a sync deploys each new commit or change of settings once, a failed one too."""
        query = (
            _of(project)
            .where(Deployment.environment == environment, Deployment.commit == commit)
            .where(Deployment.version == version)
            .limit(1)
        )
        with self._store.transaction() as session:
            return session.scalar(query) is not None

    def live(self, project: str, environment: str) -> ProjectDeployment | None:
        """The deployment serving an environment now: its latest `live` one."""
        query = (
            _of(project)
            .where(Deployment.environment == environment, Deployment.status == "live")
            .order_by(Deployment.deployed_at.desc())
            .limit(1)
        )
        with self._store.transaction() as session:
            row = session.scalar(query)
            return _info(row) if row is not None else None


def _of(project: str) -> Select[Deployment]:
    return select(Deployment).where(Deployment.project == project)


def _info(row: Deployment) -> ProjectDeployment:
    return ProjectDeployment(
        id=row.id,
        project=row.project or row.installation_name,
        environment=row.environment,
        status=row.status,
        commit=row.commit,
        image=row.image,
        summary=row.summary,
        error=row.error,
        created_at=row.created_at,
        deployed_at=row.deployed_at,
        finished_at=row.finished_at,
    )
