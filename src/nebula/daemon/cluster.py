"""nebulad as one node of several: which node it is, its heartbeat, and whether it leads.

Every nebulad of a homelab follows the same repo and shares one PostgreSQL database. Each
writes a heartbeat every `HEARTBEAT` seconds; a node silent for `DOWN_AFTER` seconds is down.
One of them leads: whoever holds the leader lock (`store.cluster.LeaderLock`), checked every
`LEADER_CHECK` seconds, so when the leader dies (its database session ends with it) another
takes over within seconds. The leader alone runs the cluster-wide work (nebulad's core asks
`leading`) and raises a `node_down` alert for each node gone quiet, resolved when it is back.
With a SQLite store there is one node, always the leader.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from nebula import __version__
from nebula.daemon.faults import Faults
from nebula.errors import ConfigError
from nebula.remediation.alerts import Alert
from nebula.remediation.sources import from_node
from nebula.spec.config import Node
from nebula.spec.repo import CONFIG_FILE, read_document
from nebula.store import Store
from nebula.store import cluster as nodes_db

log = logging.getLogger("nebulad")

HEARTBEAT = 2.0  # seconds between heartbeats
DOWN_AFTER = 15.0  # seconds without a heartbeat before a node is down
LEADER_CHECK = 1.0  # seconds between looks at the leader lock


def node_issues(nodes: Sequence[Node], node: str | None, sqlite: bool, root: str) -> None:
    """Refuse a commit this nebulad cannot follow: its `--node` is not in nebula.yaml's nodes,
    or several nodes run a nebulad of their own while the store is SQLite (a file one machine
    holds: the nodes must share a PostgreSQL database). `ConfigError` at `nodes:`."""
    from pathlib import Path

    names = [n.name for n in nodes]
    message = None
    if node is not None and node not in names:
        listed = ", ".join(names) or "none"
        message = (
            f"this nebulad runs as node {node!r} (--node, NEBULA_NODE), which nebula.yaml does "
            f"not list (its nodes: {listed}); add it under nodes:, or start nebulad with "
            "--node set to one of them"
        )
    elif sqlite and len(own_daemons(nodes)) > 1:
        message = (
            f"{len(own_daemons(nodes))} nodes run a nebulad of their own "
            f"({', '.join(n.name for n in own_daemons(nodes))}), but this one's state is a "
            "SQLite file: nodes share their state through PostgreSQL; set database_url "
            "(--database-url, NEBULA_DATABASE_URL) to the same postgresql+psycopg:// URL on "
            "every node"
        )
    if message is not None:
        document = read_document(Path(root) / CONFIG_FILE, Path(root))
        raise ConfigError([document.issue(("nodes",), message)])


def own_daemons(nodes: Sequence[Node]) -> list[Node]:
    """The nodes that run a nebulad of their own (the others are driven by the leader)."""
    return [n for n in nodes if not n.driven]


class Membership:
    """This nebulad's place among the nodes: `heartbeats` and `elect` are its two threads.

    `identity()` is the node this nebulad is (None until a good commit names it: nothing is
    written before), `configured()` the nodes of the last good commit; `changed(leading)` is
    called from the election thread whenever leadership comes or goes; `alert` receives the
    nodes' down and back alerts while this node leads."""

    def __init__(
        self,
        store: Store,
        identity: Callable[[], Node | None],
        configured: Callable[[], Sequence[Node]],
        *,
        changed: Callable[[bool], None],
        alert: Callable[[Alert], object],
        faults: Faults,
    ) -> None:
        self.store = store
        self.identity = identity
        self.configured = configured
        self.changed = changed
        self.alert = alert
        self.faults = faults
        self.started_at = datetime.now(UTC)
        self._leading = False
        self._lock: nodes_db.LeaderLock | None = None
        self._down: dict[str, bool] = {}  # what the last look found of each node (leading)
        self._guard = threading.Lock()

    @property
    def leading(self) -> bool:
        return self._leading

    def heartbeats(self, stop: threading.Event) -> None:
        """Every `HEARTBEAT` seconds: this node is alive; if it leads, who is not."""
        while True:
            me = self.identity()
            if me is not None:
                try:
                    nodes_db.heartbeat(
                        self.store,
                        me.name,
                        address=str(me.address),
                        labels=me.labels | ({"gpu": "true"} if me.gpu else {}),
                        engine=me.engine,
                        version=__version__,
                        started_at=self.started_at,
                        leading=self._leading,
                    )
                    if self._leading:
                        self._watch_nodes(me.name)
                    self.faults.clear("heartbeat")
                except Exception as exc:  # the database away: tried again at the next beat
                    self.faults.report("heartbeat", exc)
            if stop.wait(HEARTBEAT):
                return

    def _watch_nodes(self, me: str) -> None:
        """Alert on each node gone quiet, and resolve it when it sends heartbeats again. The
        first look after taking over reports every node, so an incident opened under the last
        leader is resolved by this one."""
        found, now = nodes_db.nodes(self.store)
        beats = {n.name: n.heartbeat_at for n in found}
        for node in own_daemons(self.configured()):
            last = beats.get(node.name)
            if node.name == me or last is None:  # never started yet: not down, unknown
                continue
            down = (now - last).total_seconds() > DOWN_AFTER
            if self._down.get(node.name) != down:
                self._down[node.name] = down
                if down:
                    log.warning("node %s: no heartbeat since %s", node.name, last)
                self.alert(from_node(node.name, down, last))

    def elect(self, stop: threading.Event) -> None:
        """Every `LEADER_CHECK` seconds: take the leader lock if free, or check it is still
        ours. Until this node knows its name it does not run for leader."""
        try:
            while not stop.is_set():
                me = self.identity()
                if me is not None:
                    if self._lock is None:
                        self._lock = nodes_db.LeaderLock(self.store, me.name)
                    self._set(me.name, self._lock.held())
                stop.wait(LEADER_CHECK)
        finally:
            self.resign()

    def _set(self, me: str, leading: bool) -> None:
        if leading == self._leading:
            return
        with self._guard:
            self._leading = leading
            self._down = {}
        log.info("node %s %s", me, "leads the cluster" if leading else "no longer leads")
        try:
            nodes_db.set_leader(self.store, me, leading)
        except Exception as exc:  # only a report for `nebula nodes`: the lock decides
            log.warning("cannot record the leader: %s", exc)
        self.changed(leading)

    def resign(self) -> None:
        """Stopping: let another node lead at once rather than when this session ends."""
        if self._lock is None:
            return
        me = self.identity()
        if self._leading and me is not None:
            self._set(me.name, False)
        self._lock.close()
        self._lock = None


