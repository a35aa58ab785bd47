"""`nebula apply` against a real Docker Engine, through the CLI a person uses.

Each scenario runs once with the SQLite store and once with PostgreSQL (`database_url`).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from typer.testing import CliRunner

import servers
from nebula.cli.app import app
from nebula.providers.docker import DockerProvider
from nebula.providers.docker import http as docker_http
from nebula.store import Store

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "homelab"
EXAMPLE_IMAGE = "nebula-example/busybox:1"


@pytest.fixture
def client(docker_host: str, test_image: str) -> Iterator[docker.DockerClient]:
    """The test engine, with the example image tagged; everything managed is removed after."""
    engine = docker.DockerClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    engine.images.get(test_image).tag(EXAMPLE_IMAGE)
    yield engine
    for container in engine.containers.list(all=True, sparse=True):
        if container.attrs.get("Labels", {}).get("io.nebula.managed") or container.attrs.get(
            "Names", [""]
        )[0].startswith("/foreign"):
            container.remove(force=True)
    for network in engine.networks.list(filters={"label": "io.nebula.managed=true"}):
        network.remove()
    for volume in engine.volumes.list(filters={"label": "io.nebula.managed=true"}):
        volume.remove(force=True)
    engine.close()


@pytest.fixture
def nebula(docker_host: str, database_url: str) -> Iterator[NebulaCli]:
    yield NebulaCli(docker_host, database_url)


class NebulaCli:
    def __init__(self, docker_host: str, database_url: str) -> None:
        self.docker_host = docker_host
        self.database_url = database_url
        self.runner = CliRunner()

    def __call__(self, *args: str, code: int = 0) -> str:
        options = ["--docker-host", self.docker_host]
        if args[0] in ("apply", "status"):
            options += ["--database-url", self.database_url]
        result = self.runner.invoke(app, [*args, *options])
        output = result.stdout + result.stderr
        assert result.exit_code == code, output
        return output

    def json(self, *args: str, code: int = 0) -> dict[str, object]:
        data: dict[str, object] = json.loads(self(*args, "--output", "json", code=code))
        return data

    def store(self) -> Store:
        return Store(self.database_url)


def copy_example(tmp_path: Path) -> Path:
    """The example homelab, its host ports moved to free ones (the demo may hold its own)."""
    repo = tmp_path / "homelab"
    shutil.copytree(EXAMPLE, repo)
    for path in (repo / "packages").glob("*.yaml"):
        text = path.read_text()
        for example_port, free in PORTS.items():
            text = text.replace(str(example_port), str(free))
        path.write_text(text)
    return repo


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PORTS = {port: _free_port() for port in (8091, 8092, 8093)}
DOCS = f"http://127.0.0.1:{PORTS[8091]}"


def managed(client: docker.DockerClient) -> dict[str, docker.models.containers.Container]:
    return {
        c.name: c
        for c in client.containers.list(all=True, filters={"label": "io.nebula.managed=true"})
    }


def test_example_homelab_comes_up_healthy_and_converges(
    tmp_path: Path, client: docker.DockerClient, nebula: NebulaCli
) -> None:
    repo = copy_example(tmp_path)
    out = nebula("apply", str(repo))
    assert "Applied. 3 installation(s) changed." in out
    containers = managed(client)
    assert set(containers) == {"docs-web", "notes-web", "notes-worker", "whoami-app"}
    assert all(c.status == "running" for c in containers.values())
    assert containers["docs-web"].attrs["State"]["Health"]["Status"] == "healthy"
    assert servers.http_get(f"{DOCS}/")[0] == 200
    # the worker reaches the web service by its name on the installation's network
    assert (
        containers["notes-worker"].exec_run(["wget", "-q", "-O", "-", "http://web:8080/"]).exit_code
        == 0
    )

    # an immediate plan shows nothing to do, and a second apply does nothing
    assert "No changes." in nebula("plan", str(repo))
    plan = nebula.json("plan", str(repo))
    assert plan["summary"] == {"create": 0, "update": 0, "delete": 0, "noop": 9}
    assert "No changes." in nebula("apply", str(repo))
    assert managed(client)["docs-web"].id == containers["docs-web"].id
    assert nebula.json("plan", str(repo)) == plan  # replayed from the memo: the same plan

    # a remembered no-op never hides a change of the world
    managed(client)["whoami-app"].remove(force=True)
    replan = nebula.json("plan", str(repo))
    assert [(c["action"], c["name"]) for c in replan["changes"] if c["action"] != "noop"] == [  # type: ignore[union-attr]
        ("create", "whoami-app")
    ]
    nebula("apply", str(repo))

    status = nebula.json("status")
    rows = {i["name"]: i for i in status["installations"]}  # type: ignore[union-attr,index]
    assert {name: row["status"] for name, row in rows.items()} == {
        "docs": "running",
        "notes": "running",
        "whoami": "running",
    }
    with nebula.store() as store:
        (deployment,) = store.deployments("docs")
    assert deployment.status == "live"
    assert f"static-site is up at {DOCS}/" in (deployment.hook_output or "")


def test_editing_one_value_changes_exactly_that_installation(
    tmp_path: Path, client: docker.DockerClient, nebula: NebulaCli
) -> None:
    repo = copy_example(tmp_path)
    nebula("apply", str(repo))
    before = {name: c.id for name, c in managed(client).items()}
    with (repo / "packages" / "notes.yaml").open("a") as f:
        f.write("values:\n  GREETING: bonjour\n")

    plan = nebula.json("plan", str(repo))
    pending = [c for c in plan["changes"] if c["action"] != "noop"]  # type: ignore[union-attr]
    assert pending == [
        {
            "action": "update",
            "kind": "container",
            "installation": "notes",
            "name": "notes-worker",
            "reason": "environment GREETING changed hello → bonjour",
        }
    ]
    result = nebula.json("apply", str(repo))
    assert [i["name"] for i in result["installations"]] == ["notes"]  # type: ignore[union-attr,index]
    after = {name: c.id for name, c in managed(client).items()}
    assert {n for n in after if after[n] != before[n]} == {"notes-worker"}
    env = managed(client)["notes-worker"].attrs["Config"]["Env"]
    assert "GREETING=bonjour" in env
    with nebula.store() as store:
        assert len(store.deployments("docs")) == 1  # post_install ran once, docs untouched
        assert len(store.deployments("notes")) == 2


def test_deleting_an_installation_keeps_its_volume_and_data_survives_reinstall(
    tmp_path: Path, client: docker.DockerClient, nebula: NebulaCli
) -> None:
    repo = copy_example(tmp_path)
    nebula("apply", str(repo))
    docs = managed(client)["docs-web"]
    assert docs.exec_run(["sh", "-c", "echo kept-data > /www/marker.html"]).exit_code == 0
    definition = (repo / "packages" / "docs.yaml").read_text()
    (repo / "packages" / "docs.yaml").unlink()

    out = nebula("apply", str(repo), code=1)  # not a terminal: deletion needs --yes
    assert "rerun with --yes" in out
    assert "docs-web" in managed(client)

    nebula("apply", str(repo), "--yes")
    assert "docs-web" not in managed(client)
    assert not client.networks.list(names=["docs_default"])
    assert client.volumes.get("docs_pages")
    with nebula.store() as store:
        assert "docs" not in [i.name for i in store.installations()]
        assert store.deployments("docs")  # history survives

    (repo / "packages" / "docs.yaml").write_text(definition)
    nebula("apply", str(repo))
    assert servers.http_get(f"{DOCS}/marker.html") == (200, "kept-data\n")


def test_a_failing_installation_is_reported_and_leaves_the_others_running(
    tmp_path: Path, client: docker.DockerClient, nebula: NebulaCli
) -> None:
    repo = copy_example(tmp_path)
    (repo / "packages" / "broken.yaml").write_text(
        "compose:\n  services:\n    app:\n      image: nebula-test/not-here:1\n"
    )
    (repo / "packages" / "sick.yaml").write_text(
        f"compose:\n  services:\n    app:\n      image: {EXAMPLE_IMAGE}\n"
        "      healthcheck: {test: [CMD, 'false'], interval: 1s, retries: 1}\n"
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (repo / "packages" / "clash.yaml").write_text(
            f"compose:\n  services:\n    app:\n      image: {EXAMPLE_IMAGE}\n      ports: ['{port}:8080']\n"
        )
        result = nebula.json("apply", str(repo), code=1)
    outcome = {i["name"]: i for i in result["installations"]}  # type: ignore[union-attr,index]
    assert {n for n, i in outcome.items() if i["ok"]} == {"docs", "notes", "whoami"}
    assert (
        "image nebula-test/not-here:1: not present locally and pull failed"
        in outcome["broken"]["error"]
    )
    assert "address already in use" in outcome["clash"]["error"]
    assert {"docs-web", "notes-web", "notes-worker", "whoami-app"} <= set(managed(client))
    assert "service 'app' is not healthy" in outcome["sick"]["error"]
    # containers that failed to start or to become healthy are removed
    assert not {"clash-app", "sick-app"} & set(managed(client))
    with nebula.store() as store:
        states = {i.name: (i.status, i.status_reason) for i in store.installations()}
    assert states["broken"][0] == "error" and "pull failed" in (states["broken"][1] or "")
    assert states["docs"] == ("running", None)
    # the failed ones are retried by the next apply, the healthy ones left alone
    plan = nebula.json("plan", str(repo))
    pending = {c["name"] for c in plan["changes"] if c["action"] != "noop"}  # type: ignore[union-attr]
    assert pending == {"broken-app", "clash-app", "sick-app"}


def test_invalid_config_fails_before_any_container_is_touched(
    tmp_path: Path, client: docker.DockerClient, nebula: NebulaCli
) -> None:
    repo = copy_example(tmp_path)
    (repo / "packages" / "blog.yaml").write_text(
        "package: wordpress\nvalues: {DB_HOST: db, DB_USER: wp}\n"
    )
    out = nebula("apply", str(repo), code=2)
    assert "packages/blog.yaml:2:1: values: required variable DB_PASSWORD" in out
    assert managed(client) == {}


def test_unhealthy_service_marks_the_installation_error_with_the_reason(
    tmp_path: Path, client: docker.DockerClient, nebula: NebulaCli
) -> None:
    (tmp_path / "packages").mkdir()
    (tmp_path / "nebula.yaml").write_text("defaults: {health_timeout: 20s}\n")
    (tmp_path / "packages" / "sick.yaml").write_text(
        f"compose:\n  services:\n    app:\n      image: {EXAMPLE_IMAGE}\n      init: true\n"
        "      healthcheck: {test: [CMD, 'false'], interval: 1s, retries: 1}\n"
    )
    result = nebula.json("apply", str(tmp_path), code=1)
    (sick,) = result["installations"]  # type: ignore[misc]
    assert "service 'app' is not healthy (running, health unhealthy)" in sick["error"]
    with nebula.store() as store:
        (info,) = store.installations()
    assert info.status == "error"


def test_foreign_containers_are_never_touched(
    tmp_path: Path, client: docker.DockerClient, nebula: NebulaCli, test_image: str
) -> None:
    foreign = client.containers.create(test_image, name="foreign-app")
    (tmp_path / "packages").mkdir()
    (tmp_path / "nebula.yaml").write_text("")
    (tmp_path / "packages" / "foreign.yaml").write_text(
        f"compose:\n  services:\n    app:\n      image: {EXAMPLE_IMAGE}\n"
    )
    result = nebula.json("apply", str(tmp_path), code=1)
    (outcome,) = result["installations"]  # type: ignore[misc]
    assert "taken by a container Nebula does not manage" in outcome["error"]
    (tmp_path / "packages" / "foreign.yaml").unlink()
    nebula("apply", str(tmp_path), "--yes")  # removes what Nebula made: the network
    assert "No changes." in nebula("apply", str(tmp_path))
    foreign.reload()
    assert foreign.status == "created"


def test_observing_costs_the_same_few_requests_whatever_the_size(
    tmp_path: Path, client: docker.DockerClient, nebula: NebulaCli, docker_host: str
) -> None:
    (tmp_path / "packages").mkdir()
    (tmp_path / "nebula.yaml").write_text("")

    def requests_for_observe() -> list[str]:
        provider = DockerProvider(docker_host)
        assert provider._reader is not None
        sent: list[str] = []
        send = docker_http._request
        with pytest.MonkeyPatch.context() as counting:
            counting.setattr(
                docker_http, "_request", lambda c, path: (sent.append(path), send(c, path))[1]
            )
            provider.observe()
        provider.close()
        return sent

    def add_apps(start: int, stop: int) -> None:
        for i in range(start, stop):
            (tmp_path / "packages" / f"app{i}.yaml").write_text(
                f"compose:\n  services:\n    app:\n      image: {EXAMPLE_IMAGE}\n"
            )

    add_apps(0, 2)
    nebula("apply", str(tmp_path))
    small = requests_for_observe()
    add_apps(2, 12)
    nebula("apply", str(tmp_path))
    large = requests_for_observe()
    assert len(small) == len(large) == 3
    assert [url.split("?")[0] for url in large] == ["/containers/json", "/networks", "/volumes"]

    # engines the reader does not speak to (TLS, ssh) are observed through the SDK: same result
    direct, through_sdk = DockerProvider(docker_host), DockerProvider(docker_host)
    through_sdk._reader = None
    assert direct.observe() == through_sdk.observe()
    assert len(direct.observe().containers) == 12
    direct.close()
    through_sdk.close()

    # and a plan that changes nothing never loads the docker SDK
    script = (
        "import sys; from nebula.cli.app import app\n"
        f"try: app(['plan', {str(tmp_path)!r}, '--docker-host', {docker_host!r}])\n"
        "except SystemExit: pass\n"
        "print('docker' in sys.modules, 'sqlalchemy' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "False False", done.stdout + done.stderr


def test_more_installations_than_dockers_default_address_pools(
    tmp_path: Path, client: docker.DockerClient, docker_host: str
) -> None:
    """Docker's own pools hold ~30 bridge networks; Nebula's subnet pool holds 1024 by default."""
    (tmp_path / "packages").mkdir()
    (tmp_path / "nebula.yaml").write_text("")
    for i in range(36):
        (tmp_path / "packages" / f"app{i:02}.yaml").write_text(
            f"compose:\n  services:\n    app:\n      image: {EXAMPLE_IMAGE}\n"
        )
    nebula = NebulaCli(docker_host, f"sqlite:///{tmp_path}/nebula.db")
    result = nebula.json("apply", str(tmp_path))
    assert result["ok"] is True
    subnets = {
        n.attrs["IPAM"]["Config"][0]["Subnet"]
        for n in client.networks.list(filters={"label": "io.nebula.managed=true"})
    }
    assert len(subnets) == 36
    assert all(s.startswith("10.213.") and s.endswith("/26") for s in subnets)
