"""Committing an edit to the config repo, and pushing it when the repo has a remote.

Commands that change the homelab (`nebula install`, `upgrade`, `uninstall`) do it the GitOps
way: they write files, commit them with a message saying what and why, and push, so the
daemon (which follows the repo) applies them and the history holds every change.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from nebula.engine.catalog_edits import RepoEdit
from nebula.errors import NebulaError

# Used only when git knows no identity (a fresh machine); the user's own config wins.
_FALLBACK_IDENTITY = ("-c", "user.name=Nebula", "-c", "user.email=nebula@localhost")


class ConfigRepoError(NebulaError):
    """git refused: not a repo, a dirty file in the way, a rejected push."""


@dataclass(frozen=True)
class Author:
    """Who a commit made for an API caller names as its author."""

    name: str
    email: str

    @classmethod
    def of(cls, actor: str) -> Author:
        """The author for `actor` as the audit log names it (`user:alice`, `key:ci`,
        `uid:1000 (ada)`): a user by their name, anyone else by the whole actor; the email is
        derived from the actor under `nebula.invalid` (a domain that never receives mail),
        since Nebula's accounts have none."""
        kind, _, rest = actor.partition(":")
        name = rest if kind == "user" and rest else actor
        local = re.sub(r"[^A-Za-z0-9._+-]+", "-", actor).strip("-.") or "unknown"
        return cls(re.sub(r"[<>\n\r]", "", name).strip() or "unknown", f"{local}@nebula.invalid")

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


def is_git_repo(root: Path) -> bool:
    return _git(root, "rev-parse", "--is-inside-work-tree", check=False).strip() == "true"


def commit(root: Path, edit: RepoEdit, author: Author | None = None) -> str:
    """Write `edit` into the work tree at `root` and commit exactly those paths; the new sha.

    Refused, with nothing written, when one of the paths has uncommitted changes of the
    user's, since committing them under Nebula's message would hide them. `author`: whom the
    commit names as its author (default: git's configured identity)."""
    check_clean(root, edit.paths())
    edit.apply_to(root)
    return commit_paths(root, edit.paths(), edit.message, author)


def check_clean(root: Path, paths: list[str]) -> None:
    """`ConfigRepoError` when one of `paths` has uncommitted changes."""
    dirty = _git(root, "status", "--porcelain", "--", *paths, check=True)
    if dirty.strip():
        files = ", ".join(line[3:] for line in dirty.splitlines())
        raise ConfigRepoError(
            f"{files}: uncommitted changes in the way; commit or discard them first"
        )


def commit_paths(root: Path, paths: list[str], message: str, author: Author | None = None) -> str:
    """Commit exactly `paths` as they are in the work tree at `root`; the new sha."""
    _git(root, "add", "--all", "--", *paths, check=True)
    identity = () if _has_identity(root) else _FALLBACK_IDENTITY
    as_author = (f"--author={author}",) if author else ()
    _git(root, *identity, "commit", "--quiet", *as_author, "-m", message, "--", *paths, check=True)
    return _git(root, "rev-parse", "HEAD", check=True).strip()


def push(root: Path) -> str | None:
    """Push the current branch to its upstream (or `origin`); the remote's name, or None when
    the repo has no remote to push to."""
    remotes = _git(root, "remote", check=True).split()
    if not remotes:
        return None
    upstream = _git(root, "rev-parse", "--abbrev-ref", "@{upstream}", check=False).strip()
    if upstream and "/" in upstream:
        remote = upstream.split("/", 1)[0]
        _git(root, "push", "--quiet", check=True)
        return remote
    remote = "origin" if "origin" in remotes else remotes[0]
    _git(root, "push", "--quiet", remote, "HEAD", check=True)
    return remote


def _has_identity(root: Path) -> bool:
    return bool(_git(root, "config", "user.email", check=False).strip())


def _git(root: Path, *args: str, check: bool) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigRepoError(f"git {args[0]}: {exc}") from None
    if check and done.returncode != 0:
        verb = next(a for a in args if not a.startswith("-") and "=" not in a)
        raise ConfigRepoError(f"git {verb} in {root} failed: {done.stderr.strip()}")
    return done.stdout
