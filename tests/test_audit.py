"""The audit log: a hash chain on SQLite and PostgreSQL, tampering caught by `nebula audit
verify`, appends from two processes at once, and the entries the CLI, the API and the daemon's
syncs leave behind."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import httpx
import pytest
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from typer.testing import CliRunner

import servers
from nebula.cli.app import app
from nebula.daemon.api import create_app
from nebula.daemon.audit import ACTIONS, AuditRequests, AuditTrail
from nebula.daemon.config import DaemonConfig
from nebula.daemon.core import Daemon
from nebula.daemon.server import serve
from nebula.identity.sessions import Sessions
from nebula.identity.tokens import load_signing_key
from nebula.kinds.packages.types import LABEL_INSTALLATION
from nebula.providers.docker import DockerProvider
from nebula.store import Store, audit
from nebula.store.mask import mask_detail
from nebula.store.models import AuditEntry, AuditHead

runner = CliRunner()
TOKEN = "audit-test-token-0123456789"


def nebula(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with Store(database_url) as s:
        yield s


@pytest.fixture
def raw(database_url: str) -> Iterator[sa.Engine]:
    """A plain engine on the same database: the tamperer's view."""
    engine = sa.create_engine(database_url)
    yield engine
    engine.dispose()


def fill(store: Store, count: int = 5) -> list[audit.AuditRecord]:
    return [
        audit.append(
            store,
            actor="user:alice" if i % 2 else "daemon:sync",
            action="secret.set",
            target=f"S{i}",
            detail={"i": i},
        )
        for i in range(1, count + 1)
    ]


# -- the chain --------------------------------------------------------------------------------


def test_appends_form_one_chain_read_back_in_order(store: Store) -> None:
    written = fill(store)
    assert [e.seq for e in written] == [1, 2, 3, 4, 5]
    assert written[0].prev_hash == audit.GENESIS
    for before, after in itertools.pairwise(written):
        assert after.prev_hash == before.hash
    assert audit.entries(store) == written
    assert [e.seq for e in audit.entries(store, limit=2)] == [4, 5]  # the newest, oldest first
    assert [e.target for e in audit.entries(store, actor="alice")] == ["S1", "S3", "S5"]
    assert [e.target for e in audit.entries(store, actor="daemon:sync")] == ["S2", "S4"]
    assert audit.entries(store, since=written[-1].at) == written[-1:]
    result = audit.verify(store)
    assert result.ok and result.checked == 5
    assert (result.head_seq, result.head_hash) == (5, written[-1].hash)


def test_details_are_masked_before_they_are_hashed_and_stored(store: Store, raw: sa.Engine) -> None:
    plain = "pl41n-Secr3t-value"
    entry = audit.append(
        store,
        actor="user:alice",
        action="installation.apply",
        target="blog",
        detail={
            "values": {"DB_PASSWORD": plain, "PORT": 8080},
            "login": {"user": "alice", "password": plain},
            "env": [f"API_TOKEN={plain}", "TZ=UTC"],
            "note": f"connected with {plain} at last",
            "url": f"postgresql://blog:{plain}@db/blog",
        },
        secrets={plain: "0123456789ab"},
    )
    assert entry.detail == {
        "values": {"DB_PASSWORD": "••••", "PORT": 8080},
        "login": {"user": "alice", "password": "••••"},
        "env": ["API_TOKEN=••••0123456789ab", "TZ=UTC"],
        "note": "connected with ••••0123456789ab at last",
        "url": "postgresql://blog:••••0123456789ab@db/blog",
    }
    with raw.connect() as conn:
        stored = conn.execute(sa.select(AuditEntry.__table__)).one()
    assert plain not in repr(stored)
    assert audit.verify(store).ok  # the hash covers exactly what was stored


