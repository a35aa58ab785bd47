"""Who may call nebulad's API: roles on every route, logins, tokens, keys, lockout, rate limits,
and the unix socket's peer check. Served for real (uvicorn on a unix socket and loopback TCP)
over a real store; the daemon behind it is `FakeControl` (see test_daemon_api).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from nebula.daemon.api import create_app
from nebula.daemon.auth import PUBLIC, GuardedRoute
from nebula.daemon.server import serve
from nebula.identity import accounts
from nebula.identity.lockout import FREE_FAILURES, AddressGuard
from nebula.identity.principal import Role, scope_role
from nebula.identity.ratelimit import RateLimit
from nebula.identity.sessions import Sessions
from nebula.store import Store
from test_daemon_api import FakeControl, free_port, short_dir

PASSWORD = "correct horse battery staple"
KEY = bytes(range(32))
# The routes that prove their caller themselves; a new one must be added here on purpose.
PUBLIC_ROUTES = {
    ("POST", "/api/v1/webhook"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("GET", "/api/v1/auth/check"),  # reads the session cookie itself (Caddy's forward_auth)
}


@dataclass
class Api:
    app: Starlette
    url: str
    socket: Path
    store: Store
    control: FakeControl

    def tcp(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def unix(self) -> httpx.Client:
        transport = httpx.HTTPTransport(uds=str(self.socket))
        return httpx.Client(base_url="http://nebulad", transport=transport, timeout=10)


@contextmanager
def serving(
    tmp_path: Path,
    *,
    sessions: Sessions | None = None,
    rate_limit: RateLimit | None = None,
    socket_mode: int | None = None,
) -> Iterator[Api]:
    store = sessions.store if sessions else Store(f"sqlite:///{tmp_path}/nebula.db")
    sessions = sessions or Sessions(store, KEY)
    control = FakeControl()
    with short_dir() as root:
        path = root / "run" / "nebulad.sock"
        port = free_port()
        stop, ready = threading.Event(), threading.Event()
        tcp_app = create_app(
            control, token=None, tcp=True, sessions=sessions, rate_limit=rate_limit
        )
        unix_app = create_app(control, token=None, tcp=False, sessions=sessions)

        def run() -> None:
            serve(
                unix_app,
                path,
                app_tcp=tcp_app,
                tcp_listen=f"127.0.0.1:{port}",
                stop=stop,
                ready=ready,
            )

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert ready.wait(10)
        if socket_mode is not None:  # let another uid reach the socket: the peer check decides
            os.chmod(root, 0o755)
            os.chmod(path.parent, 0o755)
            os.chmod(path, socket_mode)
        try:
            yield Api(tcp_app, f"http://127.0.0.1:{port}", path, store, control)
        finally:
            stop.set()
            control.stopped.set()
            thread.join(15)
            store.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with serving(tmp_path) as served:
        yield served


def keys_by_role(store: Store) -> dict[Role, str]:
    """One API key per role: read = viewer, write = operator, admin = admin."""
    made = {}
    for scope in ("read", "write", "admin"):
        _, token = accounts.create_key(store, f"{scope}-key", scope)
        made[scope_role(scope)] = token
    return made


def rule_problems(app: Starlette) -> list[str]:
    return [
        f"{getattr(r, 'path', r)} has no role rule: declare it with daemon.auth.route"
        for r in app.routes
        if not isinstance(r, GuardedRoute)
    ]


def concrete(path: str) -> str:
    """A path to request for a route's template: ints become 1, other parameters a key id."""
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: "1" if m[2] == ":int" else "0" * 12, path)


def call(client: httpx.Client, method: str, path: str) -> int:
    if path.endswith("/events"):  # a stream: the status line is enough
        with client.stream(method, path) as response:
            return response.status_code
    return client.request(method, path, json={}).status_code


# -- every route has a rule, and keeps it ----------------------------------------------------------


def test_every_route_refuses_a_caller_below_its_role(api: Api) -> None:
    assert rule_problems(api.app) == []
    api.control.add("held")  # sync 1: something to approve
    checked = 0
    with ExitStack() as stack:
        clients = {r: stack.enter_context(api.tcp(k)) for r, k in keys_by_role(api.store).items()}
        anonymous = stack.enter_context(api.tcp())
        owner = stack.enter_context(api.unix())  # the socket's owner is admin
        for route in api.app.routes:
            assert isinstance(route, GuardedRoute)
            for method in sorted((route.methods or set()) - {"HEAD"}):
                path = concrete(route.path)
                if route.access == PUBLIC:
                    assert (method, route.path) in PUBLIC_ROUTES, f"{method} {route.path} is public"
                    continue
                assert call(anonymous, method, path) == 401, (method, path)
                for role, client in clients.items():
                    status = call(client, method, path)
                    if role < route.access:
                        assert status == 403, (method, path, role.name, status)
                    else:
                        assert status not in (401, 403), (method, path, role.name, status)
                assert call(owner, method, path) not in (401, 403), (method, path)
                checked += 1
        assert checked >= 15
        # The webhook stays public: its signature decides.
        assert anonymous.post("/api/v1/webhook", content=b"{}").status_code == 400


