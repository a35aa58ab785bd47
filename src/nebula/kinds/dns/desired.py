"""Domains → desired record sets per zone, each provider's capabilities checked on the way.

Desired records come from two places: the zones' own `records:` (`domains/*.yaml`), and every
installation's `expose:` hostname, which becomes an A (or AAAA) record pointing at the address
of the edge node (`proxy.node`, where Caddy serves it), in the zone that is the longest suffix of the hostname. Hostnames
in no zone of the repo get no record (their names live elsewhere, e.g. a router's DNS).

The diff against a provider's zone is in `kinds.dns.diff`. Everything here is pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import ip_address

from nebula.errors import ConfigError, ConfigIssue
from nebula.kinds.dns.types import (
    DesiredZone,
    RRSet,
    ZoneAccount,
    ZoneState,
)
from nebula.providers import registry
from nebula.providers.dns.base import Capabilities
from nebula.spec.dns_values import TARGET_AT, canonical_value, qualify
from nebula.spec.domain import RECORD_TYPES, Account, zone_of
from nebula.spec.repo import DomainSource, RepoSpec


def zone_account(account: Account) -> ZoneAccount:
    url = str(account.api_url).rstrip("/") if account.api_url else None
    return ZoneAccount(url, account.server_id, account.secret_name)


def desired_zones(repo: RepoSpec) -> list[DesiredZone]:
    """Every zone of the repo with its desired record sets; `ConfigError` lists every problem."""
    issues: list[ConfigIssue] = []
    sets: dict[str, dict[tuple[str, str], RRSet]] = {}
    origin: dict[tuple[str, str], tuple[DomainSource, int]] = {}
    for source in repo.domains:
        sets[source.spec.zone] = _zone_records(source, issues, origin)
    _add_exposed(repo, sets, issues)
    for source in repo.domains:
        _check_names(source, sets[source.spec.zone], origin, issues)
    if issues:
        raise ConfigError(issues)
    return [
        DesiredZone(
            zone=s.spec.zone,
            provider=s.spec.provider,
            account=zone_account(s.spec.account),
            rrsets=tuple(sorted(sets[s.spec.zone].values(), key=lambda r: r.key)),
            file=s.doc.file,
        )
        for s in repo.domains
    ]


def account_problem(provider: str, api_url: object) -> tuple[str, str] | None:
    """(the field to fix, why) when a zone's account does not suit its provider: there is no
    such provider, or it has no default API and no `api_url` is given; None when it suits."""
    try:
        capabilities: Capabilities = registry.provider_class("dns", provider).capabilities
    except registry.UnknownProviderError as exc:
        return "provider", str(exc)
    if capabilities.needs_api_url and api_url is None:
        return "account", f"account.api_url is required for {provider} (its API URL)"
    return None


def _capabilities(source: DomainSource, issues: list[ConfigIssue]) -> Capabilities | None:
    """What the zone's provider can do; None (and an issue) when there is no such provider."""
    spec, doc = source.spec, source.doc
    problem = account_problem(spec.provider, spec.account.api_url)
    if problem is not None:
        field, why = problem
        issues.append(doc.issue((field,), why))
        if field == "provider":
            return None
    capabilities: Capabilities = registry.provider_class("dns", spec.provider).capabilities
    return capabilities


def _zone_records(
    source: DomainSource,
    issues: list[ConfigIssue],
    origin: dict[tuple[str, str], tuple[DomainSource, int]],
) -> dict[tuple[str, str], RRSet]:
    spec, doc = source.spec, source.doc
    found: dict[tuple[str, str], RRSet] = {}
    capabilities = _capabilities(source, issues)
    if capabilities is None:
        return found
    for index, record in enumerate(spec.records):
        name = qualify(record.name, spec.zone)
        if name != spec.zone and not name.endswith("." + spec.zone):
            issues.append(
                doc.issue(("records", index, "name"), f"{name} is outside the zone {spec.zone}")
            )
            continue
        if record.proxied and not capabilities.proxied:
            issues.append(
                doc.issue(
                    ("records", index, "proxied"),
                    f"`proxied` is a Cloudflare feature; this zone's provider is {spec.provider}",
                )
            )
            continue
        if record.type not in capabilities.record_types:
            issues.append(
                doc.issue(
                    ("records", index, "type"),
                    f"{spec.provider} cannot serve {record.type} records",
                )
            )
            continue
        ttl = record.ttl or spec.ttl
        values = {canonical_value(record.type, v, spec.zone) for v in record.values}
        key = (name, record.type)
        previous = found.get(key)
        if previous is not None:
            if previous.ttl != ttl or previous.proxied != bool(record.proxied):
                line = doc.mark_for(("records", origin[key][1])).line
                issues.append(
                    doc.issue(
                        ("records", index),
                        f"{name} {record.type} is also on line {line} with another ttl or "
                        "proxied; the records of one name and type share them",
                    )
                )
                continue
            values |= set(previous.values)
        else:
            origin[key] = (source, index)
        found[key] = RRSet(name, record.type, ttl, tuple(sorted(values)), bool(record.proxied))
    return found


