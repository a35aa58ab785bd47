"""Placement at scale: full and no-op plans per node, and database queries per sync, as nodes
and installations grow (1,000 installations across 10 nodes and smaller shapes).

    python3 bench/placement.py [--nodes 1,3,10] [--installations 100,1000] [--runs 3]
                               [--max-share 350] [--json PATH]

Simulated nodes: nebula.yaml lists N nodes (`n00`, `n01`, ...; one label each) and every
installation (one busybox httpd service, no port, volume or healthcheck) says
`placement: {bench: "yes"}`, so placement spreads them evenly over the nodes. Every node's share
is planned in this process against the one private dockerd, as that node's nebulad would:
`pipeline.plan(desired, World(node=NAME), only=["packages"])` (observe, then diff its share), on
a PostgreSQL store (the store several nodes share; a throwaway cluster as in the tests). For
each shape (N nodes x M installations):

- load: `load_desired` of the whole repo (every node loads all of it: placement is decided
  there), the first time; then reload: the same after a commit changed one installation's file
  (what a node does on a push: the files that did not change are not parsed again), best of
  --runs;
- full plan of each node's share on an empty engine (everything to create), best of --runs per
  node; the median and slowest node are reported;
- node `n00`'s share applied (`pipeline.run`, packages only: the first sync), then its no-op
  plan (best of --runs) and one more no-op sync. Skipped when the share is larger than
  --max-share (creating that many containers takes minutes on 2 cores);
- database queries of each sync, counted with a SQLAlchemy `before_cursor_execute` listener on
  the store's engine: the full plan, the first sync (per installation), the no-op sync.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import stacks

SHAPE = stacks.StackShape(port=False, healthcheck=False, worker=False, volume=False)


def write_repo(root: Path, nodes: int, installations: int, image: str) -> list[str]:
    """The repo of one shape; its node names."""
    names = [f"n{i:02d}" for i in range(nodes)]
    config = {
        "defaults": {"bind_address": "127.0.0.1", "parallelism": 8},
        "nodes": [
            {"name": name, "address": f"127.0.0.{i + 1}", "labels": {"bench": "yes"}}
            for i, name in enumerate(names)
        ],
    }
    (root / "packages").mkdir(parents=True, exist_ok=True)
    (root / "nebula.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    text = f"# shape {nodes} x {installations}\n" + yaml.safe_dump(  # no shape's files alike
        {"placement": {"bench": "yes"}, "compose": stacks.compose_document(image, SHAPE)},
        sort_keys=False,
    )
    for name in stacks.stack_names("inst", installations):
        (root / "packages" / f"{name}.yaml").write_text(text)
    return names


@contextmanager
def counting_queries(engine: Any) -> Iterator[list[str]]:
    """Every statement the store's engine sends meanwhile (its first word)."""
    from sqlalchemy import event

    sent: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement.split(None, 1)[0].upper())

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", count)


@dataclass
class Shape:
    nodes: int
    installations: int
    share: int = 0  # installations placed on n00
    load: stacks.Series = field(default_factory=lambda: stacks.Series("load"))
    reload: stacks.Series = field(default_factory=lambda: stacks.Series("reload"))
    full_per_node: list[float] = field(default_factory=list)  # each node's best full plan
    full_queries: int = 0
    first_sync_s: float = 0.0
    first_sync_queries: int = 0
    noop: stacks.Series | None = None
    noop_queries: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": self.nodes,
            "installations": self.installations,
            "share_n00": self.share,
            "load": self.load.to_dict(),
            "reload_one_file_changed": self.reload.to_dict(),
            "full_plan_per_node_best_s": [round(v, 4) for v in self.full_per_node],
            "full_plan_queries": self.full_queries,
            "first_sync_s": round(self.first_sync_s, 3),
            "first_sync_queries": self.first_sync_queries,
            "noop_plan": self.noop.to_dict() if self.noop else None,
            "noop_sync_queries": self.noop_queries,
        }


