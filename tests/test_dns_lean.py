"""`kinds.dns.lean` reads a repo of domains only without the spec models: whatever it accepts,
the models accept with the very same zones; whatever the models reject (or it is unsure of),
it declines, and the full load reports the problem with its file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from nebula.errors import ConfigError
from nebula.kinds.dns.desired import desired_zones
from nebula.kinds.dns.lean import lean_zones
from nebula.spec.repo import load_repo

PDNS = {"api_url": "http://127.0.0.1:8081", "token": "${secret:PDNS}"}


def _repo(tmp_path: Path, *domains: dict[str, Any], config: str = "{}\n") -> Path:
    (tmp_path / "domains").mkdir(parents=True)
    (tmp_path / "nebula.yaml").write_text(config)
    for index, doc in enumerate(domains):
        (tmp_path / "domains" / f"z{index}.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path


def _zone(records: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {
        "zone": "example.com",
        "provider": "powerdns",
        "account": PDNS,
        **fields,
        "records": records,
    }


VALID = {
    "every type": _zone(
        [
            {"name": "www", "type": "A", "value": "192.0.2.10"},
            {"name": "www", "type": "A", "value": ["192.0.2.11", "192.0.2.10"]},
            {"name": "@", "type": "AAAA", "value": "2001:DB8::10", "ttl": 60},
            {"name": "Alias", "type": "CNAME", "value": "www"},
            {"name": "ext.example.com.", "type": "CNAME", "value": "target.example.net."},
            {"name": "@", "type": "MX", "value": ["10 mail", "20 mx.example.net."]},
            {"name": "@", "type": "TXT", "value": ["v=spf1 -all", 'say "hi"']},
            {"name": "_sip._tcp", "type": "SRV", "value": "10 5 5060 sip.example.com."},
            {"name": "@", "type": "CAA", "value": '0 ISSUE "letsencrypt.org"'},
            {"name": "*.wild", "type": "A", "value": "192.0.2.99"},
            {"name": "", "type": "TXT", "value": "apex too", "proxied": None},
        ],
        ttl=300,
    ),
    "cloudflare": {
        "zone": "Example.ORG.",
        "provider": "cloudflare",
        "account": {"token": " ${secret:CF_TOKEN} "},
        "records": [{"name": "app", "type": "CNAME", "value": "www", "proxied": True}],
    },
    "url with a path": _zone(
        [],
        account={
            "api_url": "https://pdns.example.net:8443/pdns/",
            "server_id": "a",
            "token": "${secret:X}",
        },
    ),
    "no records": {"zone": "empty.test", "provider": "powerdns", "account": PDNS},
}


@pytest.mark.parametrize("doc", VALID.values(), ids=VALID.keys())
def test_what_it_accepts_the_models_read_alike(tmp_path: Path, doc: dict[str, Any]) -> None:
    root = _repo(tmp_path, doc)
    zones = lean_zones(root)
    assert zones is not None
    assert zones == desired_zones(load_repo(root))


def test_several_files(tmp_path: Path) -> None:
    root = _repo(tmp_path, VALID["every type"], VALID["cloudflare"], VALID["no records"])
    assert lean_zones(root) == desired_zones(load_repo(root))


INVALID = {
    "unknown field": _zone([{"name": "a", "type": "A", "value": "192.0.2.1", "tll": 5}]),
    "bad address": _zone([{"name": "a", "type": "A", "value": "192.0.2.300"}]),
    "bad name": _zone([{"name": "a b", "type": "A", "value": "192.0.2.1"}]),
    "bad type": _zone([{"name": "a", "type": "NS", "value": "ns1"}]),
    "no value": _zone([{"name": "a", "type": "A", "value": []}]),
    "ttl zero": _zone([{"name": "a", "type": "A", "value": "192.0.2.1", "ttl": 0}]),
    "outside": _zone([{"name": "a.other.org.", "type": "A", "value": "192.0.2.1"}]),
    "proxied on powerdns": _zone(
        [{"name": "a", "type": "A", "value": "192.0.2.1", "proxied": True}]
    ),
    "proxied MX": {
        **VALID["cloudflare"],
        "records": [{"name": "@", "type": "MX", "value": "10 mail", "proxied": True}],
    },
    "two ttls": _zone(
        [
            {"name": "a", "type": "A", "value": "192.0.2.1", "ttl": 5},
            {"name": "a", "type": "A", "value": "192.0.2.2"},
        ]
    ),
    "cname apex": _zone([{"name": "@", "type": "CNAME", "value": "www"}]),
    "cname and A": _zone(
        [
            {"name": "a", "type": "CNAME", "value": "www"},
            {"name": "a", "type": "A", "value": "192.0.2.1"},
        ]
    ),
    "two targets": _zone([{"name": "a", "type": "CNAME", "value": ["b", "c"]}]),
    "plain token": _zone([], account={**PDNS, "token": "s3cr3t"}),
    "no api_url": _zone([], account={"token": "${secret:X}"}),
    "bad url": _zone([], account={**PDNS, "api_url": "ftp://x"}),
    "bad zone": _zone([], zone="exa mple.com"),
    "bad provider": _zone([], provider="route53"),
    "records not a list": _zone({}),  # type: ignore[arg-type]
    "bad MX": _zone([{"name": "@", "type": "MX", "value": "mail"}]),
    "bad CAA tag": _zone([{"name": "@", "type": "CAA", "value": '0 other "x"'}]),
}


@pytest.mark.parametrize("doc", INVALID.values(), ids=INVALID.keys())
def test_what_the_models_reject_it_declines(tmp_path: Path, doc: dict[str, Any]) -> None:
    root = _repo(tmp_path, doc)
    assert lean_zones(root) is None
    with pytest.raises(ConfigError) as caught:
        desired_zones(load_repo(root))
    assert all(issue.file == "domains/z0.yaml" and issue.line >= 1 for issue in caught.value.issues)


def test_duplicate_keys_and_broken_yaml_are_the_models_to_report(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    (root / "domains" / "z.yaml").write_text("zone: a.test\nzone: b.test\n")
    assert lean_zones(root) is None
    (root / "domains" / "z.yaml").write_text("zone: [a.test\n")
    assert lean_zones(root) is None
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_repo(root)


UNSURE = {  # valid for the models, left to them
    "number as text": _zone([{"name": "a", "type": "TXT", "value": 42}]),
    "tls": _zone([], tls={"issuer": "internal"}),
    "upper-case host": _zone([], account={**PDNS, "api_url": "http://PDNS.example.net"}),
    "default port": _zone([], account={**PDNS, "api_url": "http://pdns.example.net:80/"}),
    "short IPv4": _zone([], account={**PDNS, "api_url": "http://127.1:8081"}),
    "float ttl": _zone([], ttl=300.0),
}


@pytest.mark.parametrize("doc", UNSURE.values(), ids=UNSURE.keys())
def test_what_it_is_unsure_of_the_models_decide(tmp_path: Path, doc: dict[str, Any]) -> None:
    root = _repo(tmp_path, doc)
    assert lean_zones(root) is None
    assert desired_zones(load_repo(root))


def test_a_repo_with_more_than_domains_is_loaded_in_full(tmp_path: Path) -> None:
    root = _repo(tmp_path, VALID["no records"], config="nodes: [{name: a, address: 10.0.0.2}]\n")
    assert lean_zones(root) is None and desired_zones(load_repo(root))
    root = _repo(tmp_path / "b", VALID["no records"])
    (root / "packages").mkdir()
    (root / "packages" / "web.yaml").write_text("package: whoami\n")
    assert lean_zones(root) is None
    (root / "packages" / "web.yaml").unlink()
    assert lean_zones(root) == desired_zones(load_repo(root))
