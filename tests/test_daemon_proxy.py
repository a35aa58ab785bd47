"""nebulad and the reverse proxy: a pushed `expose:` is served over HTTPS without any container
change, the sync is recorded, certificates are read and recorded, and a certificate close to
expiry raises a warning event. Real git, Docker and Caddy (internal CA), daemon in-process."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dns.resolver
import docker
import pytest
from starlette.testclient import TestClient

from nebula.daemon.api import create_app
from nebula.daemon.config import DaemonConfig
from nebula.daemon.control import ControlError
from nebula.daemon.core import Daemon
from nebula.daemon.events import EventBus
from nebula.daemon.gitsync import GitSource
from nebula.daemon.proxy import ProxyKeeper
from nebula.providers.docker import DockerProvider
from nebula.store import Store

__all__ = ["engine"]  # test_daemon's fixture: the engine with the example image tagged
from servers import CaddyServer, PowerDnsServer
from test_daemon import IMAGE, Repo, engine, eventually, running
from test_proxy import https_get

WEB = f"compose:\n  services:\n    web:\n      image: {IMAGE}\n      init: true\n"
EXPOSED = WEB + "expose:\n  - {host: web.nebula.lan, port: 8080}\n"


def domain(powerdns: PowerDnsServer) -> str:
    account = {"api_url": powerdns.api_url, "token": "${secret:PDNS_KEY}"}
    return json.dumps({"zone": "nebula.lan", "provider": "powerdns", "account": account})


def config(caddy: CaddyServer) -> str:
    proxy = {
        "admin": caddy.admin,
        "listen": "127.0.0.1",
        "http_port": caddy.http_port,
        "https_port": caddy.https_port,
    }
    return json.dumps({"defaults": {"health_timeout": "30s"}, "proxy": proxy})


@dataclass(frozen=True)
class Lab:
    repo: Repo
    daemon: Daemon
    engine: docker.DockerClient
    caddy: CaddyServer
    powerdns: PowerDnsServer


@pytest.fixture
def homelab(
    tmp_path: Path, docker_host: str, engine: docker.DockerClient, request: pytest.FixtureRequest
) -> Iterator[Lab]:
    """nebulad following a repo with one app (not exposed); Caddy and PowerDNS running."""
    caddy: CaddyServer = request.getfixturevalue("caddy")
    powerdns: PowerDnsServer = request.getfixturevalue("powerdns")
    request.getfixturevalue("monkeypatch").setenv("NEBULA_SECRET_PDNS_KEY", powerdns.api_key)
    caddy.reset()
    powerdns.reset()
    repo = Repo(tmp_path)
    repo.push("first", {"nebula.yaml": config(caddy), "packages/web.yaml": WEB})
    settings = DaemonConfig(
        source=str(repo.bare), data_dir=tmp_path / "data", poll_interval=3600, drift_interval=3600
    )
    store = Store(f"sqlite:///{tmp_path}/nebula.db")
    provider = DockerProvider(docker_host)
    daemon = Daemon(settings, store, provider, GitSource(str(repo.bare), tmp_path / "repo"))
    daemon.start()
    eventually(lambda: running(engine) == {"web-web"} and daemon.status().applied_commit)
    yield Lab(repo, daemon, engine, caddy, powerdns)
    daemon.stop()
    provider.close()
    store.close()


def expose(lab: Lab) -> tuple[str, float]:
    """Push the app's expose (and the zone holding its name); the commit and the seconds from
    the sync request until HTTPS answered with the app's page."""
    (lab.repo.work / "domains").mkdir()
    sha = lab.repo.push(
        "expose web",
        {"packages/web.yaml": EXPOSED, "domains/nebula.lan.yaml": domain(lab.powerdns)},
    )
    started = time.monotonic()
    lab.daemon.request_sync("hook")
    response = https_get(lab.caddy, "web.nebula.lan", lab.caddy.internal_root(), timeout=20)
    assert "nebula-test-ok" in response.text
    return sha, time.monotonic() - started


def test_a_pushed_expose_is_served_over_https_without_touching_the_app(homelab: Lab) -> None:
    daemon = homelab.daemon
    events = daemon.bus.subscribe()
    before = {c.name: c.id for c in homelab.engine.containers.list()}
    sha, took = expose(homelab)
    assert took < 5, f"{took:.1f}s from push to HTTPS"
    eventually(lambda: (daemon.syncs(1)[0].commit, daemon.syncs(1)[0].status) == (sha, "succeeded"))
    assert {c.name: c.id for c in homelab.engine.containers.list()} == before
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port = ["127.0.0.1"], homelab.powerdns.dns_port
    assert [a.to_text() for a in resolver.resolve("web.nebula.lan", "A")] == ["127.0.0.1"]
    event = next(e for e in events if e.kind == "proxy_changed")
    ids = {c["id"] for c in event.data["changes"]}
    assert ids == {"nebula-web-web.nebula.lan", "nebula-tls-internal"}


def test_certificates_are_recorded_shown_by_the_api_and_warned_about(homelab: Lab) -> None:
    daemon = homelab.daemon
    expose(homelab)

    # The certificate watch records the zone's status soon after the routes changed.
    def recorded() -> bool:
        try:
            return daemon.domain_ssl("nebula.lan", check=False)["ssl_status"] == "active"
        except ControlError:  # no row for the zone yet
            return False

    eventually(recorded)
    ssl = daemon.domain_ssl("nebula.lan", check=True)
    (cert,) = ssl["certificates"]
    assert cert["host"] == "web.nebula.lan"
    assert cert["issuer"].startswith("Caddy Local Authority")
    assert cert["status"] == "active" and cert["expiring"] is False
    assert ssl["ssl_expires_at"] == cert["expires_at"]
    with pytest.raises(ControlError):
        daemon.domain_ssl("other.lan", check=False)

    # The same over the API: GET for viewers, POST (check now) for operators.
    with TestClient(create_app(daemon, token="t0ken", tcp=True)) as api:
        auth = {"Authorization": "Bearer t0ken"}
        url = f"/api/v1/resources/domains/{ssl['id']}/ssl"
        got = api.get(url, headers=auth)
        assert got.status_code == 200 and got.json()["certificates"] == [cert]
        posted = api.post(url, headers=auth)
        assert posted.status_code == 200 and posted.json()["ssl_status"] == "active"
        assert api.get("/api/v1/resources/domains/other.lan/ssl", headers=auth).status_code == 404
        assert api.get(url).status_code == 401

    # The same certificate judged near its end (a clock 11h50m ahead: internal certificates
    # live 12 h) raises a warning event.
    desired = daemon._desired()
    assert desired is not None
    bus = EventBus()
    later = ProxyKeeper(
        daemon.store, bus, clock=lambda: datetime.now(UTC) + timedelta(hours=11, minutes=50)
    )
    warnings = bus.subscribe()
    (state,) = later.check(desired)
    assert state.expiring
    event = next(warnings)
    assert event.kind == "certificate_expiring"
    assert event.data["host"] == "web.nebula.lan"
