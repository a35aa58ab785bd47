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

import re
from ipaddress import AddressValueError, IPv4Address, IPv6Address
from typing import Literal, Self

from pydantic import Field, HttpUrl, field_validator, model_validator

from nebula.spec.base import StrictModel, Text
from nebula.spec.tls import TlsPolicy

RecordType = Literal["A", "AAAA", "CNAME", "TXT", "MX", "SRV", "CAA"]
ProviderName = Literal["powerdns", "cloudflare"]
RECORD_TYPES: tuple[RecordType, ...] = ("A", "AAAA", "CNAME", "TXT", "MX", "SRV", "CAA")

_LABEL = r"(\*|_?[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?)"
_RELATIVE = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_ZONE = re.compile(r"([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_CAA_TAGS = ("issue", "issuewild", "iodef")


def qualify(name: str, zone: str) -> str:
    """`www` → `www.example.com`, `@` → `example.com`, `x.other.org.` → `x.other.org`."""
    name = name.strip().lower()
    if name in ("@", ""):
        return zone
    if name.endswith("."):
        return name[:-1]
    return f"{name}.{zone}"


def _target(value: str, what: str) -> str:
    """A host name in a record's data: `.` (none), relative, or absolute with a final dot."""
    bare = value.lower().rstrip(".")
    if value not in (".", "@") and not _RELATIVE.fullmatch(bare):
        raise ValueError(f"{value!r} is not a host name ({what})")
    return value


def _number(text: str, what: str, top: int) -> int:
    if not text.isdigit() or int(text) > top:
        raise ValueError(f"{text!r} is not a valid {what} (0 to {top})")
    return int(text)


def check_value(kind: RecordType, value: str) -> None:
    """Raise `ValueError` with what is valid when `value` is not data for a `kind` record."""
    parts = value.split()
    if kind == "A":
        try:
            IPv4Address(value)
        except AddressValueError:
            raise ValueError(f"{value!r} is not an IPv4 address (e.g. 192.0.2.10)") from None
    elif kind == "AAAA":
        try:
            IPv6Address(value)
        except AddressValueError:
            raise ValueError(f"{value!r} is not an IPv6 address (e.g. 2001:db8::10)") from None
    elif kind == "CNAME":
        _target(value, "CNAME target, e.g. www or www.example.com.")
    elif kind == "TXT":
        if not value or len(value.encode()) > 4000:
            raise ValueError("TXT data must be 1 to 4000 bytes")
    elif kind == "MX":
        if len(parts) != 2:
            raise ValueError(f"{value!r}: MX data is `PRIORITY HOST`, e.g. `10 mail.example.com.`")
        _number(parts[0], "MX priority", 65535)
        _target(parts[1], "MX host")
    elif kind == "SRV":
        if len(parts) != 4:
            raise ValueError(
                f"{value!r}: SRV data is `PRIORITY WEIGHT PORT TARGET`, "
                "e.g. `10 5 5060 sip.example.com.`"
            )
        for part, what in zip(parts[:3], ("priority", "weight", "port"), strict=True):
            _number(part, f"SRV {what}", 65535)
        _target(parts[3], "SRV target")
    elif kind == "CAA":
        match = re.fullmatch(r'(\d+)\s+([a-z0-9]+)\s+"([^"]*)"', value, re.IGNORECASE)
        if match is None:
            raise ValueError(
                f'{value!r}: CAA data is `FLAGS TAG "VALUE"`, e.g. `0 issue "letsencrypt.org"`'
            )
        _number(match[1], "CAA flag", 255)
        if match[2].lower() not in _CAA_TAGS:
            raise ValueError(f"CAA tag {match[2]!r} is not one of {', '.join(_CAA_TAGS)}")


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
        bare = name.strip().lower()
        if bare not in ("@", "") and not _RELATIVE.fullmatch(bare.rstrip(".")):
            raise ValueError(
                f"{name!r} is not a record name: use `@` for the zone itself, a relative "
                "name such as `www` or `_sip._tcp`, or an absolute one ending in `.`"
            )
        return bare or "@"

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
        if not re.fullmatch(r"\$\{secret:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\}", token.strip()):
            raise ValueError(
                "write the token as ${secret:NAME} (stored with `nebula secrets set NAME`); "
                "a token in the repo would be readable by anyone with the repo"
            )
        return token.strip()

    @property
    def secret_name(self) -> str:
        return self.token.strip()[len("${secret:") : -1]


class Domain(StrictModel):
    zone: str = Field(description="the zone's name, e.g. example.com")
    provider: ProviderName
    account: Account
    ttl: int = Field(default=3600, ge=1, le=2_147_483_647, description="default record TTL")
    records: list[Record] = []
    tls: TlsPolicy | None = Field(
        default=None, description="certificate policy of this zone's hostnames; default proxy.tls"
    )

    @field_validator("zone")
    @classmethod
    def _zone(cls, zone: str) -> str:
        bare = zone.strip().lower().rstrip(".")
        if not _ZONE.fullmatch(bare):
            raise ValueError(f"{zone!r} is not a zone name (e.g. example.com)")
        return bare

    @model_validator(mode="after")
    def _provider_fields(self) -> Self:
        if self.provider == "powerdns" and self.account.api_url is None:
            raise ValueError("account.api_url is required for powerdns (its API URL)")
        return self
