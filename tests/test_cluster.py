"""Three nodes, one homelab: three real nebulad processes (`--node a|b|c`), each with a private
dockerd of its own, sharing one PostgreSQL and following one repo, with Caddy and PowerDNS,
and a fourth node `d` without a nebulad, whose engine the leader drives.

Each node runs exactly its installations; an installation moved from a to b is created on b and
healthy before it leaves a, whose volume stays; SIGKILL of the leader hands the cluster-wide work
(Caddy's routes, the DNS zone) to another node within the issue's 10 s, and a hostname pushed
right after the kill is served and resolved, each route, record and recorded change exactly
once, and node d's share taken over as well; the dead node raises a `node_down` incident,
resolved when it is back. `nebula nodes` shows them all."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

import servers
from nebula.cli.client import DaemonClient
from nebula.errors import NebulaError
from test_daemon import IMAGE, Repo
from test_daemon_proxy import domain
from test_proxy import https_get

NODES = ("a", "b", "c")  # each runs a nebulad of its own
DRIVEN = "d"  # runs none: the leader applies its share through its engine's URL
NEBULA = [sys.executable, "-c", "from nebula.cli.entry import main; main()"]
TAKEOVER = 10.0  # the bound: another node does the leader's work within 10 s


def eventually(
    check: Callable[[], Any], timeout: float = 60.0, what: str | Callable[[], str] = ""
) -> Any:
    """`check()`'s first true answer within `timeout`; `what` (or what it returns, read only
    on a failure) says what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() >= deadline:
            pytest.fail(f"not within {timeout:g} s: {what() if callable(what) else what}")
        time.sleep(0.1)


class Nebulad:
    """One node's nebulad: a real process, started, SIGKILLed and started again."""

    def __init__(self, node: str, root: Path, args: list[str], env: dict[str, str]) -> None:
        self.node = node
        self.data = root / f"node-{node}"
        self.log = root / f"nebulad-{node}.log"
        self.command = [*servers.NEBULAD, *args, "--node", node, "--data-dir", str(self.data)]
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command, stdout=out, stderr=subprocess.STDOUT, env=self.env
            )
        eventually(self.status, 30, f"nebulad {self.node} answers")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def socket(self) -> Path:
        return self.data / "nebulad.sock"

    def client(self) -> DaemonClient:
        return DaemonClient(self.socket)

    def status(self) -> dict[str, Any] | None:
        assert self.alive(), self.log.read_text()[-3000:]
        with contextlib.suppress(NebulaError), self.client() as client:
            return client.status()
        return None

    def applied(self, sha: str) -> bool:
        state = self.status() or {}
        last = state.get("last_sync") or {}
        return state.get("applied_commit") == sha and last.get("status") == "succeeded"

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if not self.alive():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


@dataclass
class Lab:
    repo: Repo
    nodes: dict[str, Nebulad]
    engines: dict[str, docker.DockerClient]
    caddy: servers.CaddyServer
    powerdns: servers.PowerDnsServer
    ports: dict[str, int]

    def running(self, node: str) -> set[str]:
        found = self.engines[node].containers.list(
            filters={"label": "io.nebula.managed=true", "status": "running"}
        )
        return {c.name for c in found}

    def any_node(self) -> Nebulad:
        return next(n for n in self.nodes.values() if n.alive())

    def listing(self) -> list[dict[str, Any]]:
        with self.any_node().client() as client:
            return client.nodes()

    def syncs(self) -> list[dict[str, Any]]:
        with self.any_node().client() as client:
            return client.syncs(500)


def nebula_yaml(caddy: servers.CaddyServer, driven: str) -> str:
    proxy = {
        "admin": caddy.admin,
        "listen": "127.0.0.1",
        "http_port": caddy.http_port,
        "https_port": caddy.https_port,
    }
    nodes = [
        # one host, three engines: each its own pool, so their bridges never overlap
        {"name": n, "address": "127.0.0.1", "subnet_pool": f"10.{210 + i}.0.0/16"}
        for i, n in enumerate(NODES)
    ]
    nodes.append({"name": DRIVEN, "address": "127.0.0.1", "subnet_pool": "10.219.0.0/16"})
    nodes[-1]["docker"] = driven
    return json.dumps({"defaults": {"health_timeout": "30s"}, "proxy": proxy, "nodes": nodes})


