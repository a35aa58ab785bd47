"""A domain: one `domains/*.yaml` file of the config repo, one DNS zone.

```yaml
zone: example.com
provider: powerdns            # powerdns | cloudflare
account:
  api_url: http://127.0.0.1:8081
  server_id: localhost        # PowerDNS only
  token: ${secret:PDNS_API_KEY}
ttl: 3600                     # default TTL of the records below
records:
  - {name: www, type: A, value: 192.0.2.10}
  - {name: "@", type: MX, value: "10 mail.example.com."}
  - {name: "@", type: TXT, value: ["v=spf1 -all", "hello"]}
  - {name: _sip._tcp, type: SRV, value: "10 5 5060 sip.example.com."}
  - {name: "@", type: CAA, value: '0 issue "letsencrypt.org"'}
  - {name: app, type: CNAME, value: www, proxied: true}   # proxied: Cloudflare only
tls: {issuer: acme}           # optional: the certificate policy of this zone's hostnames
```

Record names are relative to the zone (`www`, `@` for the apex) or absolute with a final dot
(`www.example.com.`). Entries with the same name and type form one record set; its TTL and
`proxied` must agree. Target names (CNAME, MX, SRV) without a final dot are relative to the zone,
as in a zone file. Values are checked per type, and every problem is reported with its line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Self

from pydantic import Field, HttpUrl, field_validator, model_validator

from nebula.spec.base import StrictModel, Text
from nebula.spec.dns_values import (
    RECORD_TYPES,
    RecordType,
    check_record_name,
    check_secret_reference,
    check_value,
    check_zone_name,
    qualify,
)
from nebula.spec.tls import TlsPolicy

__all__ = ["RECORD_TYPES", "Account", "Domain", "Record", "RecordType", "check_value", "qualify"]


class Record(StrictModel):
    """One entry of `records:`: a name, a type and its value(s)."""

    name: Text = Field(description="relative to the zone (`www`, `@`), or absolute ending in `.`")
    type: RecordType
    value: Text | list[Text] = Field(description="the record's data; a list for several")
    ttl: int | None = Field(
        default=None, ge=1, le=2_147_483_647, description="seconds; default the zone's `ttl`"
    )
    proxied: bool | None = Field(
        default=None,
        description="Cloudflare only: serve through Cloudflare's proxy (A, AAAA, CNAME)",
    )

    @property
    def values(self) -> list[str]:
        return self.value if isinstance(self.value, list) else [self.value]

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        return check_record_name(name)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.values:
            raise ValueError("give at least one value")
        for value in self.values:
            check_value(self.type, value)
        if self.proxied and self.type not in ("A", "AAAA", "CNAME"):
            raise ValueError("only A, AAAA and CNAME records can be proxied")
        return self


class Account(StrictModel):
    """How Nebula reaches the zone's DNS provider."""

    api_url: HttpUrl | None = Field(
        default=None,
        description="PowerDNS: its API (webserver) URL, required; Cloudflare: default "
        "https://api.cloudflare.com/client/v4",
    )
    server_id: str = Field(default="localhost", description="PowerDNS server id")
    token: str = Field(
        description="API key (PowerDNS) or API token (Cloudflare): `${secret:NAME}`, never "
        "the token itself"
    )

    @field_validator("token")
    @classmethod
    def _secret(cls, token: str) -> str:
        return check_secret_reference(token)

    @property
    def secret_name(self) -> str:
        return self.token.strip()[len("${secret:") : -1]


class Domain(StrictModel):
    zone: str = Field(description="the zone's name, e.g. example.com")
    provider: str = Field(
        description="the DNS provider serving the zone: powerdns or cloudflare (each checks "
        "what it can serve)"
    )
    account: Account
    ttl: int = Field(default=3600, ge=1, le=2_147_483_647, description="default record TTL")
    records: list[Record] = []
    tls: TlsPolicy | None = Field(
        default=None, description="certificate policy of this zone's hostnames; default proxy.tls"
    )

    @field_validator("zone")
    @classmethod
    def _zone(cls, zone: str) -> str:
        return check_zone_name(zone)


def zone_of(host: str, zones: Iterable[str]) -> str | None:
    """The zone `host` belongs to: the longest of `zones` that is a suffix of it."""
    host = host.lower().rstrip(".")
    found = [z for z in zones if host == z or host.endswith("." + z)]
    return max(found, key=len) if found else None
