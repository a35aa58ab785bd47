"""`nebula dns plan|apply|import`, `nebula domains list`, nebulad's DNS step and its API routes,
against a real PowerDNS (answers checked with DNS queries) and a real state database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import dns.message
import dns.query
import httpx
import pytest
import yaml
from starlette.testclient import TestClient
from typer.testing import CliRunner

import servers
from nebula.cli.app import app
from nebula.daemon.api import create_app
from nebula.daemon.core import Daemon
from nebula.daemon.dns import DnsKeeper
from nebula.daemon.events import EventBus
from nebula.engine import pipeline
from nebula.engine.load import load_desired
from nebula.kinds.base import Desired, World
from nebula.store import Store, audit
from nebula.store.dns import DnsStore

runner = CliRunner()


@pytest.fixture
def lab(powerdns: servers.PowerDnsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lab:
    monkeypatch.setenv("NEBULA_SECRET_PDNS_KEY", powerdns.api_key)
    monkeypatch.setenv("NEBULA_DATABASE_URL", f"sqlite:///{tmp_path}/nebula.db")
    return Lab(powerdns, tmp_path / "repo")


class Lab:
    def __init__(self, server: servers.PowerDnsServer, root: Path) -> None:
        self.server = server
        self.root = root
        self.zone = f"c{uuid.uuid4().hex[:8]}.test"
        root.mkdir()
        (root / "nebula.yaml").write_text("{}\n")
        (root / "domains").mkdir()

    def write(self, records: list[dict[str, object]]) -> None:
        doc = {"zone": self.zone, "provider": "powerdns",
               "account": {"api_url": self.server.api_url, "token": "${secret:PDNS_KEY}"},
               "ttl": 300, "records": records}  # fmt: skip
        (self.root / "domains" / f"{self.zone}.yaml").write_text(yaml.safe_dump(doc))

    def answer(self, name: str, kind: str = "A") -> list[str]:
        query = dns.message.make_query(f"{name}.{self.zone}.", kind)
        response = dns.query.udp(query, "127.0.0.1", port=self.server.dns_port, timeout=3)
        return sorted(r.to_text() for rrset in response.answer for r in rrset)

    def nebula(self, *args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        output = result.stdout + (result.stderr if result.stderr_bytes is not None else "")
        assert result.exit_code == code, output
        return output


def test_plan_apply_and_domains_list(lab: Lab) -> None:
    lab.write([{"name": "www", "type": "A", "value": "192.0.2.1"},
               {"name": "@", "type": "TXT", "value": "hello"}])  # fmt: skip
    out = lab.nebula("dns", "plan", str(lab.root))
    assert f"+ create   www.{lab.zone}" in out
    assert "zone to create; 2 to create" in out
    assert lab.answer("www") == []  # plan changed nothing

    out = lab.nebula("dns", "apply", "--yes", str(lab.root))
    assert "✓ applied" in out
    assert lab.answer("www") == ["192.0.2.1"]
    assert "0 to create, 0 to update, 0 to delete, 2 unchanged" in lab.nebula(
        "dns", "plan", str(lab.root)
    )

    listed = json.loads(lab.nebula("domains", "list", "-o", "json"))
    [row] = [d for d in listed if d["name"] == lab.zone]
    assert row["provider"] == "powerdns" and row["records"] == 2
    assert row["last_error"] is None


def test_apply_asks_before_deleting_and_json_reports_each_zone(lab: Lab) -> None:
    lab.write([{"name": "a", "type": "A", "value": "192.0.2.1"},
               {"name": "b", "type": "A", "value": "192.0.2.2"}])  # fmt: skip
    lab.nebula("dns", "apply", "--yes", str(lab.root))
    lab.write([{"name": "a", "type": "A", "value": "192.0.2.1"}])
    out = lab.nebula("dns", "apply", str(lab.root), code=1)
    assert "deletes 1 record set(s); rerun with --yes" in out
    assert lab.answer("b") == ["192.0.2.2"]
    report = json.loads(lab.nebula("dns", "apply", "--yes", "-o", "json", str(lab.root)))
    [zone] = report["zones"]
    assert report["ok"] and zone["applied"]
    changes = zone["plan"]["changes"]
    assert [c["action"] for c in changes if c["action"] != "foreign"] == ["delete"]
    assert [c["type"] for c in changes if c["action"] == "foreign"] == ["SOA"]
    assert lab.answer("b") == [] and lab.answer("a") == ["192.0.2.1"]


def test_a_bad_token_fails_with_a_clear_message_and_exit_code_1(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab.write([{"name": "a", "type": "A", "value": "192.0.2.1"}])
    monkeypatch.setenv("NEBULA_SECRET_PDNS_KEY", "wrong-key-123")
    out = lab.nebula("dns", "apply", "--yes", str(lab.root), code=1)
    assert "PowerDNS refused the API key" in out and "wrong-key-123" not in out
    monkeypatch.delenv("NEBULA_SECRET_PDNS_KEY")
    out = lab.nebula("dns", "plan", str(lab.root), code=1)
    assert "secret 'PDNS_KEY' is not available" in out


def test_invalid_domains_are_exit_code_2_with_file_and_line(lab: Lab) -> None:
    lab.write([{"name": "www", "type": "A", "value": "not-an-ip"}])
    out = lab.nebula("dns", "plan", str(lab.root), code=2)
    assert f"domains/{lab.zone}.yaml:" in out and "not an IPv4 address" in out


def test_import_writes_a_zone_that_adopts_its_records(lab: Lab, tmp_path: Path) -> None:
    api = httpx.Client(base_url=f"{lab.server.api_url}/api/v1/servers/localhost",
                       headers={"X-API-Key": lab.server.api_key})  # fmt: skip
    api.post("/zones", json={"name": f"{lab.zone}.", "kind": "Native", "nameservers": [],
                             "rrsets": [{"name": f"www.{lab.zone}.", "type": "A", "ttl": 120,
                                         "records": [{"content": "192.0.2.8", "disabled": False}]},
                                        {"name": f"{lab.zone}.", "type": "MX", "ttl": 120,
                                         "records": [{"content": f"10 mail.{lab.zone}.", "disabled": False}]}]},
             ).raise_for_status()  # fmt: skip
    out = lab.nebula("dns", "import", lab.zone, str(lab.root), "--provider", "powerdns",
                     "--api-url", lab.server.api_url, "--token-secret", "PDNS_KEY", "--write")  # fmt: skip
    assert "wrote" in out
    written = yaml.safe_load((lab.root / "domains" / f"{lab.zone}.yaml").read_text())
    assert written["account"]["token"] == "${secret:PDNS_KEY}"
    assert {"name": "@", "type": "MX", "value": "10 mail"} in written["records"]
    plan = json.loads(lab.nebula("dns", "plan", "-o", "json", str(lab.root)))
    changes = plan["zones"][0]["plan"]["changes"]
    assert {(c["action"], c["reason"][:5]) for c in changes if c["type"] != "SOA"} == {
        ("update", "adopt")
    }
    lab.nebula("dns", "apply", "--yes", str(lab.root))
    assert lab.answer("www") == ["192.0.2.8"]
    assert "2 unchanged" in lab.nebula("dns", "plan", str(lab.root))


class _DnsControl:
    """The daemon's own DNS methods over a store (the rest of `Daemon` is not needed here)."""

    domains = Daemon.domains
    domain_records = Daemon.domain_records

    def __init__(self, store: Store) -> None:
        self.store = store


