"""Package health checks run by nebulad's monitor against a real container: HTTP (with an
expected status), TCP and a command in the container pass, then fail once the server inside is
stopped, then pass again once it is back. Results are stored, shown by `nebula status`,
exported as metrics and published as `health` events when a check changes status."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from prometheus_client import REGISTRY
from typer.testing import CliRunner

import servers
from nebula.cli.app import app
from nebula.daemon.control import Event
from nebula.daemon.events import EventBus
from nebula.daemon.health import HealthMonitor
from nebula.engine.load import load_desired
from nebula.kinds.packages.apply import apply_plan
from nebula.kinds.packages.diff import Snapshot
from nebula.kinds.packages.health import probe
from nebula.kinds.packages.types import ExecCheck, HttpCheck, TcpCheck
from nebula.providers.docker import DockerProvider
from nebula.store import Store, installation_runs

CHECKS = ("exec", "http", "missing-page", "tcp")

APP = """compose:
  services:
    web:
      image: {image}
      # httpd in the background, so the test can stop it while the container keeps running
      command: [sh, -c, "httpd -p 8080 -h /www && exec sleep 3600"]
      ports: ["127.0.0.1:{port}:8080"]
health_checks:
  - {{name: http, url: "http://127.0.0.1:{port}/", interval: 1s, timeout: 1s}}
  - name: missing-page
    url: "http://127.0.0.1:{port}/nothing-here"
    expect_status: [404]
    interval: 1s
    timeout: 1s
  - {{name: tcp, service: web, port: 8080, interval: 1s, timeout: 1s}}
  - name: exec
    service: web
    exec: [wget, -q, -O, /dev/null, "http://127.0.0.1:8080/"]
    interval: 1s
    timeout: 2s
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def engine(docker_host: str) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    yield client
    for container in client.containers.list(all=True, filters={"label": "io.nebula.managed"}):
        container.remove(force=True)
    for network in client.networks.list(filters={"label": "io.nebula.managed=true"}):
        network.remove()
    client.close()


def _wait_for(
    events: Iterator[Event], wanted: dict[str, str], timeout: float = 20.0
) -> dict[str, Event]:
    """The first `health` event per check reaching its wanted status."""
    seen: dict[str, Event] = {}
    deadline = time.monotonic() + timeout
    for event in events:
        if event.kind == "health" and wanted.get(event.data["check"]) == event.data["status"]:
            seen.setdefault(event.data["check"], event)
        if len(seen) == len(wanted) or time.monotonic() > deadline:
            break
    assert set(seen) == set(wanted), f"only {sorted(seen)} reached {wanted}"
    return seen


def _assert_stored_healthy(store: Store) -> None:
    results = {r.check: r for r in installation_runs.health(store, "probe")}
    assert {c: r.status for c, r in results.items()} == dict.fromkeys(CHECKS, "healthy")
    assert results["http"].detail == "HTTP 200"
    assert results["missing-page"].detail == "HTTP 404"
    assert results["tcp"].kind == "tcp" and results["tcp"].detail == "connected"
    assert results["exec"].target == "probe-web: wget -q -O /dev/null http://127.0.0.1:8080/"
    assert all(_up(c) == 1.0 for c in CHECKS)


def _up(check: str) -> float | None:
    return REGISTRY.get_sample_value(
        "nebula_health_check_up", {"installation": "probe", "check": check}
    )


