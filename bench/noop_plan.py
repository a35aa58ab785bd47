"""A no-op plan over 200 installations: wall time, and how many Docker API requests it makes.

    python3 bench/noop_plan.py [--installations 200] [--runs 5] [--json PATH]

On the test suite's private dockerd: a config repo of 200 one-service installations (busybox
httpd, no port, no volume, no healthcheck) is applied once with `nebula apply` (setup, timed and
reported), then:

- `nebula plan REPO` end to end as a subprocess (the real CLI), best of --runs; it must say
  "No changes";
- the same plan in-process (`load_desired` + `plan_against` on a fresh `DockerProvider`), best of
  --runs, with its parts (load, observe, diff) and the Docker API requests it sends, counted at
  the HTTP layer (every `requests.Session.send`, so the client's own /version probe counts too).

Targets (from the issue): a no-op plan of 200 installations under 0.3 s, at most 5 requests.

Every installation gets its own bridge network, and a stock dockerd has room for only 31 of
those (its default address pools: 15 /16s and 16 /20s). So by default the 200 networks are
created first, exactly as Nebula names and labels them but each with a small /28 subnet, and
`nebula apply` finds them existing; `--no-precreate` leaves that to Nebula (it fails past 31).
"""

from __future__ import annotations

import ipaddress
import struct
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

import stacks

TARGET_PLAN_S = 0.3
TARGET_REQUESTS = 5
SHAPE = stacks.StackShape(port=False, healthcheck=False, worker=False, volume=False)


def routed_networks() -> list[ipaddress.IPv4Network]:
    """The IPv4 networks the host routes already (from /proc/net/route)."""
    found = []
    with open("/proc/net/route") as table:
        next(table)
        for line in table:
            fields = line.split()
            dest, mask = (struct.pack("<I", int(f, 16)) for f in (fields[1], fields[7]))
            network = ipaddress.IPv4Network(
                (ipaddress.IPv4Address(dest), bin(int.from_bytes(mask, "big")).count("1")),
                strict=False,
            )
            if network.prefixlen:
                found.append(network)
    return found


def free_pool(size: int) -> ipaddress.IPv4Network:
    """A 10.x /16 that nothing on the host routes, for `size` /28 subnets."""
    taken = routed_networks()
    for second in range(213, 256):
        pool = ipaddress.IPv4Network(f"10.{second}.0.0/16")
        if not any(pool.overlaps(t) for t in taken) and size <= 4096:
            return pool
    raise RuntimeError("no free 10.x.0.0/16 for the installations' networks")


def precreate_networks(url: str, repo: Path) -> float:
    """Create every installation's networks as Nebula would, but each on a /28 subnet."""
    from nebula.engine.reconcile import load_desired
    from nebula.resources import LABEL_INSTALLATION, LABEL_MANAGED

    desired = load_desired(repo)
    specs = [net for inst in desired.installations for net in inst.networks]
    subnets = free_pool(len(specs)).subnets(new_prefix=28)
    api = stacks.api_client(url)
    try:
        jobs = []
        for spec, subnet in zip(specs, subnets, strict=False):
            ipam = {
                "Driver": "default",
                "Config": [{"Subnet": str(subnet), "Gateway": str(next(subnet.hosts()))}],
            }
            labels = {LABEL_MANAGED: "true", LABEL_INSTALLATION: spec.installation}
            jobs.append((spec.name, spec.driver, dict(spec.options) or None, labels, ipam))
        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda j: api.create_network(
                        j[0], driver=j[1], options=j[2], labels=j[3], ipam=j[4]
                    ),
                    jobs,
                )
            )
        return time.perf_counter() - started
    finally:
        api.close()


@contextmanager
def counting_requests() -> Iterator[list[str]]:
    """Record `METHOD /path` of every HTTP request any requests.Session sends meanwhile."""
    sent: list[str] = []
    original = requests.Session.send

    def send(self: requests.Session, request: Any, **kwargs: Any) -> Any:
        path = (request.path_url or "").split("?")[0]
        sent.append(f"{request.method} {path}")
        return original(self, request, **kwargs)

    requests.Session.send = send  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        requests.Session.send = original  # type: ignore[method-assign]


def in_process_plan(url: str, repo: Path) -> dict[str, float | int]:
    """One no-op plan in this process: load, observe, diff; seconds of each and the total."""
    from nebula.engine.reconcile import load_desired
    from nebula.kinds.docker_diff import diff
    from nebula.providers.docker import DockerProvider

    started = time.perf_counter()
    desired = load_desired(repo)
    loaded = time.perf_counter()
    provider = DockerProvider(url)
    try:
        observed = provider.observe()
        seen = time.perf_counter()
        plan = diff(desired.installations, observed)
    finally:
        provider.close()
    done = time.perf_counter()
    if plan.has_changes:
        raise RuntimeError(f"in-process plan is not a no-op: {plan.summary()}")
    return {
        "total_s": done - started,
        "load_s": loaded - started,
        "observe_s": seen - loaded,
        "diff_s": done - seen,
        "changes": len(plan.changes),
    }


