"""The one pipeline over every kind: DNS in `nebula plan|apply`, the prune guard over DNS records
in the CLI and in nebulad, and a provider added through the registry alone."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Self

import dns.message
import dns.query
import pytest
import yaml
from typer.testing import CliRunner

import servers
from nebula.cli.app import app
from nebula.daemon.config import DaemonConfig
from nebula.daemon.core import Daemon
from nebula.daemon.dns import DnsKeeper
from nebula.daemon.events import EventBus
from nebula.daemon.gitsync import GitSource
from nebula.engine import pipeline
from nebula.engine.load import load_desired
from nebula.errors import ConfigError, ProviderError
from nebula.kinds.base import World
from nebula.kinds.dns.types import (
    ChangeFailure,
    DnsAction,
    ObservedRRSet,
    ZoneAccount,
    ZonePlan,
    ZoneState,
)
from nebula.providers import registry
from nebula.providers.dns.base import Capabilities
from nebula.providers.docker import DockerProvider
from nebula.store import Store

runner = CliRunner()
RECORDS: list[dict[str, object]] = [
    {"name": f"h{i}", "type": "A", "value": f"192.0.2.{i}"} for i in range(1, 5)
]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada",
    "GIT_AUTHOR_EMAIL": "ada@example.test",
    "GIT_COMMITTER_NAME": "Ada",
    "GIT_COMMITTER_EMAIL": "ada@example.test",
}


class Homelab:
    """A config repo with one PowerDNS zone, planned against a real Docker Engine too."""

    def __init__(self, server: servers.PowerDnsServer, root: Path, docker_host: str) -> None:
        self.server = server
        self.root = root
        self.zone = f"p{uuid.uuid4().hex[:8]}.test"
        root.mkdir(parents=True, exist_ok=True)
        (root / "nebula.yaml").write_text(yaml.safe_dump({"docker": {"host": docker_host}}))
        (root / "domains").mkdir(exist_ok=True)

    def write(self, records: list[dict[str, object]]) -> None:
        doc = {"zone": self.zone, "provider": "powerdns",
               "account": {"api_url": self.server.api_url, "token": "${secret:PDNS_KEY}"},
               "ttl": 300, "records": records}  # fmt: skip
        (self.root / "domains" / f"{self.zone}.yaml").write_text(yaml.safe_dump(doc))

    def answer(self, name: str) -> list[str]:
        query = dns.message.make_query(f"{name}.{self.zone}.", "A")
        response = dns.query.udp(query, "127.0.0.1", port=self.server.dns_port, timeout=3)
        return sorted(r.to_text() for rrset in response.answer for r in rrset)

    def nebula(self, *args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        output = result.stdout + (result.stderr if result.stderr_bytes is not None else "")
        assert result.exit_code == code, output
        return output


@pytest.fixture
def lab(
    powerdns: servers.PowerDnsServer,
    docker_host: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Homelab:
    monkeypatch.setenv("NEBULA_SECRET_PDNS_KEY", powerdns.api_key)
    monkeypatch.setenv("NEBULA_DATABASE_URL", f"sqlite:///{tmp_path}/nebula.db")
    return Homelab(powerdns, tmp_path / "repo", docker_host)


def test_plan_shows_dns_changes_and_apply_carries_them_out(lab: Homelab) -> None:
    lab.write(RECORDS)
    out = lab.nebula("plan", str(lab.root))
    assert f"+ create   h1.{lab.zone}" in out and "zone to create; 4 to create" in out
    assert "Plan: 4 to create, 0 to update, 0 to delete" in out

    data = json.loads(lab.nebula("plan", str(lab.root), "-o", "json"))
    assert data["summary"]["create"] == 0  # the packages' own: no container to create
    [zone] = data["dns"]["zones"]
    assert zone["zone"] == lab.zone and zone["plan"]["create_zone"]
    created = {c["name"] for c in zone["plan"]["changes"] if c["action"] == "create"}
    assert created == {f"h{i}.{lab.zone}" for i in range(1, 5)}
    assert "dns" not in json.loads(
        lab.nebula("plan", str(lab.root), "-o", "json", "--only", "packages")
    )
    assert lab.answer("h1") == []  # planning changed nothing

    lab.nebula("apply", str(lab.root), "--yes")
    assert lab.answer("h1") == ["192.0.2.1"]
    assert "No changes." in lab.nebula("plan", str(lab.root))
    out = lab.nebula("plan", str(lab.root), "--only", "nothing", code=2)
    assert "--only nothing: not a kind; one of packages, swarm, routes, dns" in out


def test_the_prune_guard_covers_dns_records_in_the_cli(lab: Homelab) -> None:
    lab.write(RECORDS)
    lab.nebula("apply", str(lab.root), "--yes")
    lab.write(RECORDS[:1])  # 3 of the 4 record sets Nebula manages go
    data = json.loads(lab.nebula("plan", str(lab.root), "-o", "json"))
    assert data["unsafe"] == [
        "dns: the plan removes 3 of the 4 record sets Nebula manages (more than half)"
    ]
    out = lab.nebula("apply", str(lab.root), code=1)  # no terminal to ask on
    assert "the plan deletes 3 record set(s); rerun with --yes to allow it" in out
    assert "prune guard: dns: the plan removes 3 of the 4 record sets" in out
    assert lab.answer("h2") == ["192.0.2.2"]
    lab.nebula("apply", str(lab.root), "--yes")
    assert lab.answer("h2") == [] and lab.answer("h1") == ["192.0.2.1"]


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, check=True,
                   capture_output=True, timeout=60)  # fmt: skip


def _eventually(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_nebulad_holds_a_commit_that_deletes_most_records_until_approved(
    lab: Homelab, docker_host: str, tmp_path: Path
) -> None:
    bare = tmp_path / "homelab.git"
    _git("init", "-q", "--bare", "-b", "main", str(bare), cwd=tmp_path)
    _git("clone", "-q", str(bare), str(tmp_path / "work"), cwd=tmp_path)
    lab = Homelab(lab.server, tmp_path / "work", docker_host)

    def push(records: list[dict[str, object]], message: str) -> None:
        lab.write(records)
        _git("add", "-A", cwd=lab.root)
        _git("commit", "-qm", message, cwd=lab.root)
        _git("push", "-q", "origin", "HEAD:main", cwd=lab.root)

    push(RECORDS, "four records")
    store = Store(f"sqlite:///{tmp_path}/daemon.db")
    provider = DockerProvider(docker_host)
    config = DaemonConfig(
        source=str(bare), data_dir=tmp_path / "data", poll_interval=3600, drift_interval=3600
    )
    daemon = Daemon(config, store, provider, GitSource(str(bare), tmp_path / "data" / "repo"))
    daemon.start()
    try:
        _eventually(lambda: lab.answer("h4") == ["192.0.2.4"])
        push(RECORDS[:1], "keep one record")
        daemon.request_sync("hook")
        _eventually(lambda: daemon.syncs(1)[0].status == "held")
        held = daemon.syncs(1)[0]
        assert held.summary["delete"] == 3
        assert lab.answer("h2") == ["192.0.2.2"]  # nothing deleted while held
        daemon.approve(held.id)
        _eventually(lambda: lab.answer("h2") == [])
        assert lab.answer("h1") == ["192.0.2.1"]
        _eventually(lambda: daemon.syncs(1)[0].status == "succeeded")
    finally:
        daemon.stop()
        provider.close()
        store.close()


class MemoryDns:
    """A DNS provider that keeps zones in this process: added to the registry, nothing else."""

    name: ClassVar[str] = "memory"
    capabilities: ClassVar[Capabilities] = Capabilities(
        record_types=frozenset({"A"}), proxied=False
    )
    zones: ClassVar[dict[str, dict[tuple[str, str], ObservedRRSet]]] = {}

    @classmethod
    def open(cls, account: ZoneAccount, token: str) -> Self:
        assert token == "memory-token"
        return cls()

    def read(self, zone: str) -> ZoneState:
        if zone not in self.zones:
            return ZoneState(zone, exists=False)
        return ZoneState(zone, True, tuple(sorted(self.zones[zone].values(), key=lambda r: r.key)))

    def apply(self, plan: ZonePlan) -> list[ChangeFailure]:
        held = self.zones.setdefault(plan.zone, {})
        for change in plan.pending:
            if change.action is DnsAction.DELETE:
                held.pop((change.name, change.type))
            elif change.desired is not None:
                want = change.desired
                held[want.key] = ObservedRRSet(
                    want.name, want.type, want.ttl, want.values, owned=True
                )
        return []

    def close(self) -> None:
        pass


def test_a_provider_added_through_the_registry_alone_is_validated_planned_and_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry.PROVIDERS["dns"], "memory", f"{__name__}:MemoryDns")
    monkeypatch.setattr(MemoryDns, "zones", {})
    monkeypatch.setenv("NEBULA_SECRET_MEMORY_TOKEN", "memory-token")
    root = tmp_path / "repo"
    (root / "domains").mkdir(parents=True)
    (root / "nebula.yaml").write_text("{}\n")

    def write(records: list[dict[str, Any]]) -> None:
        doc = {"zone": "mem.test", "provider": "memory",
               "account": {"token": "${secret:MEMORY_TOKEN}"}, "records": records}  # fmt: skip
        (root / "domains" / "mem.test.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))

    write([{"name": "www", "type": "A", "value": "192.0.2.7"}])
    store = Store(f"sqlite:///{tmp_path}/nebula.db")
    try:
        outcome = pipeline.run(load_desired(root), World(lambda: store), only=["dns"])
        assert outcome.ok and outcome.plan.counts()["create"] == 1
        assert MemoryDns.zones["mem.test"][("www.mem.test", "A")].values == ("192.0.2.7",)
        again = pipeline.plan(load_desired(root), World(lambda: store), ["dns"])
        assert not again.has_changes
    finally:
        store.close()

    # What the provider declares it cannot do is refused at the file and line asking for it.
    write([{"name": "www", "type": "A", "value": "192.0.2.7"},
           {"name": "@", "type": "TXT", "value": "hello"}])  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        load_desired(root)
    assert [str(i) for i in caught.value.issues] == [
        "domains/mem.test.yaml:10:3: records[1].type: memory cannot serve TXT records"
    ]
    monkeypatch.delitem(registry.PROVIDERS["dns"], "memory")
    with pytest.raises(ConfigError, match="unknown DNS provider 'memory': one of powerdns"):
        load_desired(root)


def test_nebulad_retries_a_zone_at_the_next_sync_only_when_its_failure_may_pass(
    powerdns: servers.PowerDnsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "repo"
    (root / "domains").mkdir(parents=True)
    (root / "nebula.yaml").write_text("{}\n")
    store = Store(f"sqlite:///{tmp_path}/nebula.db")
    keeper = DnsKeeper(EventBus())

    def sync_with(api_url: str, key: str) -> bool:
        """One DNS step of a nebulad sync; whether the next sync plans the zones again."""
        monkeypatch.setenv("NEBULA_SECRET_PDNS_KEY", key)
        doc = {"zone": "retry.test", "provider": "powerdns",
               "account": {"api_url": api_url, "token": "${secret:PDNS_KEY}"},
               "records": [{"name": "www", "type": "A", "value": "192.0.2.9"}]}  # fmt: skip
        (root / "domains" / "retry.test.yaml").write_text(yaml.safe_dump(doc))
        desired = load_desired(root)
        assert keeper.due(desired.zones)
        [done] = pipeline.run(desired, World(lambda: store), only=["dns"]).applied or ()
        keeper.applied(desired.zones, done)
        assert done.errors
        return keeper.due(desired.zones)

    try:
        unreachable = f"http://127.0.0.1:{servers._free_port()}"
        assert sync_with(unreachable, powerdns.api_key)  # may pass by itself: tried again
        assert not sync_with(powerdns.api_url, "wrong-key")  # refused: waits for a change
        keeper.forget()  # what nebulad does when a secret changes
        assert keeper.due(load_desired(root).zones)
    finally:
        store.close()


class FlakyDns(MemoryDns):
    """Its first read fails, as a provider that is briefly unreachable."""

    name: ClassVar[str] = "flaky"
    reads: ClassVar[list[str]] = []

    def read(self, zone: str) -> ZoneState:
        self.reads.append(zone)
        if len(self.reads) == 1:
            raise ProviderError(f"zone {zone}", "the API is unreachable")
        return super().read(zone)


def test_a_zone_that_could_not_be_planned_is_not_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry.PROVIDERS["dns"], "flaky", f"{__name__}:FlakyDns")
    monkeypatch.setattr(MemoryDns, "zones", {"flaky.test": {}})
    monkeypatch.setattr(FlakyDns, "reads", [])
    monkeypatch.setenv("NEBULA_SECRET_MEMORY_TOKEN", "memory-token")
    root = tmp_path / "repo"
    (root / "domains").mkdir(parents=True)
    (root / "nebula.yaml").write_text("{}\n")
    doc = {"zone": "flaky.test", "provider": "flaky", "account": {"token": "${secret:MEMORY_TOKEN}"},
           "records": [{"name": "www", "type": "A", "value": "192.0.2.7"}]}  # fmt: skip
    (root / "domains" / "flaky.test.yaml").write_text(yaml.safe_dump(doc))
    store = Store(f"sqlite:///{tmp_path}/nebula.db")
    try:
        outcome = pipeline.run(load_desired(root), World(lambda: store), only=["dns"])
    finally:
        store.close()
    assert outcome.plan.problems == ["zone flaky.test: the API is unreachable"]
    assert outcome.errors == ["dns: zone flaky.test: the API is unreachable"]
    assert outcome.of("dns").temporary
    assert FlakyDns.reads == ["flaky.test"]  # read once, at plan time: not again to apply
    assert MemoryDns.zones["flaky.test"] == {}  # nothing written
