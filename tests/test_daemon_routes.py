"""The API routes the TUI and the web dashboard read an installation's state and act through:
logs, restart, the audit log and the vault's names, against a real nebulad on the private Docker
Engine, following a config folder (watch mode)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import httpx
import pytest

import servers
from nebula.cli.client import parse_sse
from nebula.secrets import open_vault
from nebula.stand_ins import MASK
from nebula.store import Store

APP = """\
name: web
compose:
  services:
    web:
      image: {image}
      command: ["sh", "-c", "echo connecting with hunter2-x9; echo ready; while sleep 0.2; do echo tick; done"]
"""


@pytest.fixture
def api(
    tmp_path: Path, docker_host: str, test_image: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[httpx.Client]:
    """nebulad following a repo with one installation, applied; a client on its socket."""
    monkeypatch.setenv("NEBULA_MASTER_KEY_FILE", str(tmp_path / "keys" / "master.key"))
    root = tmp_path / "homelab"
    (root / "packages").mkdir(parents=True)
    (root / "nebula.yaml").write_text("defaults: {health_timeout: 60s}\n")
    (root / "packages" / "web.yaml").write_text(APP.format(image=test_image))
    args = ("--source", str(root), "--watch", "--docker-host", docker_host, "--poll-interval", "1h")
    data = tmp_path / "d"
    data.mkdir(mode=0o700)
    store = Store(f"sqlite:///{data / 'nebula.db'}")
    vault = open_vault(store)
    vault.init()
    vault.set("db.password", "hunter2-x9")
    store.close()
    with servers.nebulad(*args, data=data) as socket_path:
        transport = httpx.HTTPTransport(uds=str(socket_path))
        with httpx.Client(transport=transport, base_url="http://nebulad/api/v1", timeout=60) as c:
            c.post("/sync", json={}).raise_for_status()
            _wait(lambda: _installed(c), "the installation to be applied")
            yield c


def _wait(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not done():
        assert time.monotonic() < deadline, f"waited 60 s for {what}"
        time.sleep(0.2)


def _installed(client: httpx.Client) -> bool:
    found = client.get("/installations").json()["installations"]
    return any(i["name"] == "web" and i["status"] == "running" for i in found)


def _started_at(docker_host: str) -> str:
    engine = docker.DockerClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    try:
        return str(engine.containers.get("web-web").attrs["State"]["StartedAt"])
    finally:
        engine.close()


def test_logs_are_merged_and_masked_and_follow_new_lines(api: httpx.Client) -> None:
    lines = api.get("/installations/web/logs", params={"tail": "10000"}).json()["lines"]
    messages = [line["message"] for line in lines]
    assert messages[:2] == [f"connecting with {MASK}", "ready"]  # a vault secret never shows
    assert {(line["service"], line["container"]) for line in lines} == {("web", "web-web")}
    assert api.get("/installations/web/logs", params={"tail": "0"}).status_code == 400
    assert api.get("/installations/nope/logs").status_code == 404

    params = {"tail": "1", "follow": "1"}
    with api.stream("GET", "/installations/web/logs", params=params) as stream:
        items = (item for item in parse_sse(stream.iter_lines()) if item.kind)  # no comments
        seen = [next(items) for _ in range(3)]  # the last line, then new ones as written
    assert {i.kind for i in seen} == {"log"} and seen[0].data["message"] in ("ready", "tick")
    assert [i.data["message"] for i in seen[1:]] == ["tick", "tick"]
    assert seen[0].data["time"] < seen[1].data["time"] < seen[2].data["time"]


def test_restart_audit_and_secret_names(api: httpx.Client, docker_host: str) -> None:
    before = _started_at(docker_host)
    restarted = api.post("/installations/web/restart", json={})
    assert restarted.status_code == 200, restarted.text
    assert restarted.json() == {"restarted": ["web-web"]}
    assert _started_at(docker_host) != before

    missing = api.post("/installations/wbe/restart", json={})
    assert missing.status_code == 404 and "did you mean 'web'" in missing.json()["error"]
    wrong = api.post("/installations/web/restart", json={"service": "db"})
    assert wrong.status_code == 404 and "no service 'db'" in wrong.json()["error"]

    entries = api.get("/audit", params={"target": "web"}).json()["entries"]
    assert [(e["action"], e["detail"]["status"]) for e in entries] == [
        ("installation.restart", 404),  # newest first: the service that is not there
        ("installation.restart", 200),
    ]
    assert api.get("/audit", params={"limit": "0"}).status_code == 400

    names = api.get("/secrets").json()["secrets"]
    assert [s["name"] for s in names] == ["db.password"]
    assert "hunter2-x9" not in api.get("/secrets").text


def test_the_plan_shows_what_a_sync_would_change_and_applies_nothing(
    api: httpx.Client, docker_host: str
) -> None:
    assert api.get("/plan").json() == {"changes": [], "problems": []}
    api.post("/suspend").raise_for_status()  # nothing repairs what is about to drift
    engine = docker.DockerClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    try:
        engine.containers.get("web-web").remove(force=True)
        changes = api.get("/plan").json()["changes"]
        assert [(c["action"], c["installation"]) for c in changes] == [("create", "web")]
        assert not engine.containers.list(all=True, filters={"name": "web-web"})  # not applied
    finally:
        engine.close()
