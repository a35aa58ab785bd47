"""Two nodes, each with its own private Docker Engine, sharing one PostgreSQL store and one
config repo: `nebula apply --node NAME` runs exactly that node's installations on its engine,
and an installation moved from a to b is created on b before a removes it (its volume stays)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from typer.testing import CliRunner

import servers
from nebula.cli.app import app

NEBULA_YAML = """nodes:
  - {name: a, address: 127.0.0.1, subnet_pool: 10.231.0.0/22}
  - {name: b, address: 127.0.0.2, subnet_pool: 10.232.0.0/22}
"""

APP = """{where}
compose:
  services:
    web:
      image: nebula-test/busybox:1
      volumes: ["data:/data"]
  volumes:
    data: {{}}
"""


@pytest.fixture
def engines(docker_host: str, other_docker_host: str, test_image: str) -> Iterator[dict[str, str]]:
    """Node name -> its engine's URL; the second engine is left empty afterwards too."""
    yield {"a": docker_host, "b": other_docker_host}
    servers.remove_managed(other_docker_host)


@pytest.fixture
def store_url(pg_url: str) -> Iterator[str]:
    with servers.fresh_database(pg_url) as url:
        yield url


def write(repo: Path, placed: dict[str, str]) -> None:
    """nebula.yaml and one installation per entry of `placed`: name -> its `node:` line."""
    (repo / "packages").mkdir(parents=True, exist_ok=True)
    (repo / "nebula.yaml").write_text(NEBULA_YAML)
    for name, where in placed.items():
        (repo / "packages" / f"{name}.yaml").write_text(APP.format(where=where))


class Node:
    """`nebula` as run on one node: its name, its engine, the shared store."""

    def __init__(self, name: str, engine: str, store_url: str, repo: Path) -> None:
        self.name, self.engine, self.store_url, self.repo = name, engine, store_url, repo

    def __call__(self, command: str, *args: str) -> str:
        """`nebula COMMAND REPO --node NAME ...`; its stdout and stderr."""
        result = self.invoke(command, str(self.repo), "--node", self.name, *args)
        return result.stdout + result.stderr

    def invoke(self, *args: str) -> Any:
        options = ["--docker-host", self.engine, "--database-url", self.store_url]
        result = CliRunner().invoke(app, [*args, *options])
        assert result.exit_code == 0, result.stdout + result.stderr
        return result

    def status(self) -> dict[str, tuple[str, str]]:
        """`nebula status`: installation -> (its node, its status)."""
        data = json.loads(self.invoke("status", "--output", "json").stdout)
        return {i["name"]: (i["node"], i["status"]) for i in data["installations"]}

    def running(self) -> set[str]:
        """The installations whose containers run on this node's engine."""
        client = docker.DockerClient(base_url=self.engine, version=servers.DOCKER_API_VERSION)
        try:
            return {
                c.labels["io.nebula.installation"]
                for c in client.containers.list(filters={"label": "io.nebula.managed=true"})
            }
        finally:
            client.close()

    def volumes(self) -> set[str]:
        client = docker.DockerClient(base_url=self.engine, version=servers.DOCKER_API_VERSION)
        try:
            return {v.name for v in client.volumes.list(filters={"label": "io.nebula.managed"})}
        finally:
            client.close()


def test_each_node_runs_its_share_and_a_move_waits_for_the_new_node(
    tmp_path: Path, engines: dict[str, str], store_url: str
) -> None:
    repo = tmp_path / "repo"
    write(repo, {"one": "node: a", "two": "node: b", "three": ""})  # three: the first node
    a, b = (Node(name, engines[name], store_url, repo) for name in ("a", "b"))

    a("apply", "--yes")
    assert (a.running(), b.running()) == ({"one", "three"}, set())
    b("apply", "--yes")
    assert (a.running(), b.running()) == ({"one", "three"}, {"two"})
    assert "No changes" in a("apply", "--yes")  # a leaves b's installation alone

    # one moves to b: a plans no change until b runs it, and says what it waits for
    write(repo, {"one": "node: b"})
    planned = a("plan")
    assert "waiting: one: moving to node b" in planned
    assert "volumes stay on a" in planned
    a("apply", "--yes")
    assert a.running() == {"one", "three"}
    plan_json = json.loads(a.invoke("plan", str(repo), "--node", "a", "--output", "json").stdout)
    assert plan_json["waiting"] == [
        "one: moving to node b; its containers here are removed once it runs there "
        "(volumes stay on a)"
    ]
    assert not [c for c in plan_json["changes"] if c["action"] != "noop"]

    b("apply", "--yes")
    assert b.running() == {"one", "two"}
    assert a.running() == {"one", "three"}  # the old one still serves until a's next apply

    planned = a("plan")
    assert "moved to b; volumes stay on a" in planned
    a("apply", "--yes")
    assert (a.running(), b.running()) == ({"three"}, {"one", "two"})
    assert "one_data" in a.volumes() and "one_data" in b.volumes()  # a's data stays on a
    # the record is b's: a removing its containers did not forget the installation
    assert b.status()["one"] == ("b", "running")
    assert a.status() == {
        "one": ("b", "running"),
        "three": ("a", "running"),
        "two": ("b", "running"),
    }
    header = a.invoke("status").stdout.splitlines()[0].split()
    assert header[:3] == ["installation", "node", "package"]  # several nodes: which runs what
    assert "No changes" in a("apply", "--yes")
    assert "No changes" in b("apply", "--yes")
