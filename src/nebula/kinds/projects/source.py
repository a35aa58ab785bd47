"""A project's code: the head of a branch of its git remote (mirrored bare and fetched before
each look), or a folder of the config repo; and the build context of one commit, as a tar.

A folder's "commit" is the digest of its files (paths, modes, contents): the same files, the
same image tag, whatever config-repo commit they came with.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import signal
import subprocess
import tarfile
import threading
from pathlib import Path

from nebula.errors import ProviderError
from nebula.kinds.projects.detect import NoDockerfileError, detected_dockerfile
from nebula.kinds.projects.types import DesiredProject
from nebula.paths import project_sources_dir

GIT_TIMEOUT = 120.0
GENERATED_DOCKERFILE = ".nebula.Dockerfile"  # added to a context whose code has none
_SHA = re.compile(r"[0-9a-f]{4,64}")
_fetching: dict[str, threading.Lock] = {}
_guard = threading.Lock()


class ProjectSource:
    """Where `project`'s code comes from; `cache` holds the bare mirrors of git remotes."""

    def __init__(self, project: DesiredProject, cache: Path | None = None) -> None:
        self.project = project
        self.mirror = (cache or project_sources_dir()) / f"{project.name}.git"

    @property
    def resource(self) -> str:
        return f"project {self.project.name}"

    def head(self, branch: str, *, fetch: bool = True) -> str:
        """The commit `branch` points to now (fetched first, unless just fetched), or a
        folder's digest."""
        if self.project.folder is not None:
            return _folder_digest(self.project.folder)
        if fetch:
            self.fetch()
        code, out, _ = self._git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")
        if code != 0:
            raise ProviderError(
                self.resource,
                f"no branch {branch!r} in {self.project.git_url}; push it or change `branch:`",
                temporary=False,
            )
        return out.decode().strip()

    def resolve(self, commit: str) -> str:
        """A commit (or its prefix) as its full id; `ProviderError` when there is none."""
        if self.project.folder is not None:
            digest = _folder_digest(self.project.folder)
            if not digest.startswith(commit):
                raise ProviderError(
                    self.resource,
                    f"its folder's files are at {digest[:12]}, not {commit[:12]}: a project "
                    "in the config repo deploys what the config repo holds",
                    temporary=False,
                )
            return digest
        if not _SHA.fullmatch(commit):
            raise ProviderError(self.resource, f"{commit!r} is not a commit id", temporary=False)
        self.fetch()
        code, out, _ = self._git("rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}")
        if code != 0:
            raise ProviderError(
                self.resource,
                f"no commit {commit} in {self.project.git_url} (fetched just now)",
                temporary=False,
            )
        return out.decode().strip()

    def context(self, commit: str) -> tuple[bytes, str, str | None]:
        """The build context of `commit` as a tar: (tar, the Dockerfile's path in it, the
        generated Dockerfile's text when the code has none)."""
        files = self._files(commit)
        wanted = self.project.dockerfile
        if wanted is not None and wanted not in files:
            raise ProviderError(
                self.resource,
                f"no {wanted} in the code at {commit[:12]}; fix `dockerfile:` or add it",
                temporary=False,
            )
        dockerfile = wanted or ("Dockerfile" if "Dockerfile" in files else None)
        generated = None
        if dockerfile is None:
            try:
                generated = detected_dockerfile(files, self.project.port)
            except NoDockerfileError as exc:
                raise ProviderError(self.resource, str(exc), temporary=False) from None
            dockerfile = GENERATED_DOCKERFILE
        tar = self._tar(commit)
        if generated is not None:
            tar = _with_file(tar, GENERATED_DOCKERFILE, generated.encode())
        return tar, dockerfile, generated

    # -- git -------------------------------------------------------------------------------

    def fetch(self) -> None:
        """Bring the bare mirror up to the remote's branches (cloning it on first use)."""
        with _lock(str(self.mirror)):
            url = str(self.project.git_url)
            if not (self.mirror / "HEAD").exists():
                self.mirror.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                code, _, err = _run(
                    ["git", "clone", "--quiet", "--bare", "--", url, str(self.mirror)], None
                )
            else:
                code, _, err = self._git(
                    "fetch",
                    "--quiet",
                    "--prune",
                    "--no-tags",
                    "--",
                    url,
                    "+refs/heads/*:refs/heads/*",
                )
            if code != 0:
                reason = " ".join(err.decode(errors="replace").split())
                raise ProviderError(self.resource, f"cannot fetch {url}: {reason}")

    def _git(self, *args: str) -> tuple[int, bytes, bytes]:
        return _run(["git", "--git-dir", str(self.mirror), *args], None)

    def _files(self, commit: str) -> set[str]:
        if self.project.folder is not None:
            root = self.project.folder
            return {
                (Path(d) / f).relative_to(root).as_posix()
                for d, _, names in os.walk(root)
                for f in names
            }
        code, out, err = self._git("ls-tree", "-r", "-z", "--name-only", commit)
        if code != 0:
            raise ProviderError(self.resource, f"cannot list {commit[:12]}: {err.decode()}")
        return {name for name in out.decode(errors="replace").split("\0") if name}

    def _tar(self, commit: str) -> bytes:
        if self.project.folder is not None:
            return _folder_tar(self.project.folder)
        code, out, err = self._git("archive", "--format=tar", commit)
        if code != 0:
            raise ProviderError(self.resource, f"cannot archive {commit[:12]}: {err.decode()}")
        return out


def _lock(key: str) -> threading.Lock:
    with _guard:
        return _fetching.setdefault(key, threading.Lock())


def _run(command: list[str], cwd: Path | None) -> tuple[int, bytes, bytes]:
    """Run git: (exit code, stdout, stderr); a run past `GIT_TIMEOUT` is killed with its
    children."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    try:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise ProviderError("git", "git is not installed (Debian: apt install git)") from None
    try:
        out, err = proc.communicate(timeout=GIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise ProviderError(
            "git", f"{' '.join(command[:4])} timed out after {GIT_TIMEOUT:g}s"
        ) from None
    return proc.returncode, out, err


def _walk(root: Path) -> list[Path]:
    """The regular files under `root`, by path; symlinks are not followed out of it."""
    found = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                found.append(path)
    return found


def _folder_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in _walk(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(b"x" if os.access(path, os.X_OK) else b"-")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:40]


def _folder_tar(root: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.addfile(_entry(".", None))  # a plain first entry: see `_with_file`
        for path in _walk(root):
            data = path.read_bytes()
            info = _entry(path.relative_to(root).as_posix(), data)
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _with_file(tar: bytes, name: str, data: bytes) -> bytes:
    """`tar` with one more file, written first: the engine tells a tar context from a bare
    Dockerfile by reading the first header from the body's first bytes, so the archive must
    not begin with an extended (pax) header, as a copy of git's would."""
    buffer = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(tar)) as source,
        tarfile.open(fileobj=buffer, mode="w") as target,
    ):
        target.addfile(_entry(name, data), io.BytesIO(data))
        for member in source:
            target.addfile(member, source.extractfile(member) if member.isfile() else None)
    return buffer.getvalue()


def _entry(name: str, data: bytes | None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    if data is None:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = len(data)
        info.mode = 0o644
    return info
