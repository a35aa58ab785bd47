"""nebulad on three nodes: push to running beside one node, the other nodes' CPU, leader failover.

    python3 bench/cluster.py [--installations 100] [--pushes 20] [--kills 10] [--json PATH]

Three private dockerds (the test suite's, `tests/servers.py`; nodes b's and c's each in a
network namespace of its own, so each node's bridges and interfaces are on a network stack of
its own, as on separate machines), one throwaway PostgreSQL, and nebulad as the real console
script, one process per node (`--node a|b|c`, each its own data dir and socket, one bare repo,
one `database_url`). Each installation is one busybox httpd service
(no port, volume or healthcheck), placed with `node:`. Three phases, each bounded in time:

1. **One node** (the reference, measured in the same run): one nebulad (no --node) following
   a repo of --installations installations, its state in SQLite (as today), then again in
   PostgreSQL (the store the nodes share). Each of --pushes pushes changes the
   environment of one installation (so its container is replaced), then asks the daemon to
   sync as the git server's post-receive hook would (`POST /api/v1/sync`, trigger `hook`).
   Timed from the push returning to the `start` event of the new container on one /events
   stream, as bench/daemon.py times it.
2. **Three nodes, --installations each**: the same pushes, each changing one installation of one
   node (b, c, a in turn), every node asked to sync at once. Timed the same way, on that
   node's engine; beside it, the CPU seconds (utime+stime of /proc/PID/stat) the two other
   nebulads spent on the push, from just before it until each of them finished its sync of
   the commit. Then the same
   pushes again, only the changed node asked: on this one host the three nebulads, their
   dockerds and PostgreSQL share the cores, which separate machines would not.
3. **Failover**, --kills times: SIGKILL of the leader, timed until another node holds the leader
   lock (its status says `leader`) and until it has synced as leader (a sync record of its own
   begun after the kill has ended); the killed node is started again before the next kill.

Target (from the issue): a push that changes one installation on one node of three reaches
running as fast as on a single node; failover within 10 s.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

import stacks
from daemon import SERVICE, SHAPE, Daemon, Repo, StartWatch, until

NODES = ("a", "b", "c")
TARGET_FAILOVER_S = 10.0
INTERVALS = ("--poll-interval", "3600s", "--drift-interval", "3600s")


def write_repo(
    root: Path, nodes: tuple[str, ...], per_node: int, image: str, revs: dict[str, int]
) -> None:
    """A config repo: `nodes` (each its own subnet pool), `per_node` installations on each,
    named NODE + number; `revs` gives some a REV environment variable (a change to apply)."""
    listed = [
        {"name": n, "address": "127.0.0.1", "subnet_pool": f"10.{200 + i}.0.0/16"}
        for i, n in enumerate(nodes)
    ]
    config = {"defaults": {"bind_address": "127.0.0.1", "parallelism": 8}, "nodes": listed}
    (root / "nebula.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "packages").mkdir(parents=True, exist_ok=True)
    for node in nodes:
        for name in stacks.stack_names(node, per_node):
            document = stacks.compose_document(image, SHAPE)
            if name in revs:
                document["services"][SERVICE]["environment"] = {"REV": str(revs[name])}
            text = yaml.safe_dump({"node": node, "compose": document}, sort_keys=False)
            (root / "packages" / f"{name}.yaml").write_text(text)


def commit(
    repo: Repo,
    message: str,
    nodes: tuple[str, ...],
    per_node: int,
    *,
    image: str,
    revs: dict[str, int],
) -> str:
    write_repo(repo.work, nodes, per_node, image, revs)
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", message)
    return repo.head()


def ask_to_sync(daemons: list[Daemon]) -> None:
    """Tell each daemon of a push, all at once: a git server's hooks or webhooks to several
    nodes are separate requests, none waiting for another node's answer."""
    from nebula.cli.client import DaemonClient

    def tell(daemon: Daemon) -> None:
        with DaemonClient(daemon.socket) as client:
            client.request_sync("hook")  # a push's notice, as a post-receive hook gives

    with ThreadPoolExecutor(len(daemons)) as pool:
        list(pool.map(tell, daemons))