def test_nebulad_applies_the_zones_of_a_commit_and_serves_them(lab: Lab, tmp_path: Path) -> None:
    lab.write([{"name": "svc", "type": "A", "value": "192.0.2.30"}])
    store = Store(f"sqlite:///{tmp_path}/daemon.db")
    try:
        bus = EventBus()
        events = bus.subscribe(heartbeat=60.0)
        keeper = DnsKeeper(bus)

        def sync(desired: Desired) -> list[str]:
            """The DNS step of a nebulad sync: planned and applied only when due."""
            if not keeper.due(desired.zones):
                return []
            [done] = pipeline.run(desired, World(lambda: store), only=["dns"]).applied or ()
            keeper.applied(desired.zones, done)
            return list(done.errors)

        desired = load_desired(lab.root)
        assert sync(desired) == []
        assert lab.answer("svc") == ["192.0.2.30"]
        event = next(e for e in events if e.kind == "dns_changed")
        assert event.data["zone"] == lab.zone
        assert sync(desired) == []  # unchanged and not due: no request at all

        token = "t" * 32
        client = TestClient(create_app(_DnsControl(store), token=token, tcp=True))  # type: ignore[arg-type]
        headers = {"Authorization": f"Bearer {token}"}
        listed = client.get("/api/v1/resources/domains", headers=headers).json()["domains"]
        [row] = [d for d in listed if d["name"] == lab.zone]
        records = client.get(f"/api/v1/resources/domains/{row['id']}/dns", headers=headers)
        assert records.status_code == 200
        svc = [r for r in records.json()["records"] if r["name"] == f"svc.{lab.zone}"]
        assert svc == [{**svc[0], "type": "A", "content": "192.0.2.30", "owned": True}]
        by_name = client.get(f"/api/v1/resources/domains/{lab.zone}/dns", headers=headers)
        assert by_name.json()["domain"]["id"] == row["id"]
        missing = client.get("/api/v1/resources/domains/nope.test/dns", headers=headers)
        assert missing.status_code == 404 and "no domain" in missing.json()["error"]

        (lab.root / "domains" / f"{lab.zone}.yaml").write_text(
            (lab.root / "domains" / f"{lab.zone}.yaml")
            .read_text()
            .replace(lab.server.api_url, f"http://127.0.0.1:{servers._free_port()}")
        )
        errors = sync(load_desired(lab.root))
        assert errors and "unreachable" in errors[0]
        assert lab.answer("svc") == ["192.0.2.30"]  # nothing removed
        listed = client.get("/api/v1/resources/domains", headers=headers).json()["domains"]
        [row] = [d for d in listed if d["name"] == lab.zone]
        assert "unreachable" in row["last_error"] and row["records"] == 1  # last known kept
    finally:
        store.close()