def test_masking_by_name_covers_nesting_and_common_spellings() -> None:
    detail = {
        "apiKey": "k",
        "client_secret": "s",
        "Authorization": "Bearer t",
        "nested": {"secrets": {"a": "1", "b": [2, "3"]}},
        "author": "Ada",  # not a secret word
        "monkey": "banana",
        "already": "••••abcdef012345",
    }
    assert mask_detail(detail) == {
        "apiKey": "••••",
        "client_secret": "••••",
        "Authorization": "••••",
        "nested": {"secrets": {"a": "••••", "b": ["••••", "••••"]}},
        "author": "Ada",
        "monkey": "banana",
        "already": "••••abcdef012345",
    }


# -- tampering, as `nebula audit verify` reports it -------------------------------------------


def edit_detail(conn: sa.Connection) -> None:
    conn.execute(sa.update(AuditEntry).where(AuditEntry.seq == 2).values(detail={"i": 99}))


def delete_middle(conn: sa.Connection) -> None:
    conn.execute(sa.delete(AuditEntry).where(AuditEntry.seq == 3))


def delete_last(conn: sa.Connection) -> None:
    conn.execute(sa.delete(AuditEntry).where(AuditEntry.seq == 5))


def swap_two(conn: sa.Connection) -> None:
    """Entries 2 and 3 trade places: their numbers are swapped, contents and hashes kept."""
    conn.execute(sa.update(AuditEntry).where(AuditEntry.seq == 2).values(seq=-2))
    conn.execute(sa.update(AuditEntry).where(AuditEntry.seq == 3).values(seq=2))
    conn.execute(sa.update(AuditEntry).where(AuditEntry.seq == -2).values(seq=3))


def delete_and_renumber(conn: sa.Connection) -> None:
    """Entry 3 deleted and the later ones renumbered to hide the gap."""
    conn.execute(sa.delete(AuditEntry).where(AuditEntry.seq == 3))
    for seq in (4, 5):
        conn.execute(sa.update(AuditEntry).where(AuditEntry.seq == seq).values(seq=seq - 1))
    conn.execute(sa.update(AuditHead).values(seq=4))


@pytest.mark.parametrize(
    ("tamper", "reports"),
    [
        (edit_detail, ["edited: entry #2 was edited: it no longer matches its hash"]),
        (delete_middle, ["deleted: entry #3 was deleted (before #4)"]),
        (delete_last, ["truncated: entry #5 was deleted from the end (after #4)"]),
        (
            swap_two,
            [
                "reordered: entry #2 was moved: it was written right after #3",
                "reordered: entry #3 was moved: it was written right after #1",
                "reordered: entry #4 was moved: it was written right after #2",
            ],
        ),
        (delete_and_renumber, ["deleted: the chain breaks between #2 and #3"]),
    ],
    ids=["edit", "delete-middle", "delete-last", "reorder", "delete-renumber"],
)
def test_verify_reports_exactly_what_was_tampered_with(
    store: Store,
    raw: sa.Engine,
    database_url: str,
    tamper: Callable[[sa.Connection], None],
    reports: list[str],
) -> None:
    fill(store)
    assert "Audit log intact: 5 entries" in nebula(
        "audit", "verify", "--database-url", database_url
    )
    with raw.begin() as conn:
        tamper(conn)
    shown = nebula("audit", "verify", "--database-url", database_url, code=1)
    assert "audit log tampered" in shown
    problems = [line.strip() for line in shown.splitlines()[1:] if line.strip()]
    assert len(problems) == len(reports), shown
    for problem, expected in zip(problems, reports, strict=True):
        assert problem.startswith(expected), shown
    as_json = json.loads(
        nebula("audit", "verify", "--database-url", database_url, "-o", "json", code=1)
    )
    assert as_json["ok"] is False and len(as_json["problems"]) == len(reports)


def test_the_chain_goes_on_after_tampering_and_still_shows_it(store: Store, raw: sa.Engine) -> None:
    fill(store)
    with raw.begin() as conn:
        delete_last(conn)
    after = audit.append(store, actor="user:bob", action="daemon.suspend")
    assert after.seq == 6  # numbered after the head, not after the surviving rows
    assert [p.message for p in audit.verify(store).problems] == ["entry #5 was deleted (before #6)"]