def cpu_seconds(daemon: Daemon) -> float:
    assert daemon.proc is not None
    return stacks.cpu_ticks(daemon.proc.pid)[0] / stacks.CLK_TCK


@dataclass
class Results:
    single: stacks.Series = field(default_factory=lambda: stacks.Series("one node"))
    single_pg: stacks.Series = field(default_factory=lambda: stacks.Series("one node, PG"))
    cluster: stacks.Series = field(
        default_factory=lambda: stacks.Series("three nodes, every node told")
    )
    alone: stacks.Series = field(
        default_factory=lambda: stacks.Series("three nodes, only that node told")
    )
    others_cpu: stacks.Series = field(
        default_factory=lambda: stacks.Series("  the 2 other nodes' CPU s for that push")
    )
    lock: stacks.Series = field(default_factory=lambda: stacks.Series("kill → leader lock held"))
    synced: stacks.Series = field(default_factory=lambda: stacks.Series("kill → synced as leader"))
    first_apply_s: float = 0.0
    phase_s: dict[str, float] = field(default_factory=dict)


def pushes(
    args: argparse.Namespace,
    repo: Repo,
    nodes: tuple[str, ...],
    daemons: dict[str, Daemon],
    urls: dict[str, str],
    *,
    image: str,
    series: stacks.Series,
    others_cpu: stacks.Series | None,
    revs: dict[str, int],
    tell_all: bool = True,
) -> None:
    """--pushes pushes, each changing one installation of one node in turn; each timed from
    the push returning to its new container's start. Every node is asked to sync, at once
    (as a hook to each would), or with `tell_all` False only the changed one. `revs`: each
    installation's REV so far (the repo's state, kept from one call to the next)."""
    watches = {n: StartWatch(urls[n]) for n in nodes}
    apis = {n: stacks.api_client(urls[n]) for n in nodes}
    try:
        for i in range(args.pushes):
            node = nodes[(i + 1) % len(nodes)]
            name = f"{stacks.stack_names(node, args.installations)[i % args.installations]}"
            container = f"{name}-{SERVICE}"
            old = apis[node].inspect_container(container)["Id"]
            revs[name] = revs.get(name, 0) + 1
            sha = commit(repo, f"change {name}", nodes, args.installations, image=image, revs=revs)
            others = [daemons[n] for n in nodes if n != node]
            cpu_before = [cpu_seconds(d) for d in others]
            repo.push()
            pushed = time.perf_counter()
            told = list(daemons.values()) if tell_all else [daemons[node]]
            ask_to_sync(told)
            up = watches[node].wait(container, pushed, args.phase_timeout, not_id=old)
            series.add(up - pushed)
            for d in told:
                until(lambda d=d, sha=sha: d.idle_at(sha), 60, f"sync of {sha[:8]}", d)
            if others_cpu is not None:
                spent = sum(cpu_seconds(d) - b for d, b in zip(others, cpu_before, strict=True))
                others_cpu.add(spent)
    finally:
        for watch in watches.values():
            watch.close()
        for api in apis.values():
            api.close()


def phase_single(
    args: argparse.Namespace, url: str, image: str, tmp: Path, database: str | None
) -> stacks.Series:
    """One nebulad alone (no --node), its state in SQLite or in `database`."""
    store = "PostgreSQL" if database else "SQLite"
    series = stacks.Series(f"one node ({store})")
    repo = Repo(tmp / f"single-{store}", stacks.private_env(tmp / f"xdg-git-{store}"))
    sha = commit(repo, "homelab", ("a",), args.installations, image=image, revs={})
    repo.push()
    options = ("--database-url", database) if database else ()
    daemon = Daemon(tmp / f"single-{store}-daemon", repo.bare, url, *INTERVALS, *options)
    try:
        daemon.start()
        until(lambda: daemon.idle_at(sha), args.phase_timeout, "all applied", daemon)
        pushes(
            args,
            repo,
            ("a",),
            {"a": daemon},
            {"a": url},
            image=image,
            series=series,
            others_cpu=None,
            revs={},
        )
    finally:
        daemon.stop()
        stacks.sweep(url)
    return series


