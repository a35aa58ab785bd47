"""nebulad and the reverse proxy: a pushed `expose:` is served over HTTPS without any container
change, the sync is recorded, certificates are read and recorded, and a certificate close to
expiry raises a warning event. Real git, Docker and Caddy (internal CA), daemon in-process."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import pytest

from nebula.daemon.config import DaemonConfig
from nebula.daemon.control import ControlError
from nebula.daemon.core import Daemon
from nebula.daemon.events import EventBus
from nebula.daemon.gitsync import GitSource
from nebula.daemon.proxy import ProxyKeeper
from nebula.providers.docker import DockerProvider
from nebula.store import Store

__all__ = ["engine"]  # test_daemon's fixture: the engine with the example image tagged
from servers import CaddyServer
from test_daemon import IMAGE, Repo, engine, eventually, running
from test_proxy import https_get

WEB = f"compose:\n  services:\n    web:\n      image: {IMAGE}\n      init: true\n"
EXPOSED = WEB + "expose:\n  - {host: web.nebula.lan, port: 8080}\n"
DOMAIN = "zone: nebula.lan\nprovider: powerdns\naccount: {api_url: 'http://127.0.0.1:9', token: '${secret:PDNS_KEY}'}\n"


def config(caddy: CaddyServer) -> str:
    proxy = {
        "admin": caddy.admin,
        "listen": "127.0.0.1",
        "http_port": caddy.http_port,
        "https_port": caddy.https_port,
    }
    return json.dumps({"defaults": {"health_timeout": "30s"}, "proxy": proxy})


@pytest.fixture
def homelab(
    tmp_path: Path,
    docker_host: str,
    engine: docker.DockerClient,
    caddy: CaddyServer,
) -> Iterator[tuple[Repo, Daemon, Store]]:
    caddy.reset()
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
    yield repo, daemon, store
    daemon.stop()
    provider.close()
    store.close()


def test_a_pushed_expose_is_served_over_https_and_its_certificate_recorded(
    homelab: tuple[Repo, Daemon, Store], engine: docker.DockerClient, caddy: CaddyServer
) -> None:
    repo, daemon, _ = homelab
    events = daemon.bus.subscribe()
    (repo.work / "domains").mkdir()
    sha = repo.push("expose web", {"packages/web.yaml": EXPOSED, "domains/nebula.lan.yaml": DOMAIN})
    started = time.monotonic()
    daemon.request_sync("hook")
    response = https_get(caddy, "web.nebula.lan", caddy.internal_root(), timeout=20)
    took = time.monotonic() - started
    assert "nebula-test-ok" in response.text
    assert took < 5, f"{took:.1f}s from push to HTTPS"
    eventually(lambda: daemon.syncs(1)[0].commit == sha)
    assert daemon.syncs(1)[0].status == "succeeded"
    assert running(engine) == {"web-web"}  # the container was left alone
    kinds = []
    for event in events:
        kinds.append(event.kind)
        if event.kind == "proxy_changed":
            ids = {c["id"] for c in event.data["changes"]}
            assert ids == {"nebula-web-web.nebula.lan", "nebula-tls-internal"}
            break

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
