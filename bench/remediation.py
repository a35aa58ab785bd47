"""Remediation: unhealthy → restart beside autoheal, a storm of 100, and an idle daemon's cost.

    python3 bench/remediation.py [--flips 20] [--autoheal DIR] [--storm-installations 10]
                                 [--storm-services 10] [--idle-installations 50]
                                 [--idle-runbooks 20] [--idle-seconds 60]
                                 [--only restart|storm|idle] [--json PATH]

On the test suite's private dockerd, nebulad runs as the real `nebulad` console script following
a bare git repo (see daemon.py). Every service is the busybox test image with a Docker
healthcheck on a file (`test ! -e /unhealthy`, every 1 s, 1 retry); `docker exec … touch
/unhealthy` turns it unhealthy and its command removes the file at each start, so a restart
heals it. The repo's runbook answers the `unhealthy` alert with one step: restart
`{{ service.container }}`.

1. **Unhealthy → restart issued**: --flips one-service installations, each turned unhealthy in
   turn (the next once the last is healthy again), first under nebulad, then (nebulad stopped)
   under autoheal run unchanged (`bash docker-entrypoint autoheal` with `DOCKER_SOCK` at the
   private engine, `AUTOHEAL_CONTAINER_LABEL=all`, its default 5 s interval) on the same
   containers. Timed from the container's `health_status: unhealthy` event to its first `kill`
   or `restart` event, both stamped by the engine (`timeNano` on one /events stream).
2. **Storm**: --storm-installations x --storm-services containers turned unhealthy at once:
   the incidents opened, the most runbook executions running at once (from their recorded
   start and end), the latency of `GET /api/v1/incidents` on the unix socket sampled without
   pause meanwhile, and the time until every service is healthy again (or how many are not
   within --storm-timeout).
3. **Idle**: --idle-installations cheap installations (no healthcheck, as in daemon.py) under
   a fresh nebulad on its default intervals, without runbooks (today's figures) and then with
   --idle-runbooks runbooks loaded, the same containers: CPU and RSS over --idle-seconds each.

Targets (from the issue): restart p50 < 1 s and at least 3 times sooner than autoheal; storm: few
incidents, executions ≤ the concurrency limit, API p99 < 100 ms, every service recovered; idle
with runbooks no worse than without.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

import stacks
from daemon import Daemon, Idle, Repo, measure_idle, running_daemon, until

TARGET_RESTART_P50_S = 1.0
TARGET_RESTART_RATIO = 3.0
TARGET_API_P99_S = 0.100
CONCURRENCY = 4  # nebula.yaml's remediation.concurrency default, which the repos keep
AUTOHEAL_DEFAULT = stacks.REPO_ROOT.parent / "shared" / "peers" / "autoheal"
FLAG = "/unhealthy"  # present: the healthcheck fails
RESTART_RUNBOOK = {
    "name": "restart-unhealthy",
    "description": "Restart a container Docker reports unhealthy",
    "trigger": {"type": "alert", "alert": "unhealthy"},
    "steps": [
        {
            "name": "Restart",
            "action": "docker",
            "params": {"command": "restart", "container": "{{ service.container }}"},
        }
    ],
}


# -- the config repo -------------------------------------------------------------------------


def service(image: str, health_interval: float | None) -> dict[str, Any]:
    """One cheap service: busybox httpd; with a `health_interval`, unhealthy while FLAG
    exists."""
    body: dict[str, Any] = {"image": image, "init": True}
    if health_interval is not None:
        body["command"] = ["sh", "-c", f"rm -f {FLAG}; exec httpd -f -p 8080 -h /www"]
        test = ["CMD", "test", "!", "-e", FLAG]
        every = f"{health_interval:g}s"
        body["healthcheck"] = {"test": test, "interval": every, "timeout": "1s", "retries": 1}
    return body


def idle_runbooks(count: int) -> list[dict[str, Any]]:
    """`count` runbooks of the kinds a homelab writes: alert-triggered with conditions, and
    manual ones; none fires while the daemon idles."""
    alerts = ("unhealthy", "container_died", "oom_killed", "sync_failed")
    found = []
    for i in range(count):
        manual = i % 5 == 4
        trigger: dict[str, Any] = {"type": "manual"}
        if not manual:
            condition = f"service.restart_count < {3 + i % 3} && labels.severity != 'info'"
            trigger = {"type": "alert", "alert": alerts[i % len(alerts)], "condition": condition}
        steps = [
            {"name": "Log", "action": "log", "params": {"message": "{{ service.name }}: go"}},
            {
                "name": "Restart",
                "action": "docker",
                "params": {"command": "restart", "container": "{{ service.container }}"},
            },
            {"name": "Settle", "action": "wait", "params": {"duration": "2s"}},
        ]
        found.append({"name": f"runbook-{i:02d}", "trigger": trigger, "steps": steps})
    return found


def write_repo(
    work: Path,
    image: str,
    installations: Sequence[str],
    *,
    services: int,
    health_interval: float | None,
    runbooks: Sequence[dict[str, Any]],
) -> None:
    """nebula.yaml (remediation left at its defaults), one inline compose app per installation
    of `services` services, and `runbooks/*.yml`: exactly these (others removed)."""
    config = {"defaults": {"bind_address": "127.0.0.1", "parallelism": 8}}
    (work / "nebula.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    compose = {"services": {f"s{j:02d}": service(image, health_interval) for j in range(services)}}
    (work / "packages").mkdir(parents=True, exist_ok=True)
    for name in installations:
        text = yaml.safe_dump({"compose": compose}, sort_keys=False)
        (work / "packages" / f"{name}.yaml").write_text(text)
    folder = work / "runbooks"
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.yml"):
        old.unlink()
    for runbook in runbooks:
        (folder / f"{runbook['name']}.yml").write_text(yaml.safe_dump(runbook, sort_keys=False))


def publish(repo: Repo, message: str) -> str:
    repo.git("add", "-A")
    repo.git("commit", "-q", "--allow-empty", "-m", message)
    repo.push()
    return repo.head()


# -- Docker ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    action: str
    ns: int  # the engine's timeNano


class EventLog:
    """One /events stream of managed containers: each container's health and stop events."""

    ACTIONS = ("health_status", "kill", "restart", "die", "start")

    def __init__(self, url: str) -> None:
        self._api = stacks.api_client(url)
        self._cond = threading.Condition()
        self._events: dict[str, list[Event]] = {}
        self._stream = self._api.events(
            decode=True,
            filters={
                "type": "container",
                "event": list(self.ACTIONS),
                "label": f"{stacks.NEBULA_LABEL}=true",
            },
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(Exception):  # ends when the stream is closed
            for raw in self._stream:
                event = Event(str(raw.get("Action") or raw.get("status")), int(raw["timeNano"]))
                with self._cond:
                    self._events.setdefault(raw["id"], []).append(event)
                    self._cond.notify_all()

    def first(
        self, container_id: str, actions: Sequence[str], after_ns: int, timeout: float
    ) -> Event:
        """The first of `actions` for the container at or after `after_ns`, waiting for it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self._events.get(container_id, []):
                    if event.ns >= after_ns and event.action in actions:
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(
                        f"{container_id[:12]}: none of {', '.join(actions)} within {timeout:g} s"
                    )
                self._cond.wait(remaining)

    def close(self) -> None:
        self._stream.close()
        self._api.close()


UNHEALTHY = ("health_status: unhealthy",)
HEALTHY = ("health_status: healthy",)
RESTART_ISSUED = ("kill", "restart")


def engine_ns(url: str) -> int:
    """The engine's clock now, in ns (its /info SystemTime), to compare with event stamps."""
    api = stacks.api_client(url)
    try:
        return int(datetime.fromisoformat(api.info()["SystemTime"]).timestamp() * 1e9)
    finally:
        api.close()


def managed(url: str) -> dict[str, str]:
    """Name → id of the running managed containers whose healthcheck passes."""
    api = stacks.api_client(url)
    try:
        label = f"{stacks.NEBULA_LABEL}=true"
        found = api.containers(filters={"label": label, "health": "healthy"})
        return {c["Names"][0].lstrip("/"): c["Id"] for c in found}
    finally:
        api.close()


def flip(url: str, container_ids: Sequence[str]) -> None:
    """Make each container's healthcheck fail (all at once)."""
    api = stacks.api_client(url)
    try:

        def touch(container_id: str) -> None:
            exec_id = api.exec_create(container_id, ["touch", FLAG])["Id"]
            api.exec_start(exec_id)

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(touch, container_ids))
    finally:
        api.close()