def _status(database_url: str, docker_host: str, *more: str) -> Any:
    result = CliRunner().invoke(
        app,
        ["status", "--database-url", database_url, "--docker-host", docker_host, *more],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if more else result.stdout


def test_checks_pass_fail_and_recover_with_results_metrics_and_events(
    tmp_path: Path,
    docker_host: str,
    database_url: str,
    test_image: str,
    engine: docker.DockerClient,
) -> None:
    repo = tmp_path / "homelab"
    (repo / "packages").mkdir(parents=True)
    (repo / "nebula.yaml").write_text("")
    (repo / "packages" / "probe.yaml").write_text(APP.format(image=test_image, port=_free_port()))
    store = Store(database_url)
    provider = DockerProvider(docker_host)
    bus = EventBus()
    monitor = HealthMonitor(store, provider, bus)
    try:
        desired = load_desired(repo)
        assert apply_plan(
            Snapshot.of(desired, provider.observe()), provider, store
        ).ok  # waits for all
        events = bus.subscribe(heartbeat=0.5)
        monitor.start()
        monitor.watch(desired.installations)

        first = _wait_for(events, dict.fromkeys(CHECKS, "healthy"))
        assert all(e.data["previous"] is None for e in first.values())
        _assert_stored_healthy(store)
        table = _status(database_url, docker_host)
        assert "✓ http" in table and "✓ exec" in table

        # stop the server inside the container; the container keeps running
        (web,) = engine.containers.list(filters={"label": "io.nebula.installation=probe"})
        assert web.exec_run(["killall", "httpd"]).exit_code == 0
        failed = _wait_for(events, dict.fromkeys(CHECKS, "unhealthy"))
        assert {e.data["previous"] for e in failed.values()} == {"healthy"}
        # refused, or cut by Docker's port proxy finding nothing behind it: never an answer
        assert failed["http"].data["detail"].split(":")[0] in (
            "ConnectError",
            "ReadError",
            "RemoteProtocolError",
        )
        assert failed["tcp"].data["detail"] in (
            "connection refused",
            "connection closed at once: nothing listens behind the port",
            "connection reset by peer",
        )
        assert failed["exec"].data["detail"].startswith("exit code 1")
        assert all(_up(c) == 0.0 for c in CHECKS)
        time.sleep(1.5)  # another round: failures count up
        report = _status(database_url, docker_host, "--output", "json")
        (probe_app,) = report["installations"]
        health = {h["check"]: h for h in probe_app["health"]}
        assert health["http"]["status"] == "unhealthy"
        assert health["http"]["consecutive_failures"] >= 2
        assert "✗ http" in _status(database_url, docker_host)

        assert web.exec_run(["httpd", "-p", "8080", "-h", "/www"]).exit_code == 0
        back = _wait_for(events, dict.fromkeys(CHECKS, "healthy"))
        assert {e.data["previous"] for e in back.values()} == {"unhealthy"}
        assert installation_runs.health(store, "probe")[0].consecutive_failures == 0

        # an installation gone from the desired state: its checks stop, results and series go
        monitor.watch([])
        assert installation_runs.health(store) == []
        assert _up("http") is None
    finally:
        monitor.stop()
        bus.close()
        provider.close()
        store.close()


def test_each_probe_reports_why_it_failed(docker_host: str) -> None:
    provider = DockerProvider(docker_host)
    with socket.socket() as idle:
        idle.bind(("127.0.0.1", 0))
        port = idle.getsockname()[1]  # bound, not listening: refused
        refused = probe(TcpCheck("db", "127.0.0.1", port, 30, 1), provider)
        assert (refused.ok, refused.detail) == (False, "connection refused")
        http = probe(HttpCheck("web", f"http://127.0.0.1:{port}/", 30, 1), provider)
        assert not http.ok and http.detail.startswith("ConnectError")
    missing = probe(ExecCheck("cli", "no-such-container", ("true",), 30, 1), provider)
    assert not missing.ok and "no-such-container" in missing.detail.lower()
    provider.close()


def test_nebulad_checks_the_installations_it_applied(
    tmp_path: Path, docker_host: str, test_image: str, engine: docker.DockerClient
) -> None:
    from nebula.daemon.config import DaemonConfig
    from nebula.daemon.core import Daemon

    folder = tmp_path / "live"
    (folder / "packages").mkdir(parents=True)
    (folder / "nebula.yaml").write_text("")
    (folder / "packages" / "probe.yaml").write_text(APP.format(image=test_image, port=_free_port()))
    store = Store(f"sqlite:///{tmp_path}/nebula.db")
    provider = DockerProvider(docker_host)
    daemon = Daemon(
        DaemonConfig(source=str(folder), watch=True, data_dir=tmp_path / "d", drift_interval=3600),
        store,
        provider,
        None,
    )
    events = daemon.subscribe()
    daemon.start()
    try:
        _wait_for(events, dict.fromkeys(CHECKS, "healthy"), timeout=60)
        (row,) = daemon.installations()
        assert {h["check"]: h["status"] for h in row["health"]} == dict.fromkeys(CHECKS, "healthy")
    finally:
        daemon.stop()
        provider.close()
        store.close()


def test_health_check_mistakes_point_at_their_line(tmp_path: Path) -> None:
    from nebula.errors import ConfigError

    (tmp_path / "packages").mkdir()
    (tmp_path / "nebula.yaml").write_text("")
    app_file = tmp_path / "packages" / "app.yaml"
    head = 'compose:\n  services:\n    web: {image: "nginx:1.27", ports: ["8080:80"]}\n'
    app_file.write_text(head + "health_checks:\n  - {name: a, url: 'http://x/', tcp: 'x:1'}\n")
    with pytest.raises(ConfigError) as caught:
        load_desired(tmp_path)
    (issue,) = caught.value.issues
    assert str(issue).startswith("packages/app.yaml:5:5: health_checks[0]: give exactly one of")
    app_file.write_text(
        head
        + """health_checks:
  - {name: b, service: db, port: 80}
  - {name: c, service: web, port: 81}
  - {name: d, tcp: nohost}
  - {name: d, service: web, port: 80}
"""
    )
    with pytest.raises(ConfigError) as caught:
        load_desired(tmp_path)
    assert [str(i) for i in caught.value.issues] == [
        "packages/app.yaml:5:15: health_checks[0].service: no service 'db' (services: web)",
        "packages/app.yaml:6:29: health_checks[1].port: service 'web' publishes no host port "
        "for 81/tcp; publish it, or check from inside with `exec`",
        "packages/app.yaml:7:15: health_checks[2].tcp: 'nohost' is not host:port "
        "(e.g. 127.0.0.1:5432)",
        "packages/app.yaml:8:6: health_checks[3].name: health check 'd' is listed twice",
    ]
    app_file.write_text(head + "health_checks:\n  - {name: web, service: web, port: 80}\n")
    (desired,) = load_desired(tmp_path).installations
    assert desired.health_checks == (TcpCheck("web", "127.0.0.1", 8080, 30.0, 10.0),)


def test_the_monitor_waits_while_an_installation_is_being_applied(tmp_path: Path) -> None:
    from nebula.kinds.packages.types import DesiredInstallation

    store = Store(f"sqlite:///{tmp_path}/nebula.db")
    provider = DockerProvider("unix:///nonexistent.sock")  # TCP checks never call Docker
    bus = EventBus()
    monitor = HealthMonitor(store, provider, bus)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        check = TcpCheck("port", "127.0.0.1", port, 0.2, 1.0)
        app_ = DesiredInstallation(
            name="db",
            source="packages/db.yaml",
            package=None,
            version=None,
            containers=(),
            networks=(),
            volumes=(),
            health_checks=(check,),
        )
        deployment = store.begin_deployment(
            "db", package=None, version=None, config={}, spec_hash="h", summary="create"
        )
        monitor.start()
        try:
            monitor.watch([app_])
            time.sleep(1.0)
            assert installation_runs.health(store) == []  # being applied: apply itself waits
            store.finish_deployment(deployment, ok=True, reason=None, container_ids=[])
            deadline = time.monotonic() + 5
            while not installation_runs.health(store) and time.monotonic() < deadline:
                time.sleep(0.1)
            (result,) = installation_runs.health(store)
            assert (result.installation, result.check, result.status) == ("db", "port", "healthy")
        finally:
            monitor.stop()
            provider.close()
            store.close()
