"""Exposed hostnames through a real Caddy: routes, TLS policies, ownership, atomic loads.

Docker runs the busybox httpd image; Caddy (admin API on loopback) proxies to the container's
address on its installation network; certificates come from Caddy's internal CA here (ACME
against Pebble is in test_acme.py).
"""

from __future__ import annotations

import json
import ssl
import textwrap
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from nebula.cli.app import app
from nebula.engine.load import load_desired
from nebula.errors import ConfigError, ProviderError
from nebula.kinds.routes.apply import sync_proxy
from nebula.kinds.routes.certificates import CertificateState, certificate_state
from nebula.kinds.routes.desired import desired_config
from nebula.providers.caddy import CaddyAdmin
from nebula.providers.docker import DockerProvider
from nebula.spec.proxy import Proxy
from servers import CaddyServer, free_port

runner = CliRunner()

FOREIGN_ROUTE = {
    "@id": "hand-made",
    "match": [{"host": ["static.nebula.lan"]}],
    "handle": [{"handler": "static_response", "body": "made by hand"}],
}


def nebula(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    output = result.stdout + result.stderr
    assert result.exit_code == code, output
    return output


def write_repo(root: Path, docker_host: str, caddy: CaddyServer, packages: dict[str, str]) -> Path:
    (root / "packages").mkdir(parents=True, exist_ok=True)
    for old in (root / "packages").glob("*.yaml"):
        old.unlink()
    proxy = {
        "admin": caddy.admin,
        "listen": "127.0.0.1",
        "http_port": caddy.http_port,
        "https_port": caddy.https_port,
    }
    (root / "nebula.yaml").write_text(
        json.dumps({"docker": {"host": docker_host}, "proxy": proxy}, indent=2)
    )
    for name, text in packages.items():
        (root / "packages" / f"{name}.yaml").write_text(textwrap.dedent(text))
    return root


def web_app(image: str, expose: str) -> str:
    return f"""\
        compose:
          services:
            web:
              image: {image}
              init: true
        expose:
{textwrap.indent(textwrap.dedent(expose), " " * 10)}"""


def https_get(
    caddy: CaddyServer, host: str, root_pem: str, timeout: float = 10.0, port: int | None = None
) -> httpx.Response:
    """GET https://host/ from Caddy's HTTPS listener, verifying the chain against `root_pem`."""
    context = ssl.create_default_context(cadata=root_pem)
    deadline = time.monotonic() + timeout
    with httpx.Client(verify=context, timeout=5.0) as client:
        while True:
            try:
                return client.get(
                    f"https://127.0.0.1:{port or caddy.https_port}/",
                    headers={"Host": host},
                    extensions={"sni_hostname": host},
                )
            except httpx.TransportError:  # the certificate is being issued
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def caddy_config(caddy: CaddyServer) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(f"{caddy.admin}/config/").json()
    return data


FOREIGN_POLICY = {"subjects": ["static.nebula.lan"], "issuers": [{"module": "internal"}]}
FOREIGN_PORT = free_port()


@pytest.fixture
def caddy_with_foreign_route(caddy: CaddyServer) -> CaddyServer:
    """Caddy back at its bootstrap config plus a server and a route Nebula did not write."""
    config = caddy.bootstrap()
    config["apps"] = {
        **config["apps"],  # type: ignore[dict-item]
        "http": {
            "http_port": caddy.http_port,
            "https_port": caddy.https_port,
            "servers": {
                "mine": {"listen": [f"127.0.0.1:{FOREIGN_PORT}"], "routes": [FOREIGN_ROUTE]}
            },
        },
        "tls": {"automation": {"policies": [FOREIGN_POLICY]}},
    }
    httpx.post(f"{caddy.admin}/load", json=config, timeout=10).raise_for_status()
    return caddy


def test_exposed_app_answers_over_https_and_foreign_routes_survive(
    tmp_path: Path, docker_host: str, test_image: str, caddy_with_foreign_route: CaddyServer
) -> None:
    caddy = caddy_with_foreign_route
    repo = write_repo(
        tmp_path / "repo",
        docker_host,
        caddy,
        {"web": web_app(test_image, "- {host: web.nebula.lan, port: 8080}")},
    )
    planned = json.loads(nebula("plan", str(repo), "--output", "json"))
    assert {"action": "create", "id": "nebula-web-web.nebula.lan",
            "reason": "https://web.nebula.lan → web-web:8080"} in planned["proxy"]["changes"]  # fmt: skip
    out = nebula("apply", str(repo), "--yes")
    assert "proxy nebula-web-web.nebula.lan: https://web.nebula.lan →" in out

    root = caddy.internal_root()
    response = https_get(caddy, "web.nebula.lan", root)
    assert response.status_code == 200
    assert "nebula-test-ok" in response.text
    table = nebula("certs", str(repo))
    assert "web.nebula.lan" in table and "Caddy Local" in table and "active" in table
    assert "warning" not in table
    # the hand-made route in the hand-made server is still served
    assert https_get(caddy, "static.nebula.lan", root, port=FOREIGN_PORT).text == "made by hand"

    # A second pass changes nothing and makes no write: one GET of the config.
    provider = DockerProvider(docker_host)
    try:
        result = sync_proxy(load_desired(repo), provider.observe())
    finally:
        provider.close()
    assert result is not None
    assert result.changes == ()
    assert result.requests == ("GET /config/",)

    # An expose added to the running app: only the proxy changes; removing one removes only it.
    write_repo(
        repo,
        docker_host,
        caddy,
        {
            "web": web_app(
                test_image,
                "- {host: web.nebula.lan, port: 8080}\n- {host: www.nebula.lan, service: web, port: 8080}",
            )
        },
    )
    planned = json.loads(nebula("plan", str(repo), "--output", "json"))
    assert planned["summary"]["create"] == 0  # no container changes: only the proxy's
    assert [(c["action"], c["id"]) for c in planned["proxy"]["changes"]] == [
        ("update", "nebula-tls-internal"),
        ("create", "nebula-web-www.nebula.lan"),
    ]
    out = nebula("apply", str(repo), "--yes")
    assert "proxy nebula-web-www.nebula.lan" in out
    assert "nebula-test-ok" in https_get(caddy, "www.nebula.lan", root).text
    write_repo(
        repo,
        docker_host,
        caddy,
        {"web": web_app(test_image, "- {host: www.nebula.lan, port: 8080}")},
    )
    out = nebula("apply", str(repo), "--yes")
    assert "- proxy nebula-web-web.nebula.lan: no longer exposed" in out
    routes = {
        r.get("@id")
        for server in caddy_config(caddy)["apps"]["http"]["servers"].values()
        for r in server.get("routes", [])
    }
    assert routes == {"hand-made", "nebula-web-www.nebula.lan"}
    policies = caddy_config(caddy)["apps"]["tls"]["automation"]["policies"]
    assert policies == [
        {
            "@id": "nebula-tls-internal",
            "subjects": ["www.nebula.lan"],
            "issuers": [{"module": "internal"}],
        },
        FOREIGN_POLICY,
    ]


def test_a_refused_load_keeps_the_previous_config(
    tmp_path: Path, docker_host: str, test_image: str, caddy_with_foreign_route: CaddyServer
) -> None:
    caddy = caddy_with_foreign_route
    repo = write_repo(
        tmp_path / "repo",
        docker_host,
        caddy,
        {"api": web_app(test_image, "- {host: api.nebula.lan, port: 8080}")},
    )
    nebula("apply", str(repo), "--yes")
    root = caddy.internal_root()
    before = caddy_config(caddy)
    broken = json.loads(json.dumps(before))
    broken["apps"]["http"]["servers"]["nebula"]["routes"][0]["handle"] = [
        {"handler": "no_such_handler"}
    ]
    with CaddyAdmin(caddy.admin) as admin, pytest.raises(ProviderError) as caught:
        admin.load(broken, before)
    assert "Caddy refused the new config (the previous config is in force)" in str(caught.value)
    assert "no_such_handler" in str(caught.value)
    assert caddy_config(caddy) == before
    assert "nebula-test-ok" in https_get(caddy, "api.nebula.lan", root).text


def test_unreachable_caddy_is_a_clear_error(
    tmp_path: Path, docker_host: str, test_image: str, caddy: CaddyServer
) -> None:
    gone = CaddyServer("http://127.0.0.1:9", caddy.http_port, caddy.https_port, caddy.storage)
    repo = write_repo(
        tmp_path / "repo",
        docker_host,
        gone,
        {"lone": web_app(test_image, "- {host: lone.nebula.lan, port: 8080}")},
    )
    out = nebula("apply", str(repo), "--yes", code=1)
    assert "✓ lone running" in out  # the containers were applied all the same
    assert "Caddy admin API at http://127.0.0.1:9: cannot connect" in out


# -- validation and the pure config (no servers) ----------------------------------------------


def _repo(tmp_path: Path, packages: dict[str, str]) -> Path:
    (tmp_path / "packages").mkdir()
    (tmp_path / "nebula.yaml").write_text("")
    for name, text in packages.items():
        (tmp_path / "packages" / f"{name}.yaml").write_text(textwrap.dedent(text))
    return tmp_path


def test_expose_is_checked_against_the_app_with_file_and_line(tmp_path: Path) -> None:
    two = """\
        compose:
          services:
            web: {image: "nginx:1.27", ports: ["8080:80", "8443:443"]}
            db: {image: "postgres:16"}
        expose:
          - host: a.example.com
          - host: e.example.com
          - host: b.example.com
            service: cache
          - host: c.example.com
            service: web
          - host: d.example.com
            service: db
        """
    other = """\
        compose:
          services:
            web: {image: "nginx:1.27"}
        expose:
          - {host: a.example.com, port: 80}
        """
    with pytest.raises(ConfigError) as caught:
        load_desired(_repo(tmp_path, {"two": two, "other": other}))
    messages = [str(issue) for issue in caught.value.issues]
    assert messages == [
        "packages/two.yaml:6:5: expose[0].host: a.example.com is already exposed by "
        "packages/other.yaml (other)",
        "packages/two.yaml:7:5: expose[1]: this app has several services; name one with "
        "`service:` (db, web)",
        "packages/two.yaml:9:5: expose[2].service: no service 'cache' in this app "
        "(services: db, web)",
        "packages/two.yaml:10:5: expose[3]: give `port:` (the container port of 'web' to "
        "expose): it declares 80, 443",
        "packages/two.yaml:12:5: expose[4]: give `port:` (the container port of 'db' to "
        "expose): it has none",
    ]


def test_the_single_published_port_is_the_default(tmp_path: Path) -> None:
    app = """\
        compose:
          services:
            web: {image: "nginx:1.27", ports: ["8080:80"]}
        expose:
          - host: Photos.Example.com.
        """
    (route,) = load_desired(_repo(tmp_path, {"photos": app})).routes
    assert (route.id, route.host, route.port, route.issuer) == (
        "nebula-photos-photos.example.com",
        "photos.example.com",
        80,
        "acme",
    )


def test_desired_config_is_stable_and_keeps_foreign_parts(tmp_path: Path) -> None:
    app = """\
        compose:
          services:
            web: {image: "nginx:1.27", ports: ["8080:80"]}
        expose:
          - host: photos.example.com
          - host: nas.home.arpa
        """
    routes = load_desired(_repo(tmp_path, {"photos": app})).routes
    foreign_policy = {"subjects": ["other.example.com"], "issuers": [{"module": "internal"}]}
    current = {
        "admin": {"listen": "127.0.0.1:2019"},
        "apps": {"tls": {"automation": {"policies": [foreign_policy]}}},
    }
    dials = {r.id: "10.0.0.2:80" for r in routes}
    proxy = Proxy()
    once = desired_config(current, routes, dials, proxy)
    assert desired_config(once, routes, dials, proxy) == once
    assert once["admin"] == current["admin"]
    policies = once["apps"]["tls"]["automation"]["policies"]
    assert [p.get("@id") for p in policies] == [
        policies[0]["@id"],
        "nebula-tls-internal",
        None,
    ]
    assert policies[0]["issuers"] == [
        {"module": "acme", "ca": "https://acme-v02.api.letsencrypt.org/directory"}
    ]
    assert once["apps"]["http"]["servers"]["nebula"]["listen"] == ["0.0.0.0:443"]
    # a container without an address keeps its published route; nothing exposed removes all
    assert desired_config(once, routes, {}, proxy) == once
    assert desired_config(once, (), {}, proxy) == current


def test_a_route_behind_the_login_is_written_only_with_a_dashboard_to_ask(tmp_path: Path) -> None:
    app = """\
        compose:
          services:
            web: {image: "nginx:1.27", ports: ["8080:80"]}
        expose:
          - {host: ide.example.com, auth: nebula}
          - host: open.example.com
        """
    routes = load_desired(_repo(tmp_path, {"ide": app})).routes
    dials = {r.id: "10.0.0.2:80" for r in routes}
    proxy = Proxy()
    served = desired_config({}, routes, dials, proxy, "127.0.0.1:7733")
    by_id = {r["@id"]: r for r in served["apps"]["http"]["servers"]["nebula"]["routes"]}
    ide = by_id["nebula-ide-ide.example.com"]["handle"][0]
    login, protected = ide["routes"]
    assert "/ui/login" in login["match"][0]["path"]
    assert login["handle"][0]["upstreams"] == [{"dial": "127.0.0.1:7733"}]
    check, upstream = protected["handle"]
    assert (check["upstreams"], check["rewrite"]) == (
        [{"dial": "127.0.0.1:7733"}],
        {"method": "GET", "uri": "/api/v1/auth/check"},
    )
    assert upstream["upstreams"] == [{"dial": "10.0.0.2:80"}]
    assert by_id["nebula-ide-open.example.com"]["handle"][0]["upstreams"] == [
        {"dial": "10.0.0.2:80"}
    ]
    # without a dashboard, it is never written unprotected: kept as Caddy has it, or left out
    assert desired_config(served, routes, dials, proxy) == served
    unserved = desired_config({}, routes, dials, proxy)["apps"]["http"]["servers"]["nebula"]
    assert [r["@id"] for r in unserved["routes"]] == ["nebula-ide-open.example.com"]

    (tmp_path / "packages" / "ide.yaml").write_text(
        textwrap.dedent(app).replace("auth: nebula", "auth: basic")
    )
    with pytest.raises(ConfigError) as caught:
        load_desired(tmp_path)
    [issue] = caught.value.issues
    assert str(issue).startswith("packages/ide.yaml:5:")
    assert "expose[0].auth" in str(issue) and "'nebula'" in str(issue)


@dataclass(frozen=True)
class Served:
    issuer: str
    names: tuple[str, ...]
    not_before: datetime
    not_after: datetime


def test_certificate_status_and_the_expiry_warning() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def state(names: tuple[str, ...], lifetime: timedelta, left: timedelta) -> CertificateState:
        served = Served("Some CA", names, now + left - lifetime, now + left)
        return certificate_state("app.example.com", "app", served, now)

    ninety = timedelta(days=90)
    assert state(("app.example.com",), ninety, timedelta(days=30)).status == "active"
    assert not state(("app.example.com",), ninety, timedelta(days=15)).expiring
    assert state(("app.example.com",), ninety, timedelta(days=13)).expiring
    assert state(("*.example.com",), ninety, timedelta(days=30)).status == "active"
    assert state(("other.example.com",), ninety, timedelta(days=30)).status == "pending"
    gone = state(("app.example.com",), ninety, -timedelta(hours=1))
    assert (gone.status, gone.expiring) == ("expired", True)
    # Caddy's internal CA issues 12 h certificates and renews them with 4 h left
    twelve = timedelta(hours=12)
    assert not state(("app.example.com",), twelve, timedelta(hours=5)).expiring
    assert state(("app.example.com",), twelve, timedelta(hours=2)).expiring
    none = certificate_state("app.example.com", "app", None, now)
    assert (none.status, none.issuer, none.expires_at) == ("pending", None, None)
