"""Workflows: the engine's overhead per step, and a backup beside restic by hand.

    python3 bench/workflows.py [--steps 1000] [--width 50] [--runs 3] [--jobs 1000]
                               [--volume-mb 1024] [--backup-runs 3] [--no-backup] [--json PATH]

1. **Engine**: a workflow of --steps `log` steps (the cheapest action) in layers of --width, each
   step needing every step of the layer before it (20 layers x 50: 47,500 edges), run by hand
   through `Workflows` (nebulad's engine: the step executor, each step's state written to a
   SQLite store before its dependants start), --runs times. Per step: the run's wall time divided
   by the steps; from the engine's own step events, the dispatch latency (its last need
   recorded -> it starts) and its duration (start -> recorded). The floor: APScheduler's
   dispatch of --jobs no-op jobs (a BackgroundScheduler with a ThreadPoolExecutor, each job due
   now; scheduled -> running). Target: under 2 ms per step, median.
2. **Backup** (needs Docker: the test suite's private dockerd, run as root): a named volume of
   --volume-mb MB of random bytes, labelled as an installation's. Nebula's `backup` action as
   a one-step workflow, beside `restic init` then `restic backup` by hand on the same folder;
   each into a fresh local repository, interleaved, --backup-runs times. Target: the workflow
   takes under 5 % longer than restic by hand.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import yaml

import stacks
from nebula.engine.load import load_desired
from nebula.kinds.packages.types import LABEL_INSTALLATION, LABEL_MANAGED
from nebula.providers.docker import DockerProvider
from nebula.remediation.actions import Services
from nebula.remediation.workflows import Workflows
from nebula.store import Store

TARGET_STEP_MS = 2.0
TARGET_BACKUP_OVERHEAD = 0.05
PASSWORD = "bench-password"


# -- running a workflow ----------------------------------------------------------------------


class Events:
    """The engine's events, each stamped as it is published; `done` once a run ends."""

    def __init__(self) -> None:
        self.stamps: dict[tuple[str, str], float] = {}  # (step, running|ok|...) -> perf_counter
        self.done = threading.Event()
        self.status = ""

    def publish(self, kind: str, **data: Any) -> None:
        now = time.perf_counter()
        if kind == "workflow_step":
            self.stamps[
                (str(data["step"]), "running" if data["status"] == "running" else "end")
            ] = now
        elif kind == "workflow":
            self.status = str(data["status"])
            self.done.set()


def write_repo(root: Path, workflow: dict[str, Any]) -> Path:
    (root / "workflows").mkdir(parents=True, exist_ok=True)
    (root / "nebula.yaml").write_text("")
    (root / "workflows" / f"{workflow['name']}.yaml").write_text(yaml.safe_dump(workflow))
    return root


def run_workflow(store: Store, services: Services, repo: Path, name: str) -> tuple[float, Events]:
    """One run by hand of `name` through the engine: its wall time (start -> recorded end)."""
    events = Events()
    workflows = Workflows(store, services, events.publish, threading.Event())
    workflows.update(load_desired(repo).workflows)
    try:
        started = time.perf_counter()
        workflows.run_by_hand(name, "bench")
        if not events.done.wait(3600):
            raise SystemExit(f"workflow {name}: no end within an hour")
        wall = time.perf_counter() - started
    finally:
        workflows.close()
    if events.status != "succeeded":
        raise SystemExit(f"workflow {name} ended {events.status}; see the store's record")
    return wall, events


def services(docker: DockerProvider | None = None) -> Services:
    return Services(
        docker=docker,
        notify=lambda channels, title, body: [],
        incidents=None,
        restart_allowed=lambda container, runbook: None,
        recreate=lambda container: None,
        busy=lambda container: False,
        secret=lambda name: PASSWORD,
    )


# -- 1. the engine ---------------------------------------------------------------------------


