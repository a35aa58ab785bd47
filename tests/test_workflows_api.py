"""Workflows through nebulad's API and the CLI: the list, runs by hand, their records and steps,
a `concurrency: skip` start refused while a run is going, cancelling, roles and the audit log;
and the example nightly backup validating in the example homelab.

A real `Daemon` (its remediation, workflows, store) behind the real API, served by uvicorn on a
unix socket (for the CLI) and on loopback TCP (API keys, roles). No sync runs, so no Docker
Engine is needed: the workflows are those the config repo below loads, recorded and scheduled
as a sync does, and their steps are shell commands and waits.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
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
from test_remediation_api import Nebulad

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
WORKFLOWS = {
    "hello": """\
name: hello
on: {manual: true}
steps:
  - {id: greet, action: shell, params: {command: "echo hello"}}
  - {id: answer, needs: [greet], action: shell,
     params: {command: "echo '{{ steps.greet.output }} world'"}}
""",
    "slow": """\
name: slow
on: {manual: true}
concurrency: skip
steps:
  - {id: nap, action: wait, params: {duration: 30s}}
""",
    "nightly": """\
name: nightly
on: {schedule: "0 3 * * *"}
steps:
  - {id: say, action: shell, params: {command: "echo night"}}
""",
}


@pytest.fixture
def nebulad(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Nebulad]:
    repo = tmp_path / "repo"
    (repo / "workflows").mkdir(parents=True)
    (repo / "nebula.yaml").write_text("{}\n")
    for name, text in WORKFLOWS.items():
        (repo / "workflows" / f"{name}.yaml").write_text(text)
    config = DaemonConfig(source=str(repo), watch=True, data_dir=tmp_path / "data")
    config.data_dir.mkdir(mode=0o700)
    store = Store(f"sqlite:///{tmp_path}/nebula.db")
    workflows = load_desired(repo).workflows
    store.replace_workflows([w.record for w in workflows])
    daemon = Daemon(config, store, DockerProvider("unix:///nonexistent.sock"), None)
    daemon.remediation.workflows.update(workflows)  # as a sync of this commit does
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


def ended(client: httpx.Client, run_id: str) -> dict[str, Any]:
    """The run once it is no longer running."""
    deadline = time.monotonic() + 30
    while True:
        found: dict[str, Any] = client.get(f"/workflows/runs/{run_id}").json()
        if found["status"] != "running":
            return found
        assert time.monotonic() < deadline, f"run {run_id} still running"
        time.sleep(0.05)


def test_a_run_by_hand_succeeds_and_is_listed_with_its_steps(nebulad: Nebulad) -> None:
    with nebulad.tcp() as ops:
        started = ops.post("/workflows/hello/run")
        assert started.status_code == 202, started.text
        run_id = started.json()["run"]
        done = ended(ops, run_id)
        assert (done["status"], done["steps_completed"], done["steps_total"]) == ("succeeded", 2, 2)
        assert done["step_states"]["answer"]["output"].strip() == "hello world"
        assert done["trigger"] == {"manual": done["trigger"]["manual"]}
        assert done["trigger"]["manual"].endswith(":write-key")

        runs = ops.get("/workflows/runs", params={"workflow": "hello"}).json()["runs"]
        assert [(r["id"], r["status"]) for r in runs] == [(run_id, "succeeded")]
        assert ops.get("/workflows/runs", params={"workflow": "slow"}).json()["runs"] == []

        listed = {w["name"]: w for w in ops.get("/workflows").json()["workflows"]}
        assert sorted(listed) == ["hello", "nightly", "slow"]
        assert listed["hello"]["last_run"]["status"] == "succeeded"
        assert listed["hello"]["next_run"] is None and listed["slow"]["last_run"] is None
        assert listed["nightly"]["on"]["schedule"] == "0 3 * * *"
        assert listed["nightly"]["next_run"].endswith("03:00:00+00:00")

        not_manual = ops.post("/workflows/nightly/run")
        assert not_manual.status_code == 400
        assert "manual" in not_manual.json()["error"]
        unknown = ops.post("/workflows/nope/run")
        assert unknown.status_code == 404
        assert "hello, nightly, slow" in unknown.json()["error"]
        assert ops.get("/workflows/runs/nope").status_code == 404
        finished = ops.post(f"/workflows/runs/{run_id}/cancel")
        assert finished.status_code == 409
        assert "succeeded" in finished.json()["error"]


def test_a_second_start_is_skipped_while_one_runs_and_a_cancel_stops_it(
    nebulad: Nebulad,
) -> None:
    with nebulad.tcp() as ops:
        first = ops.post("/workflows/slow/run").json()["run"]
        second = ops.post("/workflows/slow/run")
        assert second.status_code == 409
        assert f"nebula workflows cancel {first}" in second.json()["error"]
        assert [r["id"] for r in ops.get("/workflows/runs").json()["runs"]] == [first]

        cancelled = ops.post(f"/workflows/runs/{first}/cancel")
        assert (cancelled.status_code, cancelled.json()) == (202, {"run": first})
        done = ended(ops, first)
        assert done["status"] == "cancelled"
        assert done["error"].startswith("cancelled by ") and done["error"].endswith(":write-key")
        assert ops.post("/workflows/slow/run").status_code == 202  # none is going now

    actions = [
        (e.action, e.target, e.detail and e.detail["status"])
        for e in audit_log.entries(nebulad.store)
    ]
    assert ("workflow.run", "slow", 409) in actions
    assert ("workflow.cancel", first, 202) in actions


def test_a_viewer_reads_workflows_but_cannot_run_or_cancel_them(nebulad: Nebulad) -> None:
    with nebulad.tcp() as ops, nebulad.tcp("read") as viewer:
        run_id = ops.post("/workflows/slow/run").json()["run"]
        assert viewer.get("/workflows").status_code == 200
        assert viewer.get(f"/workflows/runs/{run_id}").json()["status"] == "running"
        assert viewer.post("/workflows/hello/run").status_code == 403
        assert viewer.post(f"/workflows/runs/{run_id}/cancel").status_code == 403
        assert ops.get(f"/workflows/runs/{run_id}").json()["status"] == "running"
        assert ops.get("/workflows/runs", params={"workflow": "hello"}).json()["runs"] == []
        ops.post(f"/workflows/runs/{run_id}/cancel")


def test_the_cli_runs_lists_shows_and_cancels_runs(nebulad: Nebulad) -> None:
    started = run("workflows", "run", "hello")
    assert "Workflow hello started: run " in started
    run_id = run_json("workflows", "runs")[0]["id"]  # type: ignore[index]
    assert run_id in started
    with nebulad.tcp("read") as viewer:
        ended(viewer, run_id)

    table = run("workflows", "runs", "--workflow", "hello")
    assert run_id in table and "succeeded" in table and "2/2" in table and "hand (uid:" in table
    shown = run("workflows", "show", run_id)
    assert "hello run" in shown and "succeeded" in shown
    for line in ("greet", "answer", "hello world"):
        assert line in shown
    assert run_json("workflows", "show", run_id)["step_states"]["greet"]["attempts"] == 1  # type: ignore[index]
    assert "no workflow run nope" in run("workflows", "show", "nope", code=1)
    assert "not run by hand" in run("workflows", "run", "nightly", code=1)

    slow = run_json("workflows", "run", "slow")
    assert isinstance(slow, dict) and slow["workflow"] == "slow"
    assert "is going" in run("workflows", "run", "slow", code=1)
    assert f"Cancelling run {slow['run']}" in run("workflows", "cancel", slow["run"])
    with nebulad.tcp("read") as viewer:
        assert ended(viewer, slow["run"])["status"] == "cancelled"
    assert "cancelled" in run("workflows", "show", slow["run"])
    assert "nothing to cancel" in run("workflows", "cancel", slow["run"], code=1)
    assert run("workflows", "runs", "--workflow", "nightly").strip() == "No workflow has run yet."


def test_the_example_nightly_backup_validates_in_the_example_homelab(tmp_path: Path) -> None:
    repo = tmp_path / "homelab"
    shutil.copytree(EXAMPLES / "homelab", repo)
    (repo / "workflows").mkdir()
    shutil.copy(EXAMPLES / "nightly-backup.yaml", repo / "workflows")
    with (repo / "nebula.yaml").open("a") as config:
        config.write('notifications:\n  homelab: {urls: ["json://127.0.0.1:9/"]}\n')
    desired = load_desired(repo)

    (workflow,) = desired.workflows
    steps = workflow.spec.steps
    assert workflow.spec.on.manual and workflow.spec.on.schedule == "0 3 * * *"
    with_volumes = sorted(i.name for i in desired.installations if i.volumes)
    backed_up = sorted(s.params["installation"] for s in steps if s.action == "backup")
    assert backed_up == with_volumes == ["docs", "notes"]
    (tell,) = [s for s in steps if s.action == "notify"]
    assert sorted(tell.needs) == sorted(s.id for s in steps if s.action == "backup")
    assert all(
        s.params["password"] == "${secret:backup.password}" for s in steps if s.action == "backup"
    )
