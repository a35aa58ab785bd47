"""`nebula catalog import`: the fixture Runtipi, CasaOS and Umbrel stores become packages that load,
resolve and plan; what cannot be converted is reported with its reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from nebula.catalog import Catalog
from nebula.catalog.importers import AppStoreError, import_store
from nebula.cli.app import app

STORES = Path(__file__).resolve().parent / "fixtures" / "appstores"
runner = CliRunner()

EXPECTED = {
    "runtipi": (
        {"it-tools", "nextcloud", "uptime-kuma", "vaultwarden"},
        {
            "wg-easy": "service wg-easy needs extra kernel capabilities (cap_add)",
            "homebridge": "supports only arm64, not amd64",
        },
    ),
    "casaos": (
        {"jellyfin", "photoprism", "syncthing"},
        {"HomeAssistant": "service homeassistant uses network_mode host"},
    ),
    "umbrel": (
        {"bitcoin", "btc-rpc-explorer", "nextcloud", "uptime-kuma"},
        {"mempool": "service web mounts the file ${APP_DATA_DIR}/data/nginx/nginx.conf"},
    ),
}


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    output = result.stdout + result.stderr
    assert result.exit_code == code, output
    return output


def package(into: Path, name: str) -> dict[str, Any]:
    [path] = (into / name).glob("*.yaml")
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def variables(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in data.get("variables", [])}


@pytest.mark.parametrize("store", sorted(EXPECTED))
def test_store_imports_into_packages_that_load_and_resolve(store: str, tmp_path: Path) -> None:
    repo = tmp_path / "lab"
    into = repo / "catalog"
    report = import_store(store, STORES / store, into, arch="amd64")
    imported, skipped = EXPECTED[store]
    assert {a.name for a in report.imported} == imported
    reasons = {a.app: a.reason or "" for a in report.skipped}
    assert reasons.keys() == skipped.keys()
    for app_id, reason in skipped.items():
        assert reasons[app_id].startswith(reason), reasons[app_id]
    # every written file loads through Nebula's own catalog, and nothing else is there
    entries = Catalog([into]).all(every_version=True)
    assert {e.package.name for e in entries} == imported
    assert len(list(into.glob("*/*.yaml"))) == len(imported)
    for path in into.glob("*/*.yaml"):
        text = path.read_text()
        for store_only in ("APP_DATA_DIR", "AppID", "traefik", "x-casaos", "x-runtipi"):
            assert store_only not in text, f"{path}: {store_only}"

    # and they pass the catalog's own checks (pinned images, ports, health check, category)
    assert f"{len(imported)} package versions checked: 0 errors" in run(
        "catalog", "validate", str(into)
    )

    # installed side by side with their required values, every package resolves
    (repo / "nebula.yaml").write_text("")
    (repo / "packages").mkdir()
    for entry in entries:
        values = {  # secrets are given as vault references, never in the repo
            v.name: "${secret:imported.value}" if v.secret else "value-1"
            for v in entry.package.variables
            if v.required
        }
        (repo / "packages" / f"{entry.package.name}.yaml").write_text(
            yaml.safe_dump(
                {"package": entry.package.name, "version": entry.package.version, "values": values}
            )
        )
    assert f"{len(imported)} installations valid" in run("validate", str(repo))


def test_runtipi_form_fields_and_builtins_become_variables(tmp_path: Path) -> None:
    import_store("runtipi", STORES / "runtipi", tmp_path, arch="amd64")
    nextcloud = package(tmp_path, "nextcloud")
    assert nextcloud["version"] == "29.0.7-apache"
    found = variables(nextcloud)
    # a `random` field: a secret the user creates once (e.g. in the vault)
    assert found["NEXTCLOUD_DB_PASSWORD"] | {"description": ""} == {
        "name": "NEXTCLOUD_DB_PASSWORD",
        "description": "",
        "required": True,
        "secret": True,
    }
    assert "openssl rand -hex 16" in found["NEXTCLOUD_DB_PASSWORD"]["description"]
    assert found["NEXTCLOUD_ADMIN_PASSWORD"]["secret"] is True
    assert found["NEXTCLOUD_USE_CRON"]["default"] == "true"
    assert found["PORT"]["default"] == "8083"  # Runtipi's APP_PORT, from config.json `port`
    assert nextcloud["category"] == "data"
    assert package(tmp_path, "it-tools")["category"] == "dev"  # Runtipi's development
    assert found["DOMAIN"]["default"] == "localhost"  # APP_DOMAIN
    services = nextcloud["compose"]["services"]
    assert services["nextcloud"]["ports"] == ["${PORT:-8083}:80"]  # isMain + internalPort
    assert services["nextcloud"]["volumes"] == ["nextcloud:/var/www/html"]
    assert services["cron"]["volumes"] == ["nextcloud:/var/www/html"]  # shared, as on Runtipi
    assert services["db-nextcloud"]["volumes"] == ["db:/var/lib/postgresql/data"]
    assert services["db-nextcloud"]["healthcheck"]["test"] == [
        "CMD-SHELL",
        "pg_isready -U tipi -d nextcloud",
    ]
    assert services["nextcloud"]["environment"]["OVERWRITEPROTOCOL"] == "${PROTOCOL:-http}"
    assert nextcloud["health_checks"] == [{"name": "web", "url": "http://127.0.0.1:${PORT}/"}]

    legacy = package(tmp_path, "it-tools")  # old compose YAML: ${APP_PORT}, Traefik, networks
    service = legacy["compose"]["services"]["it-tools"]
    assert service["ports"] == ["${PORT}:80"]
    assert "labels" not in service and "networks" not in service
    assert "networks" not in legacy["compose"]

    kuma = package(tmp_path, "uptime-kuma")  # new compose YAML: x-runtipi is_main/internal_port
    service = kuma["compose"]["services"]["uptime-kuma"]
    assert service["image"] == "louislam/uptime-kuma:1.23.16"
    assert service["ports"] == ["${PORT:-8125}:3001"]
    assert variables(kuma)["TZ"]["default"] == "Etc/UTC"


def test_runtipi_architecture_decides_images_and_apps(tmp_path: Path) -> None:
    report = import_store("runtipi", STORES / "runtipi", tmp_path, arch="arm64")
    assert "homebridge" in {a.name for a in report.imported}
    kuma = package(tmp_path, "uptime-kuma")["compose"]["services"]["uptime-kuma"]
    assert kuma["image"] == "louislam/uptime-kuma:1.23.16-arm64"  # the arm64 override


def test_casaos_extensions_and_builtins(tmp_path: Path) -> None:
    report = import_store("casaos", STORES / "casaos", tmp_path, arch="amd64")
    jellyfin = package(tmp_path, "jellyfin")
    assert jellyfin["version"] == "10.10.7"  # from the main service's image tag
    assert jellyfin["description"] == "The Free Software Media System"  # tagline, en_us
    assert jellyfin["category"] == "media"
    service = jellyfin["compose"]["services"]["jellyfin"]
    assert service["ports"] == ["${PORT:-8097}:8096/tcp", "8921:8920/tcp", "7359:7359/udp"]
    assert variables(jellyfin)["PORT"]["default"] == "8097"  # x-casaos port_map
    assert service["volumes"] == ["config:/config", "/DATA/Media:/Media"]
    assert service["environment"] == {"PGID": "${PGID}", "PUID": "${PUID}", "TZ": "${TZ}"}
    assert {k: v["default"] for k, v in variables(jellyfin).items()} == {
        "PUID": "1000",
        "PGID": "1000",
        "TZ": "Etc/UTC",
        "PORT": "8097",
    }
    notes = next(a.notes for a in report.imported if a.name == "jellyfin")
    assert "service jellyfin: dropped devices (not in Nebula's compose subset)" in notes
    assert "service jellyfin: binds host path /DATA/Media at /Media" in notes

    photoprism = package(tmp_path, "photoprism")["compose"]
    assert photoprism["services"]["mariadb"]["volumes"] == ["database:/var/lib/mysql"]
    assert photoprism["volumes"] == {"storage": None, "database": None}
    syncthing = package(tmp_path, "syncthing")["compose"]["services"]["syncthing"]
    assert syncthing["ports"][0] == "${PORT:-8384}:8384"
    notes = next(a.notes for a in report.imported if a.name == "syncthing")
    assert "store tip: Set a GUI password after the first start." in notes


def test_umbrel_app_proxy_dependencies_and_exports(tmp_path: Path) -> None:
    report = import_store("umbrel", STORES / "umbrel", tmp_path, arch="amd64")
    nextcloud = package(tmp_path, "nextcloud")
    services = nextcloud["compose"]["services"]
    assert "app_proxy" not in services
    assert services["web"]["ports"] == ["${PORT:-8081}:80"]  # app_proxy's APP_HOST/APP_PORT
    environment = services["web"]["environment"]
    assert "MYSQL_HOST=db" in environment  # nextcloud_db_1 → the service name
    assert "NEXTCLOUD_ADMIN_PASSWORD=${APP_PASSWORD}" in environment
    found = variables(nextcloud)
    assert found["APP_PASSWORD"]["secret"] is True and found["APP_PASSWORD"]["required"]
    assert found["APP_NEXTCLOUD_PORT"]["default"] == "8081"  # a literal of exports.sh
    notes = next(a.notes for a in report.imported if a.name == "nextcloud")
    assert "exports.sh computes APP_NEXTCLOUD_LOCAL_IPS at runtime; not converted" in notes
    assert "Umbrel hooks/ scripts are not converted" in notes

    explorer = package(tmp_path, "btc-rpc-explorer")
    # APP_HOST was an exported fixed IP: it names the service holding that address
    assert explorer["compose"]["services"]["web"]["ports"] == ["${PORT:-3002}:3002"]
    assert "networks" not in explorer["compose"]["services"]["web"]
    # bitcoin is in the store: required under Umbrel's prefix, so what it exports
    # (APP_BITCOIN_RPC_PORT, ...) reaches the explorer as the very variables it uses
    assert explorer["requires"] == [{"package": "bitcoin", "prefix": "APP_BITCOIN"}]
    declared = variables(explorer)
    assert not [name for name in declared if name.startswith("APP_BITCOIN_")]
    assert declared["APP_ELECTRS_NODE_IP"]["required"] is True  # electrs is not in the store
    notes = next(a.notes for a in report.imported if a.name == "btc-rpc-explorer")
    assert "needs Umbrel apps not in this store: electrs" in notes

    bitcoin = package(tmp_path, "bitcoin")
    assert set(bitcoin["compose"]["services"]) == {"app", "bitcoind"}  # Tor dropped
    assert bitcoin["compose"]["services"]["app"]["environment"]["BITCOIN_HOST"] == "bitcoind"
    derived = variables(bitcoin)["APP_BITCOIN_RPC_PASS"]  # derive_entropy in exports.sh
    assert derived["secret"] is True and derived["required"] is True
    # exports.sh becomes what bitcoin provides its dependants; its fixed IP is its service
    assert bitcoin["provides"] == {
        "service": "bitcoind",
        "values": {
            "NODE_IP": "bitcoind",
            "RPC_PORT": "${APP_BITCOIN_RPC_PORT}",
            "P2P_PORT": "${APP_BITCOIN_P2P_PORT}",
            "RPC_USER": "${APP_BITCOIN_RPC_USER}",
            "RPC_PASS": "${APP_BITCOIN_RPC_PASS}",
        },
    }


def test_a_package_that_does_not_validate_is_removed_and_reported(tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(STORES / "runtipi" / "apps" / "it-tools", store / "apps" / "it-tools")
    compose = store / "apps" / "it-tools" / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("unless-stopped", "sometimes"))
    into = tmp_path / "catalog"
    report = import_store("runtipi", store, into, arch="amd64")
    [result] = report.skipped
    assert result.reason == (
        "does not validate: compose.services.it-tools.restart: 'sometimes' is not a restart "
        "policy; use no, always, on-failure[:N] or unless-stopped"
    )
    assert not (into / "it-tools").exists()  # the catalog folder only holds packages that load

    # a forced re-import that does not validate keeps the file that was there
    good = into / "it-tools" / "2024.10.22-7ca5933.yaml"
    import_store("runtipi", STORES / "runtipi", into, arch="amd64")
    before = good.read_text()
    again = import_store("runtipi", store, into, arch="amd64", force=True)
    assert again.skipped[0].reason is not None
    assert again.skipped[0].reason.startswith("does not validate")
    assert good.read_text() == before


@pytest.mark.parametrize(
    ("store", "app"),
    [
        ("runtipi", "apps/it-tools"),
        ("casaos", "Apps/Syncthing"),
        ("umbrel", "uptime-kuma"),
    ],
)
def test_an_app_whose_compose_file_has_no_services_is_skipped(
    store: str, app: str, tmp_path: Path
) -> None:
    copy = tmp_path / "store" / app
    shutil.copytree(STORES / store / app, copy)
    (copy / "docker-compose.yml").write_text("services: {}\n")
    report = import_store(store, tmp_path / "store", tmp_path / "catalog", arch="amd64")
    assert [(a.app, a.reason) for a in report.skipped] == [
        (Path(app).name, "docker-compose.yml has no services")
    ]


def test_existing_packages_are_kept_unless_forced(tmp_path: Path) -> None:
    import_store("casaos", STORES / "casaos", tmp_path, arch="amd64")
    target = tmp_path / "syncthing" / "1.27.12.yaml"
    target.write_text(target.read_text() + "# my edit\n")
    again = import_store("casaos", STORES / "casaos", tmp_path, arch="amd64")
    assert not again.imported
    assert "# my edit" in target.read_text()
    assert any("exists already (--force replaces it)" in (a.reason or "") for a in again.skipped)
    forced = import_store("casaos", STORES / "casaos", tmp_path, arch="amd64", force=True)
    assert len(forced.imported) == 3
    assert "# my edit" not in target.read_text()


def test_a_folder_that_is_no_store_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AppStoreError, match=r"holds no umbrel apps \(<id>/umbrel-app.yml\)"):
        import_store("umbrel", STORES / "casaos", tmp_path)
    out = run("catalog", "import", "--from", "runtipi", str(tmp_path), code=2)
    assert "holds no runtipi apps" in out


def test_cli_reports_imported_and_skipped_apps(tmp_path: Path) -> None:
    into = tmp_path / "catalog"
    args = ["catalog", "import", "--from", "casaos", str(STORES / "casaos"), "--into", str(into)]
    out = run(*args, "--arch", "amd64")
    assert "✓ jellyfin 10.10.7" in out
    assert "✗ HomeAssistant: service homeassistant uses network_mode host" in out
    assert "3 of 4 casaos apps imported" in out
    data = json.loads(run(*args, "--arch", "amd64", "--force", "--output", "json"))
    assert data["ok"] is True
    assert {a["name"] for a in data["imported"]} == {"jellyfin", "photoprism", "syncthing"}
    assert data["skipped"] == [
        {"app": "HomeAssistant", "reason": "service homeassistant uses network_mode host"}
    ]
    # nothing converts: exit 1
    data = json.loads(run(*args, "--arch", "riscv64", "--output", "json", code=1))
    assert data["ok"] is False and not data["imported"]


def test_an_imported_package_plans(tmp_path: Path, docker_host: str) -> None:
    repo = tmp_path / "lab"
    (repo / "packages").mkdir(parents=True)
    (repo / "nebula.yaml").write_text("")
    import_store("runtipi", STORES / "runtipi", repo / "catalog", arch="amd64")
    (repo / "packages" / "monitor.yaml").write_text("package: uptime-kuma\n")
    (repo / "packages" / "tools.yaml").write_text("package: it-tools\nvalues: {PORT: '8318'}\n")
    result = runner.invoke(
        app, ["plan", str(repo), "--docker-host", docker_host, "--output", "json"]
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    plan = json.loads(result.stdout)
    created = {(c["kind"], c["name"]) for c in plan["changes"] if c["action"] == "create"}
    assert ("container", "monitor-uptime-kuma") in created
    assert ("container", "tools-it-tools") in created
    assert ("volume", "monitor_data") in created  # ${APP_DATA_DIR}/data became a named volume
