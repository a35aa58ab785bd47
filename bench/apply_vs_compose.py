"""Apply 20 two-service stacks from nothing: Docker Compose v2, the raw Docker API floor, Nebula.

    python3 bench/apply_vs_compose.py [--stacks 20] [--repeat 1] [--json PATH]

One private dockerd (the test suite's), one run, three phases on an empty engine each:

1. Compose v2 `up -d --wait`, one compose folder after another (as a person with 20 folders
   would), timed to all-healthy; then a no-op `up -d` over the same 20 folders.
2. The floor: the same networks, volumes and containers made directly through the Docker API
   (docker SDK low-level client), 8 stacks at once, web healthy (one shared /events stream)
   before its worker starts; timed to all-healthy.
3. Nebula: `nebula apply --yes REPO` as a subprocess (the real CLI, which waits for health),
   timed to exit 0; then no-op `nebula apply`s that must print "No changes": first a cold one
   with an empty XDG_CACHE_HOME (the full path: load and validate everything, observe, diff; it
   records Nebula's no-op memo), then --noop-runs warm ones (median) that replay that memo, as
   a person re-running the command meets them; and `nebula --version` at the same moment as a
   reference: the 20 web healthchecks (one `runc exec` a second each) keep the CPU busy
   meanwhile, for both tools.

Every subprocess gets its own temporary XDG cache/data/config/state dirs, so nothing touches the
user's home. Everything is removed between phases. Targets (from the issue): Compose / Nebula
>= 3, Nebula / floor <= 1.2, no-op Nebula apply < 0.5 s (verdict on the warm no-op; the cold
one is shown beside it).
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docker.types import Mount

import stacks

TARGET_VS_COMPOSE = 3.0
TARGET_VS_FLOOR = 1.2
TARGET_NOOP_S = 0.5
HEALTH_TIMEOUT_S = 120.0
COLD_NOTE = (
    "warm = replayed from the no-op memo (repo files and observed state unchanged since a plan "
    "that changed nothing); cold = the first no-op after any change: loads and validates "
    "everything, then records the memo."
)


# -- phase 1: Compose v2 -----------------------------------------------------------------------


def compose_up(
    binary: Path, folders: list[Path], env: dict[str, str], args: list[str], jobs: int
) -> tuple[float, list[float]]:
    """`docker-compose <args>` in each folder, `jobs` at a time; total and per-folder seconds."""

    def one(folder: Path) -> float:
        return stacks.run([binary, *args], env=env, cwd=folder).seconds

    started = time.perf_counter()
    if jobs == 1:
        each = [one(f) for f in folders]
    else:
        with ThreadPoolExecutor(jobs) as pool:
            each = list(pool.map(one, folders))
    return time.perf_counter() - started, each


# -- phase 2: the raw Docker API floor ---------------------------------------------------------


def raw_stack(
    api: Any, watch: stacks.HealthWatch, name: str, image: str, shape: stacks.StackShape
) -> None:
    """One stack through the low-level API: what Compose and Nebula both have to do."""
    labels = {stacks.BENCH_LABEL: "floor"}
    network = f"{name}_default"
    api.create_network(network, driver="bridge", labels=labels)
    mounts = None
    if shape.volume:
        api.create_volume(f"{name}_data", driver="local", labels=labels)
        mounts = [Mount("/data", f"{name}_data", type="volume")]
    health = None
    if shape.healthcheck:
        health = {
            "test": stacks.HEALTH_TEST,
            "interval": 1_000_000_000,
            "timeout": 2_000_000_000,
            "retries": 5,
        }
    web = api.create_container(
        image,
        name=f"{name}-web",
        labels=labels,
        detach=True,
        ports=[(8080, "tcp")] if shape.port else None,
        healthcheck=health,
        host_config=api.create_host_config(
            port_bindings={"8080/tcp": [("127.0.0.1", "")]} if shape.port else None,
            mounts=mounts,
            restart_policy={"Name": "unless-stopped", "MaximumRetryCount": 0},
            init=True,
        ),
        networking_config=api.create_networking_config(
            {network: api.create_endpoint_config(aliases=["web"])}
        ),
    )["Id"]
    api.start(web)
    if not shape.worker:
        return
    if shape.healthcheck:
        watch.wait_healthy(web, HEALTH_TIMEOUT_S)
    worker = api.create_container(
        image,
        name=f"{name}-worker",
        command=["sh", "-c", "sleep 3600"],
        labels=labels,
        detach=True,
        host_config=api.create_host_config(init=True),
        networking_config=api.create_networking_config(
            {network: api.create_endpoint_config(aliases=["worker"])}
        ),
    )["Id"]
    api.start(worker)


def raw_floor(
    url: str, names: list[str], image: str, shape: stacks.StackShape, parallel: int
) -> float:
    api = stacks.api_client(url)
    watch = stacks.HealthWatch(api, stacks.BENCH_LABEL)
    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(parallel) as pool:
            for future in [pool.submit(raw_stack, api, watch, n, image, shape) for n in names]:
                future.result()
        return time.perf_counter() - started
    finally:
        watch.close()
        api.close()


# -- the run -----------------------------------------------------------------------------------


def check_all_up(url: str, phase: str, expected_running: int) -> None:
    bad = stacks.unhealthy(url)
    running = stacks.count_objects(url)["running"]
    if bad or running != expected_running:
        raise RuntimeError(
            f"{phase}: expected {expected_running} running and healthy containers, "
            f"got {running}; not ready: {bad}"
        )


def warm_up(url: str, image: str) -> None:
    """Start and remove one container, so the first phase does not pay for cold caches."""
    api = stacks.api_client(url)
    try:
        api.create_network("warmup", driver="bridge", labels={stacks.BENCH_LABEL: "warmup"})
        cid = api.create_container(
            image,
            name="warmup",
            labels={stacks.BENCH_LABEL: "warmup"},
            host_config=api.create_host_config(init=True),
            networking_config=api.create_networking_config(
                {"warmup": api.create_endpoint_config()}
            ),
        )["Id"]
        api.start(cid)
    finally:
        api.close()
    stacks.sweep(url)


def migrate_store(database_url: str) -> float:
    """Create Nebula's state database at its newest schema (setup, not part of the timing)."""
    from nebula.store import Store

    started = time.perf_counter()
    Store(database_url).close()
    return time.perf_counter() - started


