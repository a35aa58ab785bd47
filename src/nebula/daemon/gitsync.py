"""The daemon's own clone of the config repo, driven through the `git` command line.

`GitSource` follows one branch of one repo (a URL, or a local bare or working repo) and hands
the daemon a folder to load at any commit it asks for:

    source = GitSource("https://git.example/me/homelab.git", data_dir / "git", subfolder="home")
    tip = source.fetch()                 # clone on first use, else fetch; the tree does not move
    if tip.sha != last_applied:
        folder = source.checkout(tip.sha)          # workdir/clone/home at exactly that commit
        changed = source.changed_files(last_applied, tip.sha)

Choices, and why:
- The git CLI is the reference implementation: every transport, credential helper and ssh
  config the person already uses works. Each call has a timeout and runs in a new session
  with no terminal (with `GIT_TERMINAL_PROMPT=0`, neither git nor ssh can prompt and hang);
  on timeout the whole process group is killed.
- The first fetch is shallow (depth 1); later fetches bring only the new commits. A commit
  that is not in the clone (a rollback to before the daemon started) is fetched on demand by
  its sha, or by deepening the clone when the server refuses a fetch by sha.
- An unchanged remote costs exactly one `git fetch`: the tip is read from `FETCH_HEAD` (git's
  documented record of what a fetch brought) and its commit details are cached by sha.
- The working tree is the daemon's alone, so `checkout` forces it to the commit and removes
  anything else. Lock files left by a process killed mid-operation are removed on first use;
  this assumes one `GitSource` per workdir, which the daemon's data-dir lock guarantees.
- Credentials in URLs (`https://user:token@host`) are masked in every message and repr.
Calls are serialized by a lock, so the webhook and the sync loop may share one instance.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from nebula.errors import SyncError

DEFAULT_TIMEOUT = 60.0
_SHA = re.compile(r"[0-9a-f]{4,64}")
_FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")
_SSH_SCHEMES = ("ssh://", "git+ssh://", "ssh+git://")
# Variables git sets for hooks and scripts; inherited, they would point us at another repo.
_REPO_ENV = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_PREFIX",
    "GIT_QUARANTINE_PATH",
    "GIT_NAMESPACE",
    "GIT_SHALLOW_FILE",
    "GIT_IMPLICIT_WORK_TREE",
)
_LOG_FORMAT = "%H%x00%an%x00%ae%x00%cI%x00%B"


@dataclass(frozen=True)
class Commit:
    """One commit of the config repo: what a sync records. `time` is the committer date."""

    sha: str
    author: str
    email: str
    message: str
    time: datetime

    @property
    def short(self) -> str:
        return self.sha[:12]


def mask_url_secrets(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` with every URL's credentials, and each of `secrets`, replaced by `***`.

    A plain ssh user (`ssh://git@host`) is kept: it names an account, not a secret.
    """
    for secret in secrets:
        text = text.replace(secret, "***")

    def hide(match: re.Match[str]) -> str:
        scheme, userinfo = match["scheme"], match["userinfo"]
        if scheme.lower() in _SSH_SCHEMES and ":" not in userinfo:
            return match[0]
        return f"{scheme}***@"

    return _URL_USERINFO.sub(hide, text)


def _url_secrets(url: str) -> tuple[str, ...]:
    """The credential strings inside `url`, raw and percent-decoded, longest first.

    The password always counts; a user name only when long enough to be a token (GitHub's
    `TOKEN:x-oauth-basic`), so that a short name does not blot out words in git's messages.
    """
    match = _URL_USERINFO.match(url)
    if not match or (match["scheme"].lower() in _SSH_SCHEMES and ":" not in match["userinfo"]):
        return ()
    user, _, password = match["userinfo"].partition(":")
    parts = {password, *([user] if len(user) >= 8 else [])}
    found = {text for part in parts for text in (part, unquote(part)) if text}
    return tuple(sorted(found, key=len, reverse=True))


def _is_local_path(url: str) -> bool:
    """True for a filesystem path; git reads `host:path` (a colon before any slash) as ssh."""
    if "://" in url:
        return False
    colon, slash = url.find(":"), url.find("/")
    return colon == -1 or (slash != -1 and slash < colon)


def _nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def _clean_subfolder(subfolder: str) -> str:
    path = PurePosixPath(subfolder.strip().strip("/") or ".")
    if path.is_absolute() or ".." in path.parts:
        raise SyncError(f"subfolder {subfolder!r} must be a relative path inside the repo")
    return "" if str(path) == "." else str(path)