def dag(steps: int, width: int) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The layered workflow and each step's needs."""
    needs: dict[str, list[str]] = {}
    for i in range(steps):
        layer = i // width
        needs[f"s{i:05d}"] = [f"s{j:05d}" for j in range(max(0, layer - 1) * width, layer * width)]
    workflow = {
        "name": "dag",
        "on": {"manual": True},
        "steps": [
            {"id": step, "action": "log", "params": {"message": step, "level": "debug"}}
            | ({"needs": before} if before else {})
            for step, before in needs.items()
        ],
    }
    return workflow, needs


def engine_phase(args: argparse.Namespace, tmp: Path) -> dict[str, stacks.Series]:
    workflow, needs = dag(args.steps, args.width)
    repo = write_repo(tmp / "dag", workflow)
    series = {
        name: stacks.Series(name) for name in ("per step (wall / steps)", "dispatch", "duration")
    }
    with Store(f"sqlite:///{tmp / 'engine.db'}") as store:
        run_workflow(store, services(), repo, "dag")  # warm: imports, templates, the store
        for _ in range(args.runs):
            wall, events = run_workflow(store, services(), repo, "dag")
            series["per step (wall / steps)"].add(wall / args.steps)
            start = min(events.stamps[(s, "running")] for s, n in needs.items() if not n)
            for step, before in needs.items():
                ready = max((events.stamps[(n, "end")] for n in before), default=start)
                series["dispatch"].add(events.stamps[(step, "running")] - ready)
                series["duration"].add(
                    events.stamps[(step, "end")] - events.stamps[(step, "running")]
                )
    return series


