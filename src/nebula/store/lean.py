"""A DNS sync's writes straight through `sqlite3`, without SQLAlchemy.

Importing SQLAlchemy and mapping every table costs several times a whole DNS sync of a zone of
1,000 records, so `nebula dns apply` records what it applied here: the zones' rows (`domains`,
`dns_records`, as `store.dns.DnsStore.record_zone` writes them) and the audit entries (chained
as `store.audit.append` chains them, with the rules of `store.audit_chain`), all in one
transaction. It applies to a SQLite database already at `db.HEAD_REVISION` whose audit head
row is in place; for anything else (PostgreSQL, a database to create or migrate, a head to
restore, a file that is no database) `record_dns_sync` writes nothing and returns False, and the
caller uses `Store`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nebula.errors import StoreError
from nebula.kinds.dns.types import ZoneState
from nebula.store.audit_chain import HEAD_ID, capped, entry_hash, stored_detail
from nebula.store.db import HEAD_REVISION, SQLITE_PRAGMAS

_SQLITE_PREFIX = "sqlite:///"


@dataclass(frozen=True)
class ZoneRecord:
    """One zone after a sync: its records as they now are (`state`), or, when it could not be
    read (`state` None), only the error (the last known records stay)."""

    zone: str
    provider: str
    state: ZoneState | None
    error: str | None


@dataclass(frozen=True)
class AuditItem:
    action: str
    target: str | None
    detail: Mapping[str, Any]


Row = tuple[str, str, str, int, bool, str | None, bool]
"""A `dns_records` row's fields besides its id, domain and time (`ROW_COLUMNS`)."""

ROW_COLUMNS = ("record_type", "name", "content", "ttl", "proxied", "provider_id", "owned")


def zone_rows(state: ZoneState) -> list[Row]:
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
    wanted = dict.fromkeys(zone_rows(state))
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


def sqlite_file(url: str) -> Path | None:
    """The file of a plain `sqlite:///PATH` URL that exists; None for any other URL."""
    if not url.startswith(_SQLITE_PREFIX) or "?" in url:
        return None
    path = url[len(_SQLITE_PREFIX) :]
    if not path or path == ":memory:":
        return None
    file = Path(path)
    return file if file.is_file() else None


def record_dns_sync(
    url: str, zones: Sequence[ZoneRecord], entries: Sequence[AuditItem], actor: str
) -> bool:
    """Write `zones` and append `entries` (by `actor`) in one transaction; True when done,
    False when this database needs `Store` (see the module docstring): nothing written then."""
    file = sqlite_file(url)
    if file is None:
        return False
    try:
        connection = sqlite3.connect(file, isolation_level=None, timeout=10)
    except sqlite3.Error:
        return False  # `Store` says why, in its words
    try:
        for pragma in SQLITE_PRAGMAS:
            connection.execute(pragma)
        connection.execute("BEGIN IMMEDIATE")  # the write lock first, as an audit append does
        try:
            done = _write(connection, zones, entries, actor)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT" if done else "ROLLBACK")
        return done
    except sqlite3.Error as exc:
        if getattr(exc, "sqlite_errorname", "") == "SQLITE_NOTADB":
            return False  # damaged: `Store` refuses it and says what to do
        raise StoreError(f"cannot write database {url}: {exc}") from exc
    finally:
        connection.close()


def _write(
    db: sqlite3.Connection, zones: Sequence[ZoneRecord], entries: Sequence[AuditItem], actor: str
) -> bool:
    try:
        revision = db.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:  # no such table: a database Store has not set up
        return False
    if revision is None or revision[0] != HEAD_REVISION:
        return False
    head = db.execute(
        "UPDATE audit_head SET seq = seq WHERE id = ? RETURNING seq, hash", (HEAD_ID,)
    ).fetchone()
    if head is None and entries:
        return False  # `store.audit` restores the head and says so in the chain
    now = datetime.now(UTC)
    for zone in zones:
        _record_zone(db, zone, now)
    if not entries:
        return True
    last = db.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = last if last is not None and last[0] > head[0] else head
    for item in entries:
        seq, prev = _append(db, seq + 1, prev, actor, item)
    db.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = ?", (seq, prev, HEAD_ID))
    return True


def _record_zone(db: sqlite3.Connection, zone: ZoneRecord, now: datetime) -> None:
    row = db.execute("SELECT id FROM domains WHERE name = ?", (zone.zone,)).fetchone()
    if row is None:
        domain_id = str(uuid.uuid4())
        db.execute(
            "INSERT INTO domains (id, name, provider, last_error, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (domain_id, zone.zone, zone.provider, zone.error, _timestamp(now)),
        )
    else:
        domain_id = row[0]
        db.execute(
            "UPDATE domains SET provider = ?, last_error = ? WHERE id = ?",
            (zone.provider, zone.error, domain_id),
        )
    state = zone.state
    if state is None:
        return
    zone_id = state.zone_id or (zone.zone if state.exists else None)
    stamp = _timestamp(now)
    db.execute(
        "UPDATE domains SET synced_at = ?, zone_id = ? WHERE id = ?", (stamp, zone_id, domain_id)
    )
    stored = db.execute(
        f"SELECT id, {', '.join(ROW_COLUMNS)} FROM dns_records WHERE domain_id = ?", (domain_id,)
    )
    stale, new = row_changes(stored.fetchall(), state)
    db.executemany("DELETE FROM dns_records WHERE id = ?", ((row_id,) for row_id in stale))
    db.executemany(
        f"INSERT INTO dns_records (id, domain_id, {', '.join(ROW_COLUMNS)}, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            (row_id, domain_id, *row, stamp)
            for row_id, row in zip(new_row_ids(len(new)), new, strict=True)
        ),
    )


def _append(
    db: sqlite3.Connection, seq: int, prev: str, actor: str, item: AuditItem
) -> tuple[int, str]:
    who, action, target = capped(actor, item.action, item.target)
    detail = stored_detail(item.detail, None)
    at = datetime.now(UTC)
    digest = entry_hash(
        at=at, actor=who, action=action, target=target, detail=detail, prev_hash=prev
    )
    db.execute(
        "INSERT INTO audit_log (seq, at, actor, action, target, detail, prev_hash, hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, _timestamp(at), who, action, target, json.dumps(detail), prev, digest),
    )
    return seq, digest


def _timestamp(moment: datetime) -> str:
    """How SQLAlchemy stores a UTC timestamp in SQLite (`models.UTCDateTime`)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
