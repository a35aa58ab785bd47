"""The nodes of a homelab in the shared database: each nebulad's heartbeat, who leads, and the
settings each node keeps for itself.

Times are the database's (`now()` on PostgreSQL), so nodes whose clocks disagree still judge
each other's heartbeats alike. The leader is whoever holds `LeaderLock`: a PostgreSQL
session-level advisory lock on a connection of its own, which the server drops with the session
when its holder dies, so another node can take it; a SQLite store has one node, always leading.
The `nodes` row only reports it (`leader_since`), for `nebula nodes`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, create_engine, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from nebula.store.models import NodeRow, utcnow
from nebula.store.store import Store

log = logging.getLogger(__name__)

LEADER_KEY = 0x4E42_4C44  # "NBLD"; the apply locks are "NBAP" and per node (store.applylock)
# The leader's connection gives up on a silent server within seconds (libpq's TCP settings), so
# a leader cut off from the database stops leading about as soon as the others may take over.
_LEADER_CONNECT = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 2,
    "keepalives_interval": 1,
    "keepalives_count": 3,
    "tcp_user_timeout": 5000,
}


def setting_key(key: str, node: str | None) -> str:
    """The daemon setting `key` of `node` (`applied_commit@a`); None: the key itself, as a
    single-node homelab has always kept it."""
    return key if node is None else f"{key}@{node}"


@dataclass(frozen=True)
class NodeInfo:
    """A node's nebulad as its last heartbeat left it."""

    name: str
    address: str
    labels: dict[str, str]
    engine: str
    version: str
    started_at: datetime
    heartbeat_at: datetime
    leader_since: datetime | None


def database_now(session: Session) -> datetime:
    """The database's clock (PostgreSQL), else this host's."""
    if session.get_bind().dialect.name == "postgresql":
        now = session.scalar(text("SELECT now()"))
        assert isinstance(now, datetime)
        return now
    return utcnow()


def heartbeat(
    store: Store,
    name: str,
    *,
    address: str,
    labels: Mapping[str, str],
    engine: str,
    version: str,
    started_at: datetime,
    leading: bool,
) -> None:
    """Record that `name`'s nebulad is alive now, with what it says of itself."""
    with store.transaction() as session:
        now = database_now(session)
        row = session.get(NodeRow, name)
        if row is None:
            row = NodeRow(name=name, leader_since=None)
            session.add(row)
        row.address, row.labels, row.engine, row.version = address, dict(labels), engine, version
        row.started_at, row.heartbeat_at = started_at, now
        if not leading:
            row.leader_since = None
        elif row.leader_since is None:
            row.leader_since = now


def set_leader(store: Store, name: str, leading: bool) -> None:
    """Note that `name` leads from now (and no other node does), or no longer leads."""
    with store.transaction() as session:
        if leading:
            now = database_now(session)
            session.execute(
                update(NodeRow)
                .where(NodeRow.name == name, NodeRow.leader_since.is_(None))
                .values(leader_since=now)
            )
            session.execute(update(NodeRow).where(NodeRow.name != name).values(leader_since=None))
        else:
            session.execute(update(NodeRow).where(NodeRow.name == name).values(leader_since=None))


def nodes(store: Store) -> tuple[list[NodeInfo], datetime]:
    """Every node that ever sent a heartbeat, by name, and the database's time now."""
    with store.transaction() as session:
        rows = session.scalars(select(NodeRow).order_by(NodeRow.name))
        found = [
            NodeInfo(
                name=row.name,
                address=row.address,
                labels=dict(row.labels),
                engine=row.engine,
                version=row.version,
                started_at=row.started_at,
                heartbeat_at=row.heartbeat_at,
                leader_since=row.leader_since,
            )
            for row in rows
        ]
        return found, database_now(session)


class LeaderLock:
    """The cluster's leader lock, as one node tries for it. `held()` says whether this node
    holds it now: it takes it when free, and checks once held that its connection still
    answers (a broken connection means the server may have given the lock to another)."""

    def __init__(self, store: Store, node: str) -> None:
        self._node = node
        self._engine = None
        if store.engine.dialect.name == "postgresql":
            self._engine = create_engine(
                store.engine.url, connect_args=_LEADER_CONNECT, poolclass=NullPool
            )
        self._connection: Connection | None = None
        self._held = False

    def held(self) -> bool:
        if self._engine is None:
            return True  # SQLite: the only node
        try:
            if self._connection is None:
                self._connection = self._connect()
            if self._held:
                self._connection.execute(text("SELECT 1"))
            else:
                taken = self._connection.scalar(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": LEADER_KEY}
                )
                self._held = bool(taken)
        except SQLAlchemyError as exc:
            if self._held:
                log.warning("leader lock: the database connection broke: %s", exc)
            self.release()
        return self._held

    def _connect(self) -> Connection:
        assert self._engine is not None
        connection = self._engine.connect()
        connection.execution_options(isolation_level="AUTOCOMMIT")
        name = f"nebulad leader lock: {self._node}"[:63]
        connection.execute(
            text("SELECT set_config('application_name', :name, false)"), {"name": name}
        )
        return connection

    def release(self) -> None:
        """Let go of the lock (the session ends with it)."""
        self._held = False
        if self._connection is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._connection.close()
            self._connection = None

    def close(self) -> None:
        self.release()
        if self._engine is not None:
            self._engine.dispose()
