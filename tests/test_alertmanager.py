"""A real Prometheus Alertmanager drives a runbook in nebulad.

Alertmanager (the Debian package) sends its webhook notifications to nebulad's TCP API with an
operator's API key as its bearer token, as the README tells users to set it up; nebulad syncs a
config repo onto a real Docker Engine, and the repo's runbook answers Alertmanager's alert
by acting in the installation's container.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

import servers
from nebula.daemon.api import create_app
from nebula.daemon.core import Daemon
from nebula.daemon.server import serve
from nebula.identity import accounts
from nebula.identity.sessions import Sessions
from nebula.store import Store
from nebula.store import audit as audit_log
from test_daemon import IMAGE, engine, eventually
from test_daemon_api import free_port, short_dir
from test_remediation import start

__all__ = ["engine"]  # the fixture

APP = f"""compose:
  services:
    web:
      image: {IMAGE}
      init: true
      restart: unless-stopped
"""
RUNBOOK = """name: disk-almost-full
trigger: {type: alert, alert: DiskAlmostFull}
steps:
  - name: Say so
    action: log
    params: {message: "{{ labels.installation }}/{{ labels.service }} is almost full"}
  - name: Clean up
    action: docker
    params:
      command: exec
      container: "{{ service.container }}"
      cmd: "echo {{ alert.name }} {{ alert.severity }} > /cleaned-up"
"""
LABELS = {
    "alertname": "DiskAlmostFull",
    "installation": "blog",
    "service": "web",
    "severity": "critical",
}
ALERT: dict[str, object] = {
    "labels": LABELS,
    "annotations": {"summary": "blog's disk is 95% full"},
    "generatorURL": "http://prometheus:9090/graph",
}


@dataclass
class Lab:
    """nebulad syncing a repo (the installation `blog` and the runbook above) onto Docker,
    its TCP API at `url`, and an operator's API key named `alertmanager`."""

    daemon: Daemon
    store: Store
    url: str
    key: str

    @property
    def webhook(self) -> str:
        return f"{self.url}/api/v1/alerts/alertmanager"

    def get(self, path: str, **params: str) -> Any:
        headers = {"Authorization": f"Bearer {self.key}"}
        response = httpx.get(f"{self.url}/api/v1{path}", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def lab(tmp_path: Path, docker_host: str, engine: docker.DockerClient) -> Iterator[Lab]:
    repo_files = {"runbooks/disk-almost-full.yml": RUNBOOK}
    daemon, store = start(tmp_path, docker_host, "{}\n", APP, repo_files)
    key = accounts.create_key(store, "alertmanager", "write")[1]
    sessions = Sessions(store, bytes(range(32)))
    port = free_port()
    stop, ready = threading.Event(), threading.Event()
    try:
        with short_dir() as root:
            thread = threading.Thread(
                target=serve,
                args=(create_app(daemon, token=None, tcp=False), root / "nebulad.sock"),
                kwargs={
                    "app_tcp": create_app(
                        daemon, token=None, tcp=True, sessions=sessions, audit=daemon.audit
                    ),
                    "tcp_listen": f"127.0.0.1:{port}",
                    "stop": stop,
                    "ready": ready,
                },
                daemon=True,
            )
            thread.start()
            assert ready.wait(10), "the API did not start"
            try:
                yield Lab(daemon, store, f"http://127.0.0.1:{port}", key)
            finally:
                stop.set()
                thread.join(15)
    finally:
        daemon.stop()
        store.close()


def test_an_alertmanager_alert_runs_the_runbook_and_its_resolution_resolves_the_incident(
    lab: Lab, engine: docker.DockerClient
) -> None:
    eventually(lambda: engine.containers.get("blog-web").status == "running")
    with servers.alertmanager_server(lab.webhook, lab.key) as alertmanager:
        alertmanager.post([ALERT])

        eventually(lambda: bool(lab.get("/incidents")["incidents"]))
        (incident,) = lab.get("/incidents")["incidents"]
        assert (incident["status"], incident["severity"]) == ("open", "critical")
        assert (incident["title"], incident["labels"]) == ("blog's disk is 95% full", LABELS)

        def runs() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = lab.get(
                "/runbooks/executions", runbook="disk-almost-full"
            )["executions"]
            return found

        eventually(lambda: [r["status"] for r in runs()] == ["succeeded"])
        (run,) = runs()
        assert (run["incident_id"], run["steps_completed"]) == (incident["id"], 2)
        code, marker = engine.containers.get("blog-web").exec_run(["cat", "/cleaned-up"])
        assert (code, marker.decode()) == (0, "DiskAlmostFull critical\n")

        # the problem is gone: Alertmanager sends the resolved notification
        resolved = {**ALERT, "endsAt": (datetime.now(UTC) - timedelta(seconds=1)).isoformat()}
        alertmanager.post([resolved])

        incident_id = incident["id"]
        eventually(lambda: lab.get(f"/incidents/{incident_id}")["status"] == "resolved")
    shown = lab.get(f"/incidents/{incident_id}")
    assert shown["resolution"] == "alerts cleared"
    timeline = "\n".join(f"{e['kind']}: {e['message']}" for e in shown["timeline"])
    for expected in (
        "step: Say so: ok",
        "step: Clean up: ok",
        "runbook disk-almost-full succeeded",
    ):
        assert expected in timeline, timeline
    assert len(runs()) == 1  # the resolution ran nothing
    # both notifications came from Alertmanager, under its key
    delivered = [
        e.detail and e.detail["status"]
        for e in audit_log.entries(lab.store)
        if e.action == "alert.alertmanager" and e.actor.endswith(":alertmanager")
    ]
    assert delivered == [200, 200]


def test_alertmanager_with_a_wrong_key_is_refused_and_opens_nothing(lab: Lab) -> None:
    with servers.alertmanager_server(lab.webhook, "nbk_not-a-key") as alertmanager:
        alertmanager.post([ALERT])
        # Alertmanager tried, and nebulad refused it: its log holds nebulad's answer
        eventually(lambda: "unexpected status code 401" in alertmanager.log_text())
        assert "invalid bearer token" in alertmanager.log_text()
    assert lab.get("/incidents")["incidents"] == []
    assert lab.get("/runbooks/executions")["executions"] == []
    assert not [e for e in audit_log.entries(lab.store) if e.action == "alert.alertmanager"]