def test_a_route_without_a_role_rule_fails_the_walk() -> None:
    async def hello(request: object) -> PlainTextResponse:
        return PlainTextResponse("hi")

    unruly = Starlette(routes=[Route("/api/v1/new", hello)])
    assert rule_problems(unruly) == [
        "/api/v1/new has no role rule: declare it with daemon.auth.route"
    ]


def test_api_key_scopes_and_revocation(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/nebula.db")
    with serving(tmp_path, sessions=Sessions(store, KEY, cache_seconds=1.0)) as api:
        check_key_scopes_and_revocation(api)


def check_key_scopes_and_revocation(api: Api) -> None:
    reader, read_token = accounts.create_key(api.store, "grafana", "read")
    _, write_token = accounts.create_key(api.store, "ci", "write")
    _, node_token = accounts.create_key(api.store, "node2", "write", service=True)
    with api.tcp(read_token) as client:
        assert client.get("/api/v1/status").status_code == 200
        assert client.get("/metrics").status_code == 200
        refused = client.post("/api/v1/sync")
        assert refused.status_code == 403
        assert "key:grafana is a viewer; this needs the operator role" in refused.json()["error"]
        assert client.get("/api/v1/auth/whoami").json() == {
            "name": "key:grafana",
            "role": "viewer",
            "method": "api_key",
        }
    with api.tcp(write_token) as client:
        assert client.post("/api/v1/sync").status_code == 202
        assert client.get("/api/v1/users").status_code == 403
    with api.tcp(node_token) as client:
        assert client.get("/api/v1/auth/whoami").json()["name"] == "node:node2"
        assert client.get("/api/v1/auth/whoami").json()["method"] == "service_token"
    # An API key's prefix cannot pass for a service token's, nor a tampered secret for the key.
    _, prefix, secret = read_token.split("_", 2)
    for forged in (f"nbs_{prefix}_{secret}", f"nbk_{prefix}_x{secret}", "nbk_short_x"):
        with api.tcp(forged) as client:
            assert client.get("/api/v1/status").status_code == 401
    # Revoked from another process (the CLI): the daemon trusts a verified key for a moment
    # (`cache_seconds`) before it asks the store again.
    with api.tcp(read_token) as client:
        assert client.get("/api/v1/status").status_code == 200  # verified now
        accounts.revoke_key(api.store, reader.prefix)
        assert client.get("/api/v1/status").status_code == 200
        time.sleep(1.1)
        response = client.get("/api/v1/status")
        assert response.status_code == 401
        assert response.json() == {"error": "invalid bearer token"}
    assert api.control.called("request_sync") == ["manual"]


def test_admin_creates_and_revokes_keys_over_the_api(api: Api) -> None:
    keys = keys_by_role(api.store)
    with api.tcp(keys[Role.admin]) as admin:
        made = admin.post("/api/v1/apikeys", json={"name": "backup", "scope": "write"})
        assert made.status_code == 201, made.text
        token, prefix = made.json()["token"], made.json()["key"]["prefix"]
        listed = admin.get("/api/v1/apikeys").json()["keys"]
        assert {k["name"] for k in listed} == {"read-key", "write-key", "admin-key", "backup"}
        assert all("secret" not in str(k) and token not in str(k) for k in listed)
        admin_prefix = next(k["prefix"] for k in listed if k["name"] == "admin-key")
        assert made.json()["key"]["created_by"] == f"key:{admin_prefix}"  # by id: names recur
        with api.tcp(token) as backup:
            assert backup.post("/api/v1/suspend").status_code == 200
        assert admin.delete(f"/api/v1/apikeys/{prefix}").status_code == 200
        assert admin.delete(f"/api/v1/apikeys/{prefix}").status_code == 404
        bad = admin.post("/api/v1/apikeys", json={"name": "x", "scope": "root"})
        assert bad.status_code == 400
        assert "unknown scope 'root'" in bad.json()["error"]
    with api.tcp(token) as backup:
        assert backup.post("/api/v1/suspend").status_code == 401


# -- logins -----------------------------------------------------------------------------------------


def login(client: httpx.Client, user: str = "ada", password: str = PASSWORD) -> httpx.Response:
    return client.post("/api/v1/auth/login", json={"user": user, "password": password})


def test_login_gives_an_access_token_for_the_users_role(api: Api) -> None:
    accounts.add_user(api.store, "ada", PASSWORD, "operator")
    with api.tcp() as client:
        response = login(client)
        assert response.status_code == 200, response.text
        tokens = response.json()
        assert response.headers["cache-control"] == "no-store"
        assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 900
        assert (tokens["user"], tokens["role"]) == ("ada", "operator")
    with api.tcp(tokens["access_token"]) as ada:
        assert ada.get("/api/v1/auth/whoami").json() == {
            "name": "ada",
            "role": "operator",
            "method": "password",
        }
        assert ada.post("/api/v1/suspend").status_code == 200
        assert ada.get("/api/v1/users").status_code == 403
    with api.tcp() as client:
        for user, password in (("ada", "wrong password!"), ("nobody", PASSWORD)):
            refused = login(client, user, password)
            assert refused.status_code == 401
            assert refused.json() == {"error": "wrong user name or password"}
        assert client.post("/api/v1/auth/login", json={"user": "ada"}).status_code == 400
    with api.tcp("an-expired-or-foreign-token") as stale:  # public routes ignore it
        assert login(stale).status_code == 200


def test_an_expired_access_token_is_refused(api: Api) -> None:
    accounts.add_user(api.store, "ada", PASSWORD, "admin")
    long_ago = Sessions(api.store, KEY, clock=lambda: datetime.now(UTC) - timedelta(minutes=16))
    stale = long_ago.login("ada", PASSWORD, "127.0.0.1").access_token
    fresh = Sessions(api.store, KEY).login("ada", PASSWORD, "127.0.0.1").access_token
    other_key = Sessions(api.store, b"k" * 32).login("ada", PASSWORD, "127.0.0.1").access_token
    with api.tcp(stale) as client:
        response = client.get("/api/v1/status")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    with api.tcp(other_key) as client:
        assert client.get("/api/v1/status").status_code == 401
    with api.tcp(fresh) as client:
        assert client.get("/api/v1/status").status_code == 200


def test_refresh_rotates_and_a_reused_token_revokes_the_session(api: Api) -> None:
    accounts.add_user(api.store, "ada", PASSWORD, "viewer")
    with api.tcp() as client:
        first = login(client).json()["refresh_token"]
        rotated = client.post("/api/v1/auth/refresh", json={"refresh_token": first})
        assert rotated.status_code == 200
        second = rotated.json()["refresh_token"]
        assert second != first
        with api.tcp(rotated.json()["access_token"]) as ada:
            assert ada.get("/api/v1/status").status_code == 200
        # The spent token again: someone else has it. The whole session ends.
        reused = client.post("/api/v1/auth/refresh", json={"refresh_token": first})
        assert reused.status_code == 401
        assert "already used" in reused.json()["error"]
        revoked = client.post("/api/v1/auth/refresh", json={"refresh_token": second})
        assert revoked.status_code == 401
        # Another login is its own session; logging out revokes it.
        third = login(client).json()["refresh_token"]
        out = client.post("/api/v1/auth/logout", json={"refresh_token": third})
        assert out.json() == {"revoked": True}
        gone = client.post("/api/v1/auth/refresh", json={"refresh_token": third})
        assert gone.status_code == 401
        unknown = client.post("/api/v1/auth/refresh", json={"refresh_token": "made-up"})
        assert unknown.status_code == 401


def test_a_browser_gets_the_refresh_token_as_a_strict_httponly_cookie(api: Api) -> None:
    accounts.add_user(api.store, "ada", PASSWORD, "viewer")
    with api.tcp() as client:
        response = client.post(
            "/api/v1/auth/login", json={"user": "ada", "password": PASSWORD, "cookie": True}
        )
        assert response.status_code == 200
        assert "refresh_token" not in response.json()  # never readable by a script
        cookie = response.headers["set-cookie"]
        for attribute in ("HttpOnly", "Secure", "SameSite=strict", "Path=/api/v1/auth"):
            assert attribute.lower() in cookie.lower(), cookie
        token = cookie.split(";")[0].split("=", 1)[1]
        # Secure cookies are not sent over plain http by httpx: send it as a browser over TLS would.
        refreshed = client.post(
            "/api/v1/auth/refresh", headers={"Cookie": f"nebula_refresh={token}"}
        )
        assert refreshed.status_code == 200
        assert "nebula_refresh=" in refreshed.headers["set-cookie"]
        assert "refresh_token" not in refreshed.json()
        again = client.post("/api/v1/auth/refresh", headers={"Cookie": f"nebula_refresh={token}"})
        assert again.status_code == 401
        assert 'nebula_refresh=""' in again.headers["set-cookie"]  # the browser drops it


# -- protection ---------------------------------------------------------------------------------------


def test_brute_forcing_a_password_gets_locked_out(tmp_path: Path) -> None:
    now = [datetime.now(UTC)]
    store = Store(f"sqlite:///{tmp_path}/nebula.db")
    sessions = Sessions(store, KEY, clock=lambda: now[0])
    accounts.add_user(store, "ada", PASSWORD, "admin")
    with serving(tmp_path, sessions=sessions) as api, api.tcp() as client:
        for guess in range(FREE_FAILURES):
            assert login(client, password=f"guess number {guess}").status_code == 401
        # Locked now: even the right password is not checked.
        locked = login(client)
        assert locked.status_code == 429
        assert "user ada is locked after 5 failed logins" in locked.json()["error"]
        assert 50 <= int(locked.headers["retry-after"]) <= 60
        users = {u.name: u for u in accounts.users(store)}
        assert users["ada"].failed_logins == FREE_FAILURES
        assert users["ada"].locked_until is not None  # persisted: a restart does not lift it
        # After the lock, one more wrong guess locks for twice as long.
        now[0] += timedelta(seconds=61)
        assert login(client, password="guess number 6").status_code == 401
        relocked = login(client)
        assert relocked.status_code == 429
        assert 110 <= int(relocked.headers["retry-after"]) <= 120
        now[0] += timedelta(seconds=121)
        assert login(client).status_code == 200
        assert accounts.users(store)[0].failed_logins == 0


def test_one_address_guessing_across_users_is_blocked(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/nebula.db")
    sessions = Sessions(store, KEY, address_guard=AddressGuard(limit=4, window=600))
    accounts.add_user(store, "ada", PASSWORD, "admin")
    with serving(tmp_path, sessions=sessions) as api, api.tcp() as client:
        for user in ("root", "admin", "pi", "ada"):
            assert login(client, user, "hunter2hunter2").status_code == 401
        blocked = login(client)
        assert blocked.status_code == 429
        assert "too many failed logins from 127.0.0.1" in blocked.json()["error"]
        assert 590 <= int(blocked.headers["retry-after"]) <= 600
        assert accounts.users(store)[0].failed_logins == 1  # ada herself is not locked


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    with serving(tmp_path, rate_limit=RateLimit(rate=0.5, burst=3)) as api:
        _, key = accounts.create_key(api.store, "poller", "read")
        with api.tcp(key) as client:
            statuses = [client.get("/api/v1/status").status_code for _ in range(4)]
            assert statuses == [200, 200, 200, 429]
            limited = client.get("/api/v1/status")
            assert limited.status_code == 429
            assert limited.json() == {"error": "too many requests: slow down"}
            assert int(limited.headers["retry-after"]) == 2
        with api.tcp() as anonymous:  # per address: a stranger from there waits too
            assert anonymous.get("/api/v1/status").status_code == 429
        with api.unix() as owner:  # the socket is not rate limited
            assert all(owner.get("/api/v1/status").status_code == 200 for _ in range(5))


# -- the unix socket ------------------------------------------------------------------------------------


# What the other uid runs: a plain HTTP request over the socket, with the system's Python
# (the test's own interpreter may sit in a home nobody can enter).
PEER_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"GET /api/v1/status HTTP/1.1\\r\\nHost: nebulad\\r\\nConnection: close\\r\\n\\r\\n")
answer = b""
while chunk := s.recv(65536):
    answer += chunk
print(answer.decode())
"""


def test_the_socket_refuses_another_uid(tmp_path: Path) -> None:
    """A real second uid (nobody, via setpriv) connects to a socket opened up to everyone."""
    python = shutil.which("python3", path="/usr/bin:/bin")
    if os.geteuid() != 0 or not shutil.which("setpriv") or python is None:
        if os.environ.get("CI") == "true":
            pytest.fail("this test needs root, setpriv (util-linux) and /usr/bin/python3")
        pytest.skip("needs root, setpriv and /usr/bin/python3")
    with serving(tmp_path, socket_mode=0o666) as api:
        stranger = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                python,
                "-c",
                PEER_CLIENT,
                str(api.socket),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert stranger.returncode == 0, stranger.stderr
        assert stranger.stdout.startswith("HTTP/1.1 403"), stranger.stdout
        assert "uid 65534 may not use this socket" in stranger.stdout
        with api.unix() as owner:
            assert owner.get("/api/v1/auth/whoami").json() == {
                "name": f"uid:{os.geteuid()}",
                "role": "admin",
                "method": "socket",
            }
    assert api.control.calls == []
