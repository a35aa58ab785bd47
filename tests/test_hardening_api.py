"""The API against a hostile or unlucky client: principals that lose their power, bodies that
are not JSON or too big, replayed webhooks, connections that never finish.

Served for real (uvicorn on a unix socket and loopback TCP, see test_api_auth) over a real
store; users are removed and demoted with the `nebula` CLI, as an admin would.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from sqlalchemy import delete, update
from starlette.testclient import TestClient

from nebula.daemon.api import WEBHOOK_READS, create_app
from nebula.daemon.config import DaemonConfig
from nebula.daemon.control import SyncRecord
from nebula.daemon.core import Daemon
from nebula.daemon.gitsync import GitSource
from nebula.daemon.webhook import BodyTurns, NoTurnError
from nebula.identity import accounts
from nebula.identity.principal import Principal, Role
from nebula.identity.sessions import Sessions
from nebula.providers.docker import DockerProvider
from nebula.store import Store
from nebula.store.identity import MakerGoneError
from nebula.store.models import ApiKey, User, utcnow
from test_api_auth import KEY, PASSWORD, Api, login, serving
from test_daemon import Repo, engine, eventually, running  # noqa: F401 (engine: a fixture)
from test_daemon import app as daemon_app
from test_daemon_api import JSON, TOKEN, WEBHOOK_SECRET, free_port, short_dir
from test_identity import cli_env, run  # noqa: F401 (the fixture, used by name)

CACHE = 0.5  # how long the daemon trusts a verified bearer in these tests


def fast_sessions(root: Path) -> Sessions:
    return Sessions(Store(f"sqlite:///{root}/nebula.db"), KEY, cache_seconds=CACHE)


def access_token(api: Api, user: str) -> str:
    with api.tcp() as client:
        response = login(client, user)
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token


# -- principals that lose their power ---------------------------------------------------------------


@pytest.mark.usefixtures("cli_env")  # the CLI and the daemon share tmp_path's database
def test_a_removed_admins_token_and_the_keys_it_made_stop_working(tmp_path: Path) -> None:
    with serving(tmp_path, sessions=fast_sessions(tmp_path)) as api:
        accounts.add_user(api.store, "mallory", PASSWORD, "admin")
        token = access_token(api, "mallory")
        with api.tcp(token) as mallory:
            made = mallory.post("/api/v1/apikeys", json={"name": "backdoor", "scope": "admin"})
            assert made.status_code == 201, made.text
        backdoor = made.json()["token"]
        with api.tcp(backdoor) as key:  # a key made by that key goes too
            second = key.post("/api/v1/apikeys", json={"name": "backdoor2", "scope": "admin"})
            assert second.status_code == 201, second.text
        _, unrelated = accounts.create_key(api.store, "grafana", "read")

        out = json.loads(run("user", "rm", "mallory", "--output", "json"))
        assert out["revoked_keys"] == [made.json()["key"]["prefix"], second.json()["key"]["prefix"]]
        time.sleep(CACHE + 0.1)

        with api.tcp(token) as mallory:
            refused = mallory.post("/api/v1/apikeys", json={"name": "another", "scope": "admin"})
            assert refused.status_code == 401, refused.text
            assert refused.json() == {"error": "invalid bearer token"}
        for key_token in (backdoor, second.json()["token"]):
            with api.tcp(key_token) as client:
                assert client.get("/api/v1/status").status_code == 401
        with api.tcp(unrelated) as grafana:
            assert grafana.get("/api/v1/status").status_code == 200
        assert {k.name for k in accounts.keys(api.store)} == {"grafana"}

        # A new user of the same name is someone else: the old token is still worth nothing.
        accounts.add_user(api.store, "mallory", PASSWORD, "admin")
        with api.tcp(token) as client:
            assert client.get("/api/v1/status").status_code == 401


@pytest.mark.usefixtures("cli_env")
def test_keys_made_by_a_revoked_key_go_with_its_maker_and_no_others(tmp_path: Path) -> None:
    """mallory mints `ci`, `ci` mints `deploy`, mallory revokes `ci`: removing mallory still
    revokes `deploy`. A new key named `ci` is another key: what it made is kept."""
    with serving(tmp_path, sessions=fast_sessions(tmp_path)) as api:
        accounts.add_user(api.store, "mallory", PASSWORD, "admin")
        accounts.add_user(api.store, "ada", PASSWORD, "admin")
        with api.tcp(access_token(api, "mallory")) as mallory:
            ci = mallory.post("/api/v1/apikeys", json={"name": "ci", "scope": "admin"}).json()
            with api.tcp(ci["token"]) as key:
                made = key.post("/api/v1/apikeys", json={"name": "deploy", "scope": "admin"})
                assert made.status_code == 201, made.text
            revoked = mallory.delete(f"/api/v1/apikeys/{ci['key']['prefix']}")
            assert revoked.status_code == 200, revoked.text
        deploy = made.json()
        with api.tcp(access_token(api, "ada")) as ada:
            ci2 = ada.post("/api/v1/apikeys", json={"name": "ci", "scope": "admin"}).json()
            with api.tcp(ci2["token"]) as key:
                made = key.post("/api/v1/apikeys", json={"name": "backup", "scope": "write"})
                assert made.status_code == 201, made.text
        backup = made.json()

        out = json.loads(run("user", "rm", "mallory", "--output", "json"))
        assert out["revoked_keys"] == [deploy["key"]["prefix"]]
        time.sleep(CACHE + 0.1)
        with api.tcp(deploy["token"]) as client:
            assert client.get("/api/v1/status").status_code == 401
        for kept in (ci2, backup):
            with api.tcp(kept["token"]) as client:
                assert client.get("/api/v1/status").status_code == 200


@pytest.mark.usefixtures("cli_env")
def test_a_maker_revoked_while_its_bearer_is_still_trusted_makes_no_key(tmp_path: Path) -> None:
    """`nebula user rm`, `user role` and `apikey revoke` run on the store, not through nebulad,
    which trusts a bearer it verified for a while: in that while the revoked key, the removed
    user and the demoted one are refused when they make a key, and nothing they made remains."""
    store = Store(f"sqlite:///{tmp_path}/nebula.db")
    with serving(tmp_path, sessions=Sessions(store, KEY, cache_seconds=600)) as api:
        for user in ("mallory", "ada"):
            accounts.add_user(api.store, user, PASSWORD, "admin")
        mallory, ada = access_token(api, "mallory"), access_token(api, "ada")
        made = {}
        for name, token in (("ci", mallory), ("deploy", ada)):
            with api.tcp(token) as client:
                response = client.post("/api/v1/apikeys", json={"name": name, "scope": "admin"})
                assert response.status_code == 201, response.text
                made[name] = response.json()
        for token in (ada, *(m["token"] for m in made.values())):
            with api.tcp(token) as client:  # each verified now, so trusted from here on
                assert client.get("/api/v1/status").status_code == 200

        run("user", "rm", "mallory")  # revokes ci
        run("apikey", "revoke", made["deploy"]["key"]["prefix"])
        run("user", "role", "ada", "operator")
        refusals = {
            mallory: "user mallory was removed",
            made["ci"]["token"]: f"key {made['ci']['key']['prefix']} was revoked",
            made["deploy"]["token"]: f"key {made['deploy']['key']['prefix']} was revoked",
            ada: "user ada has the role operator now",
        }
        for token, message in refusals.items():
            with api.tcp(token) as client:
                refused = client.post("/api/v1/apikeys", json={"name": "late", "scope": "admin"})
                assert refused.status_code == 401, refused.text
                assert refused.json() == {"error": f"{message}: it may make no keys"}
        assert accounts.keys(api.store) == []


def test_a_key_made_while_its_maker_is_being_revoked_waits_and_is_refused(
    database_url: str,
) -> None:
    """A key made while `nebula user rm` is removing its maker (a user, or a key that user
    made) waits for the removal to commit, then is refused: it cannot slip in behind the
    revocation of what its maker made."""
    with Store(database_url) as store:
        accounts.add_user(store, "mallory", PASSWORD, "admin")
        ci, _ = accounts.create_key(store, "ci", "admin", created_by="mallory")
        makers = {
            "by-user": Principal("mallory", Role.admin, "password", "user:mallory"),
            "by-key": Principal("key:ci", Role.admin, "api_key", f"key:{ci.prefix}"),
        }
        with ThreadPoolExecutor(2) as pool, store.transaction() as session:  # user rm, half done
            session.execute(delete(User).where(User.name == "mallory"))
            session.execute(
                update(ApiKey).where(ApiKey.created_by == "mallory").values(revoked_at=utcnow())
            )
            session.flush()
            making = {
                name: pool.submit(
                    accounts.create_key,
                    store,
                    name,
                    "admin",
                    created_by=maker.creator,
                    maker=maker.maker,
                )
                for name, maker in makers.items()
            }
            time.sleep(1.0)
            assert not any(f.done() for f in making.values()), making
        with pytest.raises(MakerGoneError, match="user mallory was removed"):
            making["by-user"].result(10)
        with pytest.raises(MakerGoneError, match=f"key {ci.prefix} was revoked"):
            making["by-key"].result(10)
        assert accounts.keys(store) == []


def rewind_to_0008(url: str) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    from nebula.store.db import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    database = create_engine(url)
    with database.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0008")
    database.dispose()


def test_old_keys_naming_their_maker_by_name_are_migrated_to_its_id(tmp_path: Path) -> None:
    """Keys recorded `created_by: key:NAME` before are matched to the key of that name that
    was active when they were made."""
    url = f"sqlite:///{tmp_path}/nebula.db"
    with Store(url) as store:
        old_ci, _ = accounts.create_key(store, "ci", "admin")
        accounts.create_key(store, "a", "admin", created_by="key:ci")
        accounts.revoke_key(store, old_ci.prefix)
        new_ci, _ = accounts.create_key(store, "ci", "admin")
        accounts.create_key(store, "b", "admin", created_by="key:ci")
        node, _ = accounts.create_key(store, "pi", "write", service=True)
        accounts.create_key(store, "c", "read", created_by="node:pi")
        accounts.create_key(store, "d", "read", created_by="mallory")
    rewind_to_0008(url)  # the later migrations' tables go, so they run again too
    with sqlite3.connect(tmp_path / "nebula.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '0007'")
    with Store(url) as store:  # migrated as it opens
        made_by = {k.name: k.created_by for k in accounts.keys(store)}
        assert made_by == {
            "a": f"key:{old_ci.prefix}",  # made by the first `ci`, since revoked
            "b": f"key:{new_ci.prefix}",
            "c": f"key:{node.prefix}",
            "ci": None,
            "d": "mallory",
            "pi": None,
        }


@pytest.mark.usefixtures("cli_env")
def test_a_demoted_users_token_loses_the_higher_role(tmp_path: Path) -> None:
    with serving(tmp_path, sessions=fast_sessions(tmp_path)) as api:
        accounts.add_user(api.store, "ada", PASSWORD, "admin")
        token = access_token(api, "ada")
        with api.tcp(token) as ada:
            admin_key = ada.post("/api/v1/apikeys", json={"name": "adm", "scope": "admin"})
            read_key = ada.post("/api/v1/apikeys", json={"name": "dash", "scope": "read"})
            assert admin_key.status_code == read_key.status_code == 201

        assert "ada is now a viewer" in run("user", "role", "ada", "viewer")
        assert "unknown role 'root'" in run("user", "role", "ada", "root", code=2)
        time.sleep(CACHE + 0.1)

        with api.tcp(token) as ada:
            assert ada.get("/api/v1/auth/whoami").json()["role"] == "viewer"
            assert ada.get("/api/v1/status").status_code == 200
            refused = ada.post("/api/v1/apikeys", json={"name": "x", "scope": "admin"})
            assert refused.status_code == 403
            assert "ada is a viewer" in refused.json()["error"]
            assert ada.post("/api/v1/suspend").status_code == 403
        with api.tcp(admin_key.json()["token"]) as client:  # above the new role: revoked
            assert client.get("/api/v1/status").status_code == 401
        with api.tcp(read_key.json()["token"]) as client:  # within it: kept
            assert client.get("/api/v1/status").status_code == 200
        with api.tcp() as client:  # a new login gets the new role
            assert login(client).json()["role"] == "viewer"


def test_a_token_without_a_user_id_is_refused(tmp_path: Path) -> None:
    """Tokens made before users were checked by id name no user: they are refused."""
    import jwt

    with serving(tmp_path) as api:
        accounts.add_user(api.store, "ada", PASSWORD, "admin")
        now = int(time.time())
        claims = {"iss": "nebulad", "sub": "ada", "role": "admin", "typ": "access"}
        old = jwt.encode({**claims, "iat": now, "exp": now + 600}, KEY, algorithm="HS256")
        with api.tcp(old) as client:
            assert client.get("/api/v1/status").status_code == 401


# -- requests: a nebulad-like process serving the API -----------------------------------------------

# A separate process, as nebulad is, so its memory can be measured. Its control is the tests'
# FakeControl, except that sync ids are looked up in a real store (as nebulad does).
SERVER = """
import sys, threading
sys.path.insert(0, sys.argv[1])
from test_daemon_api import TOKEN, WEBHOOK_SECRET, FakeControl
from nebula.daemon.api import create_app
from nebula.daemon.server import serve
from nebula.store import Store