class GitSource:
    """One branch of a config repo, cloned under `workdir/clone`; see the module docstring."""

    def __init__(
        self,
        url: str,
        workdir: Path,
        *,
        branch: str = "main",
        subfolder: str = "",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if not url or url.startswith("-"):
            raise SyncError(f"not a git URL or path: {url!r}")
        if not branch or branch.startswith("-") or any(c in branch for c in " ~^:?*[\\"):
            raise SyncError(f"not a branch name: {branch!r}")
        self.url = str(Path(url).expanduser().absolute()) if _is_local_path(url) else url
        self.branch = branch
        self.subfolder = _clean_subfolder(subfolder)
        self.clone_dir = Path(workdir) / "clone"
        self.timeout = timeout
        self._secrets = _url_secrets(self.url)
        self._lock = threading.RLock()
        self._ready = False
        self._tip: Commit | None = None

    @property
    def display_url(self) -> str:
        """The URL with its credentials masked: safe for logs, errors and the API."""
        return mask_url_secrets(self.url, self._secrets)

    def __repr__(self) -> str:
        where = f"branch={self.branch!r}, subfolder={self.subfolder!r}"
        return f"GitSource({self.display_url!r}, {where})"

    # -- the API the daemon uses -----------------------------------------------------------

    def fetch(self) -> Commit:
        """Bring the clone up to the remote branch (cloning on first use); return its tip.

        The working tree does not move: `checkout` does that once the daemon decides to.
        """
        with self._lock:
            self._prepare()
            first = self._tip is None and not _nonempty(self._git_dir / "FETCH_HEAD")
            args = ["fetch", "--quiet", "--no-tags", *(["--depth=1"] if first else [])]
            code, _, err = self._run(*args, "origin", self._refspec)
            if code != 0:
                if "couldn't find remote ref" in err:
                    raise SyncError(f"branch {self.branch!r} not found in {self.display_url}")
                raise self._error(f"cannot fetch {self.branch!r} from {self.display_url}", err)
            sha = self._fetched_sha()
            if self._tip is None or self._tip.sha != sha:
                self._tip = self._commit(sha)
            return self._tip

    def checkout(self, sha: str) -> Path:
        """Move the working tree to `sha` (detached, exactly), return the config folder in it.

        A commit not yet in the clone is fetched first; a subfolder missing at that commit is a
        `SyncError`, as is one that leads outside the clone through a symlink.
        """
        with self._lock:
            self._prepare()
            if self._tip is None or sha != self._tip.sha:  # the tip was fetched: it is here
                sha = self._resolve(sha)
            code, _, err = self._run("checkout", "--quiet", "--force", "--detach", sha, "--")
            if code != 0:
                raise self._error(f"cannot check out {sha[:12]}", err)
            code, _, err = self._run("clean", "-ffdxq")
            if code != 0:
                raise self._error(f"cannot clean the clone at {sha[:12]}", err)
            folder = self.clone_dir / self.subfolder if self.subfolder else self.clone_dir
            where = f"at commit {sha[:12]} of {self.display_url} ({self.branch})"
            if not folder.is_dir():
                raise SyncError(f"subfolder {self.subfolder!r} does not exist {where}")
            if not folder.resolve().is_relative_to(self.clone_dir.resolve()):
                raise SyncError(f"subfolder {self.subfolder!r} leads outside the repo {where}")
            return folder

    def commit_info(self, sha: str) -> Commit:
        """Details of `sha` (full, or a unique prefix of one already fetched), e.g. for rollback."""
        with self._lock:
            self._prepare()
            return self._commit(self._resolve(sha))

    def changed_files(self, old: str, new: str) -> list[str]:
        """Paths under the subfolder, relative to it, that differ between two commits.

        A rename lists both the old and the new path, so both installations are seen.
        """
        with self._lock:
            self._prepare()
            old, new = self._resolve(old), self._resolve(new)
            relative = [f"--relative={self.subfolder}/"] if self.subfolder else []
            args = ["diff-tree", "-r", "-z", "--name-only", "--no-renames", *relative, old, new]
            code, out, err = self._run(*args)
            if code != 0:
                raise self._error(f"cannot compare {old[:12]} with {new[:12]}", err)
            return [path for path in out.split("\0") if path]

    def checked_out(self) -> str | None:
        """The sha the working tree is at, or None before the first checkout."""
        with self._lock:
            if not (self._git_dir / "HEAD").is_file():
                return None
            code, out, _ = self._run("rev-parse", "--quiet", "--verify", "HEAD^{commit}")
            return out.strip() if code == 0 else None

    def publish(self, edit: Callable[[Path], str], author: str, email: str) -> str:
        """Commit a change on top of the branch's tip and push it to the source, as `author`
        <`email`>; the new sha.

        `edit` gets the config folder of a scratch work tree at the tip, changes files in it
        and returns the commit message. The daemon's own working tree is never touched: the
        next sync fetches and applies the pushed commit like any other. A push that loses a
        race with someone else's is a `SyncError`; nothing is left behind either way.
        """
        with self._lock:
            tip = self.fetch()
            scratch = self.clone_dir.parent / "publish"
            self._run("worktree", "remove", "--force", str(scratch))
            shutil.rmtree(scratch, ignore_errors=True)
            code, _, err = self._run(
                "worktree", "add", "--quiet", "--detach", str(scratch), tip.sha
            )
            if code != 0:
                raise self._error("cannot prepare a commit", err)
            try:
                folder = scratch / self.subfolder if self.subfolder else scratch
                message = edit(folder)
                identity = ["-c", f"user.name={author}", "-c", f"user.email={email}"]
                signature = f"{author} <{email}>"
                for verb, args in (
                    ("add", ["add", "--all", "."]),
                    (
                        "commit",
                        [*identity, "commit", "--quiet", f"--author={signature}", "-m", message],
                    ),
                    ("push", ["push", "--quiet", "origin", f"HEAD:refs/heads/{self.branch}"]),
                ):
                    code, _, err = self._run("-C", str(scratch), *args)
                    if code != 0:
                        raise self._error(f"cannot {verb} the change ({message})", err)
                _, sha, _ = self._run("-C", str(scratch), "rev-parse", "HEAD")
                return sha.strip()
            finally:
                self._run("worktree", "remove", "--force", str(scratch))

    # -- internals -------------------------------------------------------------------------

    @property
    def _git_dir(self) -> Path:
        return self.clone_dir / ".git"

    @property
    def _refspec(self) -> str:
        return f"+refs/heads/{self.branch}:refs/remotes/origin/{self.branch}"

    def _prepare(self) -> None:
        """Create the clone if it is missing; once per process, drop stale locks, set the URL."""
        if not (self._git_dir / "HEAD").is_file():
            self.clone_dir.mkdir(parents=True, exist_ok=True)
            code, _, err = self._run("init", "--quiet", "--initial-branch=main")
            if code != 0:
                raise self._error(f"cannot create a clone in {self.clone_dir}", err)
            self._ready, self._tip = False, None
        if self._ready:
            return
        for lock in [*self._git_dir.glob("*.lock"), *self._git_dir.glob("refs/**/*.lock")]:
            lock.unlink(missing_ok=True)
        code, _, err = self._run("config", "remote.origin.url", self.url)
        if code != 0:
            raise self._error(f"cannot configure the clone in {self.clone_dir}", err)
        self._ready = True

    def _fetched_sha(self) -> str:
        try:
            line = (self._git_dir / "FETCH_HEAD").read_text(encoding="utf-8").split("\n", 1)[0]
        except OSError:
            line = ""
        sha = line.split("\t", 1)[0]
        if _FULL_SHA.fullmatch(sha):
            return sha
        return self._resolve(f"refs/remotes/origin/{self.branch}")

    def _resolve(self, rev: str) -> str:
        """The full sha of `rev`, fetching a commit the clone lacks when given its full sha."""
        if _SHA.fullmatch(rev.strip().lower()):
            rev = rev.strip().lower()
        elif not rev.startswith("refs/"):
            raise SyncError(f"not a commit sha: {rev!r}")
        code, out, _ = self._run("rev-parse", "--quiet", "--verify", f"{rev}^{{commit}}")
        if code == 0:
            return out.strip()
        if not _FULL_SHA.fullmatch(rev):
            raise SyncError(
                f"unknown commit {rev!r} in the clone of {self.display_url}; give the full sha"
            )
        self._fetch_commit(rev)
        return rev

    def _fetch_commit(self, sha: str) -> None:
        """Fetch one commit by sha; if the server refuses, deepen the clone to the full branch."""
        code, _, err = self._run("fetch", "--quiet", "--no-tags", "--depth=1", "origin", sha)
        if code != 0 and (self._git_dir / "shallow").exists():
            args = ["fetch", "--quiet", "--no-tags", "--unshallow", "origin", self._refspec]
            code, _, err = self._run(*args)
        present, _, _ = self._run("cat-file", "-e", f"{sha}^{{commit}}")
        if present != 0:
            raise self._error(f"commit {sha[:12]} not found in {self.display_url}", err)

    def _commit(self, sha: str) -> Commit:
        code, out, err = self._run(
            "show", "--no-patch", "--no-show-signature", f"--format={_LOG_FORMAT}", sha, "--"
        )
        if code != 0:
            raise self._error(f"cannot read commit {sha[:12]}", err)
        full, author, email, when, message = out.split("\0", 4)
        title = message.strip().split("\n", 1)[0] if message.strip() else ""
        return Commit(full, author, email, title, datetime.fromisoformat(when))

    def _error(self, what: str, stderr: str) -> SyncError:
        reason = " ".join(line.strip() for line in stderr.strip().splitlines() if line.strip())
        return SyncError(mask_url_secrets(f"{what}: {reason}" if reason else what, self._secrets))

    def _run(self, *args: str) -> tuple[int, str, str]:
        """Run git in the clone: (exit code, stdout, stderr). Timeouts kill the whole group."""
        env = {k: v for k, v in os.environ.items() if k not in _REPO_ENV}
        env.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C")
        try:
            proc = subprocess.Popen(
                ["git", *args],
                cwd=self.clone_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                start_new_session=True,
            )
        except FileNotFoundError:
            if not self.clone_dir.is_dir():
                raise SyncError(f"the clone folder {self.clone_dir} is gone") from None
            raise SyncError("git is not installed (Debian: apt install git)") from None
        try:
            out, err = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise SyncError(
                mask_url_secrets(
                    f"git {args[0]} on {self.display_url} timed out after {self.timeout:g} s",
                    self._secrets,
                )
            ) from None
        return proc.returncode, out, err