def all_healthy(url: str, count: int, timeout: float, daemon: Daemon | None) -> dict[str, str]:
    found: dict[str, str] = {}

    def check() -> bool:
        nonlocal found
        found = managed(url)
        return len(found) == count

    until(check, timeout, f"{count} healthy containers", daemon)
    return found


def restart_latencies(
    url: str, events: EventLog, ids: Sequence[str], series: stacks.Series, timeout: float = 30
) -> None:
    """Flip each container in turn: seconds from its unhealthy event to the restart's first
    event; the next once it is healthy again."""
    for container_id in ids:
        since = engine_ns(url)
        flip(url, [container_id])
        sick = events.first(container_id, UNHEALTHY, since, timeout)
        issued = events.first(container_id, RESTART_ISSUED, sick.ns, timeout)
        series.add((issued.ns - sick.ns) / 1e9)
        events.first(container_id, HEALTHY, issued.ns, timeout)


# -- autoheal --------------------------------------------------------------------------------


@contextlib.contextmanager
def autoheal(folder: Path, url: str, log: Path, env: dict[str, str]) -> Iterator[None]:
    """autoheal's own entrypoint, unchanged, watching every container of the engine."""
    entrypoint = folder / "docker-entrypoint"
    if not entrypoint.is_file():
        raise SystemExit(
            f"no autoheal at {folder} (docker-entrypoint missing): pass --autoheal DIR, the "
            "folder holding autoheal's docker-entrypoint"
        )
    socket = url.removeprefix("unix://")
    env = {**env, "DOCKER_SOCK": socket, "AUTOHEAL_CONTAINER_LABEL": "all"}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            ["bash", str(entrypoint), "autoheal"],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its loop's curl, jq and sleep go with it
        )
    try:
        until(lambda: "AUTOHEAL_INTERVAL" in log.read_text(), 10, "autoheal started", None)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# -- measuring -------------------------------------------------------------------------------