class Control(FakeControl):
    def __init__(self, store):
        super().__init__()
        self.store = store
        self.auto_run = True

    def sync(self, sync_id):
        return self.store.sync(sync_id)

control = Control(Store(f"sqlite:///{sys.argv[4]}/nebula.db"))
stop, ready = threading.Event(), threading.Event()
threading.Thread(target=lambda: ready.wait() and print("ready", flush=True), daemon=True).start()
serve(
    create_app(control, token=None, tcp=False),
    sys.argv[3],
    app_tcp=create_app(
        control, token=TOKEN, tcp=True, rate_limit=None, body_timeout=2.0,
        webhook_secret=WEBHOOK_SECRET,
    ),
    tcp_listen=f"127.0.0.1:{sys.argv[2]}",
    stop=stop,
    ready=ready,
    header_timeout=HEADER_TIMEOUT,
    max_connections=MAX_CONNECTIONS,
)
"""
HEADER_TIMEOUT = 2.0
MAX_CONNECTIONS = 16
MB = 2**20


@dataclass
class Nebulad:
    """The TCP listener verifies webhooks with WEBHOOK_SECRET; the unix socket's has no secret."""

    process: subprocess.Popen[str]
    port: int
    socket: Path

    def client(self) -> httpx.Client:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        return httpx.Client(base_url=f"http://127.0.0.1:{self.port}", headers=auth, timeout=10)

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def connect_unix(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(10)
        sock.connect(str(self.socket))
        return sock

    def rss(self, field: str = "VmRSS") -> int:
        """Resident memory in bytes (VmRSS), or its peak since `reset_peak` (VmHWM)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(rf"{field}:\s+(\d+) kB", status)[1]) * 1024  # type: ignore[index]

    def reset_peak(self) -> None:
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")


@pytest.fixture
def nebulad(tmp_path: Path) -> Iterator[Nebulad]:
    port = free_port()
    script = SERVER.replace("HEADER_TIMEOUT", repr(HEADER_TIMEOUT)).replace(
        "MAX_CONNECTIONS", str(MAX_CONNECTIONS)
    )
    with short_dir() as root:
        tests = str(Path(__file__).parent)
        args = [sys.executable, "-c", script, tests, str(port), str(root / "s.sock"), tmp_path]
        process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None and process.stdout.readline() == "ready\n"
            yield Nebulad(process, port, root / "s.sock")
        finally:
            process.terminate()
            process.wait(10)


def signed_push(body: bytes, delivery: str | None = None) -> dict[str, str]:
    digest = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={digest}"}
    if delivery:
        headers["X-GitHub-Delivery"] = delivery
    return {**headers, "Content-Type": "application/json"}


def push_body(after: str) -> bytes:
    return json.dumps({"ref": "refs/heads/main", "after": after * 20}).encode()


def test_bodies_that_are_not_json_are_refused_with_415(nebulad: Nebulad) -> None:
    with nebulad.client() as client:
        refused = [
            client.post("/api/v1/suspend", content=b"x=1", headers={"Content-Type": kind})
            for kind in ("text/plain", "application/x-www-form-urlencoded")
        ]
        refused.append(client.post("/api/v1/suspend", files={"x": ("x.txt", b"1")}))
        refused.append(client.post("/api/v1/rollback", content=b'{"commit": "abc"}'))
        for response in refused:
            assert response.status_code == 415, response.text
            assert "send the request body as JSON" in response.json()["error"]
        assert "not a text/plain body" in refused[0].json()["error"]
        assert client.get("/api/v1/status").json()["suspended"] is False
        # JSON (or no body at all) goes through.
        assert client.post("/api/v1/suspend").status_code == 200
        resumed = client.post(
            "/api/v1/resume", json={}, headers={"Content-Type": "application/json; charset=utf-8"}
        )
        assert resumed.status_code == 200


def nested(levels: int) -> Any:
    value: Any = "hook"
    for _ in range(levels):
        value = [value]
    return value


def test_nested_json_and_huge_numbers_are_400_and_huge_ids_404(nebulad: Nebulad) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    cases = {
        deep: "nests deeper than 32 levels",
        json.dumps({"trigger": nested(32)}).encode(): "nests deeper",
        b'{"trigger": 1e999}': "the number '1e999' is out of range",
        b'{"trigger": 123456789012345678901234567890}': "is out of range",
        b'{"trigger": NaN}': "NaN is not a JSON number",
        b'{"trigger": ' + b"9" * 5000 + b"}": "not JSON",
    }
    with nebulad.client() as client:
        for body, message in cases.items():
            response = client.post("/api/v1/sync", content=body, headers=JSON)
            assert response.status_code == 400, (body[:40], response.text)
            assert message in response.json()["error"]
        for path in ("/api/v1/syncs/99999999999999999999999", "/api/v1/syncs/9223372036854775808"):
            found = client.get(path)
            assert found.status_code == 404, found.text
            assert found.json() == {"error": f"no sync {path.rsplit('/', 1)[1]}"}
            assert client.post(f"{path}/approve", json={}).status_code == 404
        assert client.get("/api/v1/syncs/9223372036854775807").status_code == 404
    assert nebulad.process.poll() is None


def test_a_replayed_webhook_delivery_is_accepted_once(nebulad: Nebulad) -> None:
    body = push_body("ab")
    with nebulad.client() as client:
        statuses = [
            client.post("/api/v1/webhook", content=body, headers=signed_push(body, "d-1"))
            for _ in range(5)
        ]
        assert [r.status_code for r in statuses] == [202, 409, 409, 409, 409]
        assert "received already" in statuses[1].json()["error"]
        # The signature covers the body only: a fresh delivery id does not make it new.
        fresh_id = client.post("/api/v1/webhook", content=body, headers=signed_push(body, "d-2"))
        assert fresh_id.status_code == 409
        # A delivery refused (bad signature) is not remembered: the real one still counts.
        other = push_body("cd")
        forged = {**signed_push(other, "d-3"), "X-Hub-Signature-256": "sha256=" + "0" * 64}
        assert client.post("/api/v1/webhook", content=other, headers=forged).status_code == 401
        real = client.post("/api/v1/webhook", content=other, headers=signed_push(other, "d-3"))
        assert real.status_code == 202
        time.sleep(0.5)  # the fake daemon records each sync it was asked for
        syncs = client.get("/api/v1/syncs").json()["syncs"]
        assert [s["trigger"] for s in syncs].count("webhook") == 2


def read_all(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection."""
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def test_webhook_bodies_are_refused_before_they_are_read(nebulad: Nebulad) -> None:
    """40 unsigned 24 MB bodies at once: each is refused from its headers, before the body is
    sent, and the server's memory stays where it was."""
    with nebulad.client() as client:  # warm up: the first requests load what they need
        client.post("/api/v1/webhook", content=b"{}", headers=signed_push(b"{}", "warm"))
    before = nebulad.rss()
    unsigned = (
        b"POST /api/v1/webhook HTTP/1.1\r\nHost: nebulad\r\nX-GitHub-Event: push\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (24 * MB)
    )
    connections = [nebulad.connect() for _ in range(12)]
    for sock in connections:
        sock.sendall(unsigned)  # the headers only: the answer must not wait for the body
    for sock in connections:
        answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        assert b"missing signature" in answer
        sock.close()

    # A signed-looking body is read, up to its limit: declared too big, refused at once ...
    signed = unsigned.replace(
        b"X-GitHub-Event", b"X-Hub-Signature-256: sha256=00\r\nX-GitHub-Event"
    )
    with nebulad.connect() as sock:
        sock.sendall(signed)
        answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"over 5 MB" in answer
    # ... or streamed without a length: refused from its headers, none of it read.
    chunked = signed.replace(b"Content-Length: %d" % (24 * MB), b"Transfer-Encoding: chunked")
    chunk = b"%x\r\n%s\r\n" % (MB, b"x" * MB)
    with nebulad.connect() as sock:
        sock.sendall(chunked)
        with contextlib.suppress(OSError):  # the server hangs up while more is sent
            for _ in range(24):
                sock.sendall(chunk)
        answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 411"), answer[:200]
        assert b"send the webhook with a Content-Length" in answer

    # Unsigned bodies sent whole, 40 at once (the server may hang up before each is sent).
    def send(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.sendall(unsigned + b"x" * (24 * MB))

    flood = [nebulad.connect() for _ in range(40)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, flood))
    for sock in flood:
        sock.close()
    assert nebulad.rss() - before < 50 * MB, (before, nebulad.rss())
    with nebulad.client() as client:
        assert client.get("/api/v1/status").status_code == 200


def webhook_request(headers: bytes, length: int) -> bytes:
    """A webhook request's head, announcing a body of `length` bytes."""
    return (
        b"POST /api/v1/webhook HTTP/1.1\r\nHost: nebulad\r\nContent-Type: application/json\r\n"
        + headers
        + b"Content-Length: %d\r\n\r\n" % length
    )


def test_webhooks_no_secret_could_verify_are_refused_before_their_body(nebulad: Nebulad) -> None:
    """A wrong GitLab token (the secret itself, sent in a header), or a listener without a
    secret: each answered from the headers, the 24 MB announced never waited for."""
    wrong_token = b"X-Gitlab-Event: Push Hook\r\nX-Gitlab-Token: not-the-secret\r\n"
    with nebulad.connect() as sock:
        sock.sendall(webhook_request(wrong_token, 24 * MB))
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"bad X-Gitlab-Token" in answer
    signed = b"X-GitHub-Event: push\r\nX-Hub-Signature-256: sha256=" + b"0" * 64 + b"\r\n"
    for proof in (signed, wrong_token):
        with nebulad.connect_unix() as sock:
            sock.sendall(webhook_request(proof, 24 * MB))
            answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
        assert b"no webhook secret is configured" in answer


def test_forged_signatures_cost_a_few_bodies_of_memory_at_most(nebulad: Nebulad) -> None:
    """As many 5 MB bodies with a made-up signature as the listener takes at once: a few are
    read at a time (the others wait their turn), each refused, and memory stays bounded."""
    with nebulad.client() as client:  # warm up: the first requests load what they need
        client.post("/api/v1/webhook", content=b"{}", headers=signed_push(b"{}", "warm"))
    body = b"x" * (5 * MB - 1024)
    forged = {**signed_push(b"{}"), "X-Hub-Signature-256": "sha256=" + "0" * 64}
    before = nebulad.rss()
    nebulad.reset_peak()

    def send(number: int) -> int:
        with httpx.Client(base_url=f"http://127.0.0.1:{nebulad.port}", timeout=30) as client:
            content = body + b"%04d" % number  # each a new delivery
            return client.post("/api/v1/webhook", content=content, headers=forged).status_code

    with ThreadPoolExecutor(MAX_CONNECTIONS) as pool:
        statuses = list(pool.map(send, range(MAX_CONNECTIONS - 1)))
    assert set(statuses) <= {401, 503} and 401 in statuses, statuses
    # Each read holds its body twice at most (as read, as bytes); 15 at once would be 150 MB.
    bound = WEBHOOK_READS * 10 * MB + 15 * MB
    assert nebulad.rss("VmHWM") - before < bound, (before, nebulad.rss("VmHWM"))


FORGED = b"X-GitHub-Event: push\r\nX-Hub-Signature-256: sha256=" + b"0" * 64 + b"\r\n"


def test_slow_forged_webhooks_from_one_address_leave_the_others_their_turn(
    nebulad: Nebulad,
) -> None:
    """More forged webhooks than the listener reads at once, from one address, each body
    trickling in a byte at a time: they take one turn between them, each for the body's
    deadline at most, and a real delivery from another address is accepted at once."""
    forgers = [nebulad.connect() for _ in range(WEBHOOK_READS + 2)]
    for sock in forgers:
        sock.sendall(webhook_request(FORGED, 1000))
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.1):
            for sock in forgers:
                with contextlib.suppress(OSError):
                    sock.sendall(b" ")

    trickling = threading.Thread(target=trickle, daemon=True)
    trickling.start()
    try:
        time.sleep(0.5)  # every forger has sent its headers and waits or holds a turn
        body = push_body("34")
        elsewhere = httpx.HTTPTransport(local_address="127.0.0.2")
        url = f"http://127.0.0.1:{nebulad.port}"
        with httpx.Client(base_url=url, transport=elsewhere, timeout=10) as client:
            started = time.monotonic()
            real = client.post("/api/v1/webhook", content=body, headers=signed_push(body, "d-34"))
            took = time.monotonic() - started
        assert real.status_code == 202, real.text
        assert took < 1.0, took

        answers = [read_all(sock) for sock in forgers]
    finally:
        stop.set()
        trickling.join()
        for sock in forgers:
            sock.close()
    statuses = sorted(answer[9:12].decode() for answer in answers)
    assert set(statuses) == {"408", "503"}, answers
    late = next(a for a in answers if a.startswith(b"HTTP/1.1 408"))
    assert b"the request body did not arrive within 2 s" in late  # the server's body_timeout
    busy = next(a for a in answers if a.startswith(b"HTTP/1.1 503"))
    assert b"too many webhooks at once" in busy and b"retry-after: 5" in busy.lower()