@contextlib.contextmanager
def cluster(
    args: argparse.Namespace, urls: dict[str, str], database: str, repo: Repo, tmp: Path
) -> Iterator[dict[str, Daemon]]:
    daemons = {
        n: Daemon(
            tmp / f"node-{n}",
            repo.bare,
            urls[n],
            "--node",
            n,
            "--database-url",
            database,
            *INTERVALS,
        )
        for n in NODES
    }
    try:
        for daemon in daemons.values():
            daemon.start()
        yield daemons
    finally:
        for daemon in daemons.values():
            daemon.stop()


def nodes_of(daemons: dict[str, Daemon]) -> list[dict[str, Any]]:
    from nebula.cli.client import DaemonClient
    from nebula.errors import NebulaError

    for daemon in daemons.values():
        if daemon.proc is None or daemon.proc.poll() is not None:
            continue
        with contextlib.suppress(NebulaError), DaemonClient(daemon.socket) as client:
            return client.nodes()
    return []


def leader_of(daemons: dict[str, Daemon]) -> str | None:
    return next((n["name"] for n in nodes_of(daemons) if n["leader"]), None)


def failover(args: argparse.Namespace, daemons: dict[str, Daemon], r: Results) -> None:
    for _ in range(args.kills):
        one_failover(daemons, r)


def one_failover(daemons: dict[str, Daemon], r: Results) -> None:
    """SIGKILL the leader; time until another leads, and until it has synced as leader; then
    start the killed node again."""
    until(lambda: leader_of(daemons) is not None, 30, "a leader", None)
    until(lambda: all(n["state"] == "up" for n in nodes_of(daemons)), 30, "all nodes up", None)
    leader = leader_of(daemons)
    assert leader is not None
    killed = daemons[leader]
    assert killed.proc is not None
    at = datetime.now(UTC)
    start = time.perf_counter()
    killed.proc.send_signal(signal.SIGKILL)
    killed.proc.wait()
    others = [d for n, d in daemons.items() if n != leader]
    new: list[Daemon] = []

    def took_over() -> bool:
        new[:] = [d for d in others if (d.status() or {}).get("leader")]
        return bool(new)

    until(took_over, 60, "another leader", None)
    r.lock.add(time.perf_counter() - start)

    def synced() -> bool:
        node = (new[0].status() or {}).get("node")
        return any(
            s["node"] == node and s["finished_at"] and datetime.fromisoformat(s["started_at"]) >= at
            for s in new[0].syncs(50)
        )

    until(synced, 60, "the new leader's sync", new[0])
    r.synced.add(time.perf_counter() - start)
    killed.start()


def phase_cluster(
    args: argparse.Namespace,
    urls: dict[str, str],
    image: str,
    tmp: Path,
    *,
    database: str,
    r: Results,
) -> None:
    started = time.perf_counter()
    repo = Repo(tmp / "cluster", stacks.private_env(tmp / "xdg-git-cluster"))
    sha = commit(repo, "homelab", NODES, args.installations, image=image, revs={})
    repo.push()
    with cluster(args, urls, database, repo, tmp) as daemons:
        for node, daemon in daemons.items():
            until(lambda d=daemon: d.idle_at(sha), args.phase_timeout, f"{node} applied", daemon)
        r.first_apply_s = time.perf_counter() - started
        common: dict[str, Any] = {"image": image, "revs": {}}
        pushes(
            args, repo, NODES, daemons, urls, series=r.cluster, others_cpu=r.others_cpu, **common
        )
        pushes(
            args,
            repo,
            NODES,
            daemons,
            urls,
            series=r.alone,
            others_cpu=None,
            tell_all=False,
            **common,
        )
        r.phase_s["three nodes"] = time.perf_counter() - started
        started = time.perf_counter()
        failover(args, daemons, r)
        r.phase_s["failover"] = time.perf_counter() - started
    for url in urls.values():
        stacks.sweep(url)


