"""The config repo's projects as nebulad's API offers them: declare, change and remove them
through commits to the config repo, read and write their files through commits to where their
code lives, deploy and roll back through the projects kind's service.

- A project's declaration (`projects/NAME.yaml`) is written as the marketplace writes agents:
  validated by loading the edited repo first, committed with the caller as author, pushed to
  the repo nebulad follows, then synced.
- Its files are those of its folder: a folder of the config repo (`path:`), or the whole of
  its own repo (`git_url:`) on the branch of an environment (the first one by default). nebulad
  keeps a clone of each under its data dir (`projects/config`, `projects/git/NAME`): a read
  fetches and checks out the branch's tip, a write commits on the tip (a scratch work tree, as
  the caller) and pushes. In watch mode a `path:` project's files are those of the followed
  folder, committed there when it is a git work tree. Every path goes through
  `engine.project_files` (nothing outside the project is read or written).
- Deployments, rollbacks and their records are the projects kind's (`engine.projects`); the
  desk picks the environment (default the first) and says who asked.
- The IDE is the catalog's code-server, installed through the marketplace as `ide-NAME` on a
  working copy of the project's repo (`projects/ide/NAME`, cloned once, then the IDE user's),
  exposed behind the dashboard's login (`auth: nebula`).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nebula.daemon.catalog_api import Marketplace
from nebula.daemon.control import ControlError
from nebula.daemon.gitsync import GitSource, mask_url_secrets
from nebula.engine import configrepo
from nebula.engine.catalog_edits import secret_name
from nebula.engine.configrepo import Author
from nebula.engine.project_files import ProjectFileError, ProjectFiles, clean_path
from nebula.engine.projects import ProjectService
from nebula.errors import SyncError
from nebula.kinds.base import Desired
from nebula.kinds.projects.types import DesiredProject
from nebula.spec.names import InvalidNameError, check_name
from nebula.store.records import ProjectDeployment

FOLDER = "projects"  # where the config repo declares them
IDE = "code-server"  # the catalog package `nebula projects open` installs
IDE_PORT = 8443  # the first host port an IDE is published on (its package's default)


@dataclass(frozen=True)
class _Where:
    """Where a project's files are: the git repo (None: the followed folder in watch mode), its
    branch, and the project's folder inside the checked-out config folder ("": all of it)."""

    url: str | None
    branch: str
    folder: str
    in_config: bool  # the config repo: a write is a change nebulad syncs


