"""Opening what a command works on: the desired state, Docker, the store.

Imported when the CLI starts, so everything heavy is imported inside the functions. `Store` and
`DockerProvider` are named here for annotations: the CLI reaches both only through the engine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nebula.kinds.base import Desired
    from nebula.kinds.packages.diff import Snapshot
    from nebula.providers.docker import DockerProvider
    from nebula.store import Store

__all__ = [
    "DockerProvider",
    "Store",
    "load",
    "open_existing_store",
    "open_provider",
    "open_store",
    "remember_noop",
    "replay_noop",
    "store_url",
]


def open_provider(desired: Desired | None, docker_host: str | None) -> DockerProvider:
    """The Docker Engine: the flag, else nebula.yaml's `docker.host`, else DOCKER_HOST."""
    from nebula.providers.docker import DockerProvider, engine_ssh

    if desired is None:
        return DockerProvider(docker_host)
    url = docker_host or desired.repo.config.docker.host
    return DockerProvider(url, ssh=engine_ssh(url, desired.repo.config.nodes))


def store_url(given: str | None) -> str:
    """The state database's URL: `given` (the flag), else NEBULA_DATABASE_URL, else a SQLite
    file in the user's data dir."""
    from nebula.store.db import default_url

    return given or default_url()


def open_store(database_url: str | None) -> Store:
    from nebula.store import Store

    return Store(store_url(database_url))


def open_existing_store(database_url: str | None) -> Store | None:
    """The store at `database_url` if its database exists already, else None: for what only
    looks (shell completion) and must not create a database."""
    from nebula.store import Store
    from nebula.store.db import exists

    url = store_url(database_url)
    return Store(url) if exists(url) else None


def load(repo: Path, database_url: str | None = None, *, vault: bool = True) -> Desired:
    """The desired state; `${secret:NAME}` references are checked against the vault in the
    store at `database_url` (opened only if the repo has any), unless `vault` is False."""
    from nebula.engine.load import load_desired

    def fingerprints() -> dict[str, str]:
        from nebula.secrets import open_vault

        with open_store(database_url) as store:
            return open_vault(store).fingerprints()

    return load_desired(repo, fingerprints if vault else None)


def replay_noop(
    repo: Path, docker_host: str | None, node: str | None = None
) -> dict[str, Any] | None:
    """The plan (of `node`'s share), as `Plan.to_dict()`, when a plan of these very inputs and
    this very state changed nothing before (see `nebula.engine.memo`); None means: plan in
    full."""
    from nebula.engine.memo import NoopMemo, observed_digest
    from nebula.providers.docker import DockerProvider

    memo = NoopMemo.default()
    entry = memo.entry(_memo_key(repo, node))
    if entry is None:
        return None
    url = docker_host or entry.get("docker_host") or os.environ.get("DOCKER_HOST") or ""
    if url.startswith("ssh://"):
        return None  # its host keys and login are in nebula.yaml's nodes, read by a full plan
    provider = DockerProvider(url or None)
    try:
        observed = provider.observe()
    finally:
        provider.close()
    plan: dict[str, Any] = entry["plan"]
    return plan if entry.get("observed") == observed_digest(observed) else None


def remember_noop(repo: Path, snapshot: Snapshot, node: str | None = None) -> None:
    """Remember a plan (of `node`'s share) that changed nothing, for `replay_noop`."""
    if snapshot.plan.has_changes or any(d.secrets for d in snapshot.installations):
        return  # secrets live in the vault, not in the files the memo keys on
    if snapshot.desired.projects:
        return  # a project's branch moves in its own repo, not in the files the memo keys on
    from nebula.engine.memo import NoopMemo

    config = snapshot.desired.repo.config
    NoopMemo.default().remember(
        _memo_key(repo, node),
        snapshot.observed,
        snapshot.plan.to_dict(),
        config.node_named(snapshot.node).docker or config.docker.host,
    )


def _memo_key(repo: Path, node: str | None) -> str:
    from nebula.engine.memo import input_key
    from nebula.paths import builtin_catalog_dir

    key = input_key(repo, [builtin_catalog_dir()])
    return key if node is None else f"{key} node {node}"
