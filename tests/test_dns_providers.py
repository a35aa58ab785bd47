"""One behavioural suite for every DNS provider: the same tests run against a real PowerDNS
(answers checked with real DNS queries) and against Cloudflare's API through the official SDK
(a local double of the v4 API, see cloudflare_double.py).

Each test works in a zone of its own, written as a config repo (`domains/ZONE.yaml`) and synced
through the engine, as `nebula dns apply` does.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import httpx
import pytest
import yaml

import servers
from cloudflare_double import CloudflareDouble, cloudflare_double
from nebula.kinds.dns.apply import ZoneOutcome, apply_zones, open_dns_provider, plan_zones
from nebula.kinds.dns.desired import desired_zones
from nebula.kinds.dns.types import DesiredZone, DnsAction
from nebula.providers.dns.base import DnsProvider
from nebula.spec.repo import load_repo

TOKEN_SECRET = "DNS_TOKEN"


@dataclass
class Backend:
    """One provider under test, and a way to see its zone from outside Nebula."""

    name: str
    account: dict[str, Any]
    token: str
    new_zone: Callable[[str], None]
    hand_add: Callable[[str, str, str, str], None]  # zone, name, type, value
    answers: Callable[[str, str, str], list[str]]  # zone, name, type → values now served
    factory: Callable[[DesiredZone, str], DnsProvider]


@pytest.fixture(scope="module")
def cloudflare() -> Iterator[CloudflareDouble]:
    with cloudflare_double() as double:
        yield double


@pytest.fixture(params=["powerdns", "cloudflare"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "powerdns":
        return _powerdns(request.getfixturevalue("powerdns"))
    return _cloudflare(request.getfixturevalue("cloudflare"))


def _powerdns(server: servers.PowerDnsServer) -> Backend:
    api = httpx.Client(
        base_url=f"{server.api_url}/api/v1/servers/localhost",
        headers={"X-API-Key": server.api_key},
    )

    def hand_add(zone: str, name: str, kind: str, value: str) -> None:
        rrset = {"name": f"{name}.", "type": kind, "ttl": 300, "changetype": "REPLACE",
                 "records": [{"content": value, "disabled": False}]}  # fmt: skip
        api.patch(f"/zones/{zone}.", json={"rrsets": [rrset]}).raise_for_status()

    def answers(zone: str, name: str, kind: str) -> list[str]:
        query = dns.message.make_query(f"{name}.", kind)
        response = dns.query.udp(query, "127.0.0.1", port=server.dns_port, timeout=3)
        rdtype = dns.rdatatype.from_text(kind)
        found = [
            rdata.to_text()
            for rrset in response.answer
            if rrset.rdtype == rdtype
            for rdata in rrset
        ]
        return sorted(found)

    return Backend(
        name="powerdns",
        account={"api_url": server.api_url, "token": f"${{secret:{TOKEN_SECRET}}}"},
        token=server.api_key,
        new_zone=lambda zone: None,  # Nebula creates a PowerDNS zone that is missing
        hand_add=hand_add,
        answers=answers,
        factory=open_dns_provider,
    )


def _cloudflare(double: CloudflareDouble) -> Backend:
    from nebula.providers.dns.cloudflare import CloudflareProvider, from_record

    def hand_add(zone: str, name: str, kind: str, value: str) -> None:
        double.add_record(zone, {"name": name, "type": kind, "content": value, "ttl": 300})

    def answers(zone: str, name: str, kind: str) -> list[str]:
        return sorted(
            _presentation(kind, from_record(r))
            for r in double.records(zone)
            if r["name"] == name and r["type"] == kind
        )

    def factory(zone: DesiredZone, token: str) -> DnsProvider:
        return CloudflareProvider(token, double.url, page_size=100)

    return Backend(
        name="cloudflare",
        account={"api_url": double.url, "token": f"${{secret:{TOKEN_SECRET}}}"},
        token=double.token,
        new_zone=lambda zone: double.add_zone(zone) and None,
        hand_add=hand_add,
        answers=answers,
        factory=factory,
    )


def _presentation(kind: str, value: str) -> str:
    """Canonical data as a DNS answer shows it (absolute names end in a dot, TXT quoted)."""
    if kind in ("CNAME", "MX", "SRV"):
        return value + "."
    if kind == "TXT":
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


class Zone:
    """A zone of a config repo in a temp dir, synced through the engine."""

    def __init__(self, backend: Backend, root: Path) -> None:
        self.backend = backend
        self.root = root
        self.name = f"z{uuid.uuid4().hex[:10]}.test"
        backend.new_zone(self.name)
        (root / "nebula.yaml").write_text("{}\n")
        (root / "domains").mkdir()
        self.token = backend.token

    def fqdn(self, name: str) -> str:
        return self.name if name == "@" else f"{name}.{self.name}"

    def write(self, records: list[dict[str, Any]], **extra: Any) -> None:
        document = {"zone": self.name, "provider": self.backend.name,
                    "account": self.backend.account, "ttl": 300, "records": records, **extra}  # fmt: skip
        (self.root / "domains" / f"{self.name}.yaml").write_text(yaml.safe_dump(document))

    def desired(self) -> list[DesiredZone]:
        return desired_zones(load_repo(self.root))

    def apply(self) -> ZoneOutcome:
        [outcome] = apply_zones(self.desired(), lambda _: self.token, self.backend.factory)
        return outcome

    def plan(self) -> ZoneOutcome:
        [outcome] = plan_zones(self.desired(), lambda _: self.token, self.backend.factory)
        return outcome

    def answers(self, name: str, kind: str) -> list[str]:
        return self.backend.answers(self.name, self.fqdn(name), kind)


@pytest.fixture
def zone(backend: Backend, tmp_path: Path) -> Zone:
    return Zone(backend, tmp_path)


EVERY_TYPE = [
    {"name": "www", "type": "A", "value": ["192.0.2.10", "192.0.2.11"]},
    {"name": "www", "type": "AAAA", "value": "2001:db8::10"},
    {"name": "blog", "type": "CNAME", "value": "www"},
    {"name": "@", "type": "TXT", "value": 'v=spf1 -all "quoted"'},
    {"name": "@", "type": "MX", "value": "10 mail.example.net."},
    {"name": "_sip._tcp", "type": "SRV", "value": "10 5 5060 sip"},
    {"name": "@", "type": "CAA", "value": '0 issue "letsencrypt.org"'},
]


def test_every_record_type_is_published_and_a_second_sync_changes_nothing(zone: Zone) -> None:
    zone.write(EVERY_TYPE)
    first = zone.apply()
    assert first.ok, first.problems()
    assert zone.answers("www", "A") == ["192.0.2.10", "192.0.2.11"]
    assert zone.answers("www", "AAAA") == ["2001:db8::10"]
    assert zone.answers("blog", "CNAME") == [f"www.{zone.name}."]
    assert zone.answers("@", "TXT") == ['"v=spf1 -all \\"quoted\\""']
    assert zone.answers("@", "MX") == ["10 mail.example.net."]
    assert zone.answers("_sip._tcp", "SRV") == [f"10 5 5060 sip.{zone.name}."]
    assert zone.answers("@", "CAA") == ['0 issue "letsencrypt.org"']

    again = zone.plan()
    assert again.plan is not None and not again.plan.has_changes, again.plan
    assert again.plan.counts()["noop"] == len(EVERY_TYPE)


def test_a_record_added_by_hand_survives_and_removing_one_from_yaml_deletes_only_it(
    zone: Zone,
) -> None:
    zone.write([{"name": "a", "type": "A", "value": "192.0.2.1"},
                {"name": "b", "type": "A", "value": "192.0.2.2"}])  # fmt: skip
    assert zone.apply().ok
    zone.backend.hand_add(zone.name, zone.fqdn("manual"), "A", "198.51.100.7")

    plan = zone.plan().plan
    assert plan is not None
    foreign = [c for c in plan.changes if c.action is DnsAction.FOREIGN]
    assert (zone.fqdn("manual"), "A") in {(c.name, c.type) for c in foreign}
    assert not plan.has_changes

    zone.write([{"name": "a", "type": "A", "value": "192.0.2.1"}])
    outcome = zone.apply()
    assert outcome.ok, outcome.problems()
    assert outcome.plan is not None
    assert [(c.action, c.name) for c in outcome.plan.pending] == [
        (DnsAction.DELETE, zone.fqdn("b"))
    ]
    assert zone.answers("b", "A") == []
    assert zone.answers("a", "A") == ["192.0.2.1"]
    assert zone.answers("manual", "A") == ["198.51.100.7"]

    zone.write([])
    assert zone.apply().ok
    assert zone.answers("manual", "A") == ["198.51.100.7"]  # never Nebula's: never removed


def test_an_update_changes_values_and_ttl_in_place(zone: Zone) -> None:
    zone.write([{"name": "app", "type": "A", "value": "192.0.2.1"}])
    assert zone.apply().ok
    zone.write([{"name": "app", "type": "A", "value": ["192.0.2.5", "192.0.2.6"], "ttl": 120}])
    outcome = zone.apply()
    assert outcome.ok, outcome.problems()
    assert outcome.plan is not None
    [change] = outcome.plan.pending
    assert change.action is DnsAction.UPDATE
    assert "ttl 300 → 120" in change.reason
    assert zone.answers("app", "A") == ["192.0.2.5", "192.0.2.6"]
    assert not zone.plan().plan.has_changes  # type: ignore[union-attr]


def test_a_foreign_record_set_is_adopted_when_equal_and_left_alone_in_conflict(
    zone: Zone,
) -> None:
    zone.write([{"name": "seed", "type": "A", "value": "192.0.2.9"}])
    assert zone.apply().ok  # the zone exists from here on
    zone.backend.hand_add(zone.name, zone.fqdn("same"), "A", "192.0.2.20")
    zone.backend.hand_add(zone.name, zone.fqdn("other"), "A", "192.0.2.30")
    zone.write([
        {"name": "seed", "type": "A", "value": "192.0.2.9"},
        {"name": "same", "type": "A", "value": "192.0.2.20", "ttl": 300},
        {"name": "other", "type": "A", "value": "192.0.2.99", "ttl": 300},
    ])  # fmt: skip
    outcome = zone.apply()
    assert outcome.plan is not None
    actions = {c.name: c.action for c in outcome.plan.changes}
    assert actions[zone.fqdn("same")] is DnsAction.UPDATE  # adopted
    assert actions[zone.fqdn("other")] is DnsAction.CONFLICT
    assert not outcome.ok
    assert any("did not create" in p for p in outcome.problems())
    assert zone.answers("other", "A") == ["192.0.2.30"]  # untouched

    # Adopted, it is Nebula's: removing it from the repo now deletes it.
    zone.write([{"name": "seed", "type": "A", "value": "192.0.2.9"}])
    assert zone.apply().plan is not None
    assert zone.answers("same", "A") == []
    assert zone.answers("other", "A") == ["192.0.2.30"]


def test_more_records_than_a_page_are_all_read(zone: Zone, cloudflare: CloudflareDouble) -> None:
    records = [{"name": f"h{i:03}", "type": "A", "value": f"10.0.{i // 250}.{i % 250 + 1}"}
               for i in range(250)]  # fmt: skip
    zone.write(records)
    assert zone.apply().ok
    cloudflare.requests.clear()
    outcome = zone.plan()
    assert outcome.plan is not None
    assert outcome.plan.counts()["noop"] == 250 and not outcome.plan.has_changes
    if zone.backend.name == "cloudflare":
        pages = [q for m, p, q in cloudflare.requests if p.endswith("/dns_records")]
        assert [q["page"] for q in pages] == [["1"], ["2"], ["3"]]


def test_a_rejected_record_fails_alone_and_the_rest_is_applied(zone: Zone) -> None:
    zone.write([{"name": "seed", "type": "A", "value": "192.0.2.9"}])
    assert zone.apply().ok
    zone.backend.hand_add(zone.name, zone.fqdn("taken"), "A", "192.0.2.40")
    zone.write([
        {"name": "seed", "type": "A", "value": "192.0.2.9"},
        {"name": "taken", "type": "CNAME", "value": "seed"},  # a CNAME cannot join an A
        {"name": "fine", "type": "A", "value": "192.0.2.41"},
        {"name": "also", "type": "TXT", "value": "still applied"},
    ])  # fmt: skip
    outcome = zone.apply()
    assert not outcome.ok
    assert [(f.change.name, f.change.type) for f in outcome.failures] == [
        (zone.fqdn("taken"), "CNAME")
    ]
    assert "refused" in str(outcome.failures[0])
    assert zone.answers("fine", "A") == ["192.0.2.41"]
    assert zone.answers("taken", "A") == ["192.0.2.40"]
    assert len(zone.answers("also", "TXT")) == 1


def test_a_bad_token_is_a_clear_error_and_removes_nothing(zone: Zone) -> None:
    zone.write([{"name": "keep", "type": "A", "value": "192.0.2.50"}])
    assert zone.apply().ok
    zone.write([])  # would delete `keep` if the zone could be read
    zone.token = "not-the-token"
    outcome = zone.apply()
    assert outcome.plan is None and not outcome.applied
    assert outcome.error is not None and "refused the API" in outcome.error
    assert "not-the-token" not in outcome.error
    assert zone.answers("keep", "A") == ["192.0.2.50"]


def test_an_unreachable_provider_fails_its_zone_and_the_other_zone_is_applied(
    backend: Backend, tmp_path: Path
) -> None:
    good = Zone(backend, tmp_path)
    good.write([{"name": "up", "type": "A", "value": "192.0.2.60"}])
    dead_account = {**backend.account, "api_url": f"http://127.0.0.1:{servers._free_port()}"}
    dead = {"zone": "dead.test", "provider": backend.name, "account": dead_account,
            "records": [{"name": "x", "type": "A", "value": "192.0.2.61"}]}  # fmt: skip
    (tmp_path / "domains" / "dead.test.yaml").write_text(yaml.safe_dump(dead))

    def factory(zone: DesiredZone, token: str) -> DnsProvider:
        if zone.zone == "dead.test" and backend.name == "cloudflare":
            from nebula.providers.dns.cloudflare import CloudflareProvider

            return CloudflareProvider(token, str(zone.account.api_url), max_retries=0)
        return backend.factory(zone, token)

    outcomes = {o.zone: o for o in apply_zones(good.desired(), lambda _: good.token, factory)}
    assert "unreachable" in (outcomes["dead.test"].error or "")
    assert outcomes[good.name].ok
    assert good.answers("up", "A") == ["192.0.2.60"]


def test_cloudflare_backs_off_on_429_mid_sync_and_finishes(
    cloudflare: CloudflareDouble, tmp_path: Path
) -> None:
    zone = Zone(_cloudflare(cloudflare), tmp_path)
    zone.write([{"name": f"r{i}", "type": "A", "value": "192.0.2.70"} for i in range(120)])
    cloudflare.requests.clear()
    cloudflare.throttle(1, retry_after=1, after=2)  # zone lookup, record list, then the write
    started = time.monotonic()
    outcome = zone.apply()
    assert outcome.ok, outcome.problems()
    assert time.monotonic() - started >= 1.0  # it waited as Retry-After asked
    zone_path = f"/client/v4/zones/{cloudflare.zone_id(zone.name)}"
    assert [(m, p) for m, p, _ in cloudflare.requests] == [
        ("GET", "/client/v4/zones"),
        ("GET", f"{zone_path}/dns_records"),
        ("POST", f"{zone_path}/dns_records/batch"),  # answered 429
        ("POST", f"{zone_path}/dns_records/batch"),
    ]
    assert len(cloudflare.records(zone.name)) == 120

    cloudflare.requests.clear()
    cloudflare.throttle(1, retry_after=1, after=2)  # now in the middle of the pages
    again = zone.plan()
    assert again.plan is not None and not again.plan.has_changes
    pages = [q["page"] for m, p, q in cloudflare.requests if p == f"{zone_path}/dns_records"]
    assert pages == [["1"], ["2"], ["2"]]  # page 2 refused once, then read


def test_cloudflare_gives_up_after_repeated_429_without_writing(
    cloudflare: CloudflareDouble, tmp_path: Path
) -> None:
    zone = Zone(_cloudflare(cloudflare), tmp_path)
    zone.write([{"name": "x", "type": "A", "value": "192.0.2.80"}])

    def impatient(desired: DesiredZone, token: str) -> DnsProvider:
        from nebula.providers.dns.cloudflare import CloudflareProvider

        return CloudflareProvider(token, cloudflare.url, max_retries=1)

    cloudflare.throttle(5, retry_after=0)
    [outcome] = apply_zones(zone.desired(), lambda _: zone.token, impatient)
    cloudflare.throttle(0)
    assert "rate limited" in (outcome.error or "")
    assert cloudflare.records(zone.name) == []


def test_proxied_records_round_trip_on_cloudflare(
    cloudflare: CloudflareDouble, tmp_path: Path
) -> None:
    zone = Zone(_cloudflare(cloudflare), tmp_path)
    zone.write([{"name": "cdn", "type": "A", "value": "192.0.2.90", "proxied": True}])
    assert zone.apply().ok
    [record] = cloudflare.records(zone.name)
    assert record["proxied"] is True and record["comment"] == "managed by nebula"
    assert not zone.plan().plan.has_changes  # type: ignore[union-attr]
