"""The desired zones of a repo of domains only, read without the spec models.

Loading pydantic and building the spec models costs more than a whole DNS sync of a zone of
1,000 records. A config repo whose `nebula.yaml` is empty (every default) and which has no
installations (`packages/*.yaml`) exposes no hostname: its zones are exactly its
`domains/*.yaml`. Those are read here, as plain YAML data (`spec.yaml_plain`), with the checks
`spec.domain` validates with (`spec.dns_values`) and the rules of `kinds.dns.desired_zones`.

This reading only ever accepts: anything it is not certain the models would accept in the
same way (an unknown or unusual field, a value of another type, a problem of any kind) makes
`lean_zones` return None, and the caller loads the repo in full, which reports every problem
with its file and line exactly as always. So the errors are the models' errors, and whatever
is accepted here is accepted there (a test compares both on valid and invalid files).
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, TypeGuard

from nebula.kinds.dns.types import DesiredZone, RRSet, ZoneAccount
from nebula.paths import UnsafePathError, folder_within, read_file
from nebula.spec.dns_values import (
    RECORD_TYPES,
    canonical_value,
    check_record_name,
    check_secret_reference,
    check_value,
    check_zone_name,
    qualify,
)
from nebula.spec.yaml_plain import plain_yaml

_PROVIDERS = ("powerdns", "cloudflare")
_DOMAIN_FIELDS = frozenset({"zone", "provider", "account", "ttl", "records"})
_ACCOUNT_FIELDS = frozenset({"api_url", "server_id", "token"})
_RECORD_FIELDS = frozenset({"name", "type", "value", "ttl", "proxied"})
_TTL_MAX = 2_147_483_647
_DEFAULT_PORT = {"http": "80", "https": "443"}
# A URL pydantic's HttpUrl keeps as written (plus a final `/`): lowercase host, explicit
# non-default port or none, a plain path. Anything else is left to the models.
_PLAIN_URL = re.compile(
    r"(?P<scheme>https?)://(?P<host>[a-z0-9]([a-z0-9.-]*[a-z0-9])?)"
    r"(:(?P<port>[1-9][0-9]{0,4}))?(?P<path>(/[A-Za-z0-9._~-]+)*/?)"
)


class _UnsureError(Exception):
    """Not certain the models would read it this way: load the repo in full."""


def lean_zones(root: Path) -> list[DesiredZone] | None:
    """The repo's desired zones when it is a repo of domains only that reads without any
    doubt; None when the full load must decide (module docstring)."""
    root = root.resolve()
    try:
        packages, domains = folder_within(root, "packages"), folder_within(root, "domains")
        if packages and any(p.suffix in (".yaml", ".yml") for p in packages.glob("*.y*ml")):
            return None
        config = _document(root / "nebula.yaml", root)
        if config not in (None, {}):
            return None
        zones = [
            _zone(_document(path, root), path.relative_to(root).as_posix())
            for path in sorted(domains.glob("*.y*ml") if domains else [])
            if path.suffix in (".yaml", ".yml")
        ]
    except (_UnsureError, UnsafePathError, OSError, ValueError):  # and UnusualYamlError
        return None
    if len({z.zone for z in zones}) != len(zones):
        return None
    return zones


def _document(path: Path, root: Path) -> Any:
    return plain_yaml(read_file(path, root).decode("utf-8"))


def _zone(data: Any, file: str) -> DesiredZone:
    fields = _mapping(data, _DOMAIN_FIELDS)
    zone = check_zone_name(_text(fields.get("zone")))
    provider = fields.get("provider")
    if provider not in _PROVIDERS:
        raise _UnsureError
    account = _account(fields.get("account"), provider)
    ttl = _ttl(fields.get("ttl", 3600))
    records = fields.get("records", [])
    if not isinstance(records, list):
        raise _UnsureError
    rrsets = _rrsets([_record(r) for r in records], zone, ttl, provider)
    return DesiredZone(zone, provider, account, rrsets, file)


def _account(data: Any, provider: str) -> ZoneAccount:
    fields = _mapping(data, _ACCOUNT_FIELDS)
    token = check_secret_reference(_text(fields.get("token")))
    server_id = fields.get("server_id", "localhost")
    if not isinstance(server_id, str):
        raise _UnsureError
    url = fields.get("api_url")
    if url is not None:
        url = _plain_url(url)
    elif provider == "powerdns":
        raise _UnsureError  # api_url is required for PowerDNS: the models say so
    return ZoneAccount(url, server_id, token[len("${secret:") : -1])


def _plain_url(url: Any) -> str:
    """`url` as `HttpUrl` keeps it (less the final `/`), when it has nothing to normalise."""
    match = _PLAIN_URL.fullmatch(url) if isinstance(url, str) and len(url) <= 2083 else None
    if match is None or ".." in match["host"]:
        raise _UnsureError
    port, host = match["port"], match["host"]
    if port is not None and (port == _DEFAULT_PORT[match["scheme"]] or int(port) > 65535):
        raise _UnsureError
    if host.rsplit(".", 1)[-1].isdigit() and _canonical_ipv4(host) != host:
        raise _UnsureError  # a numeric host is an IPv4 address, which URLs normalise
    if any(segment in (".", "..") for segment in match["path"].split("/")):
        raise _UnsureError
    return match[0].rstrip("/")


def _canonical_ipv4(host: str) -> str | None:
    try:
        return str(IPv4Address(host))
    except ValueError:
        return None


def _record(data: Any) -> tuple[str, str, list[str], int | None, bool]:
    fields = _mapping(data, _RECORD_FIELDS)
    name = check_record_name(_text(fields.get("name")))
    kind = fields.get("type")
    if kind not in RECORD_TYPES:
        raise _UnsureError
    value = fields.get("value")
    values: list[str] = [v for v in (value if isinstance(value, list) else [value]) if _is_text(v)]
    if not values or len(values) != (len(value) if isinstance(value, list) else 1):
        raise _UnsureError
    if kind not in ("A", "AAAA"):  # addresses: `canonical_value` parses them, as strictly
        for one in values:
            check_value(kind, one)
    ttl = fields.get("ttl")
    proxied = fields.get("proxied")
    if proxied is not None and not isinstance(proxied, bool):
        raise _UnsureError
    if proxied and kind not in ("A", "AAAA", "CNAME"):
        raise _UnsureError
    return name, kind, values, None if ttl is None else _ttl(ttl), bool(proxied)


def _rrsets(
    records: list[tuple[str, str, list[str], int | None, bool]],
    zone: str,
    default_ttl: int,
    provider: str,
) -> tuple[RRSet, ...]:
    """`kinds.dns.desired` rules: record sets by name and type, names inside the zone, `proxied` only
    on Cloudflare, one TTL per record set, and a CNAME alone at its name (never the apex)."""
    found: dict[tuple[str, str], RRSet] = {}
    for written, kind, values, written_ttl, proxied in records:
        name = qualify(written, zone)
        if name != zone and not name.endswith("." + zone):
            raise _UnsureError
        if proxied and provider != "cloudflare":
            raise _UnsureError
        ttl = written_ttl or default_ttl
        canonical = {canonical_value(kind, v, zone) for v in values}
        previous = found.get((name, kind))
        if previous is not None:
            if previous.ttl != ttl or previous.proxied != proxied:
                raise _UnsureError
            canonical |= set(previous.values)
        found[(name, kind)] = RRSet(name, kind, ttl, tuple(sorted(canonical)), proxied)
    not_cname = {n for n, t in found if t != "CNAME"}
    for (name, kind), rrset in found.items():
        if kind == "CNAME" and (name == zone or len(rrset.values) > 1 or name in not_cname):
            raise _UnsureError
    return tuple(sorted(found.values(), key=lambda r: r.key))


def _mapping(data: Any, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(data, dict) or not allowed.issuperset(data):
        raise _UnsureError
    return data


def _is_text(value: Any) -> TypeGuard[str]:
    return isinstance(value, str)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _UnsureError
    return value


def _ttl(value: Any) -> int:
    if type(value) is not int or not 1 <= value <= _TTL_MAX:
        raise _UnsureError
    return value