def test_a_deleted_head_row_is_restored_and_stays_on_record(store: Store, raw: sa.Engine) -> None:
    fill(store)
    with raw.begin() as conn:
        conn.execute(sa.delete(AuditEntry).where(AuditEntry.seq >= 4))
        conn.execute(sa.delete(AuditHead))
    assert [p.kind for p in audit.verify(store).problems] == ["head"]
    after = audit.append(store, actor="user:bob", action="daemon.suspend")
    restored = audit.entries(store)[-2]
    assert (restored.seq, restored.action, after.seq) == (4, audit.HEAD_RESTORED, 5)
    assert [p.message for p in audit.verify(store).problems] == [
        "the head row was gone before #4 (restored then): entries before it may have been "
        "deleted from the end"
    ]


def test_a_noted_head_catches_a_log_cut_back_with_its_head_rewritten(
    store: Store, raw: sa.Engine, database_url: str
) -> None:
    written = fill(store)
    anchor = f"5:{written[-1].hash}"
    assert f"head {anchor}" in nebula("audit", "verify", "--database-url", database_url)
    with raw.begin() as conn:
        conn.execute(sa.delete(AuditEntry).where(AuditEntry.seq >= 4))
        conn.execute(sa.update(AuditHead).values(seq=3, hash=written[2].hash))
    nebula("audit", "verify", "--database-url", database_url)  # looks whole on its own...
    shown = nebula("audit", "verify", "--expect", anchor, "--database-url", database_url, code=1)
    assert "entry #5 with hash" in shown and "is not in the log" in shown  # ...but not to this
    shown = nebula(
        "audit", "verify", "--expect", "5:nothex", "--database-url", database_url, code=2
    )
    assert "SEQ:HASH" in shown


def test_appends_from_two_processes_at_once_keep_one_chain(store: Store, database_url: str) -> None:
    script = (
        "import sys\n"
        "from nebula.store import Store, audit\n"
        "store = Store(sys.argv[1])\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"  # start together
        "for i in range(60):\n"
        "    audit.append(store, actor=sys.argv[2], action='test.append', detail={'i': i})\n"
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, database_url, f"worker:{n}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in (1, 2)
    ]
    for worker in workers:  # both have opened the store
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
    written = audit.entries(store, limit=None)
    assert [e.seq for e in written] == list(range(1, 121))
    assert {e.actor for e in written} == {"worker:1", "worker:2"}
    assert len({e.prev_hash for e in written}) == 120  # no two entries share a predecessor
    assert audit.verify(store).ok


def test_audit_lists_filters_and_prints_json(store: Store, database_url: str) -> None:
    fill(store)
    shown = nebula("audit", "--database-url", database_url, "--actor", "alice")
    assert "user:alice" in shown and "daemon:sync" not in shown
    listed = json.loads(nebula("audit", "--database-url", database_url, "-n", "2", "-o", "json"))
    assert [e["seq"] for e in listed] == [4, 5]
    assert set(listed[0]) == {
        "seq",
        "at",
        "actor",
        "action",
        "target",
        "detail",
        "prev_hash",
        "hash",
    }
    assert "No audit entries match." in nebula(
        "audit", "--database-url", database_url, "--since", "2999-01-01"
    )
    assert "S5" in nebula("audit", "--database-url", database_url, "--since", "1h")
    only = json.loads(
        nebula("audit", "--database-url", database_url, "--target", "S2", "-o", "json")
    )
    assert [(e["seq"], e["target"]) for e in only] == [(2, "S2")]
    assert "neither a duration" in nebula(
        "audit", "--database-url", database_url, "--since", "last tuesday", code=2
    )


# -- who did it: the CLI, the API, the daemon ------------------------------------------------


def compose_app(name: str, image: str) -> str:
    return (
        f"compose:\n  services:\n    {name}:\n      image: {image}\n"
        "      init: true\n      restart: unless-stopped\n"
    )


