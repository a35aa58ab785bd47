"""The parts of nebulad on many nodes that need no Docker Engine: the leader lock on a real
PostgreSQL, the per-node apply locks, heartbeats and `GET /api/v1/nodes`'s listing, and the
commits a node refuses to follow. The three-node homelab itself is tests/test_cluster.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

import servers
from nebula.daemon.cluster import DOWN_AFTER, listing, node_issues
from nebula.errors import ConfigError
from nebula.spec.config import Node
from nebula.store import Store
from nebula.store import cluster as nodes_db


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    with servers.fresh_database(pg_url) as url, Store(url) as store:
        yield store


def _terminate(store: Store, node: str) -> None:
    """What a dead leader's host does to its session: the server ends it."""
    admin = sa.create_engine(store.engine.url, poolclass=NullPool)
    try:
        with admin.begin() as connection:
            ended = connection.scalar(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = :name"
                ),
                {"name": f"nebulad leader lock: {node}"},
            )
        assert ended == 1
    finally:
        admin.dispose()


def test_one_node_leads_and_another_takes_over_when_its_session_ends(pg_store: Store) -> None:
    a, b = nodes_db.LeaderLock(pg_store, "a"), nodes_db.LeaderLock(pg_store, "b")
    try:
        assert a.held()
        assert not b.held()
        assert a.held() and not b.held()  # checked again: still a's, taken once

        _terminate(pg_store, "a")
        assert not a.held()  # its connection broke: it no longer leads
        assert b.held()
        assert not a.held()  # a's new session finds the lock taken

        b.release()
        assert a.held()
    finally:
        a.close()
        b.close()


def test_a_sqlite_store_has_one_node_which_always_leads(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path}/nebula.db") as store:
        lock = nodes_db.LeaderLock(store, "a")
        assert lock.held()
        lock.close()


def test_nodes_apply_at_once_and_one_node_waits_for_itself(pg_store: Store) -> None:
    told: list[str] = []
    with pg_store.apply_lock("nebulad a", told.append, node="a", cluster=True):
        # node b's share goes ahead while a holds its own and the cluster-wide lock
        with pg_store.apply_lock("nebulad b", told.append, node="b", cluster=False):
            assert told == []
        stop = threading.Event()
        waited: list[str] = []
        waiter = threading.Thread(target=_try_lock, args=(pg_store, waited, stop, "a"), daemon=True)
        waiter.start()
        waiter.join(1.0)
        assert waiter.is_alive()  # node a's share is a's: a second apply of it waits
        stop.set()
        waiter.join(5.0)
    assert waited[0].startswith("waiting for nebulad a (pid ")
    assert waited[-1] == "gave up"


def _try_lock(store: Store, told: list[str], stop: threading.Event, node: str) -> None:
    from nebula.store.applylock import WaitStoppedError

    try:
        with store.apply_lock("nebula apply", told.append, stop, node=node, cluster=False):
            told.append("acquired")
    except WaitStoppedError:
        told.append("gave up")


NODES = [
    Node.model_validate({"name": "a", "address": "10.0.0.1", "labels": {"room": "attic"}}),
    Node.model_validate({"name": "b", "address": "10.0.0.2"}),
    Node.model_validate({"name": "c", "address": "10.0.0.3", "gpu": True}),
]


