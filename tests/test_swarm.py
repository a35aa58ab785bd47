"""An installation on an `engine: swarm` node, on a real single-node swarm, through the CLI:
deployed as a service with 3 replicas, updated by a rolling update, put back after
`docker service rm`, and removed. With iptables off the ingress routing mesh does not answer,
so the service is checked through its tasks' containers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from typer.testing import CliRunner

import servers
from nebula.cli.app import app
from nebula.engine.load import load_desired
from nebula.errors import ConfigError
from nebula.kinds.packages.types import ContainerSpec, ObservedVolume, VolumeSpec
from nebula.kinds.swarm.diff import diff
from nebula.kinds.swarm.types import (
    ObservedService,
    Resource,
    ServiceSpec,
    SwarmInstallation,
    SwarmObserved,
)
from nebula.plan import Action

NEBULA_YAML = """\
nodes:
  - name: manager
    address: 127.0.0.1
    engine: swarm
"""

APP = """\
compose:
  services:
    web:
      image: {image}
      environment:
        GREETING: {greeting}
      command: {command}
      volumes:
        - data:/data
      labels:
        team: web
      healthcheck:
        test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
        interval: 1s
        timeout: 2s
        retries: 3
      deploy:
        replicas: 3
        update_config:
          parallelism: 1
          delay: 0s
          monitor: 1s
          failure_action: pause
        restart_policy:
          condition: on-failure
          max_attempts: 1
"""
SERVE = '["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]'


@pytest.fixture(scope="module")
def swarm() -> Iterator[str]:
    with servers.swarm_daemon() as url:
        servers.build_test_image(url)
        yield url


@pytest.fixture
def engine(swarm: str) -> Iterator[docker.APIClient]:
    client = docker.APIClient(base_url=swarm, version=servers.DOCKER_API_VERSION)
    yield client
    for service in client.services():
        client.remove_service(service["ID"])
    deadline = time.monotonic() + 30
    while tasks := client.containers(all=True):  # the removed services' tasks stopping
        assert time.monotonic() < deadline, tasks
        time.sleep(0.2)
    for network in client.networks(filters={"label": "io.nebula.managed=true"}):
        client.remove_network(network["Id"])
    for volume in client.volumes(filters={"label": "io.nebula.managed=true"})["Volumes"] or []:
        client.remove_volume(volume["Name"], force=True)
    client.close()


class Nebula:
    def __init__(self, swarm: str, tmp_path: Path) -> None:
        self.options = ["--docker-host", swarm]
        self.database = ["--database-url", f"sqlite:///{tmp_path}/nebula.db"]
        self.repo = tmp_path / "homelab"
        (self.repo / "packages").mkdir(parents=True)
        (self.repo / "nebula.yaml").write_text(NEBULA_YAML)

    def write(self, greeting: str = "hello", command: str = SERVE) -> None:
        app_text = APP.format(image=servers.TEST_IMAGE, greeting=greeting, command=command)
        (self.repo / "packages" / "web.yaml").write_text(app_text)

    def __call__(self, *args: str, code: int = 0) -> str:
        extra = self.database if args[0] == "apply" else []
        result = CliRunner().invoke(app, [*args, str(self.repo), *self.options, *extra])
        output = result.stdout + result.stderr
        assert result.exit_code == code, output
        return output

    def plan(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self("plan", "--output", "json"))
        return data


@pytest.fixture
def nebula(swarm: str, tmp_path: Path) -> Nebula:
    return Nebula(swarm, tmp_path)


def _service(engine: docker.APIClient, name: str = "web_web") -> dict[str, Any]:
    [service] = engine.services(filters={"name": name})
    return dict(service)


def _running(engine: docker.APIClient) -> list[dict[str, Any]]:
    tasks = engine.tasks(filters={"service": "web_web", "desired-state": "running"})
    return [t for t in tasks if t["Status"]["State"] == "running"]


def _env(engine: docker.APIClient, task: dict[str, Any]) -> str:
    """GREETING as the task's container runs it, read inside the container."""
    container = task["Status"]["ContainerStatus"]["ContainerID"]
    run = engine.exec_create(container, ["sh", "-c", "echo $GREETING"])
    return str(engine.exec_start(run["Id"]).decode().strip())


def _changes(plan: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (c["action"], c["kind"], c["name"])
        for c in plan["swarm"]["changes"]
        if c["action"] != "noop"
    ]


