"""The state database under faults and prying eyes: entries tampered with below Nebula,
files readable by others, corrupt or emptied databases, and secrets leaking from hooks in an
encoded form."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from nebula.cli.app import app
from nebula.store import Store, audit

runner = CliRunner()


def nebula(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.output


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with Store(database_url) as s:
        yield s


# -- an audit entry whose detail is not JSON ------------------------------------------------


def _set_detail(database_url: str, seq: int, stored: str) -> None:
    """Write `stored` as entry `seq`'s detail, as someone editing the database would."""
    engine = sa.create_engine(database_url)
    column = "CAST(:stored AS jsonb)" if engine.dialect.name == "postgresql" else ":stored"
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"UPDATE audit_log SET detail = {column} WHERE seq = :seq"),
            {"stored": stored, "seq": seq},
        )
    engine.dispose()


def _fill(store: Store) -> None:
    for i in range(1, 4):
        audit.append(
            store, actor="user:alice", action="secret.set", target=f"S{i}", detail={"i": i}
        )


@pytest.mark.parametrize("stored", ["{not json", '"a string"', "[1, 2]"])
def test_an_entry_whose_detail_is_not_a_json_object_is_reported_as_tampered(
    store: Store, database_url: str, stored: str
) -> None:
    if stored == "{not json" and database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL keeps only valid JSON in a jsonb column")
    _fill(store)
    _set_detail(database_url, 2, stored)

    shown = nebula("audit", "verify", "--database-url", database_url, code=1)
    assert "audit log tampered (1 problem in 3 entries)" in shown
    assert "edited: entry #2 was edited: its detail is not a JSON object" in shown
    report = json.loads(
        nebula("audit", "verify", "--database-url", database_url, "-o", "json", code=1)
    )
    assert [(p["seq"], p["kind"]) for p in report["problems"]] == [(2, "edited")]

    listed = nebula("audit", "--database-url", database_url)
    assert "S1" in listed and "S3" in listed  # the others are listed as they are
    assert "tampered: the stored detail is not a JSON object" in " ".join(listed.split())
    entries = json.loads(nebula("audit", "--database-url", database_url, "-o", "json"))
    assert [e["detail"] for e in entries] == [{"i": 1}, None, {"i": 3}]
    assert "tampered" in entries[1] and "tampered" not in entries[0]