def web(node: str, port: int, host: str | None = None) -> str:
    """An httpd on `node`, published on the fixed host `port` (Caddy dials it there)."""
    document: dict[str, Any] = {
        "node": node,
        "compose": {"services": {"web": {"image": IMAGE, "init": True, "ports": [f"{port}:8080"]}}},
    }
    if host is not None:
        document["expose"] = [{"host": host, "port": 8080}]
    return json.dumps(document)


def mover(node: str) -> str:
    """An app with a volume and a health check, placed on `node`."""
    health = ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
    service = {
        "image": IMAGE,
        "init": True,
        "volumes": ["data:/data"],
        "healthcheck": {"test": health, "interval": "1s", "timeout": "2s", "retries": 10},
    }
    return json.dumps({"node": node, "compose": {"services": {"app": service}}})


@pytest.fixture
def lab(
    tmp_path: Path, docker_host: str, test_image: str, pg_url: str, request: pytest.FixtureRequest
) -> Iterator[Lab]:
    caddy: servers.CaddyServer = request.getfixturevalue("caddy")
    powerdns: servers.PowerDnsServer = request.getfixturevalue("powerdns")
    caddy.reset()
    powerdns.reset()
    with (
        servers.more_docker_daemons(3) as more,
        servers.fresh_database(pg_url) as database,
        contextlib.ExitStack() as stack,
    ):
        urls = dict(zip((*NODES, DRIVEN), [docker_host, *more], strict=True))
        engines = {}
        for node, url in urls.items():
            if url != docker_host:
                servers.build_test_image(url)
            engine = docker.DockerClient(base_url=url, version=servers.DOCKER_API_VERSION)
            stack.callback(engine.close)
            engine.images.get(test_image).tag(IMAGE)
            engines[node] = engine
        stack.callback(servers.remove_managed, docker_host)
        ports = {n: servers.free_port() for n in (*NODES, DRIVEN)}
        repo = Repo(tmp_path)
        (repo.work / "domains").mkdir()
        repo.push(
            "three nodes",
            {
                "nebula.yaml": nebula_yaml(caddy, urls[DRIVEN]),
                "packages/web-a.yaml": web("a", ports["a"], "a.nebula.lan"),
                "packages/web-b.yaml": web("b", ports["b"], "b.nebula.lan"),
                "packages/web-c.yaml": web("c", ports["c"]),
                "packages/web-d.yaml": web(DRIVEN, ports[DRIVEN], "d.nebula.lan"),
                "packages/mover.yaml": mover("a"),
                "domains/nebula.lan.yaml": domain(powerdns),
            },
        )
        env = {**os.environ, "NEBULA_SECRET_PDNS_KEY": powerdns.api_key}
        env.pop("NEBULA_NODE", None)
        common = ["--source", str(repo.bare), "--database-url", database]
        common += ["--poll-interval", "1s", "--drift-interval", "2s"]
        nodes = {}
        for node in NODES:
            url = urls[node]
            nodes[node] = Nebulad(node, tmp_path, [*common, "--docker-host", url], env)
            stack.callback(nodes[node].stop)
        for nebulad in nodes.values():
            nebulad.start()
        yield Lab(repo, nodes, engines, caddy, powerdns, ports)


def records(powerdns: servers.PowerDnsServer) -> list[tuple[str, str, list[str]]]:
    """Every record set of the zone: (name, type, values)."""
    answer = httpx.get(
        f"{powerdns.api_url}/api/v1/servers/localhost/zones/nebula.lan.",
        headers={"X-API-Key": powerdns.api_key},
        timeout=10,
    )
    answer.raise_for_status()
    return [
        (r["name"], r["type"], [v["content"] for v in r["records"]])
        for r in answer.json()["rrsets"]
    ]


