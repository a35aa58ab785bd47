"""domains/*.yaml: validation with file:line, desired record sets (own and from `expose:`), the
pure ownership-aware diff, and `dns import`'s document. No server needed."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import yaml

from nebula.errors import ConfigError
from nebula.kinds.dns.desired import desired_zones, zone_document
from nebula.kinds.dns.diff import diff_zone
from nebula.kinds.dns.types import DesiredZone, DnsAction, ObservedRRSet, RRSet, ZoneState
from nebula.spec.dns_values import canonical_value
from nebula.spec.repo import load_repo

ACCOUNT = {"api_url": "http://127.0.0.1:8081", "token": "${secret:PDNS}"}


def repo(tmp_path: Path, domains: dict[str, str], packages: dict[str, str] | None = None) -> Path:
    (tmp_path / "nebula.yaml").write_text(
        "nodes:\n  - {name: nas, address: 192.168.1.10}\n  - {name: v6, address: '2001:db8::5'}\n"
    )
    (tmp_path / "domains").mkdir()
    for name, text in domains.items():
        (tmp_path / "domains" / name).write_text(text)
    (tmp_path / "packages").mkdir()
    for name, text in (packages or {}).items():
        (tmp_path / "packages" / name).write_text(text)
    return tmp_path


def domain(records: list[dict[str, Any]], **extra: Any) -> str:
    doc = {"zone": "example.test", "provider": "powerdns", "account": ACCOUNT, "ttl": 600,
           "records": records, **extra}  # fmt: skip
    return yaml.safe_dump(doc, sort_keys=False)


def zones(root: Path) -> list[DesiredZone]:
    return desired_zones(load_repo(root))


def test_records_of_every_type_become_canonical_record_sets(tmp_path: Path) -> None:
    root = repo(tmp_path, {"example.yaml": domain([
        {"name": "www", "type": "A", "value": ["192.0.2.2", "192.0.2.1"]},
        {"name": "www", "type": "A", "value": "192.0.2.3"},
        {"name": "@", "type": "MX", "value": "10 mail"},
        {"name": "blog", "type": "CNAME", "value": "www.example.test.", "ttl": 60},
        {"name": "_sip._tcp", "type": "SRV", "value": "10 5 5060 sip.other.net."},
        {"name": "@", "type": "CAA", "value": '0 ISSUE "letsencrypt.org"'},
        {"name": "@", "type": "TXT", "value": 1234},
        {"name": "v6", "type": "AAAA", "value": "2001:DB8:0::1"},
    ])})  # fmt: skip
    [zone] = zones(root)
    assert zone.zone == "example.test" and zone.account.secret_name == "PDNS"
    sets = {(r.name, r.type): r for r in zone.rrsets}
    assert sets[("www.example.test", "A")] == RRSet(
        "www.example.test", "A", 600, ("192.0.2.1", "192.0.2.2", "192.0.2.3")
    )
    assert sets[("example.test", "MX")].values == ("10 mail.example.test",)
    assert sets[("blog.example.test", "CNAME")] == RRSet(
        "blog.example.test", "CNAME", 60, ("www.example.test",)
    )
    assert sets[("_sip._tcp.example.test", "SRV")].values == ("10 5 5060 sip.other.net",)
    assert sets[("example.test", "CAA")].values == ('0 issue "letsencrypt.org"',)
    assert sets[("example.test", "TXT")].values == ("1234",)
    assert sets[("v6.example.test", "AAAA")].values == ("2001:db8::1",)


def test_every_problem_of_every_file_is_reported_at_once_with_its_line(tmp_path: Path) -> None:
    root = repo(tmp_path, {
        "a.yaml": domain([
            {"name": "ok", "type": "A", "value": "192.0.2.1"},
            {"name": "bad", "type": "A", "value": "300.1.1.1"},
            {"name": "mx", "type": "MX", "value": "mail.example.test"},
            {"name": "x", "type": "SPF", "value": "v=spf1"},
        ]),
        "b.yaml": domain([{"name": "@", "type": "CNAME", "value": "www"}],
                         zone="other.test", account={**ACCOUNT, "token": "plain-token"}),
        "c.yaml": domain([
            {"name": "www", "type": "A", "value": "192.0.2.1", "proxied": True},
            {"name": "dup", "type": "A", "value": "192.0.2.1"},
            {"name": "dup", "type": "A", "value": "192.0.2.2", "ttl": 5},
            {"name": "both", "type": "CNAME", "value": "www"},
            {"name": "both", "type": "TXT", "value": "hi"},
            {"name": "away.other.org.", "type": "A", "value": "192.0.2.1"},
        ], zone="third.test"),
    })  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        zones(root)
    text = str(caught.value)
    expected = [
        "domains/a.yaml:", "'300.1.1.1' is not an IPv4 address",
        "MX data is `PRIORITY HOST`", "records[3].type",
        "domains/b.yaml:", "${secret:NAME}",
    ]  # fmt: skip
    for fragment in expected:
        assert fragment in text, fragment
    # b.yaml fails as a model, so its apex CNAME is checked once the token is fixed
    (root / "domains" / "b.yaml").write_text(domain([{"name": "@", "type": "CNAME", "value": "www"}], zone="other.test"))  # fmt: skip
    (root / "domains" / "a.yaml").unlink()
    with pytest.raises(ConfigError) as caught:
        zones(root)
    lines = [str(issue) for issue in caught.value.issues]
    assert any("b.yaml" in line and "apex (@) cannot be a CNAME" in line for line in lines)
    assert any("c.yaml" in line and "`proxied` is a Cloudflare feature" in line for line in lines)
    assert any("c.yaml" in line and "another ttl" in line for line in lines)
    assert any("c.yaml" in line and "must stand alone" in line for line in lines)
    assert any("c.yaml" in line and "outside the zone third.test" in line for line in lines)
    assert all(issue.line > 1 for issue in caught.value.issues if issue.file == "domains/c.yaml")


def test_a_zone_defined_twice_is_refused(tmp_path: Path) -> None:
    root = repo(tmp_path, {"a.yaml": domain([]), "b.yaml": domain([])})
    with pytest.raises(ConfigError, match=r"zone 'example\.test' is also in domains/a\.yaml"):
        load_repo(root)


APP = """
node: {node}
expose:
  - {{host: {host}, service: web, port: 80}}
