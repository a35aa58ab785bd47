"""`proxy:` in nebula.yaml: the Caddy server that publishes exposed hostnames over HTTPS.

Caddy runs as its own service on the edge node (`node`; a package, systemd unit, or a container
on the host network); Nebula only talks to its admin API and never restarts it.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from pydantic import Field, HttpUrl, IPvAnyAddress, model_validator

from nebula.spec.base import StrictModel
from nebula.spec.names import Name
from nebula.spec.tls import TlsPolicy


class Proxy(StrictModel):
    admin: HttpUrl = Field(
        default=HttpUrl("http://127.0.0.1:2019"),
        description="Caddy's admin API (keep it on loopback: it can rewrite the whole proxy)",
    )
    listen: IPvAnyAddress = Field(
        default=IPv4Address("0.0.0.0"), description="address Caddy's HTTP and HTTPS listeners bind"
    )
    http_port: int = Field(
        default=80, ge=1, le=65535, description="HTTP port (redirects, ACME HTTP-01)"
    )
    https_port: int = Field(default=443, ge=1, le=65535, description="HTTPS port")
    server: str = Field(
        default="nebula",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="name of the Caddy HTTP server Nebula owns; other servers are left alone",
    )
    tls: TlsPolicy = Field(
        default=TlsPolicy(), description="default certificate policy of exposed hostnames"
    )
    node: Name | None = Field(
        default=None,
        description="the edge node Caddy runs on (nebula.yaml `nodes`), where exposed hostnames "
        "point; default the first node",
    )

    @model_validator(mode="after")
    def _distinct_ports(self) -> Proxy:
        if self.http_port == self.https_port:
            raise ValueError("http_port and https_port must differ")
        return self

    @property
    def https_address(self) -> str:
        """Where to connect to the HTTPS listener from this host (a wildcard means loopback)."""
        if self.listen == IPv4Address("0.0.0.0"):
            return "127.0.0.1"
        if self.listen == IPv6Address("::"):
            return "::1"
        return str(self.listen)
