"""What a package needs is said before anything happens, given only when granted, and recorded:
`nebula catalog show` lists the grants, `nebula install` and the API's install refuse without
them (naming what to add), write them as `allow:` when given, and the audit log keeps them."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

import servers
from nebula.cli.app import app

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada",
    "GIT_AUTHOR_EMAIL": "ada@example.test",
    "GIT_COMMITTER_NAME": "Ada",
    "GIT_COMMITTER_EMAIL": "ada@example.test",
}

# A sensor bridge that needs the host's network and a serial device, and a broker it requires
# (which needs nothing); a `debug` service with profiles is never started, so needs nothing.
BRIDGE = """\
name: bridge
version: "1.0"
description: a sensor bridge
category: home
requires:
  - package: broker
compose:
  services:
    bridge:
      image: {image}
      command: ["sleep", "3600"]
      network_mode: host
      devices: ["/dev/null:/dev/ttyACM0"]
    tuner:
      image: {image}
      command: ["sleep", "3600"]
      sysctls: {{net.core.somaxconn: "1024"}}
      devices: ["/dev/zero:/dev/ttyUSB0"]
    debug:
      image: {image}
      profiles: [debug]
      privileged: true
health_checks:
  - {{name: up, service: tuner, exec: ["true"]}}
"""
BROKER = """\
name: broker
version: "2"
description: a message broker
category: home
compose:
  services:
    broker:
      image: {image}
      command: ["sleep", "3600"]
provides:
  service: broker
health_checks:
  - {{name: up, service: broker, exec: ["true"]}}
"""
# Needs one power that works on any engine: an added capability.
SHAPER = """\
name: shaper
version: "1"
description: traffic shaping
category: network
compose:
  services:
    shaper:
      image: {image}
      command: ["sleep", "3600"]
      cap_add: [NET_ADMIN]
health_checks:
  - {{name: up, service: shaper, exec: ["true"]}}
