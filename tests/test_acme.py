"""End to end: an app exposed at app.example.test answers over HTTPS through Caddy with a
certificate issued by Pebble (Let's Encrypt's test CA) after a real HTTP-01 challenge, and the
name resolves through PowerDNS to the node. Docker, Caddy, Pebble and PowerDNS are all real.

Pebble resolves the name it validates through the PowerDNS instance (`-dnsserver`), so the
challenge only succeeds once Nebula has published the A record.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.resolver
import pytest

import servers
from nebula.store import Store
from nebula.store.dns import DnsStore
from servers import CaddyServer, PebbleServer, PowerDnsServer
from test_proxy import https_get, nebula


@pytest.fixture(scope="session")
def pebble(caddy: CaddyServer, powerdns: PowerDnsServer) -> Iterator[PebbleServer]:
    with servers.pebble_server(caddy.http_port, caddy.https_port, powerdns.dns_address) as server:
        yield server


@dataclass(frozen=True)
class Servers:
    caddy: CaddyServer
    pebble: PebbleServer
    powerdns: PowerDnsServer


@pytest.fixture
def lab(
    caddy: CaddyServer,
    pebble: PebbleServer,
    powerdns: PowerDnsServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Servers:
    """The three servers, Caddy back at its bootstrap config, PowerDNS's key as the secret."""
    caddy.reset()
    monkeypatch.setenv("NEBULA_SECRET_PDNS_KEY", powerdns.api_key)
    return Servers(caddy, pebble, powerdns)


def write_lab(root: Path, docker_host: str, lab: Servers, image: str) -> Path:
    caddy, pebble, powerdns = lab.caddy, lab.pebble, lab.powerdns
    (root / "packages").mkdir(parents=True)
    (root / "domains").mkdir()
    config = {
        "docker": {"host": docker_host},
        "nodes": [{"name": "local", "address": "127.0.0.1"}],
        "proxy": {
            "admin": caddy.admin,
            "listen": "127.0.0.1",
            "http_port": caddy.http_port,
            "https_port": caddy.https_port,
        },
    }
    (root / "nebula.yaml").write_text(json.dumps(config, indent=2))
    domain = {
        "zone": "example.test",
        "provider": "powerdns",
        "account": {"api_url": powerdns.api_url, "token": "${secret:PDNS_KEY}"},
        "ttl": 60,
        "records": [],
        "tls": {
            "issuer": "acme",
            "acme": {
                "directory": pebble.directory,
                "email": "admin@example.test",
                "trusted_roots": [str(pebble.ca_pem)],
            },
        },
    }
    (root / "domains" / "example.test.yaml").write_text(json.dumps(domain, indent=2))
    (root / "packages" / "app.yaml").write_text(
        textwrap.dedent(
            f"""\
            compose:
              services:
                web:
                  image: {image}
                  init: true
            expose:
              - {{host: app.example.test, port: 8080}}
            """
        )
    )
    return root


def test_app_is_served_over_https_with_a_pebble_certificate_and_resolves_through_powerdns(
    tmp_path: Path, docker_host: str, test_image: str, lab: Servers
) -> None:
    caddy, pebble, powerdns = lab.caddy, lab.pebble, lab.powerdns
    repo = write_lab(tmp_path / "lab", docker_host, lab, test_image)
    database = f"sqlite:///{tmp_path}/nebula.db"
    nebula("dns", "apply", str(repo), "--database-url", database)
    out = nebula("apply", str(repo), "--yes", "--database-url", database)
    assert "proxy nebula-app-app.example.test: https://app.example.test →" in out
    assert f"certificates for app.example.test from {pebble.directory}" in out

    # The name resolves through PowerDNS to the node's address.
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = powerdns.dns_port
    assert [a.to_text() for a in resolver.resolve("app.example.test", "A")] == ["127.0.0.1"]

    # HTTPS through Caddy, the chain verified against Pebble's issuing root only.
    response = https_get(caddy, "app.example.test", pebble.issuing_roots(), timeout=30)
    assert response.status_code == 200
    assert "nebula-test-ok" in response.text

    # nebula certs reads the served certificate and records the zone's status.
    data = json.loads(
        nebula("certs", str(repo), "--output", "json", "--database-url", database, "--wait", "10")
    )
    (cert,) = data["certificates"]
    assert cert["host"] == "app.example.test"
    assert cert["status"] == "active"
    assert cert["issuer"].startswith("Pebble Intermediate CA")
    assert cert["expiring"] is False
    with Store(database) as store:
        domain = DnsStore(store).domain("example.test")
    assert domain is not None
    assert domain.ssl_status == "active"
    assert domain.ssl_expires_at is not None
    assert domain.ssl_expires_at.isoformat() == cert["expires_at"]
    assert os.environ["NEBULA_SECRET_PDNS_KEY"] not in out