@dataclass
class Results:
    nebula: stacks.Series = field(default_factory=lambda: stacks.Series("nebulad"))
    autoheal: stacks.Series = field(default_factory=lambda: stacks.Series("autoheal"))
    storm_containers: int = 0
    storm_incidents: int = 0
    storm_executions: int = 0
    storm_max_running: int = 0
    storm_recovered: int = 0
    storm_recovery_s: float | None = None
    storm_api: stacks.Series = field(default_factory=lambda: stacks.Series("whole storm"))
    storm_api_busy: stacks.Series = field(
        default_factory=lambda: stacks.Series("while runbooks ran")
    )
    idle: dict[str, Idle] = field(default_factory=dict)
    phase_s: dict[str, float] = field(default_factory=dict)


def phase_restart(args: argparse.Namespace, url: str, image: str, tmp: Path, r: Results) -> None:
    started = time.perf_counter()
    repo = Repo(tmp / "restart", stacks.private_env(tmp / "xdg-git-restart"))
    names = stacks.stack_names("flip", args.flips)
    write_repo(repo.work, image, names, services=1, health_interval=1, runbooks=[RESTART_RUNBOOK])
    sha = publish(repo, "one-service apps and a restart runbook")
    events = EventLog(url)
    try:
        with running_daemon(tmp / "restart-daemon", repo.bare, url) as daemon:
            daemon.start()
            until(lambda: daemon.idle_at(sha), args.phase_timeout, "all applied", daemon)
            ids = list(all_healthy(url, args.flips, 60, daemon).values())
            restart_latencies(url, events, ids, r.nebula)
        with autoheal(args.autoheal, url, tmp / "autoheal.log", stacks.private_env(tmp / "ah")):
            ids = list(all_healthy(url, args.flips, 60, None).values())
            restart_latencies(url, events, ids, r.autoheal)
    finally:
        events.close()
        stacks.sweep(url)
    r.phase_s["restart"] = time.perf_counter() - started


def most_at_once(executions: Sequence[dict[str, Any]]) -> int:
    """The most executions between their start and end at one moment."""
    edges: list[tuple[datetime, int]] = []
    for execution in executions:
        edges.append((datetime.fromisoformat(execution["started_at"]), 1))
        if execution.get("completed_at"):
            edges.append((datetime.fromisoformat(execution["completed_at"]), -1))
    running = most = 0
    for _, step in sorted(edges):  # an end sorts before a start at the same instant
        running += step
        most = max(most, running)
    return most