def listing(
    configured: Sequence[Node],
    placed: Mapping[str, Sequence[str]],
    statuses: Mapping[str, Mapping[str, str]],
    found: Sequence[nodes_db.NodeInfo],
    now: datetime,
) -> list[dict[str, Any]]:
    """`GET /api/v1/nodes`: nebula.yaml's nodes in its order, each with its last heartbeat
    and state (up, down: silent for `DOWN_AFTER` seconds, unknown: never heard of, or driven
    by the leader), whether it leads, and its installations (`placed`: names by node) with
    how many run and how many fail (`statuses`: the store's, by node and installation)."""
    rows = {n.name: n for n in found}
    listed = []
    for node in configured:
        row = rows.get(node.name)
        state = "unknown"
        if row is not None:
            state = "down" if (now - row.heartbeat_at).total_seconds() > DOWN_AFTER else "up"
        names = placed.get(node.name, ())
        status = statuses.get(node.name, {})
        listed.append(
            {
                "name": node.name,
                "address": str(node.address),
                "labels": dict(node.labels),
                "engine": node.engine,
                "driven": node.driven,
                "version": row.version if row else None,
                "heartbeat_at": row.heartbeat_at if row else None,
                "state": state,
                "leader": bool(row and row.leader_since and state == "up"),
                "installations": len(names),
                "health": {
                    "running": sum(status.get(n) == "running" for n in names),
                    "failing": sum(status.get(n) == "error" for n in names),
                },
            }
        )
    return listed
