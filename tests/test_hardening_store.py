"""The state database under faults and prying eyes: entries tampered with below Nebula,
files readable by others, corrupt or emptied databases, and secrets leaking from hooks in an
encoded form."""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from nebula.cli.app import app
from nebula.engine.hooks import scrub
from nebula.stand_ins import MASK
from nebula.store import Store, audit
from nebula.store.mask import mask_detail

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


# -- a secret's encodings in hook output and audit details ----------------------------------

SECRET = "s3cr3t/p@ss+w0rd=42&x~" * 3  # long enough that `base64` wraps it over two lines


def _encodings(value: str) -> dict[str, str]:
    raw = value.encode()
    return {
        "base64": base64.b64encode(raw).decode(),
        "base64 unpadded": base64.b64encode(raw).decode().rstrip("="),
        "base64 of echo": base64.b64encode(raw + b"\n").decode(),
        "base64url": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "base64 wrapped": base64.encodebytes(raw).decode().strip(),
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
        "url": urllib.parse.quote(value, safe=""),
        "url+": urllib.parse.quote_plus(value),
    }


def test_scrub_and_mask_detail_hide_the_common_encodings_of_a_secret() -> None:
    for name, encoded in _encodings(SECRET).items():
        text = f"before {encoded} after"
        assert scrub(text, (SECRET,)) == f"before {MASK} after", name
        masked = mask_detail({"log": text}, {SECRET: "3f9a1c2b7d4e"})
        assert masked == {"log": f"before {MASK}3f9a1c2b7d4e after"}, name
    # one pass: what takes one secret's place is not mistaken for another secret
    assert mask_detail(["3f9a a"], {"3f9a": "3f9a3f9a3f9a", "a": "0000"}) == [
        f"{MASK}3f9a3f9a3f9a {MASK}0000"
    ]


HOOKED = """\
compose:
  services:
    web:
      image: {image}
      init: true
      command: ["sh", "-c", "sleep 3600"]
variables:
  - {{name: TOKEN, secret: true, required: true, expose_to_hooks: true}}
values: {{TOKEN: '${{secret:app.token}}'}}
hooks:
  post_install:
    - printf %s "$$TOKEN" | wc -c
    - printf %s "$$TOKEN" | base64
    - echo "$$TOKEN" | base64
    - printf %s "$$TOKEN" | base64 | tr -d '\\n=' | tr '+/' '-_'
    - printf %s "$$TOKEN" | od -An -tx1 | tr -d ' \\n'
    - python3 -c 'import os, urllib.parse; print(urllib.parse.quote(os.environ["TOKEN"], safe=""))'
"""


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_hook_output_keeps_no_encoding_of_a_secret(
    tmp_path: Path,
    docker_host: str,
    test_image: str,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NEBULA_MASTER_KEY_FILE", str(tmp_path / "master.key"))
    monkeypatch.delenv("NEBULA_MASTER_KEY", raising=False)
    repo = tmp_path / "repo"
    (repo / "packages").mkdir(parents=True)
    (repo / "nebula.yaml").write_text("defaults: {health_timeout: 30s, subnet_pool: null}\n")
    (repo / "packages" / "app.yaml").write_text(HOOKED.format(image=test_image))
    db = ["--database-url", database_url]
    nebula("secrets", "init", *db)
    assert runner.invoke(app, ["secrets", "set", "app.token", *db], input=SECRET).exit_code == 0

    nebula("apply", str(repo), *db, "--docker-host", docker_host)
    status = json.loads(nebula("status", "--output", "json", *db, "--docker-host", docker_host))
    (hooks,) = [i["hooks"] for i in status["installations"] if i["name"] == "app"]
    output = "\n".join(h["output"] for h in hooks)
    assert f"\n{len(SECRET)}\n" in output  # the hook did see the value
    assert output.count(MASK) == 5, output
    for name, encoded in _encodings(SECRET).items():
        assert encoded not in output, name
    with Store(database_url) as store:
        (deployment,) = store.deployments("app")
    assert deployment.hook_output is not None
    assert all(e not in deployment.hook_output for e in _encodings(SECRET).values())