def test_a_webhook_without_a_content_length_is_411(nebulad: Nebulad) -> None:
    head = webhook_request(FORGED, 0).replace(b"Content-Length: 0\r\n", b"")
    with nebulad.connect() as sock:
        sock.sendall(head)
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 411"), answer[:200]


def test_one_client_reads_one_webhook_body_at_a_time_an_ipv6_one_per_64() -> None:
    async def take(turns: BodyTurns, address: str) -> None:
        async with turns.turn(address):
            pass

    async def main() -> None:
        turns = BodyTurns(slots=4, wait=0.2)
        async with turns.turn("2001:db8::1"):
            with pytest.raises(NoTurnError):
                await take(turns, "2001:db8::ffff:1")  # the same /64: one host
            await take(turns, "2001:db8:0:1::1")  # the next /64
            async with turns.turn("192.0.2.1"):
                with pytest.raises(NoTurnError):
                    await take(turns, "::ffff:192.0.2.1")  # the same IPv4 address
                await take(turns, "192.0.2.2")
        await take(turns, "2001:db8::ffff:1")  # its turn is free again

    asyncio.run(main())


def test_a_forged_copy_of_a_delivery_is_401_and_never_takes_its_place(nebulad: Nebulad) -> None:
    body, other = push_body("ef"), push_body("12")
    with nebulad.client() as client:
        first = client.post("/api/v1/webhook", content=body, headers=signed_push(body, "d-9"))
        assert first.status_code == 202, first.text
        forged = {**signed_push(body, "d-9"), "X-Hub-Signature-256": "sha256=" + "0" * 64}
        copy = client.post("/api/v1/webhook", content=body, headers=forged)
        assert copy.status_code == 401, copy.text  # not 409: what was delivered is not told

        # Forged copies of the next delivery in flight while the real one arrives.
        forged = {**signed_push(other, "d-10"), "X-Hub-Signature-256": "sha256=" + "0" * 64}

        def forge(_: int) -> int:
            return client.post("/api/v1/webhook", content=other, headers=forged).status_code

        with ThreadPoolExecutor(4) as pool:
            copies = pool.map(forge, range(40))
            real = client.post("/api/v1/webhook", content=other, headers=signed_push(other, "d-10"))
            assert set(copies) == {401}
        assert real.status_code == 202, real.text


