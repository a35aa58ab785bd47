"""Certificate status of an exposed hostname, from the certificate its listener serves.

Statuses are the seed's: `pending` (nothing served for the name yet, or a certificate that
does not cover it), `active`, `expired`. A certificate is *expiring* (a warning event) when
less than 14 days are left, or, for short-lived certificates such as those of Caddy's
internal CA (12 hours), when less than a quarter of its lifetime is left: Caddy renews at a
third, so either means renewal is failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

CertStatus = Literal["pending", "active", "expired"]
WARN_BEFORE = timedelta(days=14)


class ServedCertificate(Protocol):
    """What a TLS listener served for a name (see `providers.tls_probe`)."""

    @property
    def issuer(self) -> str: ...
    @property
    def names(self) -> tuple[str, ...]: ...
    @property
    def not_before(self) -> datetime: ...
    @property
    def not_after(self) -> datetime: ...


@dataclass(frozen=True)
class CertificateState:
    host: str
    installation: str
    issuer: str | None
    status: CertStatus
    expires_at: datetime | None
    expiring: bool  # within the warning window

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "installation": self.installation,
            "issuer": self.issuer,
            "status": self.status,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "expiring": self.expiring,
        }


def certificate_state(
    host: str, installation: str, served: ServedCertificate | None, now: datetime
) -> CertificateState:
    if served is None or not covers(served.names, host):
        return CertificateState(host, installation, None, "pending", None, False)
    if served.not_after <= now:
        return CertificateState(
            host, installation, served.issuer, "expired", served.not_after, True
        )
    lifetime = served.not_after - served.not_before
    expiring = served.not_after - now < min(WARN_BEFORE, lifetime / 4)
    return CertificateState(host, installation, served.issuer, "active", served.not_after, expiring)


def covers(names: tuple[str, ...], host: str) -> bool:
    """True when one of the certificate's DNS names matches `host` (one-label wildcards)."""
    host = host.lower()
    for name in (n.lower() for n in names):
        if name == host:
            return True
        if name.startswith("*.") and host.count(".") >= 2 and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def summarize(states: list[CertificateState]) -> tuple[CertStatus, datetime | None]:
    """A zone's `ssl_status` and `ssl_expires_at`: the worst status, the earliest expiry."""
    order: dict[CertStatus, int] = {"expired": 0, "pending": 1, "active": 2}
    statuses: list[CertStatus] = [s.status for s in states]
    status: CertStatus = min(statuses, key=order.__getitem__, default="pending")
    expiries = [s.expires_at for s in states if s.expires_at is not None]
    return status, min(expiries, default=None)
