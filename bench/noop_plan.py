"""A no-op plan over 200 installations: wall time, cold and warm, and its Docker API requests.

    python3 bench/noop_plan.py [--installations 200] [--runs 5] [--json PATH]

On the test suite's private dockerd: a config repo of 200 one-service installations (busybox
httpd, no port, no volume, no healthcheck) is applied once with `nebula apply` (setup, timed and
reported; Nebula creates the 200 networks itself, each a /26 of its own subnet pool), then:

- `nebula plan REPO` end to end as a subprocess (the real CLI), best of --runs each way; it must
  say "No changes":
  - warm: replayed from Nebula's no-op memo (`XDG_CACHE_HOME/nebula/noop-plans.json`), primed by
    one untimed plan first: what a person re-running the command meets;
  - cold: every run with a fresh, empty XDG_CACHE_HOME, so it takes the full path (load and
    validate the repo, observe, diff) and records the memo: the first plan after any change;
- the same two in-process: the full plan (`load_desired`, `observe`, `diff` on a fresh
  `DockerProvider`) split into its parts, and the replay (`nebula.engine.session.replay_noop`);
- the HTTP requests each in-process plan sends, counted at the http.client level, so every
  request counts whichever client sends it (Nebula's EngineReader, or requests/urllib3 under the
  docker SDK).

Targets (from the issue): a no-op plan of 200 installations under 0.3 s, at most 5 requests.
The verdict is on the warm plan; the cold one is shown beside it.
"""

from __future__ import annotations

import argparse
import http.client
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import stacks

TARGET_PLAN_S = 0.3
TARGET_REQUESTS = 5
SHAPE = stacks.StackShape(port=False, healthcheck=False, worker=False, volume=False)
COLD_NOTE = (
    "warm = replayed from the no-op memo (repo files and observed state unchanged since a plan "
    "that changed nothing); cold = the first plan after any change: loads and validates "
    "everything, then records the memo."
)


@contextmanager
def counting_requests() -> Iterator[list[str]]:
    """Record `METHOD /path` (query dropped) of every HTTP request any client starts meanwhile.

    Wraps `http.client.HTTPConnection.putrequest`: http.client's own `request()` (Nebula's
    EngineReader) goes through it, and so does urllib3 (under requests and the docker SDK), whose
    connections override `request()` but still call the base class's `putrequest()`.
    """
    sent: list[str] = []
    original = http.client.HTTPConnection.putrequest

    def putrequest(
        self: http.client.HTTPConnection, method: str, url: str, *a: Any, **k: Any
    ) -> Any:
        sent.append(f"{method} {urlsplit(url).path}")
        return original(self, method, url, *a, **k)

    http.client.HTTPConnection.putrequest = putrequest  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        http.client.HTTPConnection.putrequest = original  # type: ignore[method-assign]


