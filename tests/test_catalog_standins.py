"""Three built-in catalog packages installed, healthy, upgraded and rolled back for real.

No registry is reachable here, so each package's images (both versions) are stand-ins built
locally from the test image, under the package's own image names: an HTTP server on the same
container port, answering the package's health endpoint, and telling its version. Everything
else is the catalog package as shipped: its compose, variables, health checks and hooks.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import docker
import httpx
import pytest
from typer.testing import CliRunner

import servers
from nebula.catalog import Catalog, builtin_catalog_dir
from nebula.cli.app import app

# package -> (old version, new version, container port, health path, extra --set values)
STAND_INS = {
    "uptime-kuma": ("1.23.15", "1.23.16", 3001, "/", []),
    "navidrome": ("0.53.2", "0.53.3", 4533, "/ping", []),
    "vaultwarden": ("1.31.0", "1.32.0", 80, "/alive", ["ADMIN_TOKEN=correct-horse-battery"]),
}
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada",
    "GIT_AUTHOR_EMAIL": "ada@example.test",
    "GIT_COMMITTER_NAME": "Ada",
    "GIT_COMMITTER_EMAIL": "ada@example.test",
}
runner = CliRunner()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_stand_in(
    engine: docker.DockerClient, image: str, port: int, path: str, version: str
) -> None:
    dockerfile = f"""\
FROM {servers.TEST_IMAGE}
RUN mkdir -p /srv && echo ok > /srv{path if path != "/" else "/index.html"} && echo {version} > /srv/version
CMD ["httpd", "-f", "-p", "{port}", "-h", "/srv"]
"""
    engine.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=image, rm=True)


@pytest.fixture
def homelab(
    tmp_path: Path, docker_host: str, test_image: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    engine = docker.DockerClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    catalog = Catalog([builtin_catalog_dir()])
    for name, (old, new, port, path, _) in STAND_INS.items():
        for version in (old, new):
            entry = catalog.get(name, version)
            assert entry is not None, f"{name} {version} is missing from the catalog"
            [service] = entry.package.compose.services.values()
            build_stand_in(engine, str(service.image), port, path, version)
    root = tmp_path / "homelab"
    (root / "packages").mkdir(parents=True)
    (root / "nebula.yaml").write_text("defaults: {health_timeout: 60s}\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "start"]):
        subprocess.run(["git", *args], cwd=root, env={**os.environ, **GIT_ENV}, check=True)
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("NEBULA_DOCKER_HOST", docker_host)
    monkeypatch.setenv("NEBULA_DATABASE_URL", f"sqlite:///{tmp_path}/nebula.db")
    monkeypatch.setenv("NEBULA_SOCKET", str(tmp_path / "no-daemon.sock"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    engine.close()
    yield root  # conftest leaves the engine empty afterwards


def nebula(*args: str) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    output = result.stdout + result.stderr
    assert result.exit_code == 0, output
    return output


def served_version(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/version", timeout=5).text.strip()


@pytest.mark.parametrize("name", sorted(STAND_INS))
def test_package_installs_healthy_upgrades_and_rolls_back(
    homelab: Path, docker_host: str, name: str
) -> None:
    old, new, _, path, extra = STAND_INS[name]
    port = free_port()
    sets = [arg for value in [f"PORT={port}", *extra] for arg in ("--set", value)]
    nebula("install", name, "--version", old, "--repo", str(homelab), *sets)
    assert served_version(port) == old
    assert httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5).status_code == 200

    status = json.loads(nebula("status", "--output", "json"))
    [row] = [i for i in status["installations"] if i["name"] == name]
    assert (row["version"], row["status"]) == (old, "running")
    assert row["containers"] and all(c["state"] == "running" for c in row["containers"])

    out = nebula("upgrade", name, "--repo", str(homelab))
    assert f"{name}: {old} → {new}" in out
    assert served_version(port) == new

    subprocess.run(
        ["git", "revert", "--no-edit", "HEAD"], cwd=homelab, check=True, capture_output=True
    )
    out = nebula("plan", str(homelab))
    assert f":{new} → " in out and f":{old}" in out  # the reverse image change
    nebula("apply", str(homelab), "--yes")
    assert served_version(port) == old

    with closing(
        docker.DockerClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    ) as engine:
        env = engine.containers.get(f"{name}-{name}").attrs["Config"]["Env"]
    if name == "vaultwarden":  # the secret reached the container, and nothing else
        assert "ADMIN_TOKEN=correct-horse-battery" in env
        assert (
            "correct-horse-battery" not in (homelab / "packages" / "vaultwarden.yaml").read_text()
        )