def test_a_swarm_installation_is_deployed_rolled_corrected_and_removed(
    engine: docker.APIClient, nebula: Nebula
) -> None:
    nebula.write(greeting="hello")
    planned = nebula.plan()
    assert sorted(_changes(planned)) == [
        ("create", "network", "web_default"),
        ("create", "service", "web_web"),
        ("create", "volume", "web_data"),
    ]
    assert planned["changes"] == []  # the packages kind's: no containers
    nebula("apply")
    _check_deployed(engine)
    assert _changes(nebula.plan()) == []

    # a rolling update: every task replaced by one on the new spec
    nebula.write(greeting="bye")
    [update] = [c for c in nebula.plan()["swarm"]["changes"] if c["action"] == "update"]
    assert update["name"] == "web_web"
    assert "GREETING" in update["reason"] and "bye" in update["reason"]
    nebula("apply")
    tasks = _running(engine)
    assert len(tasks) == 3
    assert {_env(engine, t) for t in tasks} == {"bye"}
    assert _service(engine)["UpdateStatus"]["State"] == "completed"
    replaced = engine.tasks(filters={"service": "web_web", "desired-state": "shutdown"})
    assert len(replaced) == 3  # the old spec's tasks, stopped one batch at a time
    assert _changes(nebula.plan()) == []

    _check_drift_is_corrected(engine, nebula)

    # removed from the repo: the service and its network go, the volume stays
    (nebula.repo / "packages" / "web.yaml").unlink()
    assert sorted(_changes(nebula.plan())) == [
        ("delete", "network", "web_default"),
        ("delete", "service", "web_web"),
    ]
    nebula("apply", "--yes")
    assert not engine.services(filters={"name": "web_web"})
    assert not engine.networks(names=["web_default"])
    assert engine.inspect_volume("web_data")["Labels"]["io.nebula.managed"] == "true"


def _check_deployed(engine: docker.APIClient) -> None:
    """3 tasks serve on the installation's overlay network, with its volume; Nebula's labels on
    the service, network and volume; no container of the packages kind."""
    spec = _service(engine)["Spec"]
    assert spec["Mode"] == {"Replicated": {"Replicas": 3}}
    assert spec["Labels"]["io.nebula.managed"] == "true"
    assert spec["Labels"]["io.nebula.installation"] == "web"
    assert spec["TaskTemplate"]["ContainerSpec"]["Labels"]["team"] == "web"
    assert spec["UpdateConfig"]["Parallelism"] == 1
    assert spec["UpdateConfig"]["FailureAction"] == "pause"
    assert spec["TaskTemplate"]["RestartPolicy"]["Condition"] == "on-failure"
    tasks = _running(engine)
    assert len(tasks) == 3
    assert {_env(engine, t) for t in tasks} == {"hello"}
    container = tasks[0]["Status"]["ContainerStatus"]["ContainerID"]
    run = engine.exec_create(container, ["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"])
    assert engine.exec_start(run["Id"])
    assert engine.exec_inspect(run["Id"])["ExitCode"] == 0
    [network] = engine.networks(names=["web_default"])
    assert network["Driver"] == "overlay"
    assert network["Attachable"] is True
    assert network["Labels"]["io.nebula.installation"] == "web"
    assert engine.inspect_volume("web_data")["Labels"]["io.nebula.installation"] == "web"
    assert not engine.containers(all=True, filters={"label": "io.nebula.managed=true"})


def _check_drift_is_corrected(engine: docker.APIClient, nebula: Nebula) -> None:
    """A service removed by hand is created again; one scaled by hand is scaled back."""
    engine.remove_service(_service(engine)["ID"])
    assert _changes(nebula.plan()) == [("create", "service", "web_web")]
    nebula("apply")
    assert len(_running(engine)) == 3

    current = _service(engine)
    engine.update_service(
        current["ID"],
        current["Version"]["Index"],
        task_template=current["Spec"]["TaskTemplate"],
        name="web_web",
        labels=current["Spec"]["Labels"],
        mode={"Replicated": {"Replicas": 1}},
        endpoint_spec=current["Spec"].get("EndpointSpec"),
        update_config=current["Spec"].get("UpdateConfig"),
    )
    [scaled] = [c for c in nebula.plan()["swarm"]["changes"] if c["action"] == "update"]
    assert "replicas changed by hand: 1 → 3" in scaled["reason"]
    nebula("apply")
    assert _service(engine)["Spec"]["Mode"] == {"Replicated": {"Replicas": 3}}
    assert len(_running(engine)) == 3


def test_a_rolling_update_that_fails_is_reported_and_swarm_pauses_it(
    engine: docker.APIClient, nebula: Nebula
) -> None:
    nebula.write()
    nebula("apply")
    nebula.write(command='["sh", "-c", "exit 3"]')
    out = nebula("apply", code=1)
    assert "web_web" in out and "rolling update stopped" in out
    assert _service(engine)["UpdateStatus"]["State"] == "paused"
    # the tasks not yet reached still run the previous spec
    assert {_env(engine, t) for t in _running(engine)} == {"hello"}


