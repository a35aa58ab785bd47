"""Remediation through nebulad's API and the CLI: incidents, alerts (by hand and from
Alertmanager), silences, runbook runs, dry runs and approvals.

A real `Daemon` (its remediation, store and event bus) behind the real API, served by uvicorn
on a unix socket (for the CLI) and on loopback TCP (API keys, roles, the audit log). No sync
runs, so no Docker Engine is needed: alerts about a container that does not exist are fine,
and the runbooks are those the config repo below loads, recorded as the runbooks kind does.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import httpx
import pytest

from nebula.daemon.api import create_app
from nebula.daemon.config import DaemonConfig
from nebula.daemon.core import Daemon
from nebula.daemon.server import serve
from nebula.engine.load import load_desired
from nebula.identity import accounts
from nebula.identity.sessions import Sessions
from nebula.providers.docker import DockerProvider
from nebula.store import Store
from nebula.store import audit as audit_log
from test_daemon_api import free_port, short_dir
from test_daemon_cli import run, run_json

RUNBOOKS = {
    "restart-if-unhealthy.yml": """\
name: restart-if-unhealthy
trigger: {type: manual}
steps:
  - name: Log it
    action: log
    params: {message: "{{ service.name }} is {{ service.health }}"}
  - name: Restart
    action: docker
    condition: "service.health == 'unhealthy'"
    params: {command: restart, container: "{{ service.container }}"}
""",
    "gated.yml": """\
name: gated
trigger: {type: manual}
steps:
  - name: Before
    action: log
    params: {message: before the gate}
  - name: After
    action: log
    requires_approval: true
    params: {message: a person said yes}
