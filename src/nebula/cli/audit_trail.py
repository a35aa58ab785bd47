"""The CLI's entries in the audit log: `cli:USER@HOST` did ACTION on TARGET.

Commands that change something record it here once it is done, on the store they changed.
USER is the login name (under sudo, the user who ran sudo: the person, not root).
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from nebula.engine.catalog_edits import RepoEdit
    from nebula.engine.session import Store
    from nebula.kinds.packages.apply import ApplyResult

_LISTED_CHANGES = 500  # an apply's entry lists at most this many changes


def actor() -> str:
    user = os.environ.get("SUDO_USER") if os.geteuid() == 0 else None
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no name for this uid (a bare container)
            user = f"uid{os.geteuid()}"
    return f"cli:{user}@{socket.gethostname()}"


def record(
    store: Store,
    action: str,
    target: str | None = None,
    detail: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
) -> None:
    """Append to the audit log (the detail is masked there; `secrets`: value -> fingerprint)."""
    from nebula.engine.queries import append_audit

    append_audit(store, actor=actor(), action=action, target=target, detail=detail, secrets=secrets)


def record_apply(store: Store, repo: Path, result: ApplyResult) -> None:
    """`apply`: one entry per installation changed (`installation.apply`, or
    `installation.remove` for one removed), with its changes and any error."""
    where = str(repo.resolve())
    for item in result.installations:
        record(
            store,
            "installation.remove" if item.removed else "installation.apply",
            item.name,
            {
                "repo": where,
                "ok": item.ok,
                "error": item.error,
                "changes": [c.to_dict() for c in item.changes[:_LISTED_CHANGES]],
            },
        )


def record_commit(database_url: str | None, repo: Path, sha: str, edit: RepoEdit) -> None:
    """A commit to the config repo made by a command (`nebula install` and the like), with the
    grants its files give (installation -> grants), if any."""
    from nebula.engine.session import open_store

    detail: dict[str, Any] = {"commit": sha, "message": edit.message, "files": edit.paths()}
    if edit.granted:
        detail["granted"] = {name: list(grants) for name, grants in edit.granted.items()}
    with open_store(database_url) as store:
        record(store, "repo.commit", str(repo.resolve())[-500:], detail)
