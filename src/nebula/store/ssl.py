"""Certificate status per zone: `domains.ssl_status` and `domains.ssl_expires_at`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from nebula.store.models import Domain
from nebula.store.store import Store


def record_ssl(store: Store, zone: str, status: str | None, expires_at: datetime | None) -> None:
    """Set a zone's certificate status (the worst of its hostnames) and earliest expiry; the
    zone's row is created if its DNS was never synced. None: no certificate to speak of."""
    with store.transaction() as session:
        domain = session.scalars(select(Domain).where(Domain.name == zone)).one_or_none()
        if domain is None:
            if status is None:
                return
            domain = Domain(name=zone)
            session.add(domain)
        domain.ssl_status = status
        domain.ssl_expires_at = expires_at
