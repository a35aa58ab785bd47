"""What `nebula dns apply` leaves in the state database: the zones' records and a `dns.apply`
audit entry per zone applied or failed, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest

from nebula.errors import StoreError
from nebula.kinds.dns.apply import ZoneOutcome, audit_entries, record_outcomes
from nebula.kinds.dns.types import DnsAction, DnsChange, ObservedRRSet, RRSet, ZonePlan, ZoneState
from nebula.store import Store, audit, db
from nebula.store.dns import DnsStore, new_row_ids

ZONE = "record.test"
ACTOR = "cli:alice@host"


def record_apply(url: str, outcomes: list[ZoneOutcome], actor: str) -> None:
    """What `nebula dns apply` records: each zone, then its audit entry."""
    with Store(url) as store:
        record_outcomes(store, outcomes)
        for zone, detail in audit_entries(outcomes):
            audit.append(store, actor=actor, action="dns.apply", target=zone, detail=detail)


def _state(address: str) -> ZoneState:
    return ZoneState(
        ZONE,
        True,
        (
            ObservedRRSet(f"www.{ZONE}", "A", 300, (address, "192.0.2.2"), owned=True),
            ObservedRRSet(f"mail.{ZONE}", "MX", 3600, ("10 mx.example.net",), owned=False),
        ),
        f"{ZONE}.",
    )


def _outcomes(address: str) -> list[ZoneOutcome]:
    want = RRSet(f"www.{ZONE}", "A", 300, (address, "192.0.2.2"))
    change = DnsChange(DnsAction.UPDATE, want.name, "A", f"→ {address}", want)
    plan = ZonePlan(ZONE, "powerdns", False, (change,))
    broken = ZoneOutcome("broken.test", "cloudflare", None, error="token refused")
    return [ZoneOutcome(ZONE, "powerdns", plan, applied=True, state=_state(address)), broken]


def _snapshot(store: Store) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    dns = DnsStore(store)
    domains = [(d.name, d.provider, d.zone_id, d.last_error, d.records) for d in dns.domains()]
    records = [
        (r.name, r.type, r.content, r.ttl, r.proxied, r.owned)
        for d in dns.domains()
        for r in dns.records(d.id)
    ]
    return domains, records


def _ids(store: Store) -> dict[str, str]:
    """Each record's row id, by its content (unique in these zones)."""
    dns = DnsStore(store)
    return {r.content: r.id for d in dns.domains() for r in dns.records(d.id)}


def test_an_apply_is_recorded_on_every_database(database_url: str) -> None:
    Store(database_url).close()  # created and migrated
    record_apply(database_url, _outcomes("192.0.2.1"), ACTOR)
    with Store(database_url) as store:
        first = _ids(store)
    record_apply(database_url, _outcomes("192.0.2.9"), ACTOR)  # one record replaced
    with Store(database_url) as store:
        then = _ids(store)
        # The records that did not change keep their rows; the new address is a new row.
        assert {k: v for k, v in then.items() if k in first} == {
            k: v for k, v in first.items() if k != "192.0.2.1"
        }
        assert set(then) - set(first) == {"192.0.2.9"}
        domains, records = _snapshot(store)
        assert domains == [
            ("broken.test", "cloudflare", None, "token refused", 0),
            (ZONE, "powerdns", f"{ZONE}.", None, 3),
        ]
        assert records == [
            (f"mail.{ZONE}", "MX", "10 mx.example.net", 3600, False, False),
            (f"www.{ZONE}", "A", "192.0.2.2", 300, False, True),
            (f"www.{ZONE}", "A", "192.0.2.9", 300, False, True),
        ]
        entries = audit.entries(store)
        assert [(e.actor, e.action, e.target) for e in entries] == [
            (ACTOR, "dns.apply", ZONE),
            (ACTOR, "dns.apply", "broken.test"),
        ] * 2
        assert entries[2].detail["changes"] == [
            f"update www.{ZONE} A 192.0.2.9, 192.0.2.2 (ttl 300)"
        ]
        assert entries[3].detail["error"] == "token refused"
        assert audit.verify(store).ok
        # Appended after the DNS entries, the chain goes on unbroken.
        audit.append(store, actor=ACTOR, action="secret.set", target="X", detail={})
        assert audit.verify(store).ok


def test_a_sync_that_applied_nothing_records_the_zones_without_audit_entries(
    database_url: str,
) -> None:
    want = RRSet(f"www.{ZONE}", "A", 300, ("192.0.2.1", "192.0.2.2"))
    unchanged = DnsChange(DnsAction.NOOP, want.name, "A", "", want)
    plan = ZonePlan(ZONE, "powerdns", False, (unchanged,))
    record_apply(
        database_url, [ZoneOutcome(ZONE, "powerdns", plan, state=_state("192.0.2.1"))], ACTOR
    )
    with Store(database_url) as store:
        assert _snapshot(store)[0] == [(ZONE, "powerdns", f"{ZONE}.", None, 3)]
        assert audit.entries(store) == []


def test_a_locked_database_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/nebula.db"
    Store(url).close()
    monkeypatch.setattr(db, "SQLITE_PRAGMAS", ("PRAGMA busy_timeout=100",))
    holder = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="database is locked"):
            record_apply(url, _outcomes("192.0.2.1"), ACTOR)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_new_rows_get_distinct_random_uuids() -> None:
    ids = new_row_ids(500)
    assert len(set(ids)) == 500
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids)
    assert new_row_ids(0) == []