def route_ids(caddy: servers.CaddyServer) -> list[str]:
    """The `@id` of every route of Caddy's config, as often as each appears."""
    config = httpx.get(f"{caddy.admin}/config/", timeout=10).json()
    servers_ = config.get("apps", {}).get("http", {}).get("servers", {})
    return [
        route["@id"]
        for server in servers_.values()
        for route in server.get("routes", [])
        if "@id" in route
    ]


def served(lab: Lab, host: str) -> bool:
    try:
        response = https_get(lab.caddy, host, lab.caddy.internal_root(), timeout=1)
    except httpx.TransportError:
        return False
    return "nebula-test-ok" in response.text


def test_three_nodes_share_one_homelab(lab: Lab) -> None:
    # -- each node runs exactly its installations ----------------------------------------------
    sha = lab.repo.git("rev-parse", "HEAD")
    for nebulad in lab.nodes.values():
        eventually(
            lambda n=nebulad: n.applied(sha),
            120,
            lambda n=nebulad: (
                f"node {n.node} applied; its status: {n.status()}; its log:\n"
                + n.log.read_text()[-4000:]
            ),
        )
    assert lab.running("a") == {"web-a-web", "mover-app"}
    assert lab.running("b") == {"web-b-web"}
    assert lab.running("c") == {"web-c-web"}
    eventually(lambda: lab.running(DRIVEN) == {"web-d-web"}, 30, "the leader drove node d")
    up = dict.fromkeys(NODES, "up")
    eventually(lambda: {n["name"]: n["state"] for n in lab.listing()}.items() >= up.items(), 10)
    listed = {n["name"]: n for n in lab.listing()}
    assert sum(n["leader"] for n in listed.values()) == 1
    counts = {name: n["installations"] for name, n in listed.items()}
    assert counts == {"a": 2, "b": 1, "c": 1, DRIVEN: 1}
    assert listed[DRIVEN]["driven"] and listed[DRIVEN]["state"] == "unknown"
    eventually(lambda: served(lab, "a.nebula.lan") and served(lab, "d.nebula.lan"), 60, "routes")
    shown = nebula_nodes(lab.nodes["b"], "--output", "json")
    assert [n["name"] for n in json.loads(shown)] == [*NODES, DRIVEN]
    table = nebula_nodes(lab.nodes["b"])
    assert "(leader)" in table and "driven" in table

    move_from_a_to_b(lab)
    leader, successor = kill_the_leader(lab)
    down_until_back(lab, leader, successor)


def move_from_a_to_b(lab: Lab) -> None:
    """Created on b and healthy, then removed from a; its volume stays on a."""
    a_volumes = {v.name for v in lab.engines["a"].volumes.list()}
    assert "mover_data" in a_volumes
    since = int(time.time()) - 1
    moved = lab.repo.push("move mover to b", {"packages/mover.yaml": mover("b")})
    eventually(lambda: "mover-app" in lab.running("b"), 90, "mover on b")
    eventually(lambda: "mover-app" not in lab.running("a"), 90, "mover gone from a")
    for nebulad in lab.nodes.values():
        eventually(lambda n=nebulad: n.applied(moved), 60, f"node {nebulad.node} applied move")
    assert lab.engines["a"].containers.list(all=True, filters={"name": "mover-app"}) == []
    assert "mover_data" in {v.name for v in lab.engines["a"].volumes.list()}  # kept on a
    healthy_on_b = _event_time(lab.engines["b"], since, "health_status: healthy")
    removed_from_a = _event_time(lab.engines["a"], since, "destroy")
    assert healthy_on_b <= removed_from_a, "removed from a before it was healthy on b"