def _add_exposed(
    repo: RepoSpec, sets: dict[str, dict[tuple[str, str], RRSet]], issues: list[ConfigIssue]
) -> None:
    """A/AAAA records for every exposed hostname that falls in one of the repo's zones, at the
    edge node's address: Caddy serves every exposed hostname there."""
    by_zone = {s.spec.zone: s for s in repo.domains}
    claimed: set[tuple[str, str]] = set()
    address = ip_address(repo.config.edge.address)
    kind = "A" if address.version == 4 else "AAAA"
    wanted = str(address)
    for inst in repo.installations:
        for index, expose in enumerate(inst.spec.expose):
            zone = zone_of(expose.host, by_zone)
            if zone is None:
                continue
            key = (expose.host, kind)
            existing = sets[zone].get(key)
            if key not in claimed and existing is not None and existing.values != (wanted,):
                issues.append(
                    inst.doc.issue(
                        ("expose", index, "host"),
                        f"{by_zone[zone].doc.file} already gives {expose.host} {kind} "
                        f"{', '.join(existing.values)}, not the edge node's address {wanted}",
                    )
                )
                continue
            claimed.add(key)
            ttl = existing.ttl if existing else by_zone[zone].spec.ttl
            sets[zone][key] = RRSet(expose.host, kind, ttl, (wanted,))


def _check_names(
    source: DomainSource,
    found: Mapping[tuple[str, str], RRSet],
    origin: Mapping[tuple[str, str], tuple[DomainSource, int]],
    issues: list[ConfigIssue],
) -> None:
    """A CNAME stands alone at its name, has one target, and is never the zone's apex."""
    for (name, kind), rrset in found.items():
        if kind != "CNAME":
            continue
        index = origin[(name, kind)][1] if (name, kind) in origin else None
        path: tuple[str | int, ...] = ("records", index) if index is not None else ("zone",)
        others = sorted(t for (n, t) in found if n == name and t != "CNAME")
        if name == source.spec.zone:
            issues.append(source.doc.issue(path, "the zone's apex (@) cannot be a CNAME"))
        elif others:
            issues.append(
                source.doc.issue(
                    path,
                    f"{name} has a CNAME and {', '.join(others)} records; a CNAME must stand "
                    "alone at its name",
                )
            )
        elif len(rrset.values) > 1:
            issues.append(source.doc.issue(path, f"{name} CNAME can have only one target"))


def zone_document(state: ZoneState, provider: str, account: Mapping[str, str]) -> dict[str, object]:
    """`domains/ZONE.yaml` content holding every record of `state` Nebula can manage (for
    `nebula dns import`); SOA, NS and other types are left out."""
    records: list[dict[str, object]] = []
    ttls = [r.ttl for r in state.rrsets if r.type in RECORD_TYPES]
    default_ttl = max(set(ttls), key=ttls.count) if ttls else 3600
    for rrset in sorted(state.rrsets, key=lambda r: r.key):
        if rrset.type not in RECORD_TYPES:
            continue
        entry: dict[str, object] = {
            "name": _relative(rrset.name, state.zone),
            "type": rrset.type,
            "value": [_relative_value(rrset.type, v, state.zone) for v in rrset.values]
            if len(rrset.values) > 1
            else _relative_value(rrset.type, rrset.values[0], state.zone),
        }
        if rrset.ttl != default_ttl:
            entry["ttl"] = rrset.ttl
        if rrset.proxied:
            entry["proxied"] = True
        records.append(entry)
    return {
        "zone": state.zone,
        "provider": provider,
        "account": dict(account),
        "ttl": default_ttl,
        "records": records,
    }


def _relative(name: str, zone: str) -> str:
    if name == zone:
        return "@"
    if name.endswith("." + zone):
        return name[: -len(zone) - 1]
    return name + "."


def _relative_value(kind: str, value: str, zone: str) -> str:
    if kind not in TARGET_AT:
        return value
    words = value.split()
    at = TARGET_AT[kind]
    if words[at] != ".":
        words[at] = _relative(words[at], zone)
    return " ".join(words)