compose:
  services:
    web: {{image: "nginx:1.27"}}
"""


def test_exposed_hostnames_point_at_the_edge_node_in_the_longest_matching_zone(
    tmp_path: Path,
) -> None:
    """Caddy serves every exposed hostname on the edge node (`proxy.node`, default the first),
    whichever node runs the app."""
    root = repo(
        tmp_path,
        {"a.yaml": domain([]), "b.yaml": domain([], zone="lab.example.test")},
        {
            "app.yaml": APP.format(node="nas", host="app.lab.example.test"),
            "six.yaml": APP.format(node="v6", host="six.example.test"),
            "else.yaml": APP.format(node="nas", host="app.elsewhere.net"),
        },
    )
    by_zone = {z.zone: z for z in zones(root)}
    assert by_zone["lab.example.test"].rrsets == (
        RRSet("app.lab.example.test", "A", 600, ("192.168.1.10",)),
    )
    assert by_zone["example.test"].rrsets == (
        RRSet("six.example.test", "A", 600, ("192.168.1.10",)),
    )
    config = (root / "nebula.yaml").read_text()
    (root / "nebula.yaml").write_text(config + "proxy: {node: v6}\n")
    by_zone = {z.zone: z for z in zones(root)}
    assert by_zone["lab.example.test"].rrsets == (
        RRSet("app.lab.example.test", "AAAA", 600, ("2001:db8::5",)),
    )


def test_an_exposed_hostname_that_contradicts_a_zone_record_is_an_error_at_the_expose(
    tmp_path: Path,
) -> None:
    root = repo(
        tmp_path,
        {"a.yaml": domain([{"name": "app", "type": "A", "value": "192.0.2.77"}])},
        {"app.yaml": APP.format(node="nas", host="app.example.test")},
    )
    with pytest.raises(ConfigError) as caught:
        zones(root)
    [issue] = caught.value.issues
    assert issue.file == "packages/app.yaml" and issue.line == 4
    assert "already gives app.example.test A 192.0.2.77" in issue.message
    assert "not the edge node's address 192.168.1.10" in issue.message


def _zone(*rrsets: RRSet) -> DesiredZone:
    from nebula.kinds.dns.types import ZoneAccount

    return DesiredZone("example.test", "powerdns", ZoneAccount(None, "localhost", "X"), rrsets, "")


def _seen(rrset: RRSet, owned: bool) -> ObservedRRSet:
    return ObservedRRSet(rrset.name, rrset.type, rrset.ttl, rrset.values, owned=owned)


def test_the_diff_changes_only_what_nebula_owns() -> None:
    keep = RRSet("keep.example.test", "A", 300, ("192.0.2.1",))
    new = RRSet("new.example.test", "A", 300, ("192.0.2.2",))
    moved = RRSet("moved.example.test", "A", 300, ("192.0.2.3",))
    gone = RRSet("gone.example.test", "A", 300, ("192.0.2.4",))
    hand = RRSet("hand.example.test", "TXT", 300, ("by hand",))
    same = RRSet("same.example.test", "A", 300, ("192.0.2.5",))
    clash = RRSet("clash.example.test", "A", 300, ("192.0.2.6",))
    state = ZoneState("example.test", True, (
        _seen(keep, True), _seen(RRSet(moved.name, "A", 60, ("192.0.2.9",)), True),
        _seen(gone, True), _seen(hand, False), _seen(same, False),
        _seen(RRSet(clash.name, "A", 300, ("198.51.100.1",)), False),
    ))  # fmt: skip
    plan = diff_zone(_zone(keep, new, moved, same, clash), state)
    actions = {c.name.split(".")[0]: c.action for c in plan.changes}
    assert actions == {
        "keep": DnsAction.NOOP, "new": DnsAction.CREATE, "moved": DnsAction.UPDATE,
        "gone": DnsAction.DELETE, "hand": DnsAction.FOREIGN, "same": DnsAction.UPDATE,
        "clash": DnsAction.CONFLICT,
    }  # fmt: skip
    reasons = {c.name.split(".")[0]: c.reason for c in plan.changes}
    assert reasons["moved"] == "192.0.2.9 → 192.0.2.3; ttl 60 → 300"
    assert reasons["same"].startswith("adopt")
    assert "198.51.100.1" in reasons["clash"]
    assert not plan.create_zone and plan.has_changes
    assert {c.name for c in plan.pending} == {new.name, moved.name, gone.name, same.name}


def test_a_missing_zone_is_created_and_an_identical_one_is_a_noop() -> None:
    www = RRSet("www.example.test", "A", 300, ("192.0.2.1",))
    plan = diff_zone(_zone(www), ZoneState("example.test", False))
    assert plan.create_zone and [c.action for c in plan.changes] == [DnsAction.CREATE]
    plan = diff_zone(_zone(www), ZoneState("example.test", True, (_seen(www, True),)))
    assert not plan.has_changes


def test_an_imported_zone_loads_back_to_the_same_record_sets(tmp_path: Path) -> None:
    seen = (
        _seen(RRSet("example.test", "MX", 300, ("10 mail.example.test", "20 mx.other.net")), False),
        _seen(RRSet("example.test", "SOA", 300, ("ns1. host. 1 2 3 4 5",)), False),
        _seen(RRSet("www.example.test", "A", 300, ("192.0.2.1",)), False),
        _seen(RRSet("alias.example.test", "CNAME", 60, ("example.test",)), False),
        _seen(RRSet("example.test", "TXT", 300, ('say "hi"',)), False),
    )
    document = zone_document(ZoneState("example.test", True, seen), "powerdns", ACCOUNT)
    assert document["ttl"] == 300
    assert {"name": "alias", "type": "CNAME", "value": "@", "ttl": 60} in document["records"]  # type: ignore[operator]
    root = repo(tmp_path, {"example.test.yaml": yaml.safe_dump(document, sort_keys=False)})
    [zone] = zones(root)
    wanted = {(r.name, r.type, r.ttl, r.values) for r in seen if r.type != "SOA"}
    assert {(r.name, r.type, r.ttl, r.values) for r in zone.rrsets} == wanted
    # imported and committed, every record set is adopted (same data), none conflicts
    plan = diff_zone(zone, ZoneState("example.test", True, seen))
    assert {c.action for c in plan.pending} == {DnsAction.UPDATE}
    assert not plan.conflicts


@pytest.mark.parametrize(
    "address", ["0.0.0.0", "10.0.0.1", "192.0.2.255", "255.255.255.255", "01.2.3.4", "256.0.0.1"]
)
def test_an_ipv4_address_is_canonical_as_the_standard_library_writes_it(address: str) -> None:
    try:
        expected: str | None = str(IPv4Address(address))
    except ValueError:
        expected = None
    try:
        got: str | None = canonical_value("A", address, "example.com")
    except ValueError:
        got = None
    assert got == expected
