"""DNS records as plain data: what a zone should hold, what it holds, and the changes between.

Shared by `kinds.dns.desired` (the pure diff), `providers.dns` (read and write a provider) and the
engine. Everything is kept in one canonical form, whatever the provider writes:

- names are absolute, lowercase, without the final dot (`www.example.com`);
- host names inside data (CNAME, MX, SRV targets) likewise, so `www.example.com.` and
  `www.example.com` compare equal; `.` (a null MX) stays `.`;
- TXT data is the text itself, unquoted (providers quote and split it as they need);
- a record set (name, type) carries its values sorted, so order never shows as a change.

Ownership: a record set is `owned` when it carries Nebula's marker (a PowerDNS rrset comment
with account `nebula`, a Cloudflare record comment). Nebula only updates or deletes owned
record sets; the others are foreign and left alone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

MANAGED_TYPES = frozenset({"A", "AAAA", "CNAME", "TXT", "MX", "SRV", "CAA"})
"""The record types Nebula writes (`domains/*.yaml` validates each of them)."""

OWNER_ACCOUNT = "nebula"
OWNER_COMMENT = "managed by nebula"
"""The marker written on every record set Nebula creates (see the module docstring)."""


@dataclass(frozen=True)
class RRSet:
    """One record set: every record of one name and type."""

    name: str
    type: str
    ttl: int
    values: tuple[str, ...]
    proxied: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.type)

    def describe(self) -> str:
        shown = ", ".join(self.values)
        proxied = " proxied" if self.proxied else ""
        return f"{shown} (ttl {self.ttl}{proxied})"


@dataclass(frozen=True)
class ZoneAccount:
    """How to reach a zone's provider: API URL, PowerDNS server id, and the name of the secret
    holding the token (never the token)."""

    api_url: str | None
    server_id: str
    secret_name: str


@dataclass(frozen=True)
class DesiredZone:
    """A zone of the config repo with every record set it should hold."""

    zone: str
    provider: str
    account: ZoneAccount
    rrsets: tuple[RRSet, ...]
    file: str

    def to_json(self) -> dict[str, Any]:
        return {
            "zone": self.zone,
            "provider": self.provider,
            "account": [self.account.api_url, self.account.server_id, self.account.secret_name],
            "rrsets": [[r.name, r.type, r.ttl, list(r.values), r.proxied] for r in self.rrsets],
            "file": self.file,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DesiredZone:
        return cls(
            zone=data["zone"],
            provider=data["provider"],
            account=ZoneAccount(*data["account"]),
            rrsets=tuple(RRSet(n, t, ttl, tuple(v), p) for n, t, ttl, v, p in data["rrsets"]),
            file=data["file"],
        )


@dataclass(frozen=True)
class ObservedRRSet(RRSet):
    """A record set as the provider holds it, with whether Nebula owns it.

    `record_ids` pairs each value with the provider's id of its record, for providers that
    address records one by one (Cloudflare); empty for PowerDNS, which addresses record sets.
    """

    owned: bool = False
    record_ids: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ZoneState:
    """What a provider holds for a zone. `exists` is False when the zone is not there yet."""

    zone: str
    exists: bool
    rrsets: tuple[ObservedRRSet, ...] = ()
    zone_id: str | None = None


class DnsAction(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    NOOP = "noop"
    FOREIGN = "foreign"  # not Nebula's and not asked for: left alone
    CONFLICT = "conflict"  # asked for, but a foreign record set is in the way: left alone


PENDING = (DnsAction.CREATE, DnsAction.UPDATE, DnsAction.DELETE)


@dataclass(frozen=True)
class DnsChange:
    action: DnsAction
    name: str
    type: str
    reason: str
    desired: RRSet | None = None
    observed: ObservedRRSet | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "name": self.name,
            "type": self.type,
            "reason": self.reason,
            "values": list(self.desired.values if self.desired else ()),
        }

    def line(self) -> str:
        """The change in one line: `create www.example.com A 192.0.2.1 (ttl 300)`."""
        shown = f" {self.desired.describe()}" if self.desired else ""
        return f"{self.action.value} {self.name} {self.type}{shown}"


@dataclass(frozen=True)
class ZonePlan:
    """The changes that make one zone match the config repo."""

    zone: str
    provider: str
    create_zone: bool
    changes: tuple[DnsChange, ...]
    state: ZoneState = field(repr=False, compare=False, default=ZoneState("", False))

    @property
    def pending(self) -> tuple[DnsChange, ...]:
        return tuple(c for c in self.changes if c.action in PENDING)

    @property
    def conflicts(self) -> tuple[DnsChange, ...]:
        return tuple(c for c in self.changes if c.action is DnsAction.CONFLICT)

    @property
    def has_changes(self) -> bool:
        return self.create_zone or bool(self.pending)

    def counts(self) -> dict[str, int]:
        counted = Counter(c.action.value for c in self.changes)
        return {action.value: counted.get(action.value, 0) for action in DnsAction}

    def to_dict(self) -> dict[str, Any]:
        return {
            "zone": self.zone,
            "provider": self.provider,
            "create_zone": self.create_zone,
            "summary": self.counts(),
            "changes": [c.to_dict() for c in self.changes if c.action is not DnsAction.NOOP],
        }


@dataclass(frozen=True)
class ChangeFailure:
    """A change the provider refused; the zone's other changes went on."""

    change: DnsChange
    message: str

    def __str__(self) -> str:
        return f"{self.change.name} {self.change.type}: {self.message}"
