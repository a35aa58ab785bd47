"""nebulad: push to running, drift undone, and what an idle daemon costs.

    python3 bench/daemon.py [--pushes 20] [--drifts 20] [--idle-installations 50]
                            [--idle-seconds 60] [--json PATH]

On the test suite's private dockerd, nebulad runs as the real `nebulad` console script (beside
this interpreter), following a bare git repo on this machine, with its own data dir and private
XDG dirs. Three phases, each bounded in time:

1. **Push to running**: the post-receive hook installed with `nebula hooks install BARE`; each
   of --pushes `git push`es adds one installation (one busybox httpd service, no port, volume or
   healthcheck). Timed from `git push` returning (the hook has told nebulad by then) to the
   `start` event of the new container on one /events stream; the push itself is shown beside.
   Before each push nebulad is idle (its last sync ended), so every figure is one sync alone.
2. **Drift**: `docker rm -f` of a managed container, --drifts times over the installations of
   phase 1: timed from the call to the `start` event of its replacement.
3. **Idle**: a fresh nebulad on default intervals (poll 60 s, drift 30 s) following a repo of
   --idle-installations installations, once they all run and the daemon is idle, for
   --idle-seconds: CPU of one core from /proc/PID/stat (utime+stime over the window; the git
   processes it starts, reaped children, shown beside) and RSS (VmRSS of /proc/PID/status,
   sampled every second: the last and the highest).

Targets (from the issue): push to running p50 < 1.5 s and p95 < 3 s; drift p50 < 2 s; idle CPU
< 1 % of a core and RSS < 120 MB. For comparison, the default polling intervals of the peers
(documented; nothing of theirs is run): a commit waits for the next poll unless a webhook is set.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import stacks

TARGET_PUSH_P50_S = 1.5
TARGET_PUSH_P95_S = 3.0
TARGET_DRIFT_P50_S = 2.0
TARGET_IDLE_CPU_PCT = 1.0
TARGET_IDLE_RSS_MB = 120.0
PEERS = (  # how often each polls its git source by default (documented; none of them is run)
    ("Argo CD", 180.0, "timeout.reconciliation in argocd-cm"),
    ("Flux", 60.0, "GitRepository interval, `flux create source git`"),
    ("Portainer", 300.0, "GitOps stack polling interval"),
)
SHAPE = stacks.StackShape(port=False, healthcheck=False, worker=False, volume=False)
SERVICE = "web"  # the one service of each installation (stacks.compose_document)
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.test",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.test",
}


# -- the config repo -------------------------------------------------------------------------


class Repo:
    """A bare repo (what nebulad follows) and a working clone that commits and pushes to it."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.bare = root / "homelab.git"
        self.work = root / "work"
        root.mkdir(parents=True)
        empty = root / "gitconfig"
        empty.write_text("")
        # The user's git config stays out of it (signing, hooks paths, templates).
        self.env = {**env, **GIT_IDENTITY, "GIT_CONFIG_GLOBAL": str(empty)}
        self.env["GIT_CONFIG_NOSYSTEM"] = "1"
        self.git("init", "-q", "--bare", "-b", "main", str(self.bare), cwd=root)
        self.git("init", "-q", "-b", "main", str(self.work), cwd=root)
        self.git("remote", "add", "origin", str(self.bare))

    def git(self, *args: str, cwd: Path | None = None) -> float:
        """Run git; return its wall seconds."""
        return stacks.run(["git", *args], env=self.env, cwd=cwd or self.work, timeout=60).seconds

    def commit(self, message: str, names: list[str], image: str) -> None:
        stacks.write_nebula_repo(self.work, names, image, SHAPE)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)

    def push(self) -> float:
        """`git push`; seconds until it returned (post-receive hook included)."""
        return self.git("push", "-q", "origin", "main")

    def head(self) -> str:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()


# -- nebulad ---------------------------------------------------------------------------------


def nebulad_script() -> Path:
    script = Path(sys.executable).parent / "nebulad"
    if not script.is_file():
        raise SystemExit(f"no nebulad console script beside {sys.executable}: pip install -e .")
    return script