def test_the_token_comes_from_the_vault_when_the_environment_has_none(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEBULA_SECRET_PDNS_KEY")
    monkeypatch.delenv("NEBULA_MASTER_KEY", raising=False)
    monkeypatch.setenv("NEBULA_MASTER_KEY_FILE", str(tmp_path / "keys" / "master.key"))
    lab.write([{"name": "v", "type": "A", "value": "192.0.2.44"}])
    out = lab.nebula("dns", "plan", str(lab.root), code=1)
    assert "secret 'PDNS_KEY' is not available" in out and "nebula secrets set PDNS_KEY" in out
    lab.nebula("secrets", "init")
    result = runner.invoke(app, ["secrets", "set", "PDNS_KEY"], input=lab.server.api_key + "\n")
    assert result.exit_code == 0, result.output
    out = lab.nebula("dns", "apply", "--yes", str(lab.root))
    assert "✓ applied" in out and lab.server.api_key not in out
    assert lab.answer("v") == ["192.0.2.44"]


def test_the_console_script_applies_records_and_asks_before_deleting(lab: Lab) -> None:
    """`nebula dns ...` as run from a shell: one path whatever the command line."""
    lab.write([{"name": "one", "type": "A", "value": "192.0.2.50"}])

    def nebula(*args: str) -> subprocess.CompletedProcess[str]:
        script = "from nebula.cli.entry import main; main()"
        return subprocess.run([sys.executable, "-c", script, "dns", *args, str(lab.root)],
                              check=False, capture_output=True, text=True)  # fmt: skip

    applied = nebula("apply", "--yes")
    assert applied.returncode == 0 and "✓ applied" in applied.stdout, applied.stderr
    assert lab.answer("one") == ["192.0.2.50"]
    assert "1 unchanged" in nebula("apply", "--yes").stdout
    lab.write([{"name": "two", "type": "A", "value": "192.0.2.51"}])
    refused = nebula("apply")  # a deletion, no terminal to ask on
    assert refused.returncode == 1 and "rerun with --yes" in refused.stderr, refused.stderr
    assert lab.answer("one") == ["192.0.2.50"] and lab.answer("two") == []
    lab.write([{"name": "bad name!", "type": "A", "value": "192.0.2.53"}])
    invalid = nebula("plan")
    assert invalid.returncode == 2 and "records[0].name" in invalid.stderr, invalid.stderr
    with Store(os.environ["NEBULA_DATABASE_URL"]) as store:
        entries = audit.entries(store)
        assert [(e.action, e.target) for e in entries] == [("dns.apply", lab.zone)]
        assert audit.verify(store).ok
        [domain] = DnsStore(store).domains()
        names = {(r.name, r.type) for r in DnsStore(store).records(domain.id)}
        assert (f"one.{lab.zone}", "A") in names