def best_of(runs: int, fn: Callable[[], float]) -> stacks.Series:
    series = stacks.Series(fn.__name__)
    for _ in range(runs):
        series.add(fn())
    return series


def main() -> None:
    parser = stacks.base_parser((__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--installations", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5, help="plans timed (best is reported)")
    parser.add_argument(
        "--no-precreate", action="store_true", help="let Nebula create the networks itself"
    )
    args = parser.parse_args()
    names = stacks.stack_names("inst", args.installations)
    nebula = stacks.nebula_script()
    load_before = stacks.machine()

    with stacks.docker_session() as (url, image), stacks.scratch_dir("nebula-bench-") as tmp:
        repo = stacks.write_nebula_repo(tmp / "repo", names, image, SHAPE)
        database_url = f"sqlite:///{tmp}/nebula.db"
        precreate_s = 0.0 if args.no_precreate else precreate_networks(url, repo)
        apply_cmd: list[str | Path] = [nebula, "apply", "--yes", repo, "--docker-host", url]
        applied = stacks.run([*apply_cmd, "--database-url", database_url], timeout=600)
        counts = stacks.count_objects(url)
        if counts["running"] != args.installations:
            raise RuntimeError(f"apply left {counts} for {args.installations} installations")
        print(
            f"setup: {args.installations} installations applied in {applied.seconds:.1f}s "
            f"(networks pre-created in {precreate_s:.1f}s)"
        )

        def cli_plan() -> float:
            ran = stacks.run([nebula, "plan", repo, "--docker-host", url])
            if "No changes." not in ran.stdout:
                raise RuntimeError(f"nebula plan is not a no-op:\n{ran.stdout}")
            return ran.seconds

        cli = best_of(args.runs, cli_plan)
        parts = [in_process_plan(url, repo) for _ in range(args.runs)]
        with counting_requests() as sent:
            counted = in_process_plan(url, repo)
        sweep_s = stacks.sweep(url)

    fastest = min(parts, key=lambda p: p["total_s"])
    in_proc = stacks.Series("in-process", [float(p["total_s"]) for p in parts])
    stacks.print_table(
        f"No-op plan of {args.installations} installations (best of {args.runs}; seconds)",
        ["measure", "best", "median", "target", "verdict"],
        [
            [
                "nebula plan (CLI, end to end)",
                cli.best,
                cli.median,
                f"< {TARGET_PLAN_S}",
                stacks.verdict(cli.best < TARGET_PLAN_S),
            ],
            [
                "in-process load_desired + plan_against",
                in_proc.best,
                in_proc.median,
                f"< {TARGET_PLAN_S}",
                stacks.verdict(in_proc.best < TARGET_PLAN_S),
            ],
            ["  of which: load and resolve the repo", float(fastest["load_s"]), "", "", ""],
            ["  of which: observe Docker", float(fastest["observe_s"]), "", "", ""],
            ["  of which: diff", float(fastest["diff_s"]), "", "", ""],
            ["CLI − in-process (interpreter, imports)", cli.best - in_proc.best, "", "", ""],
        ],
    )
    stacks.print_table(
        "Docker API requests of one in-process plan",
        ["measure", "requests", "target", "verdict"],
        [
            [
                "requests sent",
                len(sent),
                f"<= {TARGET_REQUESTS}",
                stacks.verdict(len(sent) <= TARGET_REQUESTS),
            ]
        ],
    )
    for line in sent:
        print(f"  {line}")
    print(
        f"\nSetup: apply of {args.installations} installations from nothing "
        f"{applied.seconds:.1f} s ({counted['changes']} resources); cleanup {sweep_s:.1f} s."
    )
    result = {
        "benchmark": "noop_plan",
        "installations": args.installations,
        "runs": args.runs,
        "networks_precreated": not args.no_precreate,
        "machine_before": load_before,
        "machine_after": stacks.machine(),
        "setup_apply_s": round(applied.seconds, 3),
        "setup_precreate_networks_s": round(precreate_s, 3),
        "cli_plan": cli.to_dict(),
        "in_process_plan": in_proc.to_dict(),
        "in_process_parts_best_s": {
            k: round(float(v), 4) for k, v in fastest.items() if k.endswith("_s")
        },
        "docker_requests": len(sent),
        "docker_requests_sent": sent,
        "targets": {"plan_max_s": TARGET_PLAN_S, "requests_max": TARGET_REQUESTS},
        "pass": {
            "cli_plan": cli.best < TARGET_PLAN_S,
            "in_process_plan": in_proc.best < TARGET_PLAN_S,
            "requests": len(sent) <= TARGET_REQUESTS,
        },
    }
    stacks.emit_json(result, args.json)


if __name__ == "__main__":
    main()
