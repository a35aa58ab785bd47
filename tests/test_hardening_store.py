"""The state database under faults and prying eyes: entries tampered with below Nebula,
files readable by others, corrupt or emptied databases, and secrets leaking from hooks in an
encoded form."""

from __future__ import annotations

import base64
import json
import os
import random
import stat
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from nebula.cli.app import app
from nebula.errors import StoreError
from nebula.kinds.dns.apply import ZoneOutcome, audit_entries, record_outcomes
from nebula.kinds.packages.hooks import scrub
from nebula.stand_ins import MASK
from nebula.store import Store, audit
from nebula.store.db import check_integrity
from nebula.store.mask import mask_detail

runner = CliRunner()


def record_apply(url: str, outcomes: list[ZoneOutcome], actor: str) -> None:
    """What `nebula dns apply` records: each zone, then its audit entry."""
    with Store(url) as store:
        record_outcomes(store, outcomes)
        for zone, detail in audit_entries(outcomes):
            audit.append(store, actor=actor, action="dns.apply", target=zone, detail=detail)


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


@pytest.mark.parametrize("stored", ['"a string"', "[1, 2]"])
def test_an_entry_whose_detail_is_not_a_json_object_is_reported_as_tampered(
    store: Store, database_url: str, stored: str
) -> None:
    _check_tampered_detail(store, database_url, stored)


def test_an_entry_whose_detail_is_not_json_is_reported_as_tampered(tmp_path: Path) -> None:
    """SQLite only: PostgreSQL keeps only valid JSON in a jsonb column."""
    url = f"sqlite:///{tmp_path / 'nebula.db'}"
    with Store(url) as opened:
        _check_tampered_detail(opened, url, "{not json")


def _check_tampered_detail(store: Store, database_url: str, stored: str) -> None:
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


# -- who may read the database ----------------------------------------------------------------

NEBULA = Path(sys.executable).parent / "nebula"
NEBULAD = Path(sys.executable).parent / "nebulad"


def run_cli(*args: str, data_home: Path, code: int = 0) -> subprocess.CompletedProcess[str]:
    """The real `nebula` under umask 022, with its data dir under `data_home`."""
    result = subprocess.run(
        [NEBULA, *args],
        env={**os.environ, "XDG_DATA_HOME": str(data_home), "NEBULA_DATABASE_URL": ""},
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=lambda: os.umask(0o022),
    )
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_cli_creates_a_private_data_dir_and_database(tmp_path: Path) -> None:
    home = tmp_path / "home"
    shown = run_cli("audit", data_home=home)
    assert "No audit entries yet." in shown.stdout and shown.stderr == ""
    data = home / "nebula"
    assert (mode(home), mode(data), mode(data / "nebula.db")) == (0o755, 0o700, 0o600)

    # a database named by URL, in a folder others may read, is private too, with its WAL files
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    previous = os.umask(0o022)
    try:
        with Store(f"sqlite:///{shared}/named.db") as store:
            audit.append(store, actor="user:alice", action="secret.set", target="S1")
            files = sorted(shared.iterdir())
            assert [f.name for f in files] == ["named.db", "named.db-shm", "named.db-wal"]
            assert {mode(f) for f in files} == {0o600}
    finally:
        os.umask(previous)


