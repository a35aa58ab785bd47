"""Every built-in catalog package loads, and resolves into runnable container specs."""

from __future__ import annotations

import pytest

from nebula.catalog import Catalog, builtin_catalog_dir
from nebula.kinds.packages import resolve_installation
from nebula.spec.config import NebulaConfig
from nebula.spec.installation import Installation
from nebula.spec.interpolate import references
from nebula.spec.repo import InstallationSource
from nebula.spec.yamlfile import parse_yaml

CATALOG = Catalog([builtin_catalog_dir()])
REQUIRED = ["wordpress", "nextcloud", "gitea", "jellyfin", "vaultwarden", "uptime-kuma",
            "grafana", "prometheus", "minio", "postgres", "redis", "ollama"]  # fmt: skip


def test_catalog_has_the_promised_packages() -> None:
    assert set(REQUIRED) <= set(CATALOG.names())
    assert len(CATALOG.all()) >= 11


@pytest.mark.parametrize("name", CATALOG.names())
def test_package_resolves_with_its_required_values(name: str) -> None:
    entry = CATALOG.get(name)
    assert entry is not None
    package = entry.package
    values = {  # secret variables take a reference to the vault, never a value
        v.name: "${secret:x}" if v.secret else "x-value"
        for v in package.variables
        if v.required and v.default is None
    }
    if name == "wordpress":  # the seed's example uses two variables it does not declare
        values |= {"DB_HOST": "mysql", "DB_USER": "root"}
    doc = parse_yaml(f"package: {name}\nvalues: {values!r}\n", f"packages/{name}.yaml")
    source = InstallationSource(name, Installation.model_validate(doc.data), doc)
    desired, _ = resolve_installation(
        source, CATALOG, NebulaConfig(), stand_ins={"x": "••••0123456789ab"}
    )
    assert desired.containers, name
    host_ports = [
        (p.host_port, p.protocol) for c in desired.containers for p in c.ports if p.host_port
    ]
    assert len(host_ports) == len(set(host_ports)), f"{name}: a host port is published twice"
    assert desired.health_checks or any(c.healthcheck for c in desired.containers), name
    if any(v.secret for v in package.variables):  # secret values never reach labels or output
        assert all("x-value" not in str(c.summary()) for c in desired.containers)
        assert "x-value" not in str(desired.config)


@pytest.mark.parametrize("name", [n for n in CATALOG.names() if n != "wordpress"])
def test_declared_variables_are_used_and_used_ones_declared(name: str) -> None:
    entry = CATALOG.get(name)
    assert entry is not None
    text = (builtin_catalog_dir() / name / f"{entry.package.version}.yaml").read_text()
    used = {
        ref
        for line in text.splitlines()
        if not line.lstrip().startswith("#")
        for ref, _ in references(line)
    }
    declared = {v.name for v in entry.package.variables}
    assert used == declared