def apscheduler_floor(jobs: int) -> tuple[stacks.Series, float]:
    """Dispatch latency of `jobs` no-op jobs each due now (scheduled -> running), and the
    seconds per job from the first scheduled to the last run."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler

    series = stacks.Series("APScheduler dispatch")
    lock = threading.Lock()
    all_ran = threading.Event()

    def job(scheduled: float) -> None:
        with lock:
            series.add(time.perf_counter() - scheduled)
            if len(series.values) == jobs:
                all_ran.set()

    scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(8)}, timezone="UTC")
    scheduler.start()
    started = time.perf_counter()
    try:
        for _ in range(jobs):
            scheduler.add_job(job, args=[time.perf_counter()], misfire_grace_time=None)
        if not all_ran.wait(600):
            raise SystemExit("APScheduler did not run every job within 10 minutes")
        per_job = (time.perf_counter() - started) / jobs
    finally:
        scheduler.shutdown(wait=True)
    return series, per_job


# -- 2. backup -------------------------------------------------------------------------------


def fill(folder: Path, megabytes: int) -> None:
    """`megabytes` of random bytes in 64 MB files (restic cannot deduplicate them)."""
    left = megabytes
    for i in range(0, megabytes, 64):
        with (folder / f"blob{i // 64:03d}").open("wb") as out:
            out.write(os.urandom(min(64, left) << 20))
        left -= 64


def restic_by_hand(folder: Path, repository: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
    env |= {"RESTIC_REPOSITORY": str(repository), "RESTIC_PASSWORD": PASSWORD}
    started = time.perf_counter()
    for argv in (["init"], ["backup", "--host", "bench", str(folder)]):
        subprocess.run(["restic", *argv], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def backup_phase(args: argparse.Namespace, tmp: Path) -> dict[str, stacks.Series]:
    series = {name: stacks.Series(name) for name in ("nebula backup workflow", "restic by hand")}
    with stacks.docker_session() as (url, _):
        api = stacks.api_client(url)
        labels = {LABEL_MANAGED: "true", LABEL_INSTALLATION: "vault"}
        volume = api.create_volume("vault_data", labels=labels)
        try:
            folder = Path(volume["Mountpoint"])
            fill(folder, args.volume_mb)
            with Store(f"sqlite:///{tmp / 'backup.db'}") as store:
                runtime = services(DockerProvider(url))
                for i in range(args.backup_runs):
                    repository = tmp / f"nebula-{i}"
                    workflow = {
                        "name": f"backup{i}",
                        "on": {"manual": True},
                        "steps": [
                            {
                                "id": "backup",
                                "action": "backup",
                                "timeout": "1h",
                                "params": {
                                    "installation": "vault",
                                    "repository": str(repository),
                                    "password": "${secret:restic_pw}",
                                },
                            }
                        ],
                    }
                    repo = write_repo(tmp / f"backup-repo-{i}", workflow)
                    wall, _ = run_workflow(store, runtime, repo, f"backup{i}")
                    series["nebula backup workflow"].add(wall)
                    series["restic by hand"].add(restic_by_hand(folder, tmp / f"hand-{i}"))
        finally:
            api.remove_volume("vault_data", force=True)
            api.close()
    return series


# -- report ----------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


def main() -> None:
    parser = stacks.base_parser((__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--width", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--volume-mb", type=int, default=1024)
    parser.add_argument("--backup-runs", type=int, default=3)
    parser.add_argument("--no-backup", action="store_true", help="only the engine's figures")
    args = parser.parse_args()
    machine_before = stacks.machine()
    with stacks.scratch_dir("nebula-bench-") as tmp:
        engine = engine_phase(args, tmp)
        floor, floor_per_job = apscheduler_floor(args.jobs)
        backup = {} if args.no_backup else backup_phase(args, tmp)
    per_step = engine["per step (wall / steps)"].median
    stacks.print_table(
        f"{args.steps} log steps in layers of {args.width}, {args.runs} runs; ms per step",
        ["figure", "median", "p90", "p99"],
        [
            [s.name, ms(s.median), ms(s.percentile(90)), ms(s.percentile(99))]
            for s in (*engine.values(), floor)
        ]
        + [["APScheduler per job (wall / jobs)", ms(floor_per_job), "", ""]],
    )
    rows = [
        [
            "engine overhead per step (wall / steps)",
            f"{per_step * 1000:.3f} ms",
            f"< {TARGET_STEP_MS:g} ms",
            stacks.verdict(per_step * 1000 < TARGET_STEP_MS),
        ]
    ]
    result: dict[str, Any] = {
        "benchmark": "workflows",
        "steps": args.steps,
        "width": args.width,
        "runs": args.runs,
        "machine_before": machine_before,
        "engine": {s.name: {"median_ms": round(s.median * 1000, 3)} for s in engine.values()},
        "apscheduler_dispatch_median_ms": round(floor.median * 1000, 3),
        "apscheduler_per_job_ms": round(floor_per_job * 1000, 3),
        "per_step_ms": round(per_step * 1000, 3),
        "pass_engine": per_step * 1000 < TARGET_STEP_MS,
    }
    if backup:
        nebula, by_hand = backup["nebula backup workflow"], backup["restic by hand"]
        overhead = stacks.ratio(nebula.median, by_hand.median) - 1
        stacks.print_table(
            f"backup of a {args.volume_mb} MB volume, fresh repository each; s, "
            f"{args.backup_runs} runs",
            ["how", "median", "best"],
            [[s.name, f"{s.median:.2f}", f"{s.best:.2f}"] for s in (nebula, by_hand)],
        )
        rows.append(
            [
                "backup overhead beside restic by hand",
                f"{overhead * 100:.1f} %",
                f"< {TARGET_BACKUP_OVERHEAD * 100:g} %",
                stacks.verdict(overhead < TARGET_BACKUP_OVERHEAD),
            ]
        )
        result |= {
            "volume_mb": args.volume_mb,
            "backup": {s.name: s.to_dict() for s in (nebula, by_hand)},
            "backup_overhead_pct": round(overhead * 100, 1),
            "pass_backup": overhead < TARGET_BACKUP_OVERHEAD,
        }
    stacks.print_table(
        "Against the issue's targets", ["figure", "measured", "target", "verdict"], rows
    )
    result["machine_after"] = stacks.machine()
    stacks.emit_json(result, args.json)


if __name__ == "__main__":
    main()