def test_heartbeats_make_the_listing_of_nodes(pg_store: Store) -> None:
    start = {"labels": {}, "engine": "docker", "version": "1.2.3"}
    nodes_db.heartbeat(pg_store, "a", address="10.0.0.1", leading=True, started_at=_now(), **start)
    nodes_db.heartbeat(pg_store, "b", address="10.0.0.2", leading=False, started_at=_now(), **start)
    found, now = nodes_db.nodes(pg_store)
    placed = {"a": ["web", "db"], "b": ["media"]}
    statuses = {"a": {"web": "running", "db": "error"}, "b": {"media": "running"}}

    listed = listing(NODES, placed, statuses, found, now)
    assert [(n["name"], n["state"], n["leader"]) for n in listed] == [
        ("a", "up", True),
        ("b", "up", False),
        ("c", "unknown", False),  # never sent a heartbeat
    ]
    assert listed[0]["labels"] == {"room": "attic"}
    assert listed[0]["version"] == "1.2.3"
    assert (listed[0]["installations"], listed[0]["health"]) == (2, {"running": 1, "failing": 1})
    assert listed[2]["heartbeat_at"] is None

    later = now + timedelta(seconds=DOWN_AFTER + 1)
    listed = listing(NODES, placed, statuses, found, later)
    assert [(n["state"], n["leader"]) for n in listed[:2]] == [("down", False), ("down", False)]


def _now() -> datetime:
    return datetime.now(UTC)


def test_a_node_missing_from_nebula_yaml_is_refused_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "nebula.yaml").write_text(
        "defaults: {}\nnodes:\n  - {name: a, address: 10.0.0.1}\n"
    )
    with pytest.raises(ConfigError) as caught:
        node_issues(NODES[:1], "z", sqlite=False, root=str(tmp_path))
    message = str(caught.value)
    assert message.startswith("nebula.yaml:2:")
    assert "'z'" in message and "its nodes: a" in message


def test_several_nodes_with_daemons_need_postgresql(tmp_path: Path) -> None:
    (tmp_path / "nebula.yaml").write_text("nodes:\n  - {name: a, address: 10.0.0.1}\n")
    node_issues(NODES, "a", sqlite=False, root=str(tmp_path))  # PostgreSQL: fine
    node_issues(NODES[:1], "a", sqlite=True, root=str(tmp_path))  # one node: SQLite will do
    with pytest.raises(ConfigError) as caught:
        node_issues(NODES, "a", sqlite=True, root=str(tmp_path))
    assert "nebula.yaml:1:" in str(caught.value)
    assert "postgresql+psycopg://" in str(caught.value)
    assert "database_url" in str(caught.value)


def test_a_nodes_settings_are_its_own() -> None:
    assert nodes_db.setting_key("applied_commit", None) == "applied_commit"
    assert nodes_db.setting_key("applied_commit", "b") == "applied_commit@b"


def test_scheduled_workflows_fire_on_the_leader_only_and_follow_it(
    pg_store: Store, tmp_path: Path
) -> None:
    """Two nodes load one schedule from the shared database: the one not leading never starts
    it; when leadership moves, the new leader finds the run the old one had not made yet, and
    makes it once."""
    from nebula.engine.load import load_desired
    from nebula.providers.docker import DockerProvider
    from nebula.remediation.service import Remediation
    from test_workflows_run import NIGHTLY, miss_runs, repo, runs, wait_for

    root = repo(tmp_path / "repo", {"tick": NIGHTLY.format(catch_up="once")})
    nodes = []
    for _ in range(2):
        node = Remediation(
            pg_store, DockerProvider("unix:///nonexistent.sock"), lambda *a, **k: None
        )
        node.workflows.lead(False)  # as nebulad starts with --node: until elected
        node.configure(load_desired(root), lambda name: "")
        nodes.append(node)
    a, b = nodes
    try:
        assert a.workflows.next_runs() == b.workflows.next_runs() == {}
        a.workflows.lead(True)
        assert set(a.workflows.next_runs()) == {"tick"}
        assert b.workflows.next_runs() == {}  # b runs no scheduler

        a.workflows.lead(False)  # a lost the lock; the run due meanwhile waits for b
        miss_runs(pg_store, 5)
        b.workflows.lead(True)
        wait_for(lambda: runs(pg_store, "tick") == ["succeeded"])
        time.sleep(1.0)
        assert runs(pg_store, "tick") == ["succeeded"]  # once, by b
    finally:
        a.close()
        b.close()
