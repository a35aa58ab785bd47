"""Nebula's DNS beside octodns (+ octodns-powerdns) on the same PowerDNS zone of 1,000 records.

One real `pdns_server` (sqlite3 backend, as the tests start it). Every tool reaches its API
through a small counting proxy on loopback, so every HTTP request each makes is counted. Three
tools: `nebula dns apply` and octodns, each step a whole process, and nebulad, warm (where DNS
runs on every sync). `--runs` rounds, the tools in turn within a round and a different one going
first each round (so a machine whose speed drifts drifts alike for all); in each, the zone is
deleted (directly, not through the proxy), then

1. initial sync: the zone does not exist; the tool creates it with its 1,000 records;
2. a 10-record change: ten A records get new addresses;
3. a no-op: nothing changed (`--noop-runs` times, median).

Nebula's cache dir is emptied before every initial sync and change, so those run its full
path (parse and validate the repo); the no-ops find the desired zones it remembered.

For the two commands every step is the whole command as a subprocess (`nebula dns apply --yes
REPO`, `octodns-sync --config-file CONFIG --doit`): wall time, CPU time (user + system of the
child, from the kernel's accounting of the reaped process) and requests.

nebulad (the console script, `--watch` on a folder of the same repo, on a private Docker Engine
as the tests start one) is started once and stays warm across steps and rounds, after one
untimed round; it is driven only through its API on its unix socket (see `Nebulad`). Its figures
are the sync's: CPU is the process's user + system time from the request to the sync recorded
as finished, wall the time between the two.

Medians are reported; a ratio judged against a target is the median of each round's own ratio
(octodns's run over Nebula's run of the same round, seconds apart). Targets: nebulad at least 3x
less CPU than octodns on all three steps, the `nebula dns apply` process at least 2x, never more
requests, a no-op under 0.3 s. `--instructions` adds one round of the two commands under
valgrind's callgrind: instruction counts, which do not move with the machine's load.

octodns and octodns-powerdns are installed with pip when missing (for this benchmark only; they
are no dependency of Nebula). Nebula's modules are byte-compiled first, as pip compiles an
installed package's (octodns's were when pip installed it): an editable install run with
PYTHONDONTWRITEBYTECODE set would otherwise compile every module from source on every run.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.util
import json
import os
import queue
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

import stacks

ZONE = "bench.test"
SECRET = "PDNS_KEY"
CHANGED = 10
COMMANDS = ("nebula", "octodns")  # one whole process per step
TOOLS = ("nebula", "nebulad", "octodns")
STEPS = ("initial", "change", "noop")
TARGETS = {"nebulad": 3.0, "nebula": 2.0}  # CPU octodns / tool, each step
CALLGRIND = ("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null")
SETTLE = 1.0  # seconds for nebulad's folder watcher to report written files (it waits 0.2 s)


# -- the zone ------------------------------------------------------------------------------------


def records(records_count: int, changed: bool) -> list[tuple[str, str, str]]:
    """(name, type, value) of the zone: mostly A, some AAAA, TXT, CNAME and MX, one per name.
    `changed`: the first ten A records point elsewhere (`x.x.x.200`, a value no other has)."""
    kinds = ("A",) * 7 + ("AAAA", "TXT", "CNAME")
    out = []
    moved = 0
    for i in range(records_count):
        name = f"h{i:04}"
        kind = kinds[i % 10] if i % 50 else "MX"
        if kind == "A":
            last = i % 250 + 1
            if changed and moved < CHANGED:
                last, moved = 200, moved + 1
            value = f"10.{i // 250 % 250}.{i % 250}.{last}"
        elif kind == "AAAA":
            value = f"2001:db8::{i:x}"
        elif kind == "TXT":
            value = f"bench record {i}"
        elif kind == "CNAME":
            value = f"h{i - 1:04}.{ZONE}."
        else:
            value = "10 mail.example.net."
        out.append((name, kind, value))
    return out


def write_nebula(root: Path, api: str, rows: list[tuple[str, str, str]]) -> None:
    (root / "domains").mkdir(parents=True, exist_ok=True)
    (root / "nebula.yaml").write_text("{}\n")
    doc = {
        "zone": ZONE,
        "provider": "powerdns",
        "account": {"api_url": api, "token": f"${{secret:{SECRET}}}"},
        "ttl": 300,
        "records": [{"name": n, "type": t, "value": v} for n, t, v in rows],
    }
    (root / "domains" / f"{ZONE}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def write_octodns(root: Path, api: str, rows: list[tuple[str, str, str]]) -> None:
    (root / "zones").mkdir(parents=True, exist_ok=True)
    url = urlsplit(api)
    config = {
        "providers": {
            "config": {
                "class": "octodns.provider.yaml.YamlProvider",
                "directory": str(root / "zones"),
                "default_ttl": 300,
                "enforce_order": False,
            },
            "pdns": {
                "class": "octodns_powerdns.PowerDnsProvider",
                "host": url.hostname,
                "port": url.port,
                "scheme": "http",
                "api_key": f"env/{SECRET}",
            },
        },
        "zones": {f"{ZONE}.": {"sources": ["config"], "targets": ["pdns"]}},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    zone: dict[str, Any] = {}
    for name, kind, value in rows:
        entry: dict[str, Any] = {"type": kind, "ttl": 300}
        if kind == "MX":
            preference, exchange = value.split()
            entry["value"] = {"preference": int(preference), "exchange": exchange}
        else:
            entry["value"] = value
        zone[name] = entry
    (root / "zones" / f"{ZONE}.yaml").write_text(yaml.safe_dump(zone))


# -- a counting proxy in front of the PowerDNS API --------------------------------------------


@dataclass
class Counter:
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextlib.contextmanager
def counting_proxy(upstream: str) -> Iterator[tuple[str, Counter]]:
    target = urlsplit(upstream)
    counter = Counter()

    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            with counter.lock:
                counter.requests.append(f"{self.command} {self.path.split('?')[0]}")
            conn = http.client.HTTPConnection(target.hostname or "", target.port, timeout=120)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            conn.request(self.command, self.path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            conn.close()

        def do_GET(self) -> None:
            self._forward()

        def do_POST(self) -> None:
            self._forward()

        def do_PATCH(self) -> None:
            self._forward()

        def do_PUT(self) -> None:
            self._forward()

        def do_DELETE(self) -> None:
            self._forward()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", counter
    finally:
        server.shutdown()
        server.server_close()


# -- running the tools -------------------------------------------------------------------------


@dataclass
class Run:
    wall: float
    cpu: float
    requests: int
    calls: list[str]
    instructions: float | None = None  # millions, under callgrind (`--instructions`)


def timed(command: list[str], env: dict[str, str], counter: Counter, count: bool = False) -> Run:
    """Run `command`; with `count`, under valgrind's callgrind, which counts the instructions it
    executes (the same count whatever else the machine is doing; its times are then meaningless)."""
    with counter.lock:
        counter.requests.clear()
    if count:
        command = [*CALLGRIND, sys.executable, *command]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    with counter.lock:
        calls = list(counter.requests)
    collected = re.search(r"Collected : (\d+)", result.stderr) if count else None
    return Run(wall, cpu, len(calls), calls, int(collected[1]) / 1e6 if collected else None)


def script(name: str) -> str:
    """A console script beside the running interpreter (not a version manager's shim, whose own
    start would be timed with it), else the one on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name) or name