@dataclass
class Results:
    compose_up: stacks.Series = field(
        default_factory=lambda: stacks.Series("compose v2 up -d --wait, stack after stack")
    )
    compose_noop: stacks.Series = field(
        default_factory=lambda: stacks.Series("compose v2 up -d (no-op)")
    )
    floor: stacks.Series = field(default_factory=lambda: stacks.Series("raw Docker API floor"))
    nebula: stacks.Series = field(default_factory=lambda: stacks.Series("nebula apply"))
    nebula_noop: stacks.Series = field(
        default_factory=lambda: stacks.Series("nebula apply (no-op), warm: replayed from the memo")
    )
    nebula_noop_cold: stacks.Series = field(
        default_factory=lambda: stacks.Series(
            "nebula apply (no-op), cold: full path, empty XDG_CACHE_HOME"
        )
    )
    noop_warm_runs: int = 0
    noop_replayed: int = 0  # warm no-ops that left the memo untouched, i.e. were replayed
    cli_reference: stacks.Series = field(
        default_factory=lambda: stacks.Series("nebula --version, same moment (reference)")
    )
    compose_per_stack: list[list[float]] = field(default_factory=list)
    sweeps: list[float] = field(default_factory=list)
    store_creation: list[float] = field(default_factory=list)


def main() -> None:
    parser = stacks.base_parser((__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--stacks", type=int, default=20, help="stacks per tool (default 20)")
    parser.add_argument("--repeat", type=int, default=1, help="run every phase N times")
    parser.add_argument("--floor-parallel", type=int, default=8, help="stacks at once, floor")
    parser.add_argument("--compose-jobs", type=int, default=1, help="compose folders at once")
    parser.add_argument(
        "--noop-runs", type=int, default=3, help="warm no-op nebula applies per repeat (median)"
    )
    parser.add_argument("--no-port", action="store_true", help="do not publish web's port")
    args = parser.parse_args()
    load_before = stacks.machine()
    results = Results()
    results.floor.name = f"raw Docker API, {args.floor_parallel} stacks at once"
    if args.compose_jobs > 1:
        results.compose_up.name = f"compose v2 up -d --wait, {args.compose_jobs} at once"
    run_phases(args, results)
    report(args, results, load_before)


def run_phases(args: argparse.Namespace, results: Results) -> None:
    shape = stacks.StackShape(port=not args.no_port)
    compose_names = stacks.stack_names("cmp", args.stacks)
    nebula_names = stacks.stack_names("neb", args.stacks)
    floor_names = stacks.stack_names("raw", args.stacks)
    expected = args.stacks * (2 if shape.worker else 1)
    binary = stacks.compose_binary()
    nebula = stacks.nebula_script()

    with stacks.docker_session() as (url, image), stacks.scratch_dir("nebula-bench-") as tmp:
        repo = stacks.write_nebula_repo(tmp / "repo", nebula_names, image, shape)
        folders = stacks.write_compose_folders(tmp / "compose", compose_names, image, shape)
        env = stacks.compose_env(url, tmp / "compose-home")
        print(f"{args.stacks} stacks per tool on a private dockerd; image {image}")
        warm_up(url, image)

        for rep in range(args.repeat):
            tag = f"[{rep + 1}/{args.repeat}]"
            # 1. Compose v2, then its no-op over the stacks it made
            up_wait = ["up", "-d", "--wait"]
            total, each = compose_up(binary, folders, env, up_wait, args.compose_jobs)
            results.compose_up.add(total)
            results.compose_per_stack.append(each)
            check_all_up(url, "compose", expected)
            print(f"{tag} compose up --wait: {total:.2f}s")
            total, _ = compose_up(binary, folders, env, ["up", "-d"], args.compose_jobs)
            results.compose_noop.add(total)
            check_all_up(url, "compose no-op", expected)
            print(f"{tag} compose up (no-op): {total:.2f}s")
            results.sweeps.append(stacks.sweep(url, ["cmp"]))

            # 2. the floor
            total = raw_floor(url, floor_names, image, shape, args.floor_parallel)
            results.floor.add(total)
            check_all_up(url, "floor", expected)
            print(f"{tag} raw API floor: {total:.2f}s")
            results.sweeps.append(stacks.sweep(url))

            # 3. Nebula, then its no-op
            database_url = f"sqlite:///{tmp}/nebula-{rep}.db"
            results.store_creation.append(migrate_store(database_url))
            command: list[str | Path] = [nebula, "apply", "--yes", repo, "--docker-host", url]
            command += ["--database-url", database_url]
            ran = stacks.run(command, env=stacks.private_env(tmp / f"nebula-apply-{rep}"))
            results.nebula.add(ran.seconds)
            if "Applied." not in ran.stdout:
                raise RuntimeError(f"nebula apply did not apply:\n{ran.stdout}\n{ran.stderr}")
            check_all_up(url, "nebula", expected)
            print(f"{tag} nebula apply: {ran.seconds:.2f}s")
            home = tmp / f"nebula-noop-{rep}"
            nebula_noops(args, command, nebula, home, results=results, tag=tag)
            results.sweeps.append(stacks.sweep(url))


def nebula_noops(
    args: argparse.Namespace,
    command: list[str | Path],
    nebula: Path,
    home: Path,
    *,
    results: Results,
    tag: str,
) -> None:
    """No-op applies over what Nebula just applied: one cold, then --noop-runs warm."""

    def noop_apply(env: dict[str, str]) -> float:
        ran = stacks.run(command, env=env)
        if "No changes." not in ran.stdout:
            raise RuntimeError(f"second nebula apply was not a no-op:\n{ran.stdout}")
        return ran.seconds

    env = stacks.private_env(home)  # a fresh, empty cache dir: the first no-op is cold
    results.nebula_noop_cold.add(noop_apply(env))
    if stacks.memo_stamp(env) is None:
        raise RuntimeError("the cold no-op recorded no memo: did it take the full path?")
    noops = []
    for _ in range(args.noop_runs):
        stamp = stacks.memo_stamp(env)
        noops.append(noop_apply(env))
        results.noop_replayed += stacks.memo_stamp(env) == stamp  # a full one rewrites it
    results.noop_warm_runs += args.noop_runs
    results.nebula_noop.add(statistics.median(noops))
    print(
        f"{tag} nebula apply (no-op): cold {results.nebula_noop_cold.values[-1]:.2f}s, "
        f"warm {', '.join(f'{v:.2f}s' for v in noops)}"
    )
    # The bare CLI at the same moment: 20 web healthchecks a second share the CPU.
    for _ in range(args.noop_runs):
        results.cli_reference.add(stacks.run([nebula, "--version"], env=env).seconds)


def report(args: argparse.Namespace, r: Results, load_before: dict[str, Any]) -> None:
    compose, floor, neb = r.compose_up.median, r.floor.median, r.nebula.median
    noop, compose_noop = r.nebula_noop.median, r.compose_noop.median
    cold = r.nebula_noop_cold.median
    warm_name = f"{r.nebula_noop.name}, median of {args.noop_runs}"
    if r.noop_replayed < r.noop_warm_runs:
        warm_name += f" (only {r.noop_replayed} of {r.noop_warm_runs} replayed!)"
    vs_compose, vs_floor = stacks.ratio(compose, neb), stacks.ratio(neb, floor)
    runs = f"median of {args.repeat}" if args.repeat > 1 else "1 run"
    stacks.print_table(
        f"Apply {args.stacks} stacks from nothing, to all-healthy ({runs}; seconds)",
        ["phase", "seconds", "per stack", "× floor"],
        [
            [s.name, s.median, s.median / args.stacks, f"{stacks.ratio(s.median, floor):.2f}×"]
            for s in (r.compose_up, r.floor, r.nebula)
        ],
    )
    stacks.print_table(
        f"No-op over the same {args.stacks} stacks ({runs}; seconds)",
        ["phase", "seconds"],
        [
            [r.compose_noop.name, compose_noop],
            [warm_name, noop],
            [r.nebula_noop_cold.name, cold],
            [r.cli_reference.name, r.cli_reference.median],
        ],
    )
    print(COLD_NOTE)
    stacks.print_table(
        "Against the issue's targets",
        ["figure", "measured", "target", "verdict"],
        [
            [
                "compose / nebula",
                f"{vs_compose:.2f}×",
                f">= {TARGET_VS_COMPOSE}×",
                stacks.verdict(vs_compose >= TARGET_VS_COMPOSE),
            ],
            [
                "nebula / floor",
                f"{vs_floor:.2f}×",
                f"<= {TARGET_VS_FLOOR}×",
                stacks.verdict(vs_floor <= TARGET_VS_FLOOR),
            ],
            [
                "no-op nebula apply, warm (replayed)",
                f"{noop:.3f} s",
                f"< {TARGET_NOOP_S} s",
                stacks.verdict(noop < TARGET_NOOP_S),
            ],
            ["no-op nebula apply, cold (first after a change)", f"{cold:.3f} s", "", ""],
            [
                "compose no-op / nebula no-op, warm",
                f"{stacks.ratio(compose_noop, noop):.1f}×",
                "",
                "",
            ],
            [
                "compose no-op / nebula no-op, cold",
                f"{stacks.ratio(compose_noop, cold):.1f}×",
                "",
                "",
            ],
        ],
    )
    print(
        f"\nNot timed: creating Nebula's state database "
        f"{sum(r.store_creation) / len(r.store_creation):.3f} s per fresh database; "
        f"cleanup between phases {sum(r.sweeps):.1f} s in all."
    )
    result = {
        "benchmark": "apply_vs_compose",
        "stacks": args.stacks,
        "repeat": args.repeat,
        "floor_parallel": args.floor_parallel,
        "compose_jobs": args.compose_jobs,
        "machine_before": load_before,
        "machine_after": stacks.machine(),
        "compose_up_wait": r.compose_up.to_dict(),
        "compose_up_wait_per_stack_s": [[round(v, 3) for v in run] for run in r.compose_per_stack],
        "compose_noop": r.compose_noop.to_dict(),
        "floor": r.floor.to_dict(),
        "nebula_apply": r.nebula.to_dict(),
        "nebula_noop": r.nebula_noop.to_dict(),
        "nebula_noop_warm_replayed_runs": f"{r.noop_replayed} of {r.noop_warm_runs}",
        "nebula_noop_cold": r.nebula_noop_cold.to_dict(),
        "nebula_version_same_moment": r.cli_reference.to_dict(),
        "store_creation_s": [round(v, 4) for v in r.store_creation],
        "ratios": {
            "compose_over_nebula": round(vs_compose, 3),
            "nebula_over_floor": round(vs_floor, 3),
            "compose_noop_over_nebula_noop": round(stacks.ratio(compose_noop, noop), 3),
            "compose_noop_over_nebula_noop_cold": round(stacks.ratio(compose_noop, cold), 3),
        },
        "targets": {
            "compose_over_nebula_min": TARGET_VS_COMPOSE,
            "nebula_over_floor_max": TARGET_VS_FLOOR,
            "nebula_noop_max_s": TARGET_NOOP_S,
        },
        "pass": {
            "compose_over_nebula": vs_compose >= TARGET_VS_COMPOSE,
            "nebula_over_floor": vs_floor <= TARGET_VS_FLOOR,
            "nebula_noop": noop < TARGET_NOOP_S,
        },
        "cold_noop_within_target": cold < TARGET_NOOP_S,
    }
    stacks.emit_json(result, args.json)


if __name__ == "__main__":
    main()
