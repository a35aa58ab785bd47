"""The one small interface every DNS provider implements, and what each can do.

A provider reads a zone into a `ZoneState` (one read, however the API pages) and applies the
pending changes of a `ZonePlan` with as few writes as its API allows (PowerDNS: one PATCH of
every record set; Cloudflare: its batch endpoint). A batch the provider refuses because of one
record is retried change by change, so one rejected record fails alone and the rest is applied:
`apply` returns those failures. Failures of the whole zone (bad token, unreachable API) raise
`ProviderError` naming the zone; nothing is written then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, Self

from nebula.kinds.dns.types import ChangeFailure, ZoneAccount, ZonePlan, ZoneState


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do, checked once when zones naming it are validated."""

    record_types: frozenset[str]
    proxied: bool  # Cloudflare's proxy
    needs_api_url: bool = False  # no default API: `account.api_url` is required


class DnsProvider(Protocol):
    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    @classmethod
    def open(cls, account: ZoneAccount, token: str) -> Self:
        """The provider for `account`, authenticated with `token` (no request made yet)."""
        ...

    def read(self, zone: str) -> ZoneState:
        """Every record set of `zone` (absent zone: `exists=False`); `ProviderError` if unread."""
        ...

    def apply(self, plan: ZonePlan) -> list[ChangeFailure]:
        """Carry out `plan` (creating the zone first if asked); the changes refused, if any."""
        ...

    def close(self) -> None: ...