def test_nebula_apply_records_who_applied_what(
    tmp_path: Path, docker_host: str, test_image: str
) -> None:
    repo = tmp_path / "homelab"
    (repo / "packages").mkdir(parents=True)
    (repo / "nebula.yaml").write_text("defaults: {health_timeout: 30s}\n")
    (repo / "packages" / "audited.yaml").write_text(compose_app("web", test_image))
    url = f"sqlite:///{tmp_path}/nebula.db"
    try:
        nebula("apply", str(repo), "--yes", "--docker-host", docker_host, "--database-url", url)
        (repo / "packages" / "audited.yaml").unlink()
        nebula("apply", str(repo), "--yes", "--docker-host", docker_host, "--database-url", url)
    finally:
        with Store(url) as s:
            entries = audit.entries(s)
    user = pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0 and os.environ.get("SUDO_USER"):
        user = os.environ["SUDO_USER"]
    actor = f"cli:{user}@{socket.gethostname()}"
    assert [(e.actor, e.action, e.target) for e in entries] == [
        (actor, "installation.apply", "audited"),
        (actor, "installation.remove", "audited"),
    ]
    created, removed = (e.detail for e in entries)
    assert created["ok"] is True and created["error"] is None
    assert created["repo"] == str(repo.resolve())
    assert [(c["action"], c["kind"]) for c in created["changes"]] == [
        ("create", "network"),
        ("create", "container"),
    ]
    assert {c["action"] for c in removed["changes"]} == {"delete"}


@dataclass
class Lab:
    daemon: Daemon
    store: Store
    socket: Path
    tcp: str
    folder: Path


@pytest.fixture
def lab(tmp_path: Path, docker_host: str, test_image: str) -> Iterator[Lab]:
    """nebulad in-process, following a folder, its API served on a unix socket and TCP."""
    folder = tmp_path / "homelab"
    (folder / "packages").mkdir(parents=True)
    (folder / "nebula.yaml").write_text("defaults: {health_timeout: 30s}\n")
    (folder / "packages" / "labweb.yaml").write_text(compose_app("web", test_image))
    root = Path(tempfile.mkdtemp(prefix="nebula-audit-", dir="/tmp"))  # a short socket path
    config = DaemonConfig(
        source=str(folder), watch=True, data_dir=root, poll_interval=3600, drift_interval=3600
    )
    store = Store(f"sqlite:///{tmp_path}/nebula.db")
    provider = DockerProvider(docker_host)
    daemon = Daemon(config, store, provider, None)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=serve,
        args=(create_app(daemon, token=None, tcp=False, audit=daemon.audit), root / "api.sock"),
        kwargs={
            "app_tcp": create_app(daemon, token=TOKEN, tcp=True, audit=daemon.audit),
            "tcp_listen": f"127.0.0.1:{port}",
            "stop": stop,
            "ready": ready,
        },
        daemon=True,
    )
    daemon.start()
    thread.start()
    assert ready.wait(10)
    try:
        yield Lab(daemon, store, root / "api.sock", f"http://127.0.0.1:{port}", folder)
    finally:
        stop.set()
        thread.join(15)
        daemon.stop()
        provider.close()
        remove_installation(docker_host, "labweb")
        shutil.rmtree(root, ignore_errors=True)
        store.close()


def remove_installation(docker_host: str, name: str) -> None:
    client = docker.DockerClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    try:
        label = f"{LABEL_INSTALLATION}={name}"
        for container in client.containers.list(all=True, filters={"label": label}):
            container.remove(force=True)
        for network in client.networks.list(filters={"label": label}):
            network.remove()
    finally:
        client.close()


