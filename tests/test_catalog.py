"""Every built-in catalog package loads, and resolves into runnable container specs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nebula.catalog import Catalog, builtin_catalog_dir
from nebula.engine.load import load_desired
from nebula.kinds.packages.grants import grants_needed

CATALOG = Catalog([builtin_catalog_dir()])
REQUIRED = ["wordpress", "nextcloud", "gitea", "jellyfin", "vaultwarden", "uptime-kuma",
            "grafana", "prometheus", "minio", "postgres", "redis", "ollama"]  # fmt: skip


def test_catalog_has_the_promised_packages() -> None:
    assert set(REQUIRED) <= set(CATALOG.names())
    assert len(CATALOG.all()) >= 11


def installation_file(name: str) -> str:
    """`packages/NAME.yaml` installing `name` with every required value given."""
    package = CATALOG.get(name)
    assert package is not None
    values = {  # secret variables take a reference to the vault, never a value
        v.name: "${secret:x}" if v.secret else "plain-value"
        for v in package.package.variables
        if v.required and v.default is None
    }
    if name == "wordpress":  # the seed's example uses two variables it does not declare
        values |= {"DB_HOST": "mysql", "DB_USER": "root"}
    allow = list(grants_needed(package.package.compose))  # what `nebula install` asks for
    return f"package: {name}\nvalues: {values!r}\nallow: {allow}\n"


@pytest.mark.parametrize("name", CATALOG.names())
def test_package_resolves_with_its_required_values(name: str, tmp_path: Path) -> None:
    entry = CATALOG.get(name)
    assert entry is not None
    (tmp_path / "packages").mkdir()
    (tmp_path / "nebula.yaml").write_text("nodes: [{name: gpubox, address: 10.0.0.2, gpu: true}]")
    for needed in [*(r.package for r in entry.package.requires), name]:
        (tmp_path / "packages" / f"{needed}.yaml").write_text(installation_file(needed))
    [desired] = [d for d in load_desired(tmp_path).installations if d.name == name]
    assert desired.containers, name
    host_ports = [
        (p.host_port, p.protocol) for c in desired.containers for p in c.ports if p.host_port
    ]
    assert len(host_ports) == len(set(host_ports)), f"{name}: a host port is published twice"
    assert desired.health_checks or any(c.healthcheck for c in desired.containers), name
    assert desired.requires == tuple(r.package for r in entry.package.requires)


HELLO = """\
name: hello
version: "1.0"
category: web
description: A greeting page
compose:
  services:
    web: {image: "nginx:1.27.2", ports: ["${PORT:-8080}:80"]}
variables: [{name: PORT, default: "8080"}]
health_checks: [{name: web, url: "http://127.0.0.1:${PORT}/"}]
"""


def test_list_and_show_include_the_config_repos_own_catalog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from nebula.cli.app import app

    repo = tmp_path / "lab"
    (repo / "catalog" / "hello").mkdir(parents=True)
    (repo / "nebula.yaml").write_text("")
    (repo / "catalog" / "hello" / "1.0.yaml").write_text(HELLO)
    newest = CATALOG.versions("redis")[-1]
    redis = (builtin_catalog_dir() / "redis" / f"{newest}.yaml").read_text()
    (repo / "catalog" / "redis").mkdir()  # the repo's own version of a built-in package
    (repo / "catalog" / "redis" / "99.0.yaml").write_text(
        re.sub(r"(?m)^version: .*$", "version: '99.0'", redis)
    )
    runner = CliRunner()

    def names(*args: str) -> dict[str, str]:
        result = runner.invoke(app, ["catalog", "list", *args, "--output", "json"])
        assert result.exit_code == 0, result.output
        return {p["name"]: p["version"] for p in json.loads(result.stdout)}

    monkeypatch.chdir(tmp_path)  # not a config repo: the built-in catalog only
    assert "hello" not in names() and names()["redis"] == newest
    listed = names("--repo", str(repo))
    assert listed["hello"] == "1.0" and listed["redis"] == "99.0"
    assert "wordpress" in listed
    shown = runner.invoke(app, ["catalog", "show", "hello", "--repo", str(repo)])
    assert shown.exit_code == 0, shown.output
    assert "hello 1.0" in shown.stdout and "web: nginx:1.27.2" in shown.stdout

    monkeypatch.chdir(repo)  # run inside the config repo: its catalog without --repo
    assert names()["hello"] == "1.0"
    shown = runner.invoke(app, ["catalog", "show", "redis", "--output", "json"])
    assert json.loads(shown.stdout)["version"] == "99.0"

    # a --repo that is no config repo is refused
    refused = runner.invoke(app, ["catalog", "list", "--repo", str(tmp_path)])
    assert refused.exit_code == 2
    assert f"{tmp_path} is not a Nebula config repo (no nebula.yaml)" in refused.output