def api(daemon: Daemon) -> httpx.Client:
    """A client of nebulad's API on its unix socket (peer credentials: no token)."""
    transport = httpx.HTTPTransport(uds=str(daemon.socket))
    return httpx.Client(transport=transport, base_url="http://nebulad/api/v1", timeout=30)


def get(client: httpx.Client, path: str, key: str) -> list[dict[str, Any]]:
    response = client.get(path)
    response.raise_for_status()
    return list(response.json()[key])


class Sampler:
    """`GET /api/v1/incidents` on the daemon's socket, one after another, until stopped:
    (wall time sent, seconds) of each."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with api(self._daemon) as client:
            while not self._stop.is_set():
                sent, before = time.time(), time.perf_counter()
                get(client, "/incidents?limit=100", "incidents")
                self.samples.append((sent, time.perf_counter() - before))
                self._stop.wait(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def recovered(events: EventLog, container_id: str, since: int, timeout: float) -> int | None:
    """ns of the container's healthy event after a restart issued after `since`, or None."""
    try:
        issued = events.first(container_id, RESTART_ISSUED, since, timeout)
        return events.first(container_id, HEALTHY, issued.ns, timeout).ns
    except RuntimeError:
        return None


def phase_storm(args: argparse.Namespace, url: str, image: str, tmp: Path, r: Results) -> None:
    started = time.perf_counter()
    count = args.storm_installations * args.storm_services
    r.storm_containers = count
    repo = Repo(tmp / "storm", stacks.private_env(tmp / "xdg-git-storm"))
    names = stacks.stack_names("storm", args.storm_installations)
    write_repo(
        repo.work,
        image,
        names,
        services=args.storm_services,
        health_interval=args.storm_health_interval,
        runbooks=[RESTART_RUNBOOK],
    )
    sha = publish(repo, "the storm's apps and a restart runbook")
    events = EventLog(url)
    try:
        with running_daemon(tmp / "storm-daemon", repo.bare, url) as daemon:
            daemon.start()
            until(lambda: daemon.idle_at(sha), args.phase_timeout, "all applied", daemon)
            ids = list(all_healthy(url, count, args.phase_timeout, daemon).values())
            sampler = Sampler(daemon)
            since = engine_ns(url)
            flip(url, ids)
            deadline = time.monotonic() + args.storm_timeout
            with ThreadPoolExecutor(16) as pool:
                ends = list(
                    pool.map(
                        lambda c: recovered(events, c, since, deadline - time.monotonic()), ids
                    )
                )
            sampler.stop()
            done = [end for end in ends if end is not None]
            r.storm_recovered = len(done)
            if len(done) == count:
                r.storm_recovery_s = (max(done) - since) / 1e9
            with api(daemon) as client:
                r.storm_incidents = len(get(client, "/incidents?limit=1000", "incidents"))
                executions = get(client, "/runbooks/executions?limit=1000", "executions")
            r.storm_executions = len(executions)
            busy_until = max(
                (datetime.fromisoformat(e["completed_at"]).timestamp() for e in executions),
                default=0.0,
            )
            for sent, seconds in sampler.samples:
                r.storm_api.add(seconds)
                if sent <= busy_until:
                    r.storm_api_busy.add(seconds)
            r.storm_max_running = most_at_once(executions)
    finally:
        events.close()
        stacks.sweep(url)
    r.phase_s["storm"] = time.perf_counter() - started


def phase_idle(args: argparse.Namespace, url: str, image: str, tmp: Path, r: Results) -> None:
    """The same installations under three fresh daemons: one applies them (not measured),
    then one without runbooks and one with them, each on its default intervals."""
    started = time.perf_counter()
    repo = Repo(tmp / "idle", stacks.private_env(tmp / "xdg-git-idle"))
    names = stacks.stack_names("idle", args.idle_installations)
    runbooks: dict[str, list[dict[str, Any]]] = {
        "without runbooks": [],
        "with runbooks": idle_runbooks(args.idle_runbooks),
    }
    try:
        for i, (label, loaded) in enumerate([("setup", []), *runbooks.items()]):
            write_repo(repo.work, image, names, services=1, health_interval=None, runbooks=loaded)
            sha = publish(repo, f"{args.idle_installations} apps, {len(loaded)} runbooks")
            with running_daemon(tmp / f"idle-daemon-{i}", repo.bare, url) as daemon:
                daemon.start()
                until(lambda sha=sha: daemon.idle_at(sha), args.phase_timeout, "applied", daemon)
                if label == "setup":
                    continue
                running = stacks.count_objects(url)["running"]
                if running != args.idle_installations:
                    raise RuntimeError(f"{running} running, not {args.idle_installations}")
                with api(daemon) as client:
                    if len(get(client, "/runbooks", "runbooks")) != len(loaded):
                        raise RuntimeError(f"nebulad did not load the {len(loaded)} runbooks")
                time.sleep(2)  # the last events of its first sync are handled
                r.idle[label] = measure_idle(daemon, args.idle_seconds)
    finally:
        stacks.sweep(url)
    r.phase_s["idle"] = time.perf_counter() - started


