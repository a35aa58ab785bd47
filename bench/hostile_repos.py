"""How validation and planning grow with the size of a repo: linear, not quadratic.

    python3 bench/hostile_repos.py [--sizes 2500,5000,10000,20000] [--runs 3] [--json PATH]

In-process, the CPU time (median of --runs) of two things a hostile or just very large repo
makes Nebula do, each at every size N:

- unknown keys: validating one package file that holds N unknown keys (`validate_document`,
  reporting N errors, each at its line);
- planning: resolving N inline installations and diffing them against an engine where all
  of them run already (`resolve` + `diff`, the pure part of `nebula plan`).

Targets (from the issue, which measured 11 s for 10,000 unknown keys and 7 s to plan 10,000
services, both growing with the square): linear growth (time ratio over size ratio at most 1.4
between neighbouring sizes, where quadratic is 2), and 10,000 of each under 2 s.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import stacks
from nebula.catalog import Catalog, builtin_catalog_dir
from nebula.errors import ConfigError
from nebula.kinds.packages.diff import diff
from nebula.kinds.packages.resolve import resolve
from nebula.kinds.packages.types import Observed, ObservedContainer, ObservedNetwork
from nebula.spec.config import NebulaConfig
from nebula.spec.installation import Installation
from nebula.spec.repo import InstallationSource, RepoSpec
from nebula.spec.validate import validate_document
from nebula.spec.yamlfile import parse_yaml

GROWTH_MAX = 1.4  # time ratio / size ratio: 1 is linear, 2 quadratic (for doubling sizes)
TARGET_S = 2.0  # for 10,000
APP = "compose:\n  services:\n    web:\n      image: busybox:1.36\n"


def unknown_keys(n: int) -> Callable[[], Any]:
    doc = parse_yaml(APP + "".join(f"      key{i}: 1\n" for i in range(n)), "packages/x.yaml")

    def run() -> int:
        try:
            validate_document(doc, Installation)
        except ConfigError as exc:
            return len(exc.issues)
        raise AssertionError("unknown keys were accepted")

    return run


def planning(n: int) -> Callable[[], Any]:
    doc = parse_yaml(APP, "packages/x.yaml")
    spec = validate_document(doc, Installation)
    sources = tuple(InstallationSource(f"app{i}", spec, doc) for i in range(n))
    repo = RepoSpec(Path("/nonexistent"), NebulaConfig(), sources)
    catalog = Catalog([builtin_catalog_dir()])
    desired = resolve(repo, catalog)
    running = Observed(
        tuple(
            ObservedContainer(
                f"id-{c.name}", c.name, d.name, c.service, c.spec_hash, c.summary(), "running"
            )
            for d in desired
            for c in d.containers
        ),
        tuple(
            ObservedNetwork(f"net-{n.name}", n.name, d.name) for d in desired for n in d.networks
        ),
    )

    def run() -> bool:
        plan = diff(resolve(repo, catalog), running)
        assert not plan.has_changes, "a running homelab planned changes"
        return True

    return run


def cpu_median(fn: Callable[[], Any], runs: int) -> float:
    series = stacks.Series("cpu")
    for _ in range(runs):
        started = time.process_time()
        fn()
        series.add(time.process_time() - started)
    return series.median


def main() -> None:
    parser = stacks.base_parser((__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--sizes", default="2500,5000,10000,20000")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    load_before = stacks.machine()
    results: dict[str, dict[int, float]] = {}
    for name, make in (("unknown keys", unknown_keys), ("planning", planning)):
        results[name] = {n: cpu_median(make(n), args.runs) for n in sizes}
    rows, verdicts = [], []
    for name, by_size in results.items():
        # time ratio over size ratio between neighbouring sizes: 1 is linear, 2 quadratic
        growth = max((by_size[b] / by_size[a]) / (b / a) for a, b in itertools.pairwise(sizes))
        at_10k = by_size.get(10_000)
        ok = growth <= GROWTH_MAX and (at_10k is None or at_10k < TARGET_S)
        verdicts.append(ok)
        rows.append(
            [name, *(f"{by_size[n]:.3f}" for n in sizes), f"{growth:.2f}", stacks.verdict(ok)]
        )
    stacks.print_table(
        f"CPU seconds, median of {args.runs}; growth: time ratio / size ratio (1 linear, 2 quadratic)",
        ["what", *(f"N={n:,}" for n in sizes), "growth", "verdict"],
        rows,
    )
    print(
        f"targets: growth ≤ {GROWTH_MAX} between neighbouring sizes; N=10,000 under {TARGET_S:.0f} s"
    )
    stacks.emit_json(
        {
            "benchmark": "hostile_repos",
            "sizes": sizes,
            "runs": args.runs,
            "machine_before": load_before,
            "machine_after": stacks.machine(),
            "cpu_seconds": {
                name: {str(n): round(s, 4) for n, s in by_size.items()}
                for name, by_size in results.items()
            },
            "pass": all(verdicts),
        },
        args.json,
    )


if __name__ == "__main__":
    main()