class Daemon:
    """One nebulad process: its data dir, socket, log; started, awaited, stopped."""

    def __init__(self, root: Path, source: Path, url: str, *options: str) -> None:
        root.mkdir(parents=True)
        self.data_dir = root / "data"
        self.socket = self.data_dir / "nebulad.sock"
        self.log = root / "nebulad.log"
        env = stacks.private_env(root / "xdg")
        self.env = {k: v for k, v in env.items() if not k.startswith("NEBULA_")}
        cmd = [str(nebulad_script()), "--source", str(source), "--data-dir", str(self.data_dir)]
        self.cmd = [*cmd, "--docker-host", url, *options]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> float:
        """Start it; return the seconds until its API answered."""
        started = time.perf_counter()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env
            )
        until(lambda: self.status() is not None, timeout, "nebulad's API", self)
        return time.perf_counter() - started

    def status(self) -> dict[str, Any] | None:
        from nebula.cli.client import DaemonClient
        from nebula.errors import NebulaError

        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"nebulad exited with {self.proc.returncode}:\n{self.tail()}")
        try:
            with DaemonClient(self.socket) as client:
                return client.status()
        except NebulaError:
            return None

    def syncs(self, limit: int = 20) -> list[dict[str, Any]]:
        from nebula.cli.client import DaemonClient

        with DaemonClient(self.socket) as client:
            return client.syncs(limit)

    def idle_at(self, sha: str) -> bool:
        """It applied `sha` and its last sync ended."""
        state = self.status()
        if state is None:
            return False
        last = state.get("last_sync") or {}
        return state.get("applied_commit") == sha and last.get("status") not in (None, "running")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def until(check: Callable[[], bool], timeout: float, what: str, daemon: Daemon | None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            log = f"\n--- nebulad log\n{daemon.tail()}" if daemon else ""
            raise RuntimeError(f"{what}: not reached within {timeout:g} s{log}")
        time.sleep(0.02)


@contextlib.contextmanager
def running_daemon(root: Path, source: Path, url: str, *options: str) -> Iterator[Daemon]:
    daemon = Daemon(root, source, url, *options)
    try:
        yield daemon
    finally:
        daemon.stop()


# -- Docker ----------------------------------------------------------------------------------


class StartWatch:
    """One /events stream of managed containers' `start` events: when each name last started."""

    def __init__(self, url: str) -> None:
        self._api = stacks.api_client(url)
        self._cond = threading.Condition()
        self._starts: dict[str, list[tuple[float, str]]] = {}
        self._stream = self._api.events(
            decode=True,
            filters={"type": "container", "event": "start", "label": f"{stacks.NEBULA_LABEL}=true"},
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(Exception):  # ends when the stream is closed
            for event in self._stream:
                now = time.perf_counter()
                name = (event.get("Actor") or {}).get("Attributes", {}).get("name", "")
                with self._cond:
                    self._starts.setdefault(name, []).append((now, event.get("id", "")))
                    self._cond.notify_all()

    def wait(self, name: str, after: float, timeout: float, not_id: str = "") -> float:
        """perf_counter time of the first start of `name` at or after `after` (another
        container than `not_id`), waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for at, container_id in self._starts.get(name, []):
                    if at >= after and container_id != not_id:
                        return at
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"{name} did not start within {timeout:g} s")
                self._cond.wait(remaining)

    def close(self) -> None:
        self._stream.close()
        self._api.close()


# -- measuring -------------------------------------------------------------------------------


@dataclass
class Results:
    push: stacks.Series = field(default_factory=lambda: stacks.Series("push returned → running"))
    push_call: stacks.Series = field(default_factory=lambda: stacks.Series("git push (hook)"))
    push_sync: stacks.Series = field(default_factory=lambda: stacks.Series("nebulad's sync"))
    drift: stacks.Series = field(default_factory=lambda: stacks.Series("rm -f → running again"))
    drift_call: stacks.Series = field(default_factory=lambda: stacks.Series("docker rm -f call"))
    daemon_start_s: float = 0.0
    idle_apply_s: float = 0.0
    idle_window_s: float = 0.0
    idle_cpu_pct: float = 0.0
    idle_children_cpu_pct: float = 0.0
    idle_rss_mb: float = 0.0
    idle_rss_max_mb: float = 0.0
    idle_syncs: int = 0
    phase_s: dict[str, float] = field(default_factory=dict)


def phase_push_and_drift(
    args: argparse.Namespace, url: str, image: str, tmp: Path, r: Results
) -> None:
    repo = Repo(tmp / "push", stacks.private_env(tmp / "xdg-git"))
    names = ["base"]
    repo.commit("base", names, image)
    repo.push()
    watch = StartWatch(url)
    try:
        with running_daemon(tmp / "push-daemon", repo.bare, url) as daemon:
            hook = [stacks.nebula_script(), "hooks", "install", repo.bare]
            stacks.run([*hook, "--socket", daemon.socket], env=daemon.env)
            r.daemon_start_s = daemon.start()
            until(lambda: daemon.idle_at(repo.head()), 60, "first sync", daemon)

            started = time.perf_counter()
            deadline = time.monotonic() + args.phase_timeout
            for name in stacks.stack_names("app", args.pushes):
                names.append(name)
                repo.commit(f"add {name}", names, image)
                sha = repo.head()
                before = time.perf_counter()
                r.push_call.add(repo.push())
                pushed = time.perf_counter()
                up = watch.wait(f"{name}-{SERVICE}", before, deadline - time.monotonic())
                r.push.add(max(up - pushed, 0.0))
                until(lambda sha=sha: daemon.idle_at(sha), 30, f"sync of {name}", daemon)
                record = next(s for s in daemon.syncs() if s.get("commit") == sha)
                r.push_sync.add((record.get("duration_ms") or 0) / 1000)
            r.phase_s["push"] = time.perf_counter() - started

            started = time.perf_counter()
            deadline = time.monotonic() + args.phase_timeout
            api = stacks.api_client(url)
            try:
                for i in range(args.drifts):
                    name = f"{names[1 + i % (len(names) - 1)]}-{SERVICE}"
                    old = api.inspect_container(name)["Id"]
                    before = time.perf_counter()
                    api.remove_container(old, force=True)
                    r.drift_call.add(time.perf_counter() - before)
                    up = watch.wait(name, before, deadline - time.monotonic(), not_id=old)
                    r.drift.add(up - before)
                    sha = repo.head()
                    until(lambda sha=sha: daemon.idle_at(sha), 30, "drift sync ended", daemon)
                    time.sleep(0.2)  # its last events settle before the next removal
            finally:
                api.close()
            r.phase_s["drift"] = time.perf_counter() - started
    finally:
        watch.close()
        stacks.sweep(url)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass(frozen=True)
class Idle:
    """What a running nebulad cost over a window: CPU in % of one core, RSS in MB."""

    window_s: float
    cpu_pct: float
    children_cpu_pct: float  # the git processes it ran (reaped children)
    rss_mb: float  # at the end of the window
    rss_max_mb: float  # the highest of the samples taken every second
    syncs: int  # recorded in the window


def measure_idle(daemon: Daemon, seconds: float) -> Idle:
    """Watch `daemon` for `seconds`: utime+stime from /proc/PID/stat at both ends, VmRSS every
    second."""
    assert daemon.proc is not None
    pid = daemon.proc.pid
    syncs_before = len(daemon.syncs(1000))
    cpu0, children0 = stacks.cpu_ticks(pid)
    t0 = time.perf_counter()
    samples = []
    while time.perf_counter() - t0 < seconds:
        time.sleep(min(1.0, max(0.0, seconds - (time.perf_counter() - t0))))
        samples.append(rss_mb(pid))
    cpu1, children1 = stacks.cpu_ticks(pid)
    window = time.perf_counter() - t0
    return Idle(
        window_s=window,
        cpu_pct=(cpu1 - cpu0) / stacks.CLK_TCK / window * 100,
        children_cpu_pct=(children1 - children0) / stacks.CLK_TCK / window * 100,
        rss_mb=samples[-1],
        rss_max_mb=max(samples),
        syncs=len(daemon.syncs(1000)) - syncs_before,
    )


def phase_idle(args: argparse.Namespace, url: str, image: str, tmp: Path, r: Results) -> None:
    repo = Repo(tmp / "idle", stacks.private_env(tmp / "xdg-git-idle"))
    names = stacks.stack_names("idle", args.idle_installations)
    repo.commit("homelab", names, image)
    repo.push()
    sha = repo.head()
    started = time.perf_counter()
    try:
        with running_daemon(tmp / "idle-daemon", repo.bare, url) as daemon:  # default intervals
            daemon.start()
            until(lambda: daemon.idle_at(sha), args.phase_timeout, "all applied", daemon)
            r.idle_apply_s = time.perf_counter() - started
            running = stacks.count_objects(url)["running"]
            if running != args.idle_installations:
                raise RuntimeError(f"{running} running, not {args.idle_installations}")
            time.sleep(2)  # the last events of the apply are handled
            idle = measure_idle(daemon, args.idle_seconds)
            r.idle_window_s, r.idle_cpu_pct = idle.window_s, idle.cpu_pct
            r.idle_children_cpu_pct = idle.children_cpu_pct
            r.idle_rss_mb, r.idle_rss_max_mb = idle.rss_mb, idle.rss_max_mb
            r.idle_syncs = idle.syncs
            if daemon.status() is None or not daemon.idle_at(sha):
                raise RuntimeError("nebulad is not idle at the end of the window")
    finally:
        stacks.sweep(url)
    r.phase_s["idle"] = time.perf_counter() - started


# -- report ----------------------------------------------------------------------------------


def report(args: argparse.Namespace, r: Results, load_before: dict[str, Any]) -> None:
    p50, p95 = r.push.median, r.push.percentile(95)
    d50, d95 = r.drift.median, r.drift.percentile(95)
    stacks.print_table(
        f"Push to running ({args.pushes} pushes, post-receive hook) and drift "
        f"({args.drifts} × docker rm -f); seconds",
        ["measure", "p50", "p95", "max", "target", "verdict"],
        [
            [
                r.push.name,
                p50,
                p95,
                max(r.push.values),
                f"p50 < {TARGET_PUSH_P50_S}, p95 < {TARGET_PUSH_P95_S}",
                stacks.verdict(p50 < TARGET_PUSH_P50_S and p95 < TARGET_PUSH_P95_S),
            ],
            [
                "  git push itself (before the above)",
                r.push_call.median,
                r.push_call.percentile(95),
                max(r.push_call.values),
                "",
                "",
            ],
            [
                "  nebulad's sync (its own record)",
                r.push_sync.median,
                r.push_sync.percentile(95),
                max(r.push_sync.values),
                "",
                "",
            ],
            [
                r.drift.name,
                d50,
                d95,
                max(r.drift.values),
                f"p50 < {TARGET_DRIFT_P50_S}",
                stacks.verdict(d50 < TARGET_DRIFT_P50_S),
            ],
            [
                "  docker rm -f call (inside the above)",
                r.drift_call.median,
                r.drift_call.percentile(95),
                max(r.drift_call.values),
                "",
                "",
            ],
        ],
    )
    stacks.print_table(
        "Reference: a commit waits for the next poll (documented default intervals; not run)",
        ["tool", "poll every s", "mean wait s", "worst wait s", "mean / nebulad p50", "setting"],
        [
            [name, interval, interval / 2, interval, f"{interval / 2 / p50:.0f}×", note]
            for name, interval, note in PEERS
        ],
    )
    stacks.print_table(
        f"Idle nebulad, {args.idle_installations} installations, default intervals "
        f"(poll 60 s, drift 30 s), {r.idle_window_s:.0f} s window",
        ["measure", "value", "target", "verdict"],
        [
            [
                "CPU, % of one core (utime+stime)",
                r.idle_cpu_pct,
                f"< {TARGET_IDLE_CPU_PCT}",
                stacks.verdict(r.idle_cpu_pct < TARGET_IDLE_CPU_PCT),
            ],
            ["  + git it ran (reaped children)", r.idle_children_cpu_pct, "", ""],
            [
                "RSS MB (VmRSS, end of window)",
                r.idle_rss_mb,
                f"< {TARGET_IDLE_RSS_MB:g}",
                stacks.verdict(r.idle_rss_mb < TARGET_IDLE_RSS_MB),
            ],
            ["  highest RSS MB in the window", r.idle_rss_max_mb, "", ""],
            ["syncs recorded in the window", r.idle_syncs, "", ""],
        ],
    )
    print(
        f"\nSetup: nebulad answered {r.daemon_start_s:.2f} s after it started; it applied the "
        f"{args.idle_installations} installations in {r.idle_apply_s:.1f} s. Phases: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in r.phase_s.items())
        + "."
    )
    result = {
        "benchmark": "daemon",
        "pushes": args.pushes,
        "drifts": args.drifts,
        "idle_installations": args.idle_installations,
        "machine_before": load_before,
        "machine_after": stacks.machine(),
        "push_to_running": {**r.push.to_dict(), "p50_s": round(p50, 4), "p95_s": round(p95, 4)},
        "git_push": r.push_call.to_dict(),
        "push_sync": r.push_sync.to_dict(),
        "drift_to_running": {**r.drift.to_dict(), "p50_s": round(d50, 4), "p95_s": round(d95, 4)},
        "drift_rm_call": r.drift_call.to_dict(),
        "idle": {
            "window_s": round(r.idle_window_s, 2),
            "cpu_pct_of_core": round(r.idle_cpu_pct, 3),
            "children_cpu_pct_of_core": round(r.idle_children_cpu_pct, 3),
            "rss_mb": round(r.idle_rss_mb, 1),
            "rss_max_mb": round(r.idle_rss_max_mb, 1),
            "syncs": r.idle_syncs,
            "apply_s": round(r.idle_apply_s, 2),
        },
        "daemon_ready_s": round(r.daemon_start_s, 3),
        "peers_poll_interval_s": {name: interval for name, interval, _ in PEERS},
        "targets": {
            "push_p50_s": TARGET_PUSH_P50_S,
            "push_p95_s": TARGET_PUSH_P95_S,
            "drift_p50_s": TARGET_DRIFT_P50_S,
            "idle_cpu_pct": TARGET_IDLE_CPU_PCT,
            "idle_rss_mb": TARGET_IDLE_RSS_MB,
        },
        "pass": {
            "push": p50 < TARGET_PUSH_P50_S and p95 < TARGET_PUSH_P95_S,
            "drift": d50 < TARGET_DRIFT_P50_S,
            "idle_cpu": r.idle_cpu_pct < TARGET_IDLE_CPU_PCT,
            "idle_rss": r.idle_rss_mb < TARGET_IDLE_RSS_MB,
        },
        "phase_s": {k: round(v, 1) for k, v in r.phase_s.items()},
    }
    stacks.emit_json(result, args.json)


def main() -> None:
    parser = stacks.base_parser((__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--pushes", type=int, default=20)
    parser.add_argument("--drifts", type=int, default=20)
    parser.add_argument("--idle-installations", type=int, default=50)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument(
        "--phase-timeout", type=float, default=300.0, help="seconds each phase may take at most"
    )
    args = parser.parse_args()
    if args.pushes < 1 or args.drifts < 1 or args.idle_installations < 1:
        parser.error("--pushes, --drifts and --idle-installations must be at least 1")
    load_before = stacks.machine()
    r = Results()
    with stacks.docker_session() as (url, image), stacks.scratch_dir("nebula-bench-") as tmp:
        phase_push_and_drift(args, url, image, tmp, r)
        phase_idle(args, url, image, tmp, r)
    report(args, r, load_before)


if __name__ == "__main__":
    main()