# -- report ----------------------------------------------------------------------------------


def report(args: argparse.Namespace, r: Results, load_before: dict[str, Any]) -> None:
    result: dict[str, Any] = {"benchmark": "remediation", "machine_before": load_before}
    passed: dict[str, bool] = {}
    if r.nebula.values and r.autoheal.values:
        n50, a50 = r.nebula.median, r.autoheal.median
        speedup = stacks.ratio(a50, n50)
        passed["restart"] = n50 < TARGET_RESTART_P50_S and speedup >= TARGET_RESTART_RATIO
        stacks.print_table(
            f"Unhealthy event → restart issued (first kill/restart event), {args.flips} flips "
            "each, the same containers; seconds",
            ["tool", "p50", "p90", "best", "worst", "autoheal / tool (p50)"],
            [
                [
                    s.name,
                    s.median,
                    s.percentile(90),
                    s.best,
                    max(s.values),
                    stacks.ratio(a50, s.median),
                ]
                for s in (r.nebula, r.autoheal)
            ],
        )
        stacks.print_table(
            "Verdict",
            ["figure", "value", "target", "verdict"],
            [
                ["nebulad p50 s", n50, f"< {TARGET_RESTART_P50_S:g}", stacks.verdict(n50 < 1)],
                [
                    "autoheal / nebulad (p50)",
                    speedup,
                    f">= {TARGET_RESTART_RATIO:g}",
                    stacks.verdict(speedup >= TARGET_RESTART_RATIO),
                ],
            ],
        )
        result["restart"] = {
            "nebulad": {**r.nebula.to_dict(), "p90_s": round(r.nebula.percentile(90), 4)},
            "autoheal": {**r.autoheal.to_dict(), "p90_s": round(r.autoheal.percentile(90), 4)},
            "autoheal_over_nebulad_p50": round(speedup, 2),
        }
    if r.storm_containers:
        busy = r.storm_api_busy if r.storm_api_busy.values else r.storm_api
        p99 = busy.percentile(99)
        all_back = r.storm_recovered == r.storm_containers
        held = r.storm_max_running <= CONCURRENCY
        passed["storm"] = all_back and held and p99 < TARGET_API_P99_S
        recovery = f"{r.storm_recovery_s:.1f} s" if r.storm_recovery_s is not None else "-"
        stacks.print_table(
            f"Storm: {r.storm_containers} containers ({args.storm_installations} installations × "
            f"{args.storm_services} services) unhealthy at once",
            ["measure", "value", "target", "verdict"],
            [
                ["incidents opened", r.storm_incidents, f"few (≤ {args.storm_installations})", ""],
                ["runbook executions", r.storm_executions, "", ""],
                [
                    "most executions at once",
                    r.storm_max_running,
                    f"≤ {CONCURRENCY}",
                    stacks.verdict(held),
                ],
                [
                    f"GET /api/v1/incidents p99 s, {busy.name} ({len(busy.values)} requests)",
                    p99,
                    f"< {TARGET_API_P99_S:g}",
                    stacks.verdict(p99 < TARGET_API_P99_S),
                ],
                ["  its p50 s", busy.median, "", ""],
                [
                    f"  p99 s, whole storm ({len(r.storm_api.values)} requests)",
                    r.storm_api.percentile(99),
                    "",
                    "",
                ],
                [
                    "services recovered",
                    f"{r.storm_recovered} of {r.storm_containers}",
                    "all",
                    stacks.verdict(all_back),
                ],
                ["  flip → all healthy again", recovery, "", ""],
            ],
        )
        result["storm"] = {
            "containers": r.storm_containers,
            "incidents": r.storm_incidents,
            "executions": r.storm_executions,
            "max_running": r.storm_max_running,
            "concurrency": CONCURRENCY,
            "api_while_runbooks_ran": {
                "p99_s": round(p99, 4),
                "p50_s": round(busy.median, 4),
                "requests": len(busy.values),
            },
            "api_whole_storm": {
                "p99_s": round(r.storm_api.percentile(99), 4),
                "p50_s": round(r.storm_api.median, 4),
                "requests": len(r.storm_api.values),
            },
            "recovered": r.storm_recovered,
            "recovery_s": r.storm_recovery_s and round(r.storm_recovery_s, 2),
        }
    if r.idle:
        base, loaded = r.idle["without runbooks"], r.idle["with runbooks"]
        passed["idle"] = loaded.cpu_pct <= base.cpu_pct + 0.5 and loaded.rss_mb <= base.rss_mb + 5
        stacks.print_table(
            f"Idle nebulad, {args.idle_installations} installations, default intervals, "
            f"{args.idle_seconds:g} s windows",
            ["measure", "without runbooks", f"with {args.idle_runbooks} runbooks", "difference"],
            [
                [
                    "CPU, % of one core",
                    base.cpu_pct,
                    loaded.cpu_pct,
                    f"{loaded.cpu_pct - base.cpu_pct:+.3f}",
                ],
                ["  + git (children)", base.children_cpu_pct, loaded.children_cpu_pct, ""],
                ["RSS MB, end", base.rss_mb, loaded.rss_mb, f"{loaded.rss_mb - base.rss_mb:+.1f}"],
                ["RSS MB, highest", base.rss_max_mb, loaded.rss_max_mb, ""],
                ["syncs in the window", base.syncs, loaded.syncs, ""],
            ],
        )
        print(
            "Verdict (no worse: CPU within 0.5 point of a core, RSS within 5 MB): "
            + stacks.verdict(passed["idle"])
        )
        result["idle"] = {
            label: {
                "window_s": round(idle.window_s, 1),
                "cpu_pct_of_core": round(idle.cpu_pct, 3),
                "children_cpu_pct_of_core": round(idle.children_cpu_pct, 3),
                "rss_mb": round(idle.rss_mb, 1),
                "rss_max_mb": round(idle.rss_max_mb, 1),
                "syncs": idle.syncs,
            }
            for label, idle in r.idle.items()
        }
    result |= {
        "machine_after": stacks.machine(),
        "pass": passed,
        "phase_s": {k: round(v, 1) for k, v in r.phase_s.items()},
    }
    stacks.emit_json(result, args.json)