@contextmanager
def cache_home(path: str) -> Iterator[None]:
    """XDG_CACHE_HOME set to `path` in this process (where the memo is looked up) meanwhile."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = path
    try:
        yield
    finally:
        if before is None:
            del os.environ["XDG_CACHE_HOME"]
        else:
            os.environ["XDG_CACHE_HOME"] = before


def in_process_plan(url: str, repo: Path) -> dict[str, float | int]:
    """One full no-op plan in this process: load, observe, diff; seconds of each and the total."""
    from nebula.engine.load import load_desired
    from nebula.kinds.packages.diff import diff
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


def in_process_replay(url: str, repo: Path, cache: str) -> float:
    """One replayed no-op plan in this process, from the memo under `cache`; seconds."""
    from nebula.engine.session import replay_noop

    with cache_home(cache):
        started = time.perf_counter()
        replayed = replay_noop(repo, url)
        seconds = time.perf_counter() - started
    if replayed is None:
        raise RuntimeError("in-process replay missed the memo")
    return seconds


@dataclass
class Measured:
    applied_s: float = 0.0
    primed_s: float = 0.0
    sweep_s: float = 0.0
    resources: int = 0
    replayed: int = 0  # warm CLI runs that left the memo untouched, i.e. were replayed
    warm: stacks.Series = field(
        default_factory=lambda: stacks.Series("nebula plan, warm: replayed from the memo")
    )
    cold: stacks.Series = field(
        default_factory=lambda: stacks.Series(
            "nebula plan, cold: full path (empty XDG_CACHE_HOME each run)"
        )
    )
    in_replay: stacks.Series = field(
        default_factory=lambda: stacks.Series(
            "in-process replay (replay_noop: memo, observe, digest)"
        )
    )
    in_full: stacks.Series = field(
        default_factory=lambda: stacks.Series("in-process full plan (load_desired, observe, diff)")
    )
    fastest: dict[str, float | int] = field(default_factory=dict)
    sent_replay: list[str] = field(default_factory=list)
    sent_full: list[str] = field(default_factory=list)


def main() -> None:
    parser = stacks.base_parser((__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--installations", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5, help="plans timed each way (best reported)")
    args = parser.parse_args()
    load_before = stacks.machine()
    with stacks.docker_session() as (url, image), stacks.scratch_dir("nebula-bench-") as tmp:
        m = measure(args, url, image, tmp)
    report(args, m, load_before)


def measure(args: argparse.Namespace, url: str, image: str, tmp: Path) -> Measured:
    m = Measured()
    names = stacks.stack_names("inst", args.installations)
    nebula = stacks.nebula_script()
    repo = stacks.write_nebula_repo(tmp / "repo", names, image, SHAPE)
    apply_cmd: list[str | Path] = [nebula, "apply", "--yes", repo, "--docker-host", url]
    apply_cmd += ["--database-url", f"sqlite:///{tmp}/nebula.db"]
    m.applied_s = stacks.run(
        apply_cmd, env=stacks.private_env(tmp / "xdg-apply"), timeout=600
    ).seconds
    counts = stacks.count_objects(url)
    if counts["running"] != args.installations or counts["networks"] < args.installations:
        raise RuntimeError(f"apply left {counts} for {args.installations} installations")
    print(
        f"setup: {args.installations} installations applied in {m.applied_s:.1f}s "
        f"(Nebula created their {counts['networks']} networks)"
    )

    plan_cmd: list[str | Path] = [nebula, "plan", repo, "--docker-host", url]

    def cli_plan(env: dict[str, str]) -> float:
        ran = stacks.run(plan_cmd, env=env)
        if "No changes." not in ran.stdout:
            raise RuntimeError(f"nebula plan is not a no-op:\n{ran.stdout}")
        return ran.seconds

    warm_env = stacks.private_env(tmp / "xdg-warm")
    m.primed_s = cli_plan(warm_env)  # a full plan: it records the memo
    if stacks.memo_stamp(warm_env) is None:
        raise RuntimeError(f"the priming plan left no memo at {stacks.memo_file(warm_env)}")
    for run in range(args.runs):  # interleaved, so any drift hits both alike
        cold_env = stacks.private_env(tmp / f"xdg-cold-{run}")
        m.cold.add(cli_plan(cold_env))
        if stacks.memo_stamp(cold_env) is None:
            raise RuntimeError("a cold plan recorded no memo: did it take the full path?")
        stamp = stacks.memo_stamp(warm_env)
        m.warm.add(cli_plan(warm_env))
        m.replayed += stacks.memo_stamp(warm_env) == stamp  # a full plan rewrites the memo

    warm_cache = warm_env["XDG_CACHE_HOME"]
    parts = [in_process_plan(url, repo) for _ in range(args.runs)]
    m.in_full.values = [float(p["total_s"]) for p in parts]
    m.fastest = min(parts, key=lambda p: p["total_s"])
    m.in_replay.values = [in_process_replay(url, repo, warm_cache) for _ in range(args.runs)]
    with counting_requests() as m.sent_full:
        m.resources = int(in_process_plan(url, repo)["changes"])
    with counting_requests() as m.sent_replay:
        in_process_replay(url, repo, warm_cache)
    m.sweep_s = stacks.sweep(url)
    return m


def report(args: argparse.Namespace, m: Measured, load_before: dict[str, Any]) -> None:
    warm, cold, in_replay, in_full = m.warm, m.cold, m.in_replay, m.in_full
    warm_label = warm.name
    if m.replayed < args.runs:
        warm_label += f" (only {m.replayed} of {args.runs} replayed!)"
    stacks.print_table(
        f"No-op plan of {args.installations} installations (best of {args.runs}; seconds)",
        ["measure", "best", "median", "target", "verdict"],
        [
            [
                warm_label,
                warm.best,
                warm.median,
                f"< {TARGET_PLAN_S}",
                stacks.verdict(warm.best < TARGET_PLAN_S),
            ],
            [cold.name, cold.best, cold.median, "", ""],
            [in_replay.name, in_replay.best, in_replay.median, "", ""],
            [in_full.name, in_full.best, in_full.median, "", ""],
            ["  of which: load and resolve the repo", float(m.fastest["load_s"]), "", "", ""],
            ["  of which: observe Docker", float(m.fastest["observe_s"]), "", "", ""],
            ["  of which: diff", float(m.fastest["diff_s"]), "", "", ""],
            [
                "CLI warm − in-process replay (interpreter, imports)",
                warm.best - in_replay.best,
                "",
                "",
                "",
            ],
            [
                "CLI cold − in-process full (interpreter, imports)",
                cold.best - in_full.best,
                "",
                "",
                "",
            ],
        ],
    )
    print(COLD_NOTE)
    stacks.print_table(
        "Docker API requests of one in-process plan (counted at http.client)",
        ["measure", "requests", "target", "verdict"],
        [
            [
                label,
                len(sent),
                f"<= {TARGET_REQUESTS}",
                stacks.verdict(len(sent) <= TARGET_REQUESTS),
            ]
            for label, sent in (("replayed (warm)", m.sent_replay), ("full (cold)", m.sent_full))
        ],
    )
    for label, sent in (("replayed", m.sent_replay), ("full", m.sent_full)):
        for line in sent:
            print(f"  {label}: {line}")
    print(
        f"\nSetup: apply of {args.installations} installations from nothing "
        f"{m.applied_s:.1f} s ({m.resources} resources); priming plan {m.primed_s:.3f} s; "
        f"cleanup {m.sweep_s:.1f} s."
    )
    result = {
        "benchmark": "noop_plan",
        "installations": args.installations,
        "runs": args.runs,
        "machine_before": load_before,
        "machine_after": stacks.machine(),
        "setup_apply_s": round(m.applied_s, 3),
        "priming_plan_s": round(m.primed_s, 4),
        "cli_plan_warm": warm.to_dict(),
        "cli_plan_warm_replayed_runs": m.replayed,
        "cli_plan_cold": cold.to_dict(),
        "in_process_replay": in_replay.to_dict(),
        "in_process_plan": in_full.to_dict(),
        "in_process_parts_best_s": {
            k: round(float(v), 4) for k, v in m.fastest.items() if k.endswith("_s")
        },
        "docker_requests_replay": len(m.sent_replay),
        "docker_requests_replay_sent": m.sent_replay,
        "docker_requests": len(m.sent_full),
        "docker_requests_sent": m.sent_full,
        "targets": {"plan_max_s": TARGET_PLAN_S, "requests_max": TARGET_REQUESTS},
        "pass": {
            "cli_plan_warm": warm.best < TARGET_PLAN_S,
            "requests_replay": len(m.sent_replay) <= TARGET_REQUESTS,
            "requests": len(m.sent_full) <= TARGET_REQUESTS,
        },
        "cold_within_plan_target": cold.best < TARGET_PLAN_S,
    }
    stacks.emit_json(result, args.json)


if __name__ == "__main__":
    main()
