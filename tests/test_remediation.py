"""The remediation loop end to end, in nebulad against a real Docker Engine: a service turns
unhealthy, an incident opens, the seed's runbook restarts it, it recovers and the incident
resolves by itself; a service that keeps failing hits the restart cap and escalates once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from apprise.plugins.discord import NotifyDiscord

import servers
from discord_double import DiscordDouble, discord_double
from nebula.daemon.config import DaemonConfig
from nebula.daemon.core import Daemon
from nebula.daemon.gitsync import GitSource
from nebula.providers.docker import DockerProvider
from nebula.store import Store, installation_runs
from nebula.store.records import IncidentInfo
from servers import SmtpServer, smtp_server
from test_daemon import IMAGE, Repo, engine, eventually

__all__ = ["engine"]  # the fixture

WEBHOOK_ID, TOKEN = "1234567890", "webhook-token-9b1f"

# httpd serves /www/index.html, written at each start: removing it makes the health check fail
# until the container restarts.
APP = """compose:
  services:
    web:
      image: {image}
      init: true
      restart: unless-stopped
      command: [sh, -c, "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"]
      ports: ["127.0.0.1:{port}:8080"]
health_checks:
  - {{name: page, url: "http://127.0.0.1:{port}/index.html", interval: 1s, timeout: 2s}}
"""

CONFIG = """defaults: {{health_timeout: 30s}}
runbooks: [restart-unhealthy-service]
notifications:
  email: {{urls: ["{email}"]}}
  discord: {{urls: ["discord://{webhook}/{token}"]}}
remediation: {{notify: [email], cooldown: 1s, max_restarts: {max_restarts}}}
"""


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def discord(monkeypatch: pytest.MonkeyPatch) -> Iterator[DiscordDouble]:
    with discord_double() as double:
        double.add_webhook(WEBHOOK_ID, TOKEN)
        # Apprise's Discord plugin posts to discord.com; point it at the double instead.
        monkeypatch.setattr(NotifyDiscord, "notify_url", double.api)
        yield double


def start(
    tmp_path: Path, docker_host: str, config: str, app: str, more: dict[str, str] | None = None
) -> tuple[Daemon, Store]:
    repo = Repo(tmp_path)
    (repo.work / "runbooks").mkdir()
    repo.push("homelab", {"nebula.yaml": config, "packages/blog.yaml": app, **(more or {})})
    daemon_config = DaemonConfig(
        source=str(repo.bare), data_dir=tmp_path / "data", poll_interval=3600, drift_interval=3600
    )
    store = Store(f"sqlite:///{tmp_path}/nebula.db")
    daemon = Daemon(
        daemon_config,
        store,
        DockerProvider(docker_host),
        GitSource(str(repo.bare), tmp_path / "data" / "repo"),
    )
    daemon.start()
    eventually(lambda: daemon.status().applied_commit is not None, timeout=60)
    return daemon, store


def running_id(engine: docker.DockerClient, name: str) -> str | None:
    """The id of the container `name` while it runs (None while it is gone or stopped)."""
    found = engine.containers.list(filters={"name": f"^{name}$", "status": "running"})
    return found[0].id if found else None


def healthy(store: Store, installation: str) -> bool:
    return any(h.status == "healthy" for h in installation_runs.health(store, installation))


def only_incident(daemon: Daemon) -> IncidentInfo:
    (incident,) = daemon.remediation.incidents.list()
    found = daemon.remediation.incidents.get(incident.id)
    assert found is not None
    return found


def test_an_unhealthy_service_is_restarted_by_the_seed_runbook_and_its_incident_resolves(
    tmp_path: Path,
    docker_host: str,
    engine: docker.DockerClient,
    smtp: SmtpServer,
    discord: DiscordDouble,
) -> None:
    port = servers.free_port()
    config = CONFIG.format(
        email=smtp.apprise_url("ops@example.org"),
        webhook=WEBHOOK_ID,
        token=TOKEN,
        max_restarts=3,
    )
    daemon, store = start(tmp_path, docker_host, config, APP.format(image=IMAGE, port=port))
    try:
        eventually(lambda: engine.containers.get("blog-web").status == "running")
        started = engine.containers.get("blog-web").attrs["State"]["StartedAt"]
        eventually(lambda: healthy(store, "blog"), timeout=30)

        engine.containers.get("blog-web").exec_run(["rm", "/www/index.html"])  # it breaks

        eventually(lambda: bool(daemon.remediation.incidents.list()), timeout=30)
        # the seed's runbook restarts it, waits 30 s as written, checks it and is done
        eventually(lambda: only_incident(daemon).status == "resolved", timeout=90)
        assert engine.containers.get("blog-web").attrs["State"]["StartedAt"] != started
        (execution,) = store.executions(runbook="restart-unhealthy-service")
        eventually(lambda: store.execution(execution.id).status == "succeeded", timeout=60)

        incident = only_incident(daemon)
        assert incident.resolution == "alerts cleared" and incident.service_name
        lines = [f"{e.kind}: {e.message}" for e in incident.timeline]
        text = "\n".join(lines)
        for expected in (
            "runbook restart-unhealthy-service started",
            "step: Log incident: ok",
            "step: Attempt restart: ok",
            "step: Wait for health: ok",
            "step: Check health: ok",
            "step: Notify on failure: skipped",
            "runbook restart-unhealthy-service succeeded",
        ):
            assert expected in text, text
        assert any(e.kind == "resolved" for e in incident.timeline), text
        # the failure was mailed through the real SMTP server; the recovery needed no Discord
        eventually(lambda: any("incident opened" in str(m.message["Subject"]) for m in smtp.mails))
        assert "blog" in str(smtp.mails[0].message.get_body(("plain", "html")))
        assert not discord.messages
    finally:
        daemon.stop()
        store.close()


STUBBORN = """compose:
  services:
    web:
      image: {image}
      init: true
      restart: unless-stopped
      command: [sh, -c, "mkdir -p /www && ([ -f /data/broken ] || echo ok > /www/index.html) && exec httpd -f -p 8080 -h /www"]
      ports: ["127.0.0.1:{port}:8080"]
      volumes: [state:/data]