def eventually(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_api_requests_and_syncs_are_recorded_with_their_actor(lab: Lab) -> None:
    eventually(lambda: any(e.action == "sync.applied" for e in audit.entries(lab.store)))
    applied = next(e for e in audit.entries(lab.store) if e.action == "sync.applied")
    assert applied.actor == "daemon:sync"
    assert applied.detail["trigger"] == "start" and applied.detail["summary"]["create"] == 2

    with httpx.Client(transport=httpx.HTTPTransport(uds=str(lab.socket))) as unix:
        assert unix.post("http://nebulad/api/v1/suspend").status_code == 200
        assert unix.get("http://nebulad/api/v1/status").status_code == 200  # reads: not recorded
    with httpx.Client(base_url=lab.tcp, headers={"Authorization": f"Bearer {TOKEN}"}) as tcp:
        assert tcp.post("/api/v1/resume").status_code == 200
        refused = tcp.post("/api/v1/rollback", json={"commit": "abc123", "password": "hunter2"})
        assert refused.status_code == 400  # this daemon follows a folder
    with httpx.Client(base_url=lab.tcp) as stranger:
        assert stranger.post("/api/v1/suspend").status_code == 401

    requests = [e for e in audit.entries(lab.store) if e.detail.get("method")]
    assert [(e.actor, e.action, e.detail["status"]) for e in requests] == [
        (f"uid:{os.geteuid()}", "daemon.suspend", 200),
        ("token:static", "daemon.resume", 200),
        ("token:static", "daemon.rollback", 400),
    ]
    assert requests[-1].detail["body"] == {"commit": "abc123", "password": "••••"}

    (lab.folder / "packages" / "broken.yaml").write_text("compose: {services: {x: {imagee: y}}}\n")
    eventually(lambda: any(e.action == "sync.failed" for e in audit.entries(lab.store)))
    failed = next(e for e in audit.entries(lab.store) if e.action == "sync.failed")
    assert failed.actor == "daemon:sync"
    assert any("broken.yaml" in error for error in failed.detail["errors"])
    assert audit.verify(lab.store).ok


def test_a_route_not_named_keeps_only_its_body_field_names_and_a_crash_is_a_500(
    tmp_path: Path,
) -> None:
    async def things(request: Request) -> JSONResponse:
        return JSONResponse({"got": await request.body() != b""})

    async def boom(request: Request) -> JSONResponse:
        raise RuntimeError("a bug")

    with Store(f"sqlite:///{tmp_path}/nebula.db") as store:
        api = Starlette(
            routes=[
                Route("/api/v1/things/{name}", things, methods=["POST", "GET"]),
                Route("/api/v1/boom", boom, methods=["DELETE"]),
            ],
            middleware=[Middleware(AuditRequests, trail=AuditTrail(store))],
        )
        transport = httpx.ASGITransport(
            app=api, client=("192.0.2.7", 40000), raise_app_exceptions=False
        )

        async def call() -> None:
            async with httpx.AsyncClient(transport=transport, base_url="http://n") as client:
                await client.post("/api/v1/things/db", json={"name": "db", "value": "s3cr3t"})
                await client.get("/api/v1/things/db")  # a read: not recorded
                assert (await client.delete("/api/v1/boom")).status_code == 500

        asyncio.run(call())
        posted, crashed = audit.entries(store)
    assert (posted.actor, posted.action, posted.target) == (
        "anonymous:192.0.2.7",
        "things.post",
        "db",
    )
    assert posted.detail == {
        "method": "POST",
        "path": "/api/v1/things/db",
        "status": 200,
        "body_fields": ["name", "value"],
    }
    assert (crashed.action, crashed.detail["status"]) == ("boom.delete", 500)


def test_every_mutating_api_route_has_an_audit_action(tmp_path: Path) -> None:
    """A new POST/PUT/PATCH/DELETE route must be named in `daemon.audit.ACTIONS` (and say
    whether its body may be recorded)."""
    config = DaemonConfig(source=str(tmp_path), watch=True, data_dir=tmp_path / "data")
    config.data_dir.mkdir(mode=0o700)
    with Store(f"sqlite:///{tmp_path}/nebula.db") as store:
        daemon = Daemon(config, store, DockerProvider("unix:///nonexistent.sock"), None)
        sessions = Sessions(store, load_signing_key(config.data_dir))
        api = create_app(daemon, token=TOKEN, tcp=True, sessions=sessions, audit=daemon.audit)
    mutating = {
        (method, route.path)
        for route in api.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method not in {"GET", "HEAD", "OPTIONS"}
    }
    assert ("POST", "/api/v1/suspend") in mutating
    assert not mutating - set(ACTIONS), (
        f"not named in daemon.audit.ACTIONS: {mutating - set(ACTIONS)}"
    )