class ProjectDesk:
    """What the projects routes call (see the module docstring)."""

    def __init__(
        self,
        marketplace: Marketplace,
        source: GitSource | None,
        folder: Path,
        data_dir: Path,
        desired: Callable[[], Desired | None],
        *,
        service: Callable[[], ProjectService],
        dashboard: str | None = None,
    ) -> None:
        self.marketplace = marketplace
        self.dashboard = dashboard  # the login the IDE's route asks (None: no dashboard)
        self.service = service  # deploys, rollbacks and their records (the projects kind's)
        self.source = source
        self.folder = folder  # the config folder followed (watch mode)
        self.data_dir = data_dir / "projects"
        self.desired = desired
        self._clones: dict[str, GitSource] = {}
        self._turns: dict[str, threading.Lock] = {}  # one checkout of a clone read at a time
        self._lock = threading.Lock()

    # -- declarations ----------------------------------------------------------------------

    def projects(self) -> list[dict[str, Any]]:
        """The projects of the last good commit, by name."""
        desired = self.desired()
        return [self._summary(desired, p) for p in desired.projects] if desired else []

    def project(self, name: str) -> dict[str, Any]:
        desired, project = self._find(name)
        return self._summary(desired, project)

    def save(
        self, name: str, document: dict[str, Any], actor: str, *, create: bool
    ) -> dict[str, Any]:
        """Commit `document` as `projects/NAME.yaml`; `InvalidEditError` when invalid."""
        _check_name(name)
        return self.marketplace.save_definition(
            FOLDER, name, document, actor, create=create, author=Author.of(actor)
        )

    def remove(self, name: str, actor: str) -> dict[str, Any]:
        """Commit the removal of `projects/NAME.yaml` (a `path:` project's code stays)."""
        _check_name(name)
        return self.marketplace.delete_definition(FOLDER, name, actor, Author.of(actor))

    # -- files -----------------------------------------------------------------------------

    def files(self, name: str, environment: str | None) -> dict[str, Any]:
        """{project, branch, commit, files: [{path, size, kind}], truncated}."""
        where = self._where(name, environment)
        with self._turn(name, where):
            tree, commit = self._checkout(name, where)
            listing = ProjectFiles(tree, where.folder).list()
        return {
            "project": name,
            "branch": where.branch,
            "commit": commit,
            "files": listing.files,
            "truncated": listing.truncated,
        }

    def read(self, name: str, path: str, environment: str | None) -> dict[str, Any]:
        """{path, commit, size, encoding: utf-8 | base64, content}."""
        where = self._where(name, environment)
        with self._turn(name, where):
            tree, commit = self._checkout(name, where)
            data = ProjectFiles(tree, where.folder).read(path)
        try:
            content, encoding = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            content, encoding = base64.b64encode(data).decode("ascii"), "base64"
        return {
            "path": clean_path(path),
            "commit": commit,
            "size": len(data),
            "encoding": encoding,
            "content": content,
        }

    def write(
        self,
        name: str,
        path: str,
        content: bytes,
        actor: str,
        *,
        message: str | None = None,
        environment: str | None = None,
    ) -> dict[str, Any]:
        """Write one file and commit it as `actor`, pushed where the project lives: {path,
        commit, message}; commit None when the content is what the file holds already (or
        the followed folder is no git work tree)."""
        where = self._where(name, environment)
        rel = clean_path(path)
        author = Author.of(actor)
        text = message or f"Edit {rel} of project {name}"

        def edit(tree: Path) -> str:
            files = ProjectFiles(tree, where.folder)
            with contextlib.suppress(ProjectFileError):
                if files.read(rel) == content:
                    raise _UnchangedError
            files.write(rel, content)
            return text

        with self._turn(name, where):
            try:
                if where.url is None:
                    sha = self._commit_in_folder(where.folder, rel, edit, author)
                else:
                    sha = self._clone(name, where).publish(edit, author.name, author.email)
            except _UnchangedError:
                return {"path": rel, "commit": None, "message": "unchanged"}
            except (SyncError, configrepo.ConfigRepoError) as exc:
                raise ControlError("conflict", str(exc)) from None
        if where.in_config:
            self.marketplace.on_commit()
        return {"path": rel, "commit": sha, "message": text}

    # -- deployments -----------------------------------------------------------------------

    def deploy(
        self, name: str, environment: str | None, commit: str | None, actor: str
    ) -> ProjectDeployment:
        """Start building `commit` (default: the branch's head) and switching `environment`
        (default: the first) to it; the recorded deployment, `pending`."""
        env = self._environment(name, environment)
        return self.service().deploy(
            name,
            env,
            commit,
            wait=False,
            summary=f"deploy by {actor}" + (f" of {commit[:12]}" if commit else ""),
        )

    def rollback(self, name: str, environment: str | None, to: str | None) -> ProjectDeployment:
        """Start switching `environment` back to a kept image (`to`: a commit or its prefix;
        default: the one live before), without building; the recorded deployment."""
        env = self._environment(name, environment)
        return self.service().rollback(name, env, to, wait=False)

    def deployments(
        self, name: str, environment: str | None, limit: int
    ) -> list[ProjectDeployment]:
        """The project's deployments, newest first (a removed project's too)."""
        return self.service().deployments(name, environment, limit)

    def deployment(self, name: str, deployment_id: str) -> dict[str, Any]:
        """One deployment of the project with its build output (masked)."""
        found = self.service().deployment(deployment_id)
        if found.project != name:
            raise ControlError("not_found", f"project {name} has no deployment {deployment_id}")
        return {**dataclasses.asdict(found), "logs": self.service().build_logs(deployment_id)}

    # -- the IDE -----------------------------------------------------------------------------

    def open_ide(
        self, name: str, environment: str | None, port: int | None, actor: str
    ) -> dict[str, Any]:
        """Install the catalog's code-server as `ide-NAME`, on a working copy of the project's
        repo (made on first use, then left to the IDE's user) and exposed at `ide.HOST` (the
        environment's hostname) behind the dashboard's login (`auth: nebula`);
        {installation, url, workspace, password_secret, commit}. Nothing is committed when it
        is installed already; nothing at all without a dashboard served over TCP."""
        if self.dashboard is None:
            raise ControlError(
                "invalid",
                "the IDE is served behind the dashboard's login, and this nebulad serves no "
                "dashboard: run it with --tcp-listen HOST:PORT and --ui",
            )
        desired, project = self._find(name)
        env = project.environments[self._environment(name, environment)]
        if env.host is None:
            raise ControlError(
                "invalid",
                f"{project.file}: environment {env.name} has no `expose:` hostname; the IDE is "
                "exposed at ide.<that hostname>",
            )
        installation = f"ide-{name}"
        _check_name(installation)
        workspace = self._workspace(name, project, env.branch)
        answer: dict[str, Any] = {
            "installation": installation,
            "url": f"https://ide.{env.host}",
            "workspace": str(workspace),
            "password_secret": secret_name(installation, "PASSWORD"),
            "commit": None,
        }
        installed = {i.name: i for i in desired.repo.installations}
        if installation in installed:
            return answer
        used = {
            i.spec.values.get("PORT", str(IDE_PORT))
            for i in installed.values()
            if i.spec.package == IDE
        }
        port = port or next(p for p in range(IDE_PORT, 65536) if str(p) not in used)
        values = {"WORKSPACE": str(workspace), "PORT": str(port)}
        request = {"package": IDE, "name": installation, "values": values}
        expose = [{"host": f"ide.{env.host}", "auth": "nebula"}]
        done = self.marketplace.install({**request, "expose": expose}, actor)
        return {**answer, "commit": done["commit"], "port": port}

    def _workspace(self, name: str, project: DesiredProject, branch: str) -> Path:
        """The IDE's working copy: a clone of the repo where the project lives (the config
        repo for a `path:` project; in watch mode its followed folder), made once."""
        if project.git_url is None and self.source is None:
            return self.folder.resolve()
        url = project.git_url or (self.source.url if self.source else "")
        if project.git_url is None and self.source is not None:
            branch = self.source.branch
        target = self.data_dir / "ide" / name
        if (target / ".git").is_dir():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
        try:
            done = subprocess.run(
                ["git", "clone", "--quiet", "--branch", branch, "--", url, str(target)],
                capture_output=True,
                text=True,
                env=env,
                timeout=300,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ControlError("conflict", f"cannot clone {mask_url_secrets(url)}: {exc}") from None
        if done.returncode != 0:
            shutil.rmtree(target, ignore_errors=True)
            why = mask_url_secrets(done.stderr.strip())
            raise ControlError("conflict", f"cannot clone {mask_url_secrets(url)}: {why}")
        return target

    # -- internals -------------------------------------------------------------------------

    def _find(self, name: str) -> tuple[Desired, DesiredProject]:
        desired = self.desired()
        found = {p.name: p for p in desired.projects} if desired else {}
        if desired is None or name not in found:
            known = ", ".join(sorted(found)) or "none"
            raise ControlError(
                "not_found", f"no project {name!r} in the config repo (projects: {known})"
            )
        return desired, found[name]

    def _environment(self, name: str, environment: str | None) -> str:
        """`environment`, or the project's first; not_found when it has no such one."""
        _, project = self._find(name)
        if environment is None:
            return next(iter(project.environments))
        if environment not in project.environments:
            raise ControlError(
                "not_found",
                f"project {name!r} has no environment {environment!r} "
                f"(environments: {', '.join(project.environments)})",
            )
        return environment

    def _where(self, name: str, environment: str | None) -> _Where:
        desired, project = self._find(name)
        if project.git_url is None:
            assert project.folder is not None  # a project's code is in one place or the other
            folder = project.folder.relative_to(desired.repo.root).as_posix()
            if self.source is None:
                return _Where(None, "", folder, True)
            return _Where(self.source.url, self.source.branch, _join(self.source, folder), True)
        branch = project.environments[self._environment(name, environment)].branch
        return _Where(project.git_url, branch, "", False)

    def _checkout(self, name: str, where: _Where) -> tuple[Path, str | None]:
        """The work tree to read the project's files from, at the branch's tip, and its sha."""
        if where.url is None:
            return self.folder, None
        clone = self._clone(name, where)
        try:
            tip = clone.fetch()
            return clone.checkout(tip.sha), tip.sha
        except SyncError as exc:
            raise ControlError("conflict", f"project {name}: {exc}") from None

    def _turn(self, name: str, where: _Where) -> threading.Lock:
        """The lock of the work tree a project's files are in: its clone, or the config's."""
        key = "" if where.in_config else name
        with self._lock:
            return self._turns.setdefault(key, threading.Lock())

    def _clone(self, name: str, where: _Where) -> GitSource:
        """nebulad's clone for the project's files: one of the config repo for every `path:`
        project, one per `git_url:` project (made again when its URL or branch changed)."""
        assert where.url is not None
        key = "" if where.in_config else name
        with self._lock:
            clone = self._clones.get(key)
            if clone is None or clone.url != where.url or clone.branch != where.branch:
                workdir = self.data_dir / ("config" if where.in_config else f"git/{name}")
                clone = GitSource(where.url, workdir, branch=where.branch)
                self._clones[key] = clone
            return clone

    def _commit_in_folder(
        self, folder: str, rel: str, edit: Callable[[Path], str], author: Author
    ) -> str | None:
        """Watch mode: write in the followed folder, committed when it is a git work tree."""
        if not configrepo.is_git_repo(self.folder):
            edit(self.folder)
            return None
        full = f"{folder}/{rel}" if folder else rel
        configrepo.check_clean(self.folder, [full])
        message = edit(self.folder)
        return configrepo.commit_paths(self.folder, [full], message, author)

    def _summary(self, desired: Desired, project: DesiredProject) -> dict[str, Any]:
        """What the API shows of a project: where its code is, and each environment with
        its latest deployment."""
        service = self.service()
        folder = project.folder.relative_to(desired.repo.root) if project.folder else None
        return {
            "name": project.name,
            "file": project.file,
            "git_url": project.git_url,
            "path": folder.as_posix() if folder else None,
            "dockerfile": project.dockerfile,
            "port": project.port,
            "environments": [
                {
                    "name": env.name,
                    "branch": env.branch,
                    "host": env.host,
                    "node": env.node,
                    "latest": next(iter(service.deployments(project.name, env.name, 1)), None),
                }
                for env in project.environments.values()
            ],
        }


class _UnchangedError(Exception):
    """A write of what the file holds already: nothing to commit."""


def _join(source: GitSource, folder: str) -> str:
    return f"{source.subfolder}/{folder}" if source.subfolder else folder


def _check_name(name: str) -> None:
    try:
        check_name(name, "project name")
    except InvalidNameError as exc:
        raise ControlError("invalid", str(exc)) from None