def test_a_port_published_in_host_mode_answers_on_the_node(
    engine: docker.APIClient, nebula: Nebula
) -> None:
    port = servers.free_port()
    (nebula.repo / "packages" / "site.yaml").write_text(
        f"""compose:
  services:
    web:
      image: {servers.TEST_IMAGE}
      ports:
        - {{target: 8080, published: "{port}", mode: host}}
"""
    )
    nebula("apply")
    status, body = servers.http_get(f"http://127.0.0.1:{port}/")
    assert status == 200 and body
    [published] = _service(engine, "site_web")["Endpoint"]["Ports"]
    assert (published["PublishMode"], published["PublishedPort"]) == ("host", port)


# -- without servers: what a swarm node takes, and the pure diff ------------------------------


def _load_errors(tmp_path: Path, nebula_yaml: str, app_text: str) -> list[str]:
    (tmp_path / "packages" / "app" / "web").mkdir(parents=True)
    (tmp_path / "packages" / "app" / "web" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "nebula.yaml").write_text(nebula_yaml)
    (tmp_path / "packages" / "app.yaml").write_text(app_text)
    with pytest.raises(ConfigError) as caught:
        load_desired(tmp_path)
    return [str(issue) for issue in caught.value.issues]


def test_swarm_keys_on_a_docker_node_are_refused_at_their_line(tmp_path: Path) -> None:
    errors = _load_errors(
        tmp_path,
        "nodes:\n  - {name: box, address: 127.0.0.1}\n",
        """compose:
  services:
    web:
      image: nginx:1.27
      ports:
        - {target: 80, published: "8080", mode: host}
      deploy:
        replicas: 3
""",
    )
    assert errors == [
        "packages/app.yaml:6:11: compose.services.web.ports[0]: a publish mode is for a node "
        "with `engine: swarm`; node 'box' publishes on itself: leave `mode` out",
        "packages/app.yaml:7:7: compose.services.web.deploy: replicas, update_config, "
        "restart_policy and reservations are for a node with `engine: swarm`; node 'box' runs "
        "one container per service: leave them out (`restart:` restarts the container)",
    ]


def test_what_the_swarm_backend_does_not_map_is_refused_at_its_line(tmp_path: Path) -> None:
    errors = _load_errors(
        tmp_path,
        NEBULA_YAML,
        """compose:
  services:
    web:
      build: ./web
      ports: ["127.0.0.1:8080:80"]
      privileged: true
allow: [privileged]
""",
    )
    assert errors == [
        "packages/app.yaml:4:7: compose.services.web.build: a swarm's nodes pull their "
        "images: push the image to a registry and give `image:`",
        "packages/app.yaml:5:15: compose.services.web.ports[0]: a swarm publishes ports on "
        "every address of its nodes, not on 127.0.0.1; leave the address out",
        "packages/app.yaml:6:7: compose.services.web.privileged: Swarm services get no powers "
        "over the host from Nebula; leave it out",
    ]


def _installation(greeting: str) -> SwarmInstallation:
    container = ContainerSpec(
        "web", "web", "web-web", "app:1", environment=(("GREETING", greeting),)
    )
    return SwarmInstallation(
        "web", "packages/web.yaml", (ServiceSpec(container),), (), (VolumeSpec("web", "web_data"),)
    )


def _observed(spec: ServiceSpec, *, replicas: int = 1) -> ObservedService:
    return ObservedService(
        "id1", spec.name, "web", "web", spec.spec_hash, spec.summary(), 7, replicas, "app:1"
    )


def test_the_diff_rolls_a_changed_service_and_keeps_volumes_of_a_removed_one() -> None:
    hello, bye = _installation("hello"), _installation("bye")
    observed = SwarmObserved(
        (_observed(hello.services[0]),), (), (ObservedVolume("web_data", "web"),)
    )
    assert [(c.action, c.reason) for c in diff([hello], observed).pending] == []
    [update] = diff([bye], observed).pending
    assert (update.action, update.name) == (Action.UPDATE, "web_web")
    assert update.reason == "rolling update: environment GREETING changed hello → bye"
    removed = diff([], observed).changes
    assert [(c.action, c.kind, c.name) for c in removed] == [
        (Action.DELETE, Resource.SERVICE, "web_web"),
        (Action.NOOP, Resource.VOLUME, "web_data"),
    ]
    scaled = SwarmObserved((_observed(hello.services[0], replicas=5),), (), observed.volumes)
    [scale] = diff([hello], scaled).pending
    assert scale.reason == "replicas changed by hand: 5 → 1"
