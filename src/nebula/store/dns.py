"""Domains and their DNS records as last read from the provider (`domains`, `dns_records`)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select

from nebula.kinds.dns.types import ZoneState
from nebula.store.models import DnsRecord, Domain, utcnow
from nebula.store.store import Store

Row = tuple[str, str, str, int, bool, str | None, bool]
"""A `dns_records` row's fields besides its id, domain and time (`ROW_COLUMNS`)."""

ROW_COLUMNS = ("record_type", "name", "content", "ttl", "proxied", "provider_id", "owned")


@dataclass(frozen=True)
class DomainInfo:
    id: str
    name: str
    provider: str | None
    zone_id: str | None
    ssl_status: str | None
    ssl_expires_at: datetime | None
    last_error: str | None
    synced_at: datetime | None
    records: int


@dataclass(frozen=True)
class DnsRecordInfo:
    id: str
    name: str
    type: str
    content: str
    ttl: int
    proxied: bool
    owned: bool
    provider_id: str | None


class DnsStore:
    """Queries over the DNS tables, on the shared `Store`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def record_zone(
        self, zone: str, provider: str, state: ZoneState | None, error: str | None = None
    ) -> None:
        """Remember a zone after a sync: its records as read back (`state`), or, when the zone
        could not be read (`state` None), only the error: the last known records stay."""
        now = utcnow()
        with self._store.transaction() as session:
            domain = session.scalars(select(Domain).where(Domain.name == zone)).one_or_none()
            if domain is None:
                domain = Domain(name=zone, created_at=now)
                session.add(domain)
            domain.provider = provider
            domain.last_error = error
            if state is None:
                return
            domain.synced_at = now
            domain.zone_id = state.zone_id or (zone if state.exists else None)
            session.flush()
            columns = [getattr(DnsRecord, c) for c in ROW_COLUMNS]
            stored = session.execute(
                select(DnsRecord.id, *columns).where(DnsRecord.domain_id == domain.id)
            )
            stale, new = row_changes(stored.all(), state)
            if stale:
                session.execute(delete(DnsRecord).where(DnsRecord.id.in_(stale)))
            if new:  # one executemany, not an ORM object per record
                session.execute(
                    insert(DnsRecord),
                    [
                        {"id": row_id, "domain_id": domain.id, "created_at": now}
                        | dict(zip(ROW_COLUMNS, row, strict=True))
                        for row_id, row in zip(new_row_ids(len(new)), new, strict=True)
                    ],
                )

    def forget_missing(self, zones: set[str]) -> None:
        """Drop the rows of zones no longer in the config repo (their records stay published)."""
        with self._store.transaction() as session:
            session.execute(delete(Domain).where(Domain.name.not_in(zones)))

    def domains(self) -> list[DomainInfo]:
        counts = (
            select(DnsRecord.domain_id, func.count().label("n"))
            .group_by(DnsRecord.domain_id)
            .subquery()
        )
        query = (
            select(Domain, counts.c.n)
            .outerjoin(counts, counts.c.domain_id == Domain.id)
            .order_by(Domain.name)
        )
        with self._store.transaction() as session:
            return [_domain(d, n or 0) for d, n in session.execute(query).all()]

    def domain(self, key: str) -> DomainInfo | None:
        """A domain by its id or its zone name."""
        return next((d for d in self.domains() if key in (d.id, d.name)), None)

    def records(self, domain_id: str) -> list[DnsRecordInfo]:
        query = (
            select(DnsRecord)
            .where(DnsRecord.domain_id == domain_id)
            .order_by(DnsRecord.name, DnsRecord.record_type, DnsRecord.content)
        )
        with self._store.transaction() as session:
            return [
                DnsRecordInfo(
                    r.id, r.name, r.record_type, r.content, r.ttl, r.proxied, r.owned, r.provider_id
                )
                for r in session.scalars(query)
            ]


def _zone_rows(state: ZoneState) -> list[Row]:
    """The `dns_records` rows of a zone (`ROW_COLUMNS`): one per value of each record set."""
    rows: list[Row] = []
    for rrset in state.rrsets:
        ids = dict(rrset.record_ids)
        for value in rrset.values:
            rows.append(
                (rrset.type, rrset.name, value[:500], rrset.ttl, rrset.proxied, ids.get(value),
                 rrset.owned)
            )  # fmt: skip
    return rows


def row_changes(stored: Iterable[Sequence[Any]], state: ZoneState) -> tuple[list[str], list[Row]]:
    """What makes a zone's `stored` rows (id, then `ROW_COLUMNS`) hold `state`: the ids of the
    rows to delete and the rows to insert. A row that did not change is left as it is, with
    its id and its `created_at`: a sync that changed ten records touches only their rows."""
    wanted = dict.fromkeys(_zone_rows(state))
    kept: set[Row] = set()
    stale: list[str] = []
    for row_id, kind, name, content, ttl, proxied, provider_id, owned in stored:
        row = (kind, name, content, ttl, bool(proxied), provider_id, bool(owned))
        if row in wanted and row not in kept:
            kept.add(row)
        else:
            stale.append(row_id)
    return stale, [row for row in wanted if row not in kept]


def new_row_ids(count: int) -> list[str]:
    """`count` random (version 4) UUIDs, from one read of the system's random source rather
    than one each (`uuid.uuid4()`): a zone of a thousand records is a thousand new rows."""
    random = os.urandom(16 * count)
    return [str(uuid.UUID(bytes=random[i : i + 16], version=4)) for i in range(0, 16 * count, 16)]


def _domain(row: Domain, count: int) -> DomainInfo:
    return DomainInfo(
        id=row.id,
        name=row.name,
        provider=row.provider,
        zone_id=row.zone_id,
        ssl_status=row.ssl_status,
        ssl_expires_at=row.ssl_expires_at,
        last_error=row.last_error,
        synced_at=row.synced_at,
        records=count,
    )
