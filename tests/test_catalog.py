"""Every built-in catalog package loads, and resolves into runnable container specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from nebula.catalog import Catalog, builtin_catalog_dir
from nebula.engine.load import load_desired

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
    return f"package: {name}\nvalues: {values!r}\n"


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
