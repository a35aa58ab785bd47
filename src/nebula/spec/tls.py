"""TLS policy: who issues the certificate of an exposed hostname.

Two issuers, both run by Caddy (Nebula never touches keys itself):

- `acme`: a public ACME CA (Let's Encrypt by default). A private ACME CA such as Pebble or
  step-ca is used by giving its `directory` and, when its API is served with a certificate no
  system store trusts, `trusted_roots` (PEM files on the Caddy host).
- `internal`: Caddy's own local CA. Names no public CA can validate (`.lan`, `.home.arpa`,
  `.internal`, `.local`, `.localhost`, `.test`, ...) use it unless a policy says otherwise.

A policy is written in `nebula.yaml` under `proxy.tls` (the default for every exposed hostname)
and may be overridden per zone in `domains/*.yaml` under `tls:`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, HttpUrl

from nebula.spec.base import StrictModel
from nebula.spec.names import excerpt

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"

PRIVATE_SUFFIXES = (
    "lan",
    "home",
    "home.arpa",
    "internal",
    "local",
    "localhost",
    "localdomain",
    "test",
    "example",
    "invalid",
    "corp",
    "intranet",
    "private",
)
"""Names that cannot get a public certificate (RFC 6761/6762/8375 and common homelab use)."""

Issuer = Literal["acme", "internal"]

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise ValueError(f"{excerpt(value)} is not an email address (e.g. admin@example.com)")
    return value


Email = Annotated[str, AfterValidator(_email)]


class Acme(StrictModel):
    """An ACME certificate authority, used by Caddy to obtain and renew certificates."""

    directory: HttpUrl = Field(
        default=HttpUrl(LETS_ENCRYPT), description="the CA's ACME directory URL"
    )
    email: Email | None = Field(
        default=None, description="account contact: the CA writes here about expiring certificates"
    )
    trusted_roots: list[str] = Field(
        default=[],
        description="PEM files on the Caddy host that sign the ACME server's own TLS certificate "
        "(a private ACME CA such as Pebble or step-ca); empty: the system trust store",
    )


class TlsPolicy(StrictModel):
    """How the certificates of exposed hostnames are issued."""

    issuer: Issuer | None = Field(
        default=None,
        description="acme or internal; unset: internal for private names (.lan, .home.arpa, "
        ".internal, .test, ...), acme for the rest",
    )
    acme: Acme = Field(default=Acme(), description="the ACME CA, for `issuer: acme`")

    def issuer_for(self, host: str) -> Issuer:
        """The issuer of `host`'s certificate under this policy."""
        if self.issuer is not None:
            return self.issuer
        return "internal" if is_private_name(host) else "acme"


def is_private_name(host: str) -> bool:
    """True for names under a suffix no public CA can validate (`nas.lan`, `x.home.arpa`)."""
    host = host.lower().rstrip(".")
    return any(host == s or host.endswith("." + s) for s in PRIVATE_SUFFIXES)