def measure_shape(
    args: argparse.Namespace, url: str, image: str, pg_url: str, tmp: Path, *, shape: Shape
) -> None:
    from nebula.engine import pipeline
    from nebula.engine.load import load_desired
    from nebula.kinds.base import World
    from nebula.store import Store

    repo = tmp / f"repo-{shape.nodes}x{shape.installations}"
    names = write_repo(repo, shape.nodes, shape.installations, image)
    started = time.perf_counter()
    desired = load_desired(repo)
    shape.load.add(time.perf_counter() - started)
    changed = repo / "packages" / f"{stacks.stack_names('inst', shape.installations)[0]}.yaml"
    for run in range(args.runs):
        changed.write_text(changed.read_text() + f"# run {run}\n")
        started = time.perf_counter()
        desired = load_desired(repo)
        shape.reload.add(time.perf_counter() - started)
    shape.share = sum(i.node == names[0] for i in desired.installations)
    with stacks.servers.fresh_database(pg_url) as database, Store(database) as store:

        def world(node: str) -> World:
            return World(lambda: store, docker_host=url, node=node)

        def plan(node: str) -> tuple[float, Any]:
            the_world = world(node)
            try:
                started = time.perf_counter()
                the_plan = pipeline.plan(desired, the_world, ["packages"])
                return time.perf_counter() - started, the_plan
            finally:
                the_world.close()

        for node in names:
            shape.full_per_node.append(min(plan(node)[0] for _ in range(args.runs)))
        with counting_queries(store.engine) as sent:
            plan(names[0])
        shape.full_queries = len(sent)
        if shape.share > args.max_share:
            return
        with counting_queries(store.engine) as sent:
            first = world(names[0])
            started = time.perf_counter()
            outcome = pipeline.run(desired, first, only=["packages"])
            shape.first_sync_s = time.perf_counter() - started
            first.close()
        if outcome.errors:
            raise RuntimeError(f"the first sync failed: {outcome.errors[:3]}")
        shape.first_sync_queries = len(sent)
        shape.noop = stacks.Series("no-op plan")
        for _ in range(args.runs):
            seconds, the_plan = plan(names[0])
            if the_plan.has_changes:
                raise RuntimeError("the no-op plan has changes")
            shape.noop.add(seconds)
        with counting_queries(store.engine) as sent:
            again = world(names[0])
            pipeline.run(desired, again, only=["packages"])
            again.close()
        shape.noop_queries = len(sent)
    stacks.sweep(url)


def main() -> None:
    parser = stacks.base_parser((__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--nodes", default="1,3,10", help="node counts, comma-separated")
    parser.add_argument("--installations", default="100,1000", help="comma-separated")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each plan (best kept)")
    parser.add_argument(
        "--max-share", type=int, default=350, help="largest share of n00 applied for the no-op"
    )
    args = parser.parse_args()
    shapes = [
        Shape(int(n), int(m)) for m in args.installations.split(",") for n in args.nodes.split(",")
    ]
    load_before = stacks.machine()
    with (
        stacks.docker_session() as (url, image),
        stacks.servers.postgres_cluster() as pg_url,
        stacks.scratch_dir("nebula-bench-") as tmp,
    ):
        os.environ.update(stacks.private_env(tmp / "xdg"))  # the vault's key dir, the memo
        for shape in shapes:
            measure_shape(args, url, image, pg_url, tmp, shape=shape)
            print(f"measured {shape.nodes} nodes x {shape.installations} installations")
    report(args, shapes, load_before)


def report(args: argparse.Namespace, shapes: list[Shape], load_before: dict[str, Any]) -> None:
    rows = []
    for s in shapes:
        full = s.full_per_node
        rows.append(
            [
                f"{s.nodes} x {s.installations}",
                s.share,
                s.load.best,
                s.reload.best,
                statistics.median(full),
                max(full),
                s.load.best + statistics.median(full),
                s.noop.best if s.noop else "-",
                s.reload.best + s.noop.best if s.noop else "-",
            ]
        )
    stacks.print_table(
        f"Plans per node (seconds; load the first time, the rest best of {args.runs}); "
        "one private dockerd, PostgreSQL store",
        [
            "nodes x installations",
            "share",
            "load",
            "reload (1 file changed)",
            "full plan (median node)",
            "(slowest)",
            "load + full",
            "no-op plan",
            "reload + no-op",
        ],
        rows,
    )
    stacks.print_table(
        "Database queries per sync of node n00 (before_cursor_execute)",
        ["nodes x installations", "full plan", "first sync", "per installation", "no-op sync"],
        [
            [
                f"{s.nodes} x {s.installations}",
                s.full_queries,
                s.first_sync_queries if s.noop else "-",
                f"{s.first_sync_queries / s.share:.1f}" if s.noop and s.share else "-",
                s.noop_queries if s.noop_queries is not None else "-",
            ]
            for s in shapes
        ],
    )
    skipped = [f"{s.nodes} x {s.installations}" for s in shapes if s.noop is None]
    if skipped:
        print(f"no-op skipped (share over --max-share {args.max_share}): {', '.join(skipped)}")
    stacks.emit_json(
        {
            "benchmark": "placement",
            "runs": args.runs,
            "machine_before": load_before,
            "machine_after": stacks.machine(),
            "shapes": [s.to_dict() for s in shapes],
        },
        args.json,
    )


if __name__ == "__main__":
    main()