def test_a_signed_payload_is_read_as_strictly_as_any_request_body(nebulad: Nebulad) -> None:
    push = {"ref": "refs/heads/main", "after": "ab" * 20}
    cases = {
        json.dumps({**push, "commits": nested(40)}).encode(): "nests deeper than 32 levels",
        json.dumps({**push, "size": 1e400}).encode(): "Infinity is not a JSON number",
        json.dumps(push).encode()[:-1] + b', "size": 1e999}': "the number '1e999' is out of range",
    }
    with nebulad.client() as client:
        for body, message in cases.items():
            refused = client.post("/api/v1/webhook", content=body, headers=signed_push(body))
            assert refused.status_code == 400, refused.text
            assert refused.json()["error"].startswith("malformed payload: ")
            assert message in refused.json()["error"]


def webhook_syncs(daemon: Daemon) -> list[SyncRecord]:
    return [s for s in daemon.syncs(20) if s.trigger == "webhook"]


def test_a_delivery_replayed_after_a_restart_changes_nothing(
    tmp_path: Path, docker_host: str, request: pytest.FixtureRequest
) -> None:
    """The deliveries seen are kept in memory only: once nebulad restarts, a replay gets
    through, and asks for a sync of the branch as it is, which is applied already."""
    docker_engine: docker.DockerClient = request.getfixturevalue("engine")
    repo = Repo(tmp_path)
    sha = repo.push("first", {"packages/web.yaml": daemon_app("web")})
    config = DaemonConfig(
        source=str(repo.bare),
        data_dir=tmp_path / "data",
        poll_interval=3600,
        drift_interval=3600,
        webhook_secret=WEBHOOK_SECRET,
    )
    store = Store(f"sqlite:///{tmp_path}/nebula.db")
    provider = DockerProvider(docker_host)
    daemon = Daemon(config, store, provider, GitSource(str(repo.bare), tmp_path / "data" / "repo"))
    daemon.start()
    try:
        eventually(
            lambda: daemon.status().applied_commit == sha and running(docker_engine) == {"web-web"}
        )
        container = docker_engine.containers.get("web-web").id
        body = json.dumps({"ref": "refs/heads/main", "after": sha}).encode()
        for deliveries in (1, 2):  # the second time by a new app, that remembers none
            app = create_app(daemon, token=TOKEN, tcp=True, webhook_secret=WEBHOOK_SECRET)
            with TestClient(app) as client:
                sent = client.post("/api/v1/webhook", content=body, headers=signed_push(body, "d"))
                assert sent.status_code == 202, sent.text
                again = client.post("/api/v1/webhook", content=body, headers=signed_push(body, "d"))
                assert again.status_code == 409, again.text
            done = ["succeeded"] * deliveries
            eventually(lambda done=done: [s.status for s in webhook_syncs(daemon)] == done)
        assert [s.changes for s in webhook_syncs(daemon)] == [(), ()]
        assert daemon.status().applied_commit == sha
        assert docker_engine.containers.get("web-web").id == container  # not recreated
    finally:
        daemon.stop()
        provider.close()
        store.close()


