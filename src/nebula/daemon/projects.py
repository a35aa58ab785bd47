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
"""

from __future__ import annotations

import base64
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nebula.daemon.catalog_api import Marketplace
from nebula.daemon.control import ControlError
from nebula.daemon.gitsync import GitSource
from nebula.engine import configrepo
from nebula.engine.configrepo import Author
from nebula.engine.project_files import ProjectFileError, ProjectFiles, clean_path
from nebula.errors import SyncError
from nebula.kinds.base import Desired
from nebula.kinds.projects.types import DesiredProject
from nebula.spec.names import InvalidNameError, check_name

FOLDER = "projects"  # where the config repo declares them


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
    ) -> None:
        self.marketplace = marketplace
        self.source = source
        self.folder = folder  # the config folder followed (watch mode)
        self.data_dir = data_dir / "projects"
        self.desired = desired
        self._clones: dict[str, GitSource] = {}
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
        with self._lock:
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
        with self._lock:
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

        with self._lock:
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

    def _where(self, name: str, environment: str | None) -> _Where:
        desired, project = self._find(name)
        if project.git_url is None:
            assert project.folder is not None  # a project's code is in one place or the other
            folder = project.folder.relative_to(desired.repo.root).as_posix()
            if self.source is None:
                return _Where(None, "", folder, True)
            return _Where(self.source.url, self.source.branch, _join(self.source, folder), True)
        if environment is None:
            environment = next(iter(project.environments))
        if environment not in project.environments:
            raise ControlError(
                "not_found",
                f"project {name!r} has no environment {environment!r} "
                f"(environments: {', '.join(project.environments)})",
            )
        return _Where(project.git_url, project.environments[environment].branch, "", False)

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

    def _clone(self, name: str, where: _Where) -> GitSource:
        """nebulad's clone for the project's files: one of the config repo for every `path:`
        project, one per `git_url:` project (made again when its URL or branch changed)."""
        assert where.url is not None
        key = "" if where.in_config else name
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
        folder = project.folder.relative_to(desired.repo.root) if project.folder else None
        return {
            "name": project.name,
            "file": project.file,
            "git_url": project.git_url,
            "path": folder.as_posix() if folder else None,
            "dockerfile": project.dockerfile,
            "environments": [
                {
                    "name": env.name,
                    "branch": env.branch,
                    "host": env.host,
                    "port": env.port,
                    "node": env.node,
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