health_checks:
  - {{name: page, url: "http://127.0.0.1:{port}/index.html", interval: 1s, timeout: 2s}}
"""

RESTART_RUNBOOK = """name: restart-web
trigger:
  type: alert
  alert: unhealthy
  condition: "service.restart_count < 3"
steps:
  - name: Restart
    action: docker
    params: {command: restart, container: "{{ service.container }}"}
  - name: Settle
    action: wait
    params: {duration: 2s}
  - name: Check
    action: health_check
    params: {url: "{{ service.health_endpoint }}", expected_status: 200}
escalation:
  after_failures: 3
  notify: [discord, email]
"""


def test_a_service_that_keeps_failing_hits_the_cap_and_escalates_exactly_once(
    tmp_path: Path,
    docker_host: str,
    engine: docker.DockerClient,
    smtp: SmtpServer,
    discord: DiscordDouble,
) -> None:
    port = servers.free_port()
    config = (
        CONFIG.format(
            email=smtp.apprise_url("ops@example.org"),
            webhook=WEBHOOK_ID,
            token=TOKEN,
            max_restarts=3,
        )
        .replace("runbooks: [restart-unhealthy-service]\n", "")
        .replace("notify: [email], ", "")
    )
    repo_files = {"runbooks/restart-web.yml": RESTART_RUNBOOK}
    daemon, store = start(
        tmp_path, docker_host, config, STUBBORN.format(image=IMAGE, port=port), repo_files
    )
    try:
        eventually(lambda: healthy(store, "blog"), timeout=30)
        engine.containers.get("blog-web").exec_run(
            ["sh", "-c", "touch /data/broken && rm /www/index.html"]
        )
        eventually(lambda: bool(discord.messages) and bool(smtp.mails), timeout=90)
        executions = store.executions(runbook="restart-web")
        assert len(executions) == 3 and all(e.status == "failed" for e in executions)
        started = engine.containers.get("blog-web").attrs["State"]["StartedAt"]
        # the cap holds: while it keeps failing, no run restarts it again, nobody is told again
        for _ in range(3):
            engine.containers.get("blog-web").exec_run(["true"])
            eventually(lambda: len(store.executions(runbook="restart-web")) == 3, timeout=2)
        daemon.remediation.engine.stop.wait(4.0)
        assert engine.containers.get("blog-web").attrs["State"]["StartedAt"] == started
        assert len(store.executions(runbook="restart-web")) == 3
        assert len(discord.messages) == 1 and len(smtp.mails) == 1
        told = json.dumps(discord.messages[0]) + str(smtp.mails[0].message["Subject"])
        assert told.count("restart-web could not recover blog/web") == 2, told
        incident = only_incident(daemon)
        assert incident.escalated and incident.status == "open"
        kinds = [e.kind for e in incident.timeline]
        assert kinds.count("escalated") == 1 and kinds.count("notification") == 2
    finally:
        daemon.stop()
        store.close()


RECREATE_RUNBOOK = """name: recreate-web
trigger: {type: manual}
steps:
  - name: Said
    action: docker
    params: {command: logs, container: "{{ service.container }}", lines: 5}
  - name: Recreate
    action: docker
    params: {command: recreate, container: "{{ service.container }}"}
  - name: Report
    action: docker
    params: {command: usage, lines: 5}
"""


def test_a_manual_run_recreates_a_container_from_the_repo_and_reports_disk_usage(
    tmp_path: Path, docker_host: str, engine: docker.DockerClient
) -> None:
    port = servers.free_port()
    config = "defaults: {health_timeout: 30s}\n"
    app = STUBBORN.format(image=IMAGE, port=port)
    daemon, store = start(
        tmp_path, docker_host, config, app, {"runbooks/recreate-web.yml": RECREATE_RUNBOOK}
    )
    try:
        eventually(lambda: healthy(store, "blog"), timeout=30)
        before = engine.containers.get("blog-web").id
        labels = {"installation": "blog", "service": "web"}
        answer = daemon.remediation.run("recreate-web", labels, "test")
        assert answer["status"] == "succeeded", answer
        # the sync made it again from the repo's spec: a new container, running
        eventually(lambda: running_id(engine, "blog-web") not in (None, before), timeout=60)
        said = store.execution(answer["execution"]).step_states["said"]
        assert said["status"] == "ok" and "logs" in said["outputs"]
        report = store.execution(answer["execution"]).step_states["report"]["output"]
        assert "volumes Nebula manages:" in report and "blog_state" in report
        assert store.execution(answer["execution"]).trigger["alert"]["labels"] == labels
    finally:
        daemon.stop()
        store.close()