# -- connections ------------------------------------------------------------------------------------


def test_a_connection_that_never_finishes_its_headers_is_closed(nebulad: Nebulad) -> None:
    with nebulad.connect() as silent, nebulad.connect() as trickling:
        started = time.monotonic()
        trickling.sendall(b"GET /api/v1/status HTTP/1.1\r\n")
        trickling.settimeout(0.2)
        closed = False
        while not closed and time.monotonic() - started < HEADER_TIMEOUT + 3:
            with contextlib.suppress(TimeoutError):
                closed = trickling.recv(1024) == b""
            with contextlib.suppress(OSError):
                trickling.sendall(b"X")  # a byte at a time keeps no connection open
        assert closed
        assert silent.recv(1024) == b""  # the silent one was closed as well
        assert time.monotonic() - started < HEADER_TIMEOUT + 3


def test_a_body_that_never_arrives_gets_408(nebulad: Nebulad) -> None:
    with nebulad.connect() as sock:
        sock.sendall(
            b"POST /api/v1/sync HTTP/1.1\r\nHost: nebulad\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 100\r\n\r\n{"
        )
        started = time.monotonic()
        answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"did not arrive within 2 s" in answer
        assert time.monotonic() - started < 5


def test_connections_beyond_the_limit_are_closed_at_once(nebulad: Nebulad) -> None:
    held = [nebulad.connect() for _ in range(MAX_CONNECTIONS)]
    time.sleep(0.3)  # the server has accepted them all
    with nebulad.connect() as extra:
        extra.settimeout(1.0)
        assert extra.recv(1024) == b""  # closed without a word
    for sock in held[:4]:
        sock.close()
    time.sleep(0.3)
    with nebulad.client() as client:
        assert client.get("/api/v1/status").status_code == 200
    for sock in held[4:]:
        sock.close()