PHASES: dict[str, Callable[[argparse.Namespace, str, str, Path, Results], None]] = {
    "restart": phase_restart,
    "storm": phase_storm,
    "idle": phase_idle,
}


def main() -> None:
    parser = stacks.base_parser((__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--flips", type=int, default=20)
    parser.add_argument(
        "--autoheal",
        type=Path,
        default=AUTOHEAL_DEFAULT,
        help="folder holding autoheal's docker-entrypoint (default: ../shared/peers/autoheal "
        "from the project root)",
    )
    parser.add_argument("--storm-installations", type=int, default=10)
    parser.add_argument("--storm-services", type=int, default=10)
    parser.add_argument("--storm-timeout", type=float, default=180.0)
    parser.add_argument(
        "--storm-health-interval",
        type=float,
        default=10.0,
        help="seconds between the storm's healthchecks (100 probes a second would be 100 "
        "runc execs a second: more than 2 cores do)",
    )
    parser.add_argument("--idle-installations", type=int, default=50)
    parser.add_argument("--idle-runbooks", type=int, default=20)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--only", choices=sorted(PHASES), action="append")
    parser.add_argument(
        "--phase-timeout", type=float, default=300.0, help="seconds an apply may take at most"
    )
    args = parser.parse_args()
    if min(args.flips, args.storm_installations, args.storm_services) < 1:
        parser.error("--flips, --storm-installations and --storm-services must be at least 1")
    load_before = stacks.machine()
    r = Results()
    with stacks.docker_session() as (url, image), stacks.scratch_dir("nebula-bench-") as tmp:
        for name in args.only or PHASES:
            PHASES[name](args, url, image, tmp, r)
    report(args, r, load_before)


if __name__ == "__main__":
    main()