"""

runner = CliRunner()


def make_repo(root: Path, image: str = "busybox:1.36") -> Path:
    """A config repo (a git work tree) whose own catalog has bridge, broker and shaper."""
    for name, text in (("bridge/1.0", BRIDGE), ("broker/2", BROKER), ("shaper/1", SHAPER)):
        write(root / "catalog" / f"{name}.yaml", text.format(image=image))
    write(root / "nebula.yaml", "defaults: {health_timeout: 60s}\n")
    (root / "packages").mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "start")
    return root


@pytest.fixture
def homelab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEBULA_DATABASE_URL", f"sqlite:///{tmp_path}/nebula.db")
    monkeypatch.setenv("NEBULA_SOCKET", str(tmp_path / "no-daemon.sock"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    return make_repo(tmp_path / "homelab")


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=root, env={**os.environ, **GIT_ENV}, capture_output=True, text=True,
        check=True, timeout=60,
    )  # fmt: skip
    return done.stdout.strip()


def nebula(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    output = result.stdout + result.stderr
    assert result.exit_code == code, output
    return output


def commits(root: Path) -> list[str]:
    return git(root, "log", "--format=%s").splitlines()


def audit_entries(database: Path, action: str) -> list[dict[str, Any]]:
    out = nebula("audit", "--database-url", f"sqlite:///{database}", "-o", "json")
    return [e for e in json.loads(out) if e["action"] == action]


# -- nebula catalog show -------------------------------------------------------------------------


def test_catalog_show_lists_the_grants_a_package_needs_and_by_which_service(
    homelab: Path,
) -> None:
    out = nebula("catalog", "show", "bridge", "--repo", str(homelab))
    assert (
        "grants (powers over the host; install with --allow host_network --allow devices "
        "--allow sysctls)" in out
    )
    assert "  host_network: service bridge\n" in out
    assert "  devices: service bridge, tuner\n" in out
    assert "  sysctls: service tuner\n" in out
    assert "privileged" not in out  # only the debug service, which is never started

    shown = json.loads(nebula("catalog", "show", "bridge", "--repo", str(homelab), "-o", "json"))
    assert shown["grants"] == {
        "host_network": ["bridge"],
        "devices": ["bridge", "tuner"],
        "sysctls": ["tuner"],
    }
    broker = nebula("catalog", "show", "broker", "--repo", str(homelab))
    assert "grants" not in broker
    shown = json.loads(nebula("catalog", "show", "broker", "--repo", str(homelab), "-o", "json"))
    assert shown["grants"] == {}


# -- nebula install ------------------------------------------------------------------------------


def test_install_refuses_without_the_grants_naming_the_flags_and_writes_nothing(
    homelab: Path,
) -> None:
    out = nebula("install", "bridge", "--repo", str(homelab), code=1)
    assert (
        "bridge 1.0 needs host_network (service bridge), devices (service bridge, tuner), "
        "sysctls (service tuner): powers over the host Nebula gives only when granted; "
        "not granted: host_network, devices, sysctls; add --allow host_network --allow devices "
        "--allow sysctls to grant them" in " ".join(out.split())
    )
    out = nebula(
        "install", "bridge", "--repo", str(homelab), "--allow", "devices", "--dry-run", code=1
    )
    assert "not granted: host_network, sysctls; add --allow host_network --allow sysctls" in (
        " ".join(out.split())
    )
    out = nebula("install", "bridge", "--repo", str(homelab), "--allow", "host_net", code=1)
    assert "no grant host_net (grants: host_network, privileged, cap_add, devices" in out
    out = nebula("install", "broker", "--repo", str(homelab), "--allow", "privileged", code=1)
    assert "nothing installed needs privileged: grant only what is needed (nothing)" in out
    assert list((homelab / "packages").iterdir()) == []
    assert commits(homelab) == ["start"]


def test_install_with_the_grants_writes_allow_and_records_them_in_the_audit_log(
    homelab: Path, tmp_path: Path
) -> None:
    out = nebula(
        "install", "bridge", "--repo", str(homelab), "--no-wait",
        "--allow", "devices", "--allow", "sysctls", "--allow", "host_network",
    )  # fmt: skip
    assert "+ packages/broker.yaml: broker 2 (required by bridge)\n" in out
    assert "+ packages/bridge.yaml: bridge 1.0, granted host_network, devices, sysctls" in out
    bridge = yaml.safe_load((homelab / "packages" / "bridge.yaml").read_text())
    assert bridge["allow"] == ["host_network", "devices", "sysctls"]
    assert "allow" not in yaml.safe_load((homelab / "packages" / "broker.yaml").read_text())
    assert commits(homelab)[0] == "Install bridge (bridge 1.0) with broker 2"
    nebula("validate", str(homelab))  # what was written grants exactly what is used

    [entry] = audit_entries(tmp_path / "nebula.db", "repo.commit")
    assert entry["detail"]["granted"] == {"bridge": ["host_network", "devices", "sysctls"]}
    assert entry["detail"]["commit"] == git(homelab, "rev-parse", "HEAD")


def test_dry_run_shows_the_grants_in_the_plan(homelab: Path, docker_host: str) -> None:
    args = ("install", "shaper", "--repo", str(homelab), "--allow", "cap_add", "--dry-run")
    out = nebula(*args, "--docker-host", docker_host)
    assert "+ packages/shaper.yaml: shaper 1, granted cap_add" in out
    assert "(granted: cap_add)" in out
    report = json.loads(
        runner.invoke(app, [*args, "--docker-host", docker_host, "-o", "json"]).stdout
    )
    assert report["granted"] == {"shaper": ["cap_add"]}
    assert list((homelab / "packages").iterdir()) == []
    assert commits(homelab) == ["start"]


# -- the API's install ---------------------------------------------------------------------------


@pytest.fixture
def api(
    tmp_path: Path, docker_host: str, test_image: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, httpx.Client]]:
    """nebulad following a config repo folder that is a git work tree (watch mode): the API's
    installs are committed there. A client on its unix socket."""
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    root = make_repo(tmp_path / "homelab", image=test_image)
    args = ("--source", str(root), "--watch", "--docker-host", docker_host, "--poll-interval", "1h")
    with servers.nebulad(*args, data=tmp_path / "d") as socket_path:
        transport = httpx.HTTPTransport(uds=str(socket_path))
        with httpx.Client(transport=transport, base_url="http://nebulad", timeout=60) as client:
            yield root, client


def test_the_api_install_refuses_without_the_grants_and_records_them_when_given(
    api: tuple[Path, httpx.Client], tmp_path: Path
) -> None:
    root, client = api
    shown = client.get("/api/v1/marketplace/packages/bridge").json()
    assert shown["grants"] == {
        "host_network": ["bridge"],
        "devices": ["bridge", "tuner"],
        "sysctls": ["tuner"],
    }

    refused = client.post("/api/v1/marketplace/install", json={"package": "shaper"})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == (
        "shaper 1 needs cap_add (service shaper): powers over the host Nebula gives only when "
        'granted; not granted: cap_add; grant them with "allow": ["cap_add"]'
    )
    wrong = client.post(
        "/api/v1/marketplace/install", json={"package": "shaper", "allow": "cap_add"}
    )
    assert (wrong.status_code, wrong.json()["error"]) == (
        400,
        '"allow" is a list of grants, e.g. ["host_network"]',
    )
    assert list((root / "packages").iterdir()) == []

    done = client.post(
        "/api/v1/marketplace/install", json={"package": "shaper", "allow": ["cap_add"]}
    )
    assert done.status_code == 202, done.text
    assert done.json()["granted"] == {"shaper": ["cap_add"]}
    assert yaml.safe_load((root / "packages" / "shaper.yaml").read_text())["allow"] == ["cap_add"]
    assert commits(root)[0] == "Install shaper (shaper 1)"

    [entry] = audit_entries(tmp_path / "d" / "nebula.db", "repo.commit")
    assert entry["actor"].startswith("uid:")  # the socket's owner
    assert entry["detail"]["granted"] == {"shaper": ["cap_add"]}
    assert entry["detail"]["commit"] == git(root, "rev-parse", "HEAD")
