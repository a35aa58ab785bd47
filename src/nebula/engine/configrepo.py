"""Committing an edit to the config repo, and pushing it when the repo has a remote.

Commands that change the homelab (`nebula install`, `upgrade`, `uninstall`) do it the GitOps
way: they write files, commit them with a message saying what and why, and push, so the
daemon (which follows the repo) applies them and the history holds every change.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from nebula.engine.catalog_edits import RepoEdit
from nebula.errors import NebulaError

# Used only when git knows no identity (a fresh machine); the user's own config wins.
_FALLBACK_IDENTITY = ("-c", "user.name=Nebula", "-c", "user.email=nebula@localhost")


class ConfigRepoError(NebulaError):
    """git refused: not a repo, a dirty file in the way, a rejected push."""


def is_git_repo(root: Path) -> bool:
    return _git(root, "rev-parse", "--is-inside-work-tree", check=False).strip() == "true"


def commit(root: Path, edit: RepoEdit) -> str:
    """Write `edit` into the work tree at `root` and commit exactly those paths; the new sha.

    Refused, with nothing written, when one of the paths has uncommitted changes of the
    user's, since committing them under Nebula's message would hide them."""
    dirty = _git(root, "status", "--porcelain", "--", *edit.paths(), check=True)
    if dirty.strip():
        files = ", ".join(line[3:] for line in dirty.splitlines())
        raise ConfigRepoError(
            f"{files}: uncommitted changes in the way; commit or discard them first"
        )
    edit.apply_to(root)
    _git(root, "add", "--all", "--", *edit.paths(), check=True)
    identity = () if _has_identity(root) else _FALLBACK_IDENTITY
    _git(root, *identity, "commit", "--quiet", "-m", edit.message, "--", *edit.paths(), check=True)
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
