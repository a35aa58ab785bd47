"""`nebula catalog import`: the fixture Runtipi, CasaOS and Umbrel stores become packages that load,
validate, resolve and plan; powers over the host stay in the package for an installation to grant;
what cannot be converted is reported with its reason; importing again changes nothing; built-in
packages are never replaced."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from nebula.catalog import Catalog
from nebula.catalog.importers import AppStoreError, ImportReport, import_store
from nebula.cli.app import app
from nebula.cli.commands.catalog_import import catalog_errors

STORES = Path(__file__).resolve().parent / "fixtures" / "appstores"
runner = CliRunner()

VPN_ROUTED = (
    "service qbittorrent uses network_mode service:gluetun; Nebula takes only network_mode host"
)
# The grants packages of the fixture stores need (their installations' `allow:`).
GRANTS = {
    "s-wg-easy": ["cap_add", "sysctls"],
    "s-homeassistant": ["host_network", "cap_add", "devices", "host_system"],
}
EXPECTED = {  # imported under the prefix "s-" (several are named like built-in packages)
    "runtipi": (
        {"s-it-tools", "s-nextcloud", "s-uptime-kuma", "s-vaultwarden", "s-wg-easy"},
        {"homebridge": "supports only arm64, not amd64"},
    ),
    "casaos": (
        {"s-homeassistant", "s-jellyfin", "s-photoprism", "s-syncthing"},
        {"QBittorrentVPN": VPN_ROUTED},
    ),
    "umbrel": (
        {"s-bitcoin", "s-btc-rpc-explorer", "s-nextcloud", "s-uptime-kuma"},
        {"mempool": "service web mounts the file ${APP_DATA_DIR}/data/nginx/nginx.conf"},
    ),
}


def convert(store: str, into: Path, source: Path | None = None, **options: Any) -> ImportReport:
    """Import `store`'s fixture (or the store at `source`) for amd64, with the catalog's checks."""
    options.setdefault("arch", "amd64")
    return import_store(store, source or STORES / store, into, check=catalog_errors, **options)


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
    report = convert(store, into, prefix="s-")
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
        installation = {"package": entry.package.name, "version": entry.package.version}
        allow = GRANTS.get(entry.package.name)
        (repo / "packages" / f"{entry.package.name}.yaml").write_text(
            yaml.safe_dump(installation | {"values": values} | ({"allow": allow} if allow else {}))
        )
    assert f"{len(imported)} installations valid" in run("validate", str(repo))


def test_runtipi_form_fields_and_builtins_become_variables(tmp_path: Path) -> None:
    convert("runtipi", tmp_path, prefix="s-")
    nextcloud = package(tmp_path, "s-nextcloud")
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
    assert package(tmp_path, "s-it-tools")["category"] == "dev"  # Runtipi's development
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

    legacy = package(tmp_path, "s-it-tools")  # old compose YAML: ${APP_PORT}, Traefik, networks
    service = legacy["compose"]["services"]["it-tools"]
    assert service["ports"] == ["${PORT}:80"]
    assert "labels" not in service and "networks" not in service
    assert "networks" not in legacy["compose"]

    kuma = package(tmp_path, "s-uptime-kuma")  # new compose YAML: x-runtipi is_main/internal_port
    service = kuma["compose"]["services"]["uptime-kuma"]
    assert service["image"] == "louislam/uptime-kuma:1.23.16"
    assert service["ports"] == ["${PORT:-8125}:3001"]
    assert variables(kuma)["TZ"]["default"] == "Etc/UTC"


def test_runtipi_architecture_decides_images_and_apps(tmp_path: Path) -> None:
    report = convert("runtipi", tmp_path, arch="arm64", prefix="s-")
    assert "s-homebridge" in {a.name for a in report.imported}
    kuma = package(tmp_path, "s-uptime-kuma")["compose"]["services"]["uptime-kuma"]
    assert kuma["image"] == "louislam/uptime-kuma:1.23.16-arm64"  # the arm64 override


def test_casaos_extensions_and_builtins(tmp_path: Path) -> None:
    report = convert("casaos", tmp_path, prefix="s-")
    jellyfin = package(tmp_path, "s-jellyfin")
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
    notes = next(a.notes for a in report.imported if a.name == "s-jellyfin")
    assert "service jellyfin: binds host path /DATA/Media at /Media" in notes

    photoprism = package(tmp_path, "s-photoprism")["compose"]
    assert photoprism["services"]["mariadb"]["volumes"] == ["database:/var/lib/mysql"]
    assert photoprism["volumes"] == {"storage": None, "database": None}
    syncthing = package(tmp_path, "s-syncthing")["compose"]["services"]["syncthing"]
    assert syncthing["ports"][0] == "${PORT:-8384}:8384"
    notes = next(a.notes for a in report.imported if a.name == "s-syncthing")
    assert "store tip: Set a GUI password after the first start." in notes


def test_umbrel_app_proxy_dependencies_and_exports(tmp_path: Path) -> None:
    report = convert("umbrel", tmp_path, prefix="s-")
    nextcloud = package(tmp_path, "s-nextcloud")
    services = nextcloud["compose"]["services"]
    assert "app_proxy" not in services
    assert services["web"]["ports"] == ["${PORT:-8081}:80"]  # app_proxy's APP_HOST/APP_PORT
    environment = services["web"]["environment"]
    assert "MYSQL_HOST=db" in environment  # nextcloud_db_1 → the service name
    assert "NEXTCLOUD_ADMIN_PASSWORD=${APP_PASSWORD}" in environment
    found = variables(nextcloud)
    assert found["APP_PASSWORD"]["secret"] is True and found["APP_PASSWORD"]["required"]
    assert found["APP_NEXTCLOUD_PORT"]["default"] == "8081"  # a literal of exports.sh
    notes = next(a.notes for a in report.imported if a.name == "s-nextcloud")
    assert "exports.sh computes APP_NEXTCLOUD_LOCAL_IPS at runtime; not converted" in notes
    assert "Umbrel hooks/ scripts are not converted" in notes

    explorer = package(tmp_path, "s-btc-rpc-explorer")
    # APP_HOST was an exported fixed IP: it names the service holding that address
    assert explorer["compose"]["services"]["web"]["ports"] == ["${PORT:-3002}:3002"]
    assert "networks" not in explorer["compose"]["services"]["web"]
    # bitcoin is in the store: required under Umbrel's prefix, so what it exports
    # (APP_BITCOIN_RPC_PORT, ...) reaches the explorer as the very variables it uses
    assert explorer["requires"] == [{"package": "s-bitcoin", "prefix": "APP_BITCOIN"}]
    declared = variables(explorer)
    assert not [name for name in declared if name.startswith("APP_BITCOIN_")]
    assert declared["APP_ELECTRS_NODE_IP"]["required"] is True  # electrs is not in the store
    notes = next(a.notes for a in report.imported if a.name == "s-btc-rpc-explorer")
    assert "needs Umbrel apps not in this store: electrs" in notes

    bitcoin = package(tmp_path, "s-bitcoin")
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
    report = convert("runtipi", into, store)
    [result] = report.skipped
    assert result.reason == (
        "does not validate: compose.services.it-tools.restart: 'sometimes' is not a restart "
        "policy; use no, always, on-failure[:N] or unless-stopped"
    )
    assert not (into / "it-tools").exists()  # the catalog folder only holds packages that load

    # a forced re-import that does not validate keeps the file that was there
    good = into / "it-tools" / "2024.10.22-7ca5933.yaml"
    convert("runtipi", into)
    before = good.read_text()
    again = convert("runtipi", into, store, force=True)
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
    report = convert(store, tmp_path / "catalog", tmp_path / "store")
    assert [(a.app, a.reason) for a in report.skipped] == [
        (Path(app).name, "docker-compose.yml has no services")
    ]


def test_importing_again_changes_nothing_and_keeps_hand_edits_unless_forced(
    tmp_path: Path,
) -> None:
    into = tmp_path / "catalog"
    args = ["catalog", "import", "--from", "casaos", str(STORES / "casaos"), "--into", str(into)]
    run(*args, "--arch", "amd64", "--prefix", "casa-")
    target = into / "casa-syncthing" / "1.27.12.yaml"
    written = target.read_text()

    # an unchanged store: every package is unchanged, nothing is written, exit 0
    out = run(*args, "--arch", "amd64", "--prefix", "casa-")
    assert "= casa-syncthing 1.27.12  unchanged" in out
    assert "0 of 5 casaos apps imported" in out and "; 4 unchanged; 1 not converted" in out
    assert target.read_text() == written

    # a package edited by hand is kept as it is, and said so
    target.write_text(written + "# my edit\n")
    again = convert("casaos", into, prefix="casa-")
    [kept] = again.having("kept")
    assert (kept.name, kept.file) == ("casa-syncthing", str(target))
    assert kept.reason == (
        f"{target} differs from what the store gives now (edited by hand, or the store "
        "changed): kept; --force replaces it"
    )
    assert "# my edit" in target.read_text()
    assert len(again.having("unchanged")) == 3

    # --force replaces it with what the store gives
    forced = convert("casaos", into, prefix="casa-", force=True)
    assert [a.name for a in forced.imported] == ["casa-syncthing"]
    assert target.read_text() == written


def test_a_folder_that_is_no_store_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AppStoreError, match=r"holds no umbrel apps \(<id>/umbrel-app.yml\)"):
        convert("umbrel", tmp_path, STORES / "casaos")
    out = run("catalog", "import", "--from", "runtipi", str(tmp_path), code=2)
    assert "holds no runtipi apps" in out
    args = ["--from", "casaos", str(STORES / "casaos"), "--prefix", "My/"]
    out = run("catalog", "import", *args, code=2)
    assert "prefix 'My/' does not start a package name" in out


def test_cli_reports_imported_and_skipped_apps(tmp_path: Path) -> None:
    into = tmp_path / "catalog"
    args = ["catalog", "import", "--from", "casaos", str(STORES / "casaos"), "--into", str(into)]
    out = run(*args, "--arch", "amd64", "--prefix", "casa-")
    assert "✓ casa-jellyfin 10.10.7" in out
    assert f"✗ QBittorrentVPN: {VPN_ROUTED}" in out
    assert "4 of 5 casaos apps imported" in out
    json_args = [*args, "--arch", "amd64", "--prefix", "casa-", "--output", "json"]
    data = json.loads(run(*json_args))
    assert data["ok"] is True and data["imported"] == [] and data["kept"] == []
    assert {a["name"] for a in data["unchanged"]} == {
        "casa-homeassistant",
        "casa-jellyfin",
        "casa-photoprism",
        "casa-syncthing",
    }
    assert data["skipped"] == [{"app": "QBittorrentVPN", "reason": VPN_ROUTED}]
    # nothing converts: exit 1
    data = json.loads(run(*args, "--arch", "riscv64", "--output", "json", code=1))
    assert data["ok"] is False and not data["imported"]


def test_an_imported_package_plans(tmp_path: Path, docker_host: str) -> None:
    repo = tmp_path / "lab"
    (repo / "packages").mkdir(parents=True)
    (repo / "nebula.yaml").write_text("")
    convert("runtipi", repo / "catalog", prefix="tipi-")
    (repo / "packages" / "monitor.yaml").write_text("package: tipi-uptime-kuma\n")
    (repo / "packages" / "tools.yaml").write_text(
        "package: tipi-it-tools\nvalues: {PORT: '8318'}\n"
    )
    result = runner.invoke(
        app, ["plan", str(repo), "--docker-host", docker_host, "--output", "json"]
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    plan = json.loads(result.stdout)
    created = {(c["kind"], c["name"]) for c in plan["changes"] if c["action"] == "create"}
    assert ("container", "monitor-uptime-kuma") in created
    assert ("container", "tools-it-tools") in created
    assert ("volume", "monitor_data") in created  # ${APP_DATA_DIR}/data became a named volume


def runtipi_app(store: Path, app_id: str, services: list[dict[str, Any]], **config: Any) -> None:
    """A Runtipi app with its dynamic compose JSON in the store at `store`."""
    folder = store / "apps" / app_id
    folder.mkdir(parents=True)
    info = {"id": app_id, "version": "1.0.0", "port": 8300, "categories": ["utilities"]}
    (folder / "config.json").write_text(json.dumps(info | config))
    (folder / "docker-compose.json").write_text(json.dumps({"services": services}))


def test_runtipi_udp_only_ports_are_published_for_udp_only(tmp_path: Path) -> None:
    ports = [
        {"hostPort": 3478, "containerPort": 3478, "udp": True},  # names only udp
        {"hostPort": 5353, "containerPort": 53, "udp": True, "tcp": True},
        {"hostPort": 2222, "containerPort": 22},
    ]
    runtipi_app(
        tmp_path / "store",
        "relay",
        [{"name": "relay", "image": "coturn/coturn:4.6.2", "isMain": True, "internalPort": 80,
          "addPorts": ports}],
    )  # fmt: skip
    convert("runtipi", tmp_path / "catalog", tmp_path / "store")
    service = package(tmp_path / "catalog", "relay")["compose"]["services"]["relay"]
    assert service["ports"] == [
        "${PORT:-8300}:80",
        "3478:3478/udp",
        "5353:53/udp",
        "5353:53",
        "2222:22",
    ]


def test_runtipi_optional_form_fields_are_optional_variables(tmp_path: Path) -> None:
    fields = [
        {"type": "text", "label": "Admin", "required": True, "env_variable": "ADMIN"},
        {"type": "text", "label": "Motto", "required": False, "env_variable": "MOTTO"},
        {"type": "email", "label": "Mail", "env_variable": "MAIL"},
        {"type": "password", "label": "SMTP", "required": False, "env_variable": "SMTP_PASS"},
    ]
    env = {"ADMIN": "${ADMIN}", "MOTTO": "${MOTTO}", "MAIL": "$MAIL", "SMTP": "${SMTP_PASS}"}
    runtipi_app(
        tmp_path / "store",
        "blog",
        [{"name": "blog", "image": "ghost:5.96.0", "isMain": True, "internalPort": 2368,
          "environment": env}],
        form_fields=fields,
    )  # fmt: skip
    repo = tmp_path / "lab"
    convert("runtipi", repo / "catalog", tmp_path / "store")
    blog = package(repo / "catalog", "blog")
    found = variables(blog)
    assert found["ADMIN"]["required"] is True and "default" not in found["ADMIN"]
    assert found["MOTTO"]["default"] == "" and "required" not in found["MOTTO"]
    assert found["MAIL"]["default"] == ""  # `required` left out: optional
    # a secret takes no default: its references fall back to empty instead
    assert found["SMTP_PASS"] == {"name": "SMTP_PASS", "description": "SMTP", "secret": True}
    assert blog["compose"]["services"]["blog"]["environment"]["SMTP"] == "${SMTP_PASS:-}"

    # installed with only the required value, the package is valid
    (repo / "nebula.yaml").write_text("")
    (repo / "packages").mkdir()
    (repo / "packages" / "blog.yaml").write_text("package: blog\nvalues: {ADMIN: me}\n")
    assert "1 installation valid" in run("validate", str(repo))


def umbrel_store(tmp_path: Path, *apps: str) -> Path:
    """A copy of the fixture Umbrel store holding only `apps`."""
    store = tmp_path / "store"
    for app_id in apps:
        shutil.copytree(STORES / "umbrel" / app_id, store / app_id)
    return store


def test_umbrel_requires_only_dependencies_whose_exports_are_used(tmp_path: Path) -> None:
    store = umbrel_store(tmp_path, "bitcoin", "btc-rpc-explorer", "uptime-kuma")
    manifest = store / "btc-rpc-explorer" / "umbrel-app.yml"
    # uptime-kuma exports nothing; bitcoin exports what the explorer uses
    manifest.write_text(manifest.read_text().replace("  - electrs", "  - uptime-kuma"))
    watcher = store / "watcher"
    shutil.copytree(store / "uptime-kuma", watcher)
    app_file = watcher / "umbrel-app.yml"
    app_file.write_text(
        app_file.read_text()
        .replace("id: uptime-kuma", "id: watcher")
        .replace("dependencies: []", "dependencies: [bitcoin]")
    )  # watcher uses none of bitcoin's exports
    compose = watcher / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("uptime-kuma_web_1", "watcher_web_1"))
    into = tmp_path / "catalog"
    report = convert("umbrel", into, store, prefix="s-")
    assert {a.name for a in report.imported} == {
        "s-bitcoin",
        "s-btc-rpc-explorer",
        "s-uptime-kuma",
        "s-watcher",
    }
    explorer = package(into, "s-btc-rpc-explorer")
    assert explorer["requires"] == [{"package": "s-bitcoin", "prefix": "APP_BITCOIN"}]
    notes = next(a.notes for a in report.imported if a.name == "s-btc-rpc-explorer")
    assert "needs uptime-kuma, which exports nothing it uses: install it too" in notes
    assert "requires" not in package(into, "s-watcher")
    notes = next(a.notes for a in report.imported if a.name == "s-watcher")
    assert "needs bitcoin, which exports nothing it uses: install it too" in notes
    assert "4 package versions checked: 0 errors" in run("catalog", "validate", str(into))


def test_umbrel_exports_made_under_a_condition_are_no_defaults(tmp_path: Path) -> None:
    store = umbrel_store(tmp_path, "nextcloud")
    (store / "nextcloud" / "exports.sh").write_text(
        "# the port depends on the machine\n"
        'if [ "$(uname -m)" = "aarch64" ]; then\n'
        '  export APP_NEXTCLOUD_PORT="8082"\n'
        "else\n"
        '  export APP_NEXTCLOUD_PORT="8081"\n'
        "fi\n"
        'case "$NETWORK" in lan) echo lan ;; esac\n'
        'export APP_NEXTCLOUD_LOCAL_IPS="10.0.0.7"\n'
    )
    report = convert("umbrel", tmp_path / "catalog", store, prefix="s-")
    found = variables(package(tmp_path / "catalog", "s-nextcloud"))
    assert found["APP_NEXTCLOUD_PORT"]["required"] is True
    assert "default" not in found["APP_NEXTCLOUD_PORT"]
    assert found["APP_NEXTCLOUD_LOCAL_IPS"]["default"] == "10.0.0.7"  # after the blocks
    [result] = report.imported
    assert "exports.sh sets APP_NEXTCLOUD_PORT only under a condition; not converted" in (
        result.notes
    )


def test_a_package_the_catalog_checks_reject_is_not_written(tmp_path: Path) -> None:
    store = tmp_path / "store"
    service = {"name": "web", "isMain": True, "internalPort": 80}
    runtipi_app(store, "moving", [service | {"image": "nginx:latest"}])
    runtipi_app(store, "pinned", [service | {"image": "nginx:1.27.2"}])
    into = tmp_path / "catalog"
    report = convert("runtipi", into, store)
    assert [a.name for a in report.imported] == ["pinned"]
    [skipped] = report.skipped
    assert skipped.reason == (
        "does not validate: compose.services.web.image: image 'nginx:latest' follows `latest`, "
        "which moves under you: pin a release tag"
    )
    assert not (into / "moving").exists()
    assert "1 package versions checked: 0 errors" in run("catalog", "validate", str(into))


def test_apps_named_like_built_in_packages_are_not_imported_unless_prefixed(
    tmp_path: Path,
) -> None:
    into = tmp_path / "catalog"
    report = convert("runtipi", into)
    assert [a.name for a in report.imported] == ["it-tools", "wg-easy"]
    reasons = {a.app: a.reason for a in report.skipped}
    assert reasons["vaultwarden"] == (
        "vaultwarden is the name of a built-in package, which this one would replace for every "
        "installation that does not pin a version; import under another name with --prefix "
        "(e.g. --prefix runtipi-)"
    )
    assert {"nextcloud", "uptime-kuma"} <= reasons.keys()
    assert sorted(p.name for p in into.iterdir()) == ["it-tools", "wg-easy"]
    prefixed = convert("runtipi", into, prefix="runtipi-")
    assert {a.name for a in prefixed.imported} == {
        "runtipi-it-tools",
        "runtipi-nextcloud",
        "runtipi-uptime-kuma",
        "runtipi-vaultwarden",
        "runtipi-wg-easy",
    }


def test_an_app_using_powers_over_the_host_keeps_them_for_its_installation_to_grant(
    tmp_path: Path, docker_host: str
) -> None:
    repo = tmp_path / "lab"
    report = convert("casaos", repo / "catalog", prefix="s-")
    [result] = [a for a in report.imported if a.app == "HomeAssistant"]
    assert (
        "needs the grants host_network, cap_add, devices, host_system: an installation gives "
        "them with `allow: [host_network, cap_add, devices, host_system]`"
    ) in result.notes  # host_system: it binds the node's /run/dbus
    service = package(repo / "catalog", "s-homeassistant")["compose"]["services"]["homeassistant"]
    assert service["network_mode"] == "host"
    assert service["cap_add"] == ["NET_ADMIN", "NET_RAW"]
    assert service["devices"] == ["/dev/ttyUSB0:/dev/ttyUSB0"]
    # on the host's network the app listens on the node's port itself: checked there
    assert package(repo / "catalog", "s-homeassistant")["health_checks"] == [
        {"name": "web", "url": "http://127.0.0.1:8123/"}
    ]

    # installed without the grants, the repo is invalid, naming each grant to add and where
    (repo / "nebula.yaml").write_text("")
    (repo / "packages").mkdir()
    home = repo / "packages" / "home.yaml"
    home.write_text("package: s-homeassistant\n")
    out = run("validate", str(repo), code=2)
    assert "invalid config (4 problems)" in out
    assert (
        "packages/home.yaml:1:1: package: service 'homeassistant' uses `network_mode` "
        "(catalog/s-homeassistant/2024.9.3.yaml:10), a power over the host Nebula gives only "
        "when granted; add `allow: [host_network]` to packages/home.yaml to grant it"
    ) in out
    for grant in ("cap_add", "devices", "host_system"):
        assert f"add `allow: [{grant}]` to packages/home.yaml" in out
    for grant in ("cap_add", "devices"):
        assert f"uses `{grant}`" in out and f"add `allow: [{grant}]` to packages/home.yaml" in out

    # granted, it validates and plans the container on the host's network with its powers
    home.write_text(
        "package: s-homeassistant\nallow: [host_network, cap_add, devices, host_system]\n"
    )
    assert "1 installation valid" in run("validate", str(repo))
    plan = json.loads(run("plan", str(repo), "--docker-host", docker_host, "--output", "json"))
    [container] = [c for c in plan["changes"] if c["kind"] == "container"]
    assert (container["name"], container["action"]) == ("home-homeassistant", "create")
    assert "granted: host_network, cap_add, devices, host_system" in container["reason"]


def test_an_app_binding_the_docker_socket_keeps_it_for_its_installation_to_grant(
    tmp_path: Path,
) -> None:
    runtipi_app(
        tmp_path / "store",
        "dozzle",
        [{"name": "dozzle", "image": "amir20/dozzle:v8.5.0", "isMain": True, "internalPort": 8080,
          "volumes": [{"hostPath": "/var/run/docker.sock", "containerPath": "/var/run/docker.sock",
                       "readOnly": True},
                      {"hostPath": "/etc/localtime", "containerPath": "/etc/localtime",
                       "readOnly": True}]}],
    )  # fmt: skip
    report = convert("runtipi", tmp_path / "catalog", tmp_path / "store")
    [result] = report.imported
    assert (
        "needs the grants docker_socket: an installation gives them with "
        "`allow: [docker_socket]`" in result.notes
    )
    service = package(tmp_path / "catalog", "dozzle")["compose"]["services"]["dozzle"]
    assert "/var/run/docker.sock:/var/run/docker.sock:ro" in service["volumes"]


def test_a_service_on_the_host_network_publishes_nothing(tmp_path: Path) -> None:
    runtipi_app(
        tmp_path / "store",
        "dns",
        [{"name": "dns", "image": "pihole/pihole:2024.07.0", "isMain": True, "internalPort": 80,
          "networkMode": "host", "privileged": True,
          "addPorts": [{"hostPort": 53, "containerPort": 53, "udp": True}]}],
        url_suffix="/admin",
    )  # fmt: skip
    report = convert("runtipi", tmp_path / "catalog", tmp_path / "store")
    [result] = report.imported
    assert "service dns: on the host's network; dropped its ports" in result.notes
    dns = package(tmp_path / "catalog", "dns")
    assert "ports" not in dns["compose"]["services"]["dns"]
    assert "variables" not in dns  # no PORT to choose: the app listens on the node's port 80
    assert dns["health_checks"] == [{"name": "web", "url": "http://127.0.0.1:80/admin"}]


def test_a_package_requiring_one_that_was_rejected_is_not_written_either(tmp_path: Path) -> None:
    store = umbrel_store(tmp_path, "bitcoin", "btc-rpc-explorer")
    compose = store / "bitcoin" / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("lncm/bitcoind:v27.1@", "lncm/bitcoind:latest@"))
    into = tmp_path / "catalog"
    report = convert("umbrel", into, store, prefix="s-")
    reasons = {a.app: a.reason or "" for a in report.skipped}
    assert reasons["bitcoin"].startswith("does not validate: compose.services.bitcoind.image:")
    assert reasons["btc-rpc-explorer"] == (
        "does not validate: requires[0]: requires s-bitcoin: no catalog version meets it"
    )
    assert not report.imported and not list(into.iterdir())  # nothing left behind