""",
}
ALERTMANAGER = {
    "version": "4",
    "groupKey": '{}:{alertname="DiskFull"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "nebula",
    "groupLabels": {"alertname": "DiskFull"},
    "commonLabels": {"alertname": "DiskFull"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "DiskFull", "installation": "nas", "severity": "critical"},
            "annotations": {"summary": "the NAS disk is full"},
            "startsAt": "2026-05-01T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": "a1b2c3d4e5f60718",
        },
        {
            "status": "firing",
            "labels": {"alertname": "HighLoad", "installation": "media"},
            "annotations": {},
            "startsAt": "2026-05-01T10:00:05Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": "0817f6e5d4c3b2a1",
        },
    ],
}


@dataclass
class Nebulad:
    daemon: Daemon
    store: Store
    url: str
    keys: dict[str, str]  # scope -> API key

    def tcp(self, scope: str = "write") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[scope]}"}
        return httpx.Client(base_url=f"{self.url}/api/v1", headers=headers, timeout=30)


@pytest.fixture
def nebulad(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Nebulad]:
    repo = tmp_path / "repo"
    (repo / "runbooks").mkdir(parents=True)
    (repo / "nebula.yaml").write_text("{}\n")
    for name, text in RUNBOOKS.items():
        (repo / "runbooks" / name).write_text(text)
    config = DaemonConfig(source=str(repo), watch=True, data_dir=tmp_path / "data")
    config.data_dir.mkdir(mode=0o700)
    store = Store(f"sqlite:///{tmp_path}/nebula.db")
    store.replace_runbooks([r.record for r in load_desired(repo).runbooks])
    daemon = Daemon(config, store, DockerProvider("unix:///nonexistent.sock"), None)
    sessions = Sessions(store, bytes(range(32)))
    keys = {
        scope: accounts.create_key(store, f"{scope}-key", scope)[1] for scope in ("read", "write")
    }
    monkeypatch.delenv("NEBULA_DAEMON", raising=False)
    monkeypatch.delenv("NEBULA_TOKEN", raising=False)
    with short_dir() as root:
        socket_path = root / "run" / "nebulad.sock"
        port = free_port()
        stop, ready = threading.Event(), threading.Event()
        thread = threading.Thread(
            target=serve,
            args=(create_app(daemon, token=None, tcp=False, audit=daemon.audit), socket_path),
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
        monkeypatch.setenv("NEBULA_SOCKET", str(socket_path))
        try:
            yield Nebulad(daemon, store, f"http://127.0.0.1:{port}", keys)
        finally:
            stop.set()
            thread.join(15)
            daemon.remediation.close()
            daemon.bus.close()
            store.close()


def fire(client: httpx.Client, name: str, **labels: str) -> dict[str, Any]:
    response = client.post("/alerts", json={"name": name, "labels": labels})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_an_alert_opens_an_incident_people_acknowledge_and_resolve(nebulad: Nebulad) -> None:
    with nebulad.tcp() as ops:
        opened = fire(ops, "unhealthy", installation="blog", service="web")
        assert opened["outcome"] == "opened"
        incident_id = opened["incident"]["id"]
        assert fire(ops, "unhealthy", installation="blog", service="web")["outcome"] == "folded"

        listed = ops.get("/incidents", params={"status": "open"}).json()["incidents"]
        assert [(i["id"], i["status"], i["service_name"]) for i in listed] == [
            (incident_id, "open", "web")
        ]
        shown = ops.get(f"/incidents/{incident_id}").json()
        assert [e["kind"] for e in shown["timeline"]] == ["alert", "folded"]
        assert "unhealthy on blog/web fired again ×1" in shown["timeline"][1]["message"]

        acked = ops.post(f"/incidents/{incident_id}/acknowledge")
        assert (acked.status_code, acked.json()["status"]) == (200, "acknowledged")
        actor = acked.json()["acknowledged_by"]  # as the audit log names the key
        assert actor.endswith(":write-key")
        resolved = ops.post(f"/incidents/{incident_id}/resolve", json={"resolution": "rebooted"})
        assert (resolved.status_code, resolved.json()["resolution"]) == (200, "rebooted")
        again = ops.post(f"/incidents/{incident_id}/resolve", json={})
        assert again.status_code == 409
        assert "resolved" in again.json()["error"]

        assert ops.get("/incidents", params={"status": "open"}).json()["incidents"] == []
        assert ops.get("/incidents/no-such-incident").status_code == 404
        bad = ops.get("/incidents", params={"status": "closed"})
        assert bad.status_code == 400
        assert "open, acknowledged, resolved" in bad.json()["error"]
        timeline = ops.get(f"/incidents/{incident_id}").json()["timeline"]
        assert [(e["kind"], e["actor"]) for e in timeline[-2:]] == [
            ("acknowledged", actor),
            ("resolved", actor),
        ]

    actions = [
        (e.actor, e.action, e.target, e.detail and e.detail["status"])
        for e in audit_log.entries(nebulad.store)
    ]
    assert (actor, "incident.acknowledge", incident_id, 200) in actions
    assert (actor, "incident.resolve", incident_id, 409) in actions


def test_a_viewer_reads_incidents_but_cannot_change_them(nebulad: Nebulad) -> None:
    with nebulad.tcp() as ops, nebulad.tcp("read") as viewer:
        incident_id = fire(ops, "container_died", installation="blog")["incident"]["id"]
        assert viewer.get(f"/incidents/{incident_id}").status_code == 200
        assert viewer.post(f"/incidents/{incident_id}/acknowledge").status_code == 403
        assert viewer.post("/alerts", json={"name": "manual"}).status_code == 403
        assert viewer.post("/silences", json={}).status_code == 403
        assert ops.get(f"/incidents/{incident_id}").json()["status"] == "open"


def test_a_silence_mutes_the_next_alert_until_removed(nebulad: Nebulad) -> None:
    with nebulad.tcp() as ops:
        refused = ops.post("/silences", json={"matchers": ["installation"], "duration": "2h"})
        assert refused.status_code == 400
        assert "LABEL=VALUE" in refused.json()["error"]
        added = ops.post(
            "/silences",
            json={"matchers": ["installation=blog"], "duration": "2h", "comment": "moving"},
        )
        assert added.status_code == 201, added.text
        silence = added.json()
        assert silence["matchers"] == [["installation", "=", "blog"]]
        assert [s["id"] for s in ops.get("/silences").json()["silences"]] == [silence["id"]]

        muted = fire(ops, "unhealthy", installation="blog", service="web")
        assert muted == {"outcome": "silenced", "incident": None}
        assert fire(ops, "unhealthy", installation="wiki")["outcome"] == "opened"
        titles = [i["title"] for i in ops.get("/incidents").json()["incidents"]]
        assert titles == ["unhealthy on wiki"]

        assert ops.delete(f"/silences/{silence['id']}").json() == {"removed": silence["id"]}
        assert ops.delete(f"/silences/{silence['id']}").status_code == 409
        assert ops.get("/silences").json()["silences"] == []
        assert fire(ops, "unhealthy", installation="blog", service="web")["outcome"] == "opened"


def test_an_alertmanager_notification_opens_an_incident_per_alert(nebulad: Nebulad) -> None:
    with nebulad.tcp() as alertmanager:
        answer = alertmanager.post("/alerts/alertmanager", json=ALERTMANAGER)
        assert answer.status_code == 200, answer.text
        assert [a["outcome"] for a in answer.json()["alerts"]] == ["opened", "opened"]
        broken = alertmanager.post("/alerts/alertmanager", json={**ALERTMANAGER, "alerts": [{}]})
        assert broken.status_code == 400
        assert "alerts[0]" in broken.json()["error"]
    with nebulad.tcp() as ops:
        incidents = ops.get("/incidents").json()["incidents"]
    assert sorted((i["title"], i["severity"]) for i in incidents) == [
        ("HighLoad on media", "warning"),
        ("the NAS disk is full", "critical"),
    ]


def test_a_dry_run_lists_the_steps_and_runs_none(nebulad: Nebulad) -> None:
    with nebulad.tcp() as ops:
        names = [r["name"] for r in ops.get("/runbooks").json()["runbooks"]]
        assert names == ["gated", "restart-if-unhealthy"]
        dry = ops.post(
            "/runbooks/restart-if-unhealthy/run",
            json={"labels": {"installation": "blog", "service": "web"}, "dry_run": True},
        ).json()
        assert dry["steps"] == [
            {"name": "Log it", "action": "log", "would_run": True},
            {"name": "Restart", "action": "docker", "would_run": False},
        ]
        assert ops.get("/runbooks/executions").json()["executions"] == []
        missing = ops.post("/runbooks/nope/run", json={"dry_run": True})
        assert missing.status_code == 404
        assert "gated, restart-if-unhealthy" in missing.json()["error"]

    out = run("runbooks", "run", "restart-if-unhealthy", "--label", "service=web", "--dry-run")
    assert "Log it" in out and "log" in out
    assert "no: its condition is false" in out


def wait_for(status: str, execution_id: str) -> dict[str, Any]:
    """The execution once it reached `status` (a resumed run goes on in a worker)."""
    deadline = time.monotonic() + 30
    while True:
        found = run_json("runbooks", "history", "--runbook", "gated")
        assert isinstance(found, list)
        execution: dict[str, Any] = next(e for e in found if e["id"] == execution_id)
        if execution["status"] == status or time.monotonic() > deadline:
            return execution
        time.sleep(0.1)


def test_a_run_waits_for_approval_and_a_person_approves_or_rejects_it(nebulad: Nebulad) -> None:
    waiting = run("runbooks", "run", "gated")
    assert "Runbook gated waiting" in waiting
    first = run_json("runbooks", "history")
    assert isinstance(first, list) and len(first) == 1
    assert (first[0]["status"], first[0]["steps_completed"]) == ("waiting", 1)

    assert "Approved: run" in run("runbooks", "approve", first[0]["id"])
    done = wait_for("succeeded", first[0]["id"])
    assert (done["status"], done["steps_completed"], done["approval_by"]) == (
        "succeeded",
        2,
        f"uid:{os.getuid()}",
    )
    assert "not waiting for an approval" in run("runbooks", "approve", first[0]["id"], code=1)

    run("runbooks", "run", "gated")
    second = next(e for e in run_json("runbooks", "history") if e["status"] == "waiting")
    assert "Rejected: run" in run("runbooks", "reject", second["id"])
    table = run("runbooks", "history")
    assert "rejected" in table and "succeeded" in table


def test_the_cli_lists_shows_acknowledges_and_resolves_incidents(nebulad: Nebulad) -> None:
    assert "No incidents open." in run("incidents", "list", "--status", "open")
    fired = run("alert", "fire", "unhealthy", "--label", "installation=blog", "-l", "service=web")
    assert "Alert unhealthy opened incident" in fired
    incident_id = run_json("incidents", "list")[0]["id"]
    assert "folded into incident" in run(
        "alert", "fire", "unhealthy", "-l", "installation=blog", "-l", "service=web"
    )
    listed = run("incidents", "list")
    assert incident_id in listed and "open" in listed and "unhealthy on blog/web" in listed

    assert "Acknowledged incident" in run("incidents", "ack", incident_id)
    assert "already" in run("incidents", "ack", incident_id, code=1)
    resolved = run("incidents", "resolve", incident_id, "--resolution", "restarted by hand")
    assert "Resolved incident" in resolved and "restarted by hand" in resolved
    shown = run("incidents", "show", incident_id)
    for kind in ("alert", "folded", "acknowledged", "resolved"):
        assert kind in shown
    assert "fired again ×1" in shown
    assert run_json("incidents", "show", incident_id)["status"] == "resolved"
    assert "no incident nope" in run("incidents", "show", "nope", code=1)
    assert "KEY=VALUE" in run("alert", "fire", "unhealthy", "--label", "blog", code=2)


def test_the_cli_adds_lists_and_removes_silences(nebulad: Nebulad) -> None:
    added = run(
        "silence", "add", "--match", "installation=blog", "-m", "severity!=info", "--for", "2h"
    )
    assert "mutes installation=blog, severity!=info until" in added
    silence = run_json("silence", "list")[0]
    assert "installation=blog, severity!=info" in run("silence", "list")
    assert "silenced: no incident opened" in run("alert", "fire", "x", "-l", "installation=blog")
    assert "is not a duration" in run("silence", "add", "-m", "a=b", "--for", "soon", code=1)
    assert f"Silence {silence['id']} ended." in run("silence", "rm", silence["id"])
    assert "No silences in force." in run("silence", "list")


def test_the_event_stream_says_what_each_alert_did(nebulad: Nebulad) -> None:
    with nebulad.tcp("read") as viewer, viewer.stream("GET", "/events") as stream:
        lines = stream.iter_lines()
        assert next(lines) == ": subscribed"
        with nebulad.tcp() as ops:
            incident_id = fire(ops, "oom_killed", installation="blog")["incident"]["id"]
        events = list(islice((li for li in lines if li.startswith(("event:", "data:"))), 2))
    assert events[0] == "event: incident"
    data = json.loads(events[1].removeprefix("data: "))
    assert (data["id"], data["status"], data["alert"], data["outcome"]) == (
        incident_id,
        "open",
        "oom_killed",
        "opened",
    )