def ensure_octodns() -> None:
    if importlib.util.find_spec("octodns") and importlib.util.find_spec("octodns_powerdns"):
        return
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "octodns", "octodns-powerdns"], check=True
    )


def compile_nebula() -> None:
    """Byte-compile Nebula's modules (see the module docstring)."""
    spec = importlib.util.find_spec("nebula")
    assert spec is not None and spec.submodule_search_locations, "nebula is not installed"
    for folder in spec.submodule_search_locations:
        subprocess.run([sys.executable, "-m", "compileall", "-q", folder], check=True)


def private_env(tmp: Path, api_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    for name in ("XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        env[name] = str(tmp / "xdg" / name.lower())
    env[SECRET] = api_key  # octodns: env/PDNS_KEY
    env[f"NEBULA_SECRET_{SECRET}"] = api_key  # nebula: ${secret:PDNS_KEY}
    env["NEBULA_DATABASE_URL"] = f"sqlite:///{tmp / 'nebula.db'}"
    return env


def zone_size(api: httpx.Client) -> int:
    response = api.get(f"/zones/{ZONE}.")
    response.raise_for_status()
    return sum(
        len(r["records"]) for r in response.json()["rrsets"] if r["type"] not in ("SOA", "NS")
    )


def delete_zone(api: httpx.Client) -> None:
    response = api.delete(f"/zones/{ZONE}.")
    if response.status_code not in (204, 404, 422):
        response.raise_for_status()


# -- nebulad, warm -----------------------------------------------------------------------------


Write = Callable[[], None]
Step = Callable[[Write | None], Run]  # one step: write the repo (unless a no-op), sync, measure


class Nebulad:
    """nebulad following `folder` (`--watch`) on the Docker Engine at `docker_host`, driven through
    its API on its unix socket only (none of its modules is imported: they may move).

    A step suspends it, writes the folder and lets the folder's watcher report the change (the
    sync that starts is skipped while suspended), then resumes it, which queues one sync as
    `POST /api/v1/sync` would, and waits for that sync's `sync_finished` on the event stream
    opened at the start (waiting there, not polling `/api/v1/syncs`, adds no work to the span).
    The span's CPU is utime + stime of the process, all its threads, from /proc/PID/stat.
    """

    def __init__(self, folder: Path, home: Path, docker_host: str, key: str, counter: Counter):
        folder.mkdir(parents=True)
        home.mkdir(parents=True)
        (folder / "nebula.yaml").write_text("{}\n")  # no zone yet: the first step creates it
        data = home / "data"
        self.log = home / "nebulad.log"
        self.counter = counter
        self.finished: queue.Queue[int | None] = queue.Queue()  # ids of the syncs it records
        command = [script("nebulad"), "--source", str(folder), "--watch", "--data-dir", str(data),
                   "--docker-host", docker_host, "--poll-interval", "1h", "--drift-interval", "1h"]  # fmt: skip
        env = private_env(home, key)  # a state database of its own
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.socket = data / "nebulad.sock"
        self.api = self._client(timeout=60)
        try:
            deadline = time.monotonic() + 60
            while not self._answers():
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nebulad did not start:\n{self.tail()}")
                time.sleep(0.1)
            subscribed = threading.Event()
            threading.Thread(target=self._follow, args=(subscribed,), daemon=True).start()
            if not subscribed.wait(30):
                raise RuntimeError(f"nebulad's event stream did not open:\n{self.tail()}")
        except BaseException:
            self.stop()
            raise

    def _client(self, timeout: float | None) -> httpx.Client:
        transport = httpx.HTTPTransport(uds=str(self.socket))
        return httpx.Client(transport=transport, base_url="http://nebulad", timeout=timeout)

    def _answers(self) -> bool:
        try:
            return self.api.get("/api/v1/status").status_code == 200
        except httpx.TransportError:
            return False

    def _follow(self, subscribed: threading.Event) -> None:
        """Queue the id of each sync nebulad records, as its event stream announces it."""
        kind = ""
        with (
            contextlib.suppress(httpx.HTTPError),
            self._client(timeout=None) as client,
            client.stream("GET", "/api/v1/events") as answer,
        ):
            for line in answer.iter_lines():
                if line.startswith(":"):  # ": subscribed", then heartbeats
                    subscribed.set()
                elif line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: ") and kind == "sync_finished":
                    self.finished.put(json.loads(line.removeprefix("data: "))["id"])

    def _post(self, path: str) -> None:
        self.api.post(path).raise_for_status()

    def step(self, write: Write | None) -> Run:
        self._post("/api/v1/suspend")
        if write is not None:
            write()
            time.sleep(SETTLE)
        with self.counter.lock:
            self.counter.requests.clear()
        ticks = stacks.cpu_ticks(self.process.pid)[0]
        started = time.perf_counter()
        self._post("/api/v1/resume")
        try:
            sync_id = self.finished.get(timeout=120)
        except queue.Empty:
            raise RuntimeError(f"nebulad recorded no sync within 120 s:\n{self.tail()}") from None
        wall = time.perf_counter() - started
        cpu = (stacks.cpu_ticks(self.process.pid)[0] - ticks) / stacks.CLK_TCK
        with self.counter.lock:
            calls = list(self.counter.requests)
        record = self.api.get(f"/api/v1/syncs/{sync_id}").json() if sync_id else {}
        if record.get("status") != "succeeded":
            raise RuntimeError(f"nebulad's sync {sync_id} did not succeed: {record}\n{self.tail()}")
        return Run(wall, cpu, len(calls), calls)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        self.api.close()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def running_nebulad(tmp: Path, docker_host: str, key: str, counter: Counter) -> Iterator[Nebulad]:
    daemon = Nebulad(tmp / "nebulad", tmp / "nebulad-home", docker_host, key, counter)
    try:
        yield daemon
    finally:
        daemon.stop()


# -- the rounds --------------------------------------------------------------------------------


@dataclass
class Lab:
    tmp: Path
    proxy: str  # the API URL every tool is given: the counting proxy
    counter: Counter
    api: httpx.Client  # PowerDNS itself, to reset and check the zone
    key: str
    nebulad: Nebulad


def command_step(tool: str, root: Path, lab: Lab, count: bool) -> Step:
    """A step of one of the two commands: write its repo (unless a no-op), then run it whole."""
    env = private_env(lab.tmp, lab.key)
    if tool == "nebula":
        command = [script("nebula"), "dns", "apply", "--yes", str(root)]
    else:
        command = [script("octodns-sync"), "--config-file", str(root / "config.yaml"), "--doit"]

    def step(write: Write | None) -> Run:
        if write is not None:
            write()
            shutil.rmtree(env["XDG_CACHE_HOME"], ignore_errors=True)  # a new repo: no memo
        return timed(command, env, lab.counter, count)

    return step


def measure_round(
    tool: str, args: argparse.Namespace, lab: Lab, runs: dict[str, list[Run]], count: bool = False
) -> None:
    """One round of one tool on the zone: initial sync, a change, the no-ops (into `runs`);
    with `count`, each step once under callgrind (`timed`)."""
    root = lab.tmp / tool
    step = lab.nebulad.step if tool == "nebulad" else command_step(tool, root, lab, count)
    write = write_octodns if tool == "octodns" else write_nebula
    delete_zone(lab.api)
    runs["initial"].append(step(lambda: write(root, lab.proxy, records(args.records, False))))
    assert zone_size(lab.api) == args.records, f"{tool}: the zone is incomplete after the sync"
    runs["change"].append(step(lambda: write(root, lab.proxy, records(args.records, True))))
    for _ in range(1 if count else args.noop_runs):
        runs["noop"].append(step(None))
    answer = lab.api.get(f"/zones/{ZONE}.").json()
    changed = [
        r
        for r in answer["rrsets"]
        if r["type"] == "A" and r["records"][0]["content"].endswith(".200")
    ]
    assert len(changed) == CHANGED, f"{tool}: {len(changed)} changed records, not {CHANGED}"


def measure(
    args: argparse.Namespace, lab: Lab, count: bool = False
) -> dict[str, dict[str, list[Run]]]:
    """Every tool, round after round in turn (not all of one tool's rounds, then the next's), a
    different one going first each round: a machine whose speed drifts over a minute then drifts
    alike for all. With `count`, one round of the two commands under callgrind."""
    env = private_env(lab.tmp, lab.key)
    subprocess.run([script("nebula"), "domains", "list"], env=env, capture_output=True, check=True)
    tools = COMMANDS if count else TOOLS
    results: dict[str, dict[str, list[Run]]] = {t: {s: [] for s in STEPS} for t in tools}
    if not count:  # nebulad warm: its first DNS sync, imports and all, is not measured
        measure_round("nebulad", args, lab, {step: [] for step in STEPS})
    for round_number in range(1 if count else args.runs):
        first = round_number % len(tools)
        for tool in tools[first:] + tools[:first]:
            measure_round(tool, args, lab, results[tool], count)
    return results


def median(runs: list[Run], attr: str) -> float:
    return float(statistics.median(getattr(r, attr) for r in runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--noop-runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the result here too")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count each step's instructions of the two commands under valgrind's "
        "callgrind (one more round, about 2 minutes): figures that do not move with the "
        "machine's load",
    )
    args = parser.parse_args()
    ensure_octodns()
    compile_nebula()
    load_before = stacks.machine()
    tmp = Path(tempfile.mkdtemp(prefix="nebula-bench-dns-"))
    try:
        with (
            stacks.servers.docker_daemon() as docker_host,
            stacks.servers.powerdns_server() as pdns,
            counting_proxy(pdns.api_url) as (proxy, counter),
            running_nebulad(tmp, docker_host, pdns.api_key, counter) as nebulad,
        ):
            api = httpx.Client(
                base_url=f"{pdns.api_url}/api/v1/servers/localhost",
                headers={"X-API-Key": pdns.api_key},
                timeout=60,
            )
            lab = Lab(tmp, proxy, counter, api, pdns.api_key, nebulad)
            results = measure(args, lab)
            counted = measure(args, lab, count=True) if args.instructions else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(args, results, counted, [load_before, stacks.machine()])


def round_ratios(
    results: dict[str, dict[str, list[Run]]], tool: str, step: str, attr: str
) -> list[float]:
    """octodns's figure over `tool`'s, round by round (seconds apart), sorted; a CPU reading
    under one clock tick counts as one tick."""
    pairs = zip(results[tool][step], results["octodns"][step], strict=True)
    tick = 1 / stacks.CLK_TCK
    return sorted(getattr(theirs, attr) / max(getattr(mine, attr), tick) for mine, theirs in pairs)


def report(
    args: argparse.Namespace,
    results: dict[str, dict[str, list[Run]]],
    counted: dict[str, dict[str, list[Run]]] | None,
    machines: list[dict[str, Any]],
) -> None:
    rows: list[dict[str, Any]] = []
    verdicts = []
    print(f"PowerDNS zone of {args.records} records; medians of {args.runs} runs "
          f"({args.runs * args.noop_runs} for the no-op); load {machines[0]['load_avg_1m']}\n")  # fmt: skip
    print(f"{'step':<9} {'tool':<8} {'wall s':>8} {'cpu s':>8} {'requests':>9}  calls")
    for step in STEPS:
        row: dict[str, Any] = {"step": step}
        for tool in TOOLS:
            runs = results[tool][step]
            wall, cpu = median(runs, "wall"), median(runs, "cpu")
            requests = max(r.requests for r in runs)
            row |= {f"{tool}_wall_s": wall, f"{tool}_cpu_s": cpu, f"{tool}_requests": requests}
            calls = ", ".join(runs[-1].calls)
            print(f"{step:<9} {tool:<8} {wall:>8.3f} {cpu:>8.3f} {requests:>9}  {calls}")
        # Each run of a tool beside octodns's run of the same round, seconds apart: the
        # machine's speed drifts over a minute by more than the targets' margins.
        for tool, target in TARGETS.items():
            ratios = round_ratios(results, tool, step, "cpu")
            row[f"{tool}_cpu_ratio"] = statistics.median(ratios)
            row[f"{tool}_wall_ratio"] = statistics.median(round_ratios(results, tool, step, "wall"))
            what = "nebulad (warm)" if tool == "nebulad" else "nebula dns apply (process)"
            verdicts.append(
                (
                    f"{step}: CPU octodns / {what} {row[f'{tool}_cpu_ratio']:.1f}x, median of "
                    f"each round's ratio ({ratios[0]:.1f}x to {ratios[-1]:.1f}x) "
                    f"(target >= {target:g}x)",
                    row[f"{tool}_cpu_ratio"] >= target,
                )
            )
        mine = max(row["nebula_requests"], row["nebulad_requests"])
        verdicts.append(
            (
                f"{step}: requests nebula {row['nebula_requests']}, nebulad "
                f"{row['nebulad_requests']}, octodns {row['octodns_requests']} (never more)",
                mine <= row["octodns_requests"],
            )
        )
        rows.append(row)
    if counted:
        print("\ninstructions of the two commands (callgrind, millions, one run each)")
        for row in rows:
            step = row["step"]
            mine, theirs = (counted[tool][step][0].instructions or 0 for tool in COMMANDS)
            print(
                f"{step:<9} nebula {mine:8.0f}  octodns {theirs:8.0f}  ratio {theirs / mine:.1f}x"
            )
            row["instructions"] = {"nebula": mine, "octodns": theirs}
    noop_wall = median(results["nebula"]["noop"], "wall")
    verdicts.append((f"no-op nebula dns apply {noop_wall:.3f} s (target < 0.3 s)", noop_wall < 0.3))
    print()
    for text, ok in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    out = {"records": args.records, "runs": args.runs, "machine": machines[0],
           "machine_after": machines[1], "steps": rows,
           "verdicts": [{"check": t, "ok": ok} for t, ok in verdicts],
           "raw": {tool: {step: [asdict(r) | {"calls": r.calls} for r in runs] for step, runs in steps.items()} for tool, steps in results.items()}}  # fmt: skip
    print(json.dumps({k: v for k, v in out.items() if k != "raw"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