def kill_the_leader(lab: Lab) -> tuple[str, str]:
    """SIGKILL the leader and push a hostname at once: another node serves and resolves it
    within the 10 s, each route, record set and recorded change once. (killed, successor)"""
    leader = next(n["name"] for n in lab.listing() if n["leader"])
    killed_at = time.monotonic()
    lab.nodes[leader].kill()
    added = lab.repo.push(
        "expose c", {"packages/web-c.yaml": web("c", lab.ports["c"], "c.nebula.lan")}
    )

    def new_leader() -> str | None:
        for nebulad in lab.nodes.values():
            if nebulad.alive() and (nebulad.status() or {}).get("leader"):
                return nebulad.node
        return None

    successor = eventually(new_leader, TAKEOVER, "another node leads")
    assert successor != leader
    eventually(lambda: served(lab, "c.nebula.lan"), TAKEOVER, "c.nebula.lan served by Caddy")
    eventually(
        lambda: ("c.nebula.lan.", "A", ["127.0.0.1"]) in records(lab.powerdns),
        max(TAKEOVER - (time.monotonic() - killed_at), 1.0),
        "c.nebula.lan in PowerDNS within the 10 s",
    )
    eventually(lambda: lab.nodes[successor].applied(added), 30, "the new leader applied it")
    assert served(lab, "d.nebula.lan")
    assert lab.engines[DRIVEN].containers.list(all=True) == lab.engines[DRIVEN].containers.list()
    assert lab.running(DRIVEN) == {"web-d-web"}  # driven by the new leader: not made twice

    # each route, record set and recorded change exactly once
    ids = route_ids(lab.caddy)
    assert sorted(ids) == sorted(set(ids))
    assert {"nebula-web-a-a.nebula.lan", "nebula-web-c-c.nebula.lan"} <= set(ids)
    sets = [(name, kind) for name, kind, _ in records(lab.powerdns)]
    assert sorted(sets) == sorted(set(sets))
    for host in ("a", "b", "c", "d"):
        assert (f"{host}.nebula.lan.", "A", ["127.0.0.1"]) in records(lab.powerdns)
    changes = [c for s in lab.syncs() for c in s["changes"]]
    assert [c["action"] for c in changes if c.get("id") == "nebula-web-c-c.nebula.lan"] == [
        "create"
    ]
    assert [
        c["action"] for c in changes if c.get("name") == "c.nebula.lan" and c.get("type") == "A"
    ] == ["create"]
    assert [c["action"] for c in changes if c.get("id") == "nebula-web-a-a.nebula.lan"] == [
        "create"
    ]

    return leader, successor


def down_until_back(lab: Lab, leader: str, successor: str) -> None:
    """The dead node is a `node_down` incident of the new leader's until it is back."""

    def incident(status: str) -> dict[str, Any] | None:
        with lab.nodes[successor].client() as client:
            found = client.incidents(status, 50)
        return next((i for i in found if i["labels"].get("node") == leader), None)

    opened = eventually(lambda: incident("open"), 40, f"a node_down incident for {leader}")
    assert opened["service_name"] == "node_down" and opened["severity"] == "critical"
    assert {n["name"]: n["state"] for n in lab.listing()}[leader] == "down"
    lab.nodes[leader].start()
    eventually(lambda: incident("resolved"), 40, f"{leader}'s incident resolved")
    assert {n["name"]: n["state"] for n in lab.listing()}[leader] == "up"


def nebula_nodes(nebulad: Nebulad, *args: str) -> str:
    """`nebula nodes` against `nebulad`'s socket, as a user runs it."""
    done = subprocess.run(
        [*NEBULA, "nodes", "--socket", str(nebulad.socket), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _event_time(engine: docker.DockerClient, since: int, action: str) -> float:
    """When the engine's mover container last did `action` (seconds, with nanoseconds)."""
    events = engine.events(
        since=since,
        until=int(time.time()) + 1,
        decode=True,
        filters={"type": "container", "container": "mover-app"},
    )
    times = [e["timeNano"] / 1e9 for e in events if e.get("Action", "").startswith(action)]
    assert times, f"no {action} event of mover-app"
    return max(times)