def test_the_cli_and_nebulad_warn_when_others_may_read_the_database(tmp_path: Path) -> None:
    run_cli("audit", data_home=tmp_path)
    data, db = tmp_path / "nebula", tmp_path / "nebula" / "nebula.db"
    data.chmod(0o755)
    db.chmod(0o644)

    warned = run_cli("audit", data_home=tmp_path).stderr
    assert f"{data} is open to other users (mode 755)" in warned
    assert f"run: chmod 700 {data}" in warned
    assert f"{db} is open to other users (mode 644)" in warned and f"chmod 600 {db}" in warned

    source = tmp_path / "repo"
    source.mkdir()
    daemon = subprocess.Popen(
        [NEBULAD, "--source", str(source), "--watch", "--data-dir", str(data),
         "--docker-host", f"unix://{tmp_path}/no-docker.sock", "--poll-interval", "3600s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        assert daemon.stdout is not None
        lines = [daemon.stdout.readline() for _ in range(2)]
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    assert lines[0].startswith(f"WARNING {data} is open to other users (mode 755)")
    assert lines[1].startswith(f"WARNING {db} is open to other users (mode 644)")


# -- a damaged database ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "what"),
    [(b"", "empty"), (b"x" * 8192, "not a SQLite database")],
    ids=["empty", "overwritten"],
)
def test_an_emptied_or_overwritten_database_is_refused_not_started_afresh(
    tmp_path: Path, content: bytes, what: str
) -> None:
    run_cli("secrets", "init", data_home=tmp_path)
    db = tmp_path / "nebula" / "nebula.db"
    db.write_bytes(content)

    for args in (("audit", "verify"), ("secrets", "list"), ("status",)):
        refused = run_cli(*args, data_home=tmp_path, code=1).stderr
        assert f"database {db} is {what}: it was truncated or overwritten" in refused, args
        assert "restore it from a backup, or move it away" in " ".join(refused.split())
    assert db.read_bytes() == content  # left as it was found, for whoever investigates

    db.rename(db.with_name("nebula.db.broken"))  # what the message says to do
    assert "Audit log intact: 0 entries" in run_cli("audit", "verify", data_home=tmp_path).stdout


def test_nebulad_refuses_to_start_on_a_database_with_damaged_pages(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir(mode=0o700)
    url = f"sqlite:///{data}/nebula.db"
    with Store(url) as store:
        for i in range(100):
            audit.append(
                store, actor="user:alice", action="test", detail={"pad": "x" * 500 + str(i)}
            )
    check_integrity(url)  # whole: passes
    with (data / "nebula.db").open("r+b") as file:  # pages 11 to 13 overwritten
        file.seek(4096 * 10)
        file.write(random.Random(7).randbytes(3 * 4096))

    with pytest.raises(StoreError, match="is damaged"):
        check_integrity(url)
    source = tmp_path / "repo"
    source.mkdir()
    daemon = subprocess.run(
        [NEBULAD, "--source", str(source), "--watch", "--data-dir", str(data),
         "--docker-host", f"unix://{tmp_path}/no-docker.sock"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    shown = " ".join((daemon.stdout + daemon.stderr).split())
    assert daemon.returncode == 1, shown
    assert f"database {data}/nebula.db is damaged (" in shown
    assert "btreeInitPage() returns error code 11" in shown
    assert "restore it from a backup, or move it away" in shown
    assert "Traceback" not in shown


def test_processes_opening_one_new_database_at_once_all_get_its_schema(tmp_path: Path) -> None:
    """Each process migrates a new SQLite database unless another did meanwhile: none fails
    with "table ... already exists"."""
    url = f"sqlite:///{tmp_path / 'nebula.db'}"
    script = "import sys; from nebula.store import Store; Store(sys.argv[1]).close()"
    processes = [
        subprocess.Popen([sys.executable, "-c", script, url], stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    errors = [p.communicate(timeout=60)[1] for p in processes]
    assert [p.returncode for p in processes] == [0] * 6, errors
    with Store(url) as opened:
        assert opened.installations() == [] and opened.syncs() == []


def test_a_dns_apply_writes_nothing_into_a_damaged_database(tmp_path: Path) -> None:
    """Recording `nebula dns apply` on a damaged file leaves it as it is, and the error says
    what is wrong and what to do."""
    db = tmp_path / "nebula.db"
    db.write_bytes(b"overwritten " * 400)
    failed = ZoneOutcome("a.test", "powerdns", None, error="unreachable")
    with pytest.raises(StoreError, match="is not a SQLite database: it was truncated"):
        record_apply(f"sqlite:///{db}", [failed], "cli:test")
    assert db.read_bytes() == b"overwritten " * 400
