"""nebulad as a person runs it: a real process, a real bare repo with the post-receive hook, the
CLI talking to it over its socket, and the TCP API with its token. Real Docker underneath."""

from __future__ import annotations

import hashlib
import hmac
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest
from typer.testing import CliRunner

import servers
from nebula.cli.app import app
from test_daemon import IMAGE, Repo, eventually, running
from test_daemon import app as app_yaml

TOKEN = "s3cret-token-for-tests"
SECRET = "webhook-secret-for-tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def nebulad(
    tmp_path: Path, docker_host: str, test_image: str
) -> Iterator[tuple[Repo, Path, str, docker.DockerClient]]:
    engine = docker.DockerClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    engine.images.get(test_image).tag(IMAGE)
    repo = Repo(tmp_path)
    repo.push(
        "first",
        {"nebula.yaml": "defaults: {health_timeout: 30s}\n", "packages/web.yaml": app_yaml("web")},
    )
    data = tmp_path / "d"
    tcp = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "NEBULA_TOKEN": TOKEN,
        "NEBULA_WEBHOOK_SECRET": SECRET,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    command = [
        sys.executable, "-c", "from nebula.cli.app import nebulad_main; nebulad_main()",
        "--source", str(repo.bare), "--data-dir", str(data), "--docker-host", docker_host,
        "--poll-interval", "3600s", "--tcp-listen", tcp, "--log-json",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    socket_path = data / "nebulad.sock"
    try:
        eventually(lambda: socket_path.exists() and running(engine) == {"web-web"})
        yield repo, socket_path, tcp, engine
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        for container in engine.containers.list(
            all=True, filters={"label": "io.nebula.managed=true"}
        ):
            container.remove(force=True)
        for network in engine.networks.list(filters={"label": "io.nebula.managed=true"}):
            network.remove()
        engine.close()
    assert process.returncode == 0, process.stdout.read().decode() if process.stdout else ""


def cli(socket_path: Path, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, [*args, "--socket", str(socket_path)], env={"COLUMNS": "200"})
    output = result.stdout + result.stderr
    assert result.exit_code == code, output
    return output


def test_push_with_the_hook_installed_brings_a_new_installation_up(
    nebulad: tuple[Repo, Path, str, docker.DockerClient],
) -> None:
    repo, socket_path, _, engine = nebulad
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
    cli(socket_path, "hooks", "install", str(repo.bare))
    repo.push("add notes", {"packages/notes.yaml": app_yaml("notes")})
    eventually(lambda: running(engine) == {"web-web", "notes-notes"})

    repo.push("typo", {"packages/notes.yaml": app_yaml("notes").replace("image:", "imagee:")})
    eventually(lambda: "failed" in cli(socket_path, "sync", "status"))
    status = cli(socket_path, "sync", "status")
    assert "packages/notes.yaml:4:7: compose.services.notes.imagee: unknown field" in status
    assert running(engine) == {"web-web", "notes-notes"}  # everything keeps running

    engine.containers.get("notes-notes").remove(force=True)  # drift, undone unasked
    eventually(lambda: running(engine) == {"web-web", "notes-notes"}, timeout=15)


def test_tcp_api_needs_the_token_and_webhooks_their_signature(
    nebulad: tuple[Repo, Path, str, docker.DockerClient],
) -> None:
    repo, _, tcp, engine = nebulad
    base = f"http://{tcp}/api/v1"
    assert httpx.get(f"{base}/status").status_code == 401
    assert httpx.get(f"{base}/status", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = httpx.get(f"{base}/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()["branch"] == "main"

    repo.push("add notes", {"packages/notes.yaml": app_yaml("notes")})
    body = b'{"ref": "refs/heads/main", "after": "' + repo.git("rev-parse", "HEAD").encode() + b'"}'
    forged = httpx.post(
        f"{base}/webhook",
        content=body,
        headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + "0" * 64},
    )
    assert forged.status_code == 401 and SECRET not in forged.text
    time.sleep(1)
    assert running(engine) == {"web-web"}
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    accepted = httpx.post(
        f"{base}/webhook",
        content=body,
        headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": signature},
    )
    assert accepted.status_code == 202
    eventually(lambda: running(engine) == {"web-web", "notes-notes"})
    metrics = httpx.get(f"http://{tcp}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert 'nebula_syncs_total{status="succeeded"}' in metrics