def report(args: argparse.Namespace, r: Results, load_before: dict[str, Any]) -> None:
    s50, s95 = r.single.median, r.single.percentile(95)

    def as_fast(series: stacks.Series) -> bool:
        return series.median <= s50 * 1.2 + 0.05 and series.percentile(95) <= s95 * 1.2 + 0.1

    same = as_fast(r.cluster)
    stacks.print_table(
        f"A push changing one installation → running ({args.pushes} pushes; "
        f"{args.installations} installations per node); seconds",
        ["setup", "p50", "p95", "max", "verdict (as fast as one node, ±20 %)"],
        [
            [r.single.name, s50, s95, max(r.single.values), ""],
            *(
                [x.name, x.median, x.percentile(95), max(x.values), verdict]
                for x, verdict in (
                    (r.single_pg, ""),
                    (r.cluster, stacks.verdict(same)),
                    (r.others_cpu, ""),
                    (r.alone, stacks.verdict(as_fast(r.alone))),
                )
            ),
        ],
    )
    l50, l95, y50, y95 = (
        r.lock.median,
        r.lock.percentile(95),
        r.synced.median,
        r.synced.percentile(95),
    )
    stacks.print_table(
        f"Leader failover over {args.kills} SIGKILLs; seconds",
        ["measure", "p50", "p95", "max", "target", "verdict"],
        [
            [r.lock.name, l50, l95, max(r.lock.values), "", ""],
            [
                r.synced.name,
                y50,
                y95,
                max(r.synced.values),
                f"< {TARGET_FAILOVER_S:g}",
                stacks.verdict(max(r.synced.values) < TARGET_FAILOVER_S),
            ],
        ],
    )
    print(
        f"\nSetup: the three nodes applied their {3 * args.installations} installations in "
        f"{r.first_apply_s:.1f} s. Phases: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in r.phase_s.items())
        + "."
    )
    stacks.emit_json(
        {
            "benchmark": "cluster",
            "installations_per_node": args.installations,
            "pushes": args.pushes,
            "kills": args.kills,
            "machine_before": load_before,
            "machine_after": stacks.machine(),
            "push_to_running_single": r.single.to_dict(),
            "push_to_running_single_postgresql": r.single_pg.to_dict(),
            "push_to_running_cluster": r.cluster.to_dict(),
            "push_to_running_cluster_only_that_node_told": r.alone.to_dict(),
            "other_nodes_cpu_s": r.others_cpu.to_dict(),
            "failover_lock_s": r.lock.to_dict(),
            "failover_synced_s": r.synced.to_dict(),
            "first_apply_s": round(r.first_apply_s, 2),
            "pass": {
                "as_fast_as_one_node": same,
                "as_fast_as_one_node_only_that_node_told": as_fast(r.alone),
                "failover": max(r.synced.values) < TARGET_FAILOVER_S,
            },
            "phase_s": {k: round(v, 1) for k, v in r.phase_s.items()},
        },
        args.json,
    )


def main() -> None:
    parser = stacks.base_parser((__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--installations", type=int, default=100, help="per node")
    parser.add_argument("--pushes", type=int, default=20)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument(
        "--phase-timeout", type=float, default=600.0, help="seconds each phase may take at most"
    )
    args = parser.parse_args()
    if min(args.installations, args.pushes, args.kills) < 1:
        parser.error("--installations, --pushes and --kills must be at least 1")
    load_before = stacks.machine()
    r = Results()
    with (
        stacks.docker_session() as (url, image),
        stacks.servers.more_docker_daemons(2, own_network=True) as more,
        stacks.scratch_dir("nebula-bench-") as tmp,
    ):
        for other in more:
            stacks.servers.build_test_image(other)
        started = time.perf_counter()
        r.single = phase_single(args, url, image, tmp, None)
        with (
            stacks.servers.postgres_cluster() as server,
            stacks.servers.fresh_database(server) as alone,
            stacks.servers.fresh_database(server) as shared,
        ):
            r.single_pg = phase_single(args, url, image, tmp, alone)
            r.phase_s["one node"] = time.perf_counter() - started
            urls = dict(zip(NODES, [url, *more], strict=True))
            phase_cluster(args, urls, image, tmp, database=shared, r=r)
    report(args, r, load_before)


if __name__ == "__main__":
    main()
