"""What `nebula dns apply` leaves in the state database: the zones' records and a `dns.apply`
audit entry per zone, the same whether written through `store.lean` (SQLite, no SQLAlchemy) or
through `Store` (PostgreSQL, or a database the lean write leaves to it)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

from nebula.kinds.dns.apply import ZoneOutcome, record_apply
from nebula.kinds.dns.types import DnsAction, DnsChange, ObservedRRSet, RRSet, ZonePlan, ZoneState
from nebula.store import Store, audit
from nebula.store.dns import DnsStore
from nebula.store.lean import AuditItem, ZoneRecord, new_row_ids, record_dns_sync

ZONE = "lean.test"
ACTOR = "cli:alice@host"


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


def test_an_apply_is_recorded_alike_on_every_database(database_url: str) -> None:
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
        # Appended after the lean entries, the chain goes on unbroken.
        audit.append(store, actor=ACTOR, action="secret.set", target="X", detail={})
        assert audit.verify(store).ok


def test_sqlite_is_written_without_sqlalchemy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/nebula.db"
    Store(url).close()
    script = (
        "import sys\n"
        "from nebula.store.lean import AuditItem, ZoneRecord, record_dns_sync\n"
        f"done = record_dns_sync({url!r}, [ZoneRecord('a.test', 'powerdns', None, 'down')],\n"
        "    [AuditItem('dns.apply', 'a.test', {'token': 'hunter2', 'zone': 'a.test'})], 'me')\n"
        "assert done and 'sqlalchemy' not in sys.modules, sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    with Store(url) as store:
        assert _snapshot(store)[0] == [("a.test", "powerdns", None, "down", 0)]
        (entry,) = audit.entries(store)
        assert entry.detail == {"token": "••••", "zone": "a.test"}  # masked as every detail
        assert audit.verify(store).ok


def test_what_the_lean_write_leaves_to_store(tmp_path: Path, database_url: str) -> None:
    zones = [ZoneRecord(ZONE, "powerdns", _state("192.0.2.1"), None)]
    entries = [AuditItem("dns.apply", ZONE, {})]
    missing = f"sqlite:///{tmp_path}/none.db"
    assert not record_dns_sync(missing, zones, entries, ACTOR)
    assert not Path(missing.removeprefix("sqlite:///")).exists()
    Store(database_url).close()
    if database_url.startswith("sqlite"):  # at head: written; without its head row: left alone
        path = database_url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as db:
            db.execute("DELETE FROM audit_head")
        assert not record_dns_sync(database_url, zones, entries, ACTOR)
        with Store(database_url) as store:
            assert _snapshot(store) == ([], [])
            # Store restores the head (and says so in the chain), as it would for any append.
            record_apply(database_url, _outcomes("192.0.2.1"), ACTOR)
            assert [e.action for e in audit.entries(store)] == ["dns.apply", "dns.apply"]
        with sqlite3.connect(path) as db:
            db.execute("UPDATE alembic_version SET version_num = '0001'")
        assert not record_dns_sync(database_url, zones, entries, ACTOR)
    else:
        assert not record_dns_sync(database_url, zones, entries, ACTOR)
        with Store(database_url) as store:
            assert _snapshot(store) == ([], [])


def test_a_locked_database_is_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/nebula.db"
    Store(url).close()
    holder = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        script = (
            "from nebula.store import lean\n"
            "lean.SQLITE_PRAGMAS = ('PRAGMA busy_timeout=100',)\n"
            f"lean.record_dns_sync({url!r}, [lean.ZoneRecord('a.test', 'powerdns', None, None)],"
            " [], 'me')\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=False
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode != 0
    assert "StoreError: cannot write database" in result.stderr
    assert "database is locked" in result.stderr


def test_a_sync_without_entries_writes_only_the_zones(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/nebula.db"
    Store(url).close()
    assert record_dns_sync(url, [ZoneRecord(ZONE, "powerdns", _state("192.0.2.1"), None)], [], "me")
    with Store(url) as store:
        assert _snapshot(store)[0] == [(ZONE, "powerdns", f"{ZONE}.", None, 3)]
        assert audit.entries(store) == []


def test_new_rows_get_distinct_random_uuids() -> None:
    ids = new_row_ids(500)
    assert len(set(ids)) == 500
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids)
    assert new_row_ids(0) == []
