"""Authentication overhead per request on nebulad's TCP API, beside the same route without auth.

    python3 bench/auth_overhead.py [--requests 3000] [--json PATH]

nebulad's real API (`create_app`, served by `daemon.server.serve` on uvicorn) over a real
SQLite store, in this process; the daemon behind it answers `GET /api/v1/status` from memory.
One keep-alive httpx client per variant sends `--requests` GETs, the variants interleaved in
blocks of 100 so drift in the machine's load hits them alike:

- **no auth** (the peer): the same app and route, its auth middleware replaced by one that
  hands every request an admin principal: what the API costs without authentication;
- **JWT**: a 15-minute access token from `/auth/login` (signature and expiry checked);
- **API key**: `nbk_...` (looked up by prefix in the store, SHA-256 compared in constant time);
- **static token**: the configured admin token (a constant-time compare);
- **unix socket**: the owner's socket (peer credentials), for reference.

Rate limiting stays on for the TCP variants (a bucket too large to refuse), so its cost counts.
Reported: median and p90 latency of each, and the median's difference from no auth, against the
target (< 1 ms for JWT and API key).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

import stacks
from nebula.daemon.api import create_app
from nebula.daemon.control import DaemonStatus
from nebula.daemon.server import serve
from nebula.identity import accounts
from nebula.identity.principal import SCOPE_KEY, Principal, Role
from nebula.identity.ratelimit import RateLimit
from nebula.identity.sessions import Sessions
from nebula.store import Store

TARGET_MS = 1.0
BLOCK = 100
PASSWORD = "benchmark passphrase"
STATIC_TOKEN = "static-admin-token-0123456789"
NEVER_LIMITED = RateLimit(rate=1e9, burst=10**9)


class StatusOnly:
    """The daemon side: `status()` from memory, so the figures are the API's own."""

    def status(self) -> DaemonStatus:
        return DaemonStatus(
            node="bench",
            source="https://git.example/lab.git",
            branch="main",
            subfolder="",
            applied_commit="ab" * 20,
            suspended=False,
            pinned_commit=None,
            last_sync=None,
            installations=50,
        )


class NoAuth:
    """Every request is an admin: the API as it would run without authentication."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[SCOPE_KEY] = Principal("bench", Role.admin, "static_token", "bench")
        await self.app(scope, receive, send)


@contextmanager
def served(tmp: Path) -> Iterator[dict[str, Any]]:
    store = Store(f"sqlite:///{tmp}/nebula.db")
    sessions = Sessions(store, b"k" * 32)
    control: Any = StatusOnly()
    tcp = create_app(
        control, token=STATIC_TOKEN, tcp=True, sessions=sessions, rate_limit=NEVER_LIMITED
    )
    bare = create_app(control, token=STATIC_TOKEN, tcp=True, sessions=sessions)
    bare.user_middleware = [Middleware(NoAuth)]  # before its first request builds the stack
    unix = create_app(control, token=None, tcp=False, sessions=sessions)
    ports = [free_port(), free_port()]
    stops = [threading.Event(), threading.Event()]
    readies = [threading.Event(), threading.Event()]
    socket_path = tmp / "nebulad.sock"
    threads = [
        threading.Thread(
            target=serve,
            args=(unix, socket_path),
            kwargs={
                "app_tcp": tcp,
                "tcp_listen": f"127.0.0.1:{ports[0]}",
                "stop": stops[0],
                "ready": readies[0],
            },
            daemon=True,
        ),
        threading.Thread(
            target=serve,
            args=(bare, tmp / "bare.sock"),
            kwargs={
                "app_tcp": bare,
                "tcp_listen": f"127.0.0.1:{ports[1]}",
                "stop": stops[1],
                "ready": readies[1],
            },
            daemon=True,
        ),
    ]
    for thread in threads:
        thread.start()
    if not all(ready.wait(15) for ready in readies):
        raise RuntimeError("the API did not start")
    try:
        yield {
            "store": store,
            "sessions": sessions,
            "tcp": f"http://127.0.0.1:{ports[0]}",
            "bare": f"http://127.0.0.1:{ports[1]}",
            "socket": socket_path,
        }
    finally:
        for stop in stops:
            stop.set()
        for thread in threads:
            thread.join(15)
        store.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def clients(where: dict[str, Any]) -> dict[str, httpx.Client]:
    store, url = where["store"], where["tcp"]
    accounts.add_user(store, "ada", PASSWORD, "viewer")
    _, key = accounts.create_key(store, "bench", "read")
    login = httpx.post(f"{url}/api/v1/auth/login", json={"user": "ada", "password": PASSWORD})
    login.raise_for_status()
    jwt = login.json()["access_token"]

    def tcp(base: str, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=base, headers=headers, timeout=10)

    unix = httpx.Client(
        base_url="http://nebulad",
        transport=httpx.HTTPTransport(uds=str(where["socket"])),
        timeout=10,
    )
    return {
        "no auth (TCP)": tcp(where["bare"], None),
        "JWT access token (TCP)": tcp(url, jwt),
        "API key (TCP)": tcp(url, key),
        "static token (TCP)": tcp(url, STATIC_TOKEN),
        "unix socket, peer credentials": unix,
    }


def measure(variants: dict[str, httpx.Client], requests: int) -> dict[str, stacks.Series]:
    series = {name: stacks.Series(name) for name in variants}
    for client in variants.values():  # warm: connections, thread pool, caches
        for _ in range(50):
            check(client.get("/api/v1/status"))
    done = 0
    while done < requests:
        block = min(BLOCK, requests - done)
        for name, client in variants.items():
            for _ in range(block):
                started = time.perf_counter()
                response = client.get("/api/v1/status")
                series[name].add(time.perf_counter() - started)
                check(response)
        done += block
    return series


def check(response: httpx.Response) -> None:
    if response.status_code != 200:
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text}")


def main() -> None:
    parser = stacks.base_parser((__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    load_before = stacks.machine()
    with stacks.scratch_dir("nebula-bench-") as tmp, served(tmp) as where:
        variants = clients(where)
        try:
            series = measure(variants, args.requests)
        finally:
            for client in variants.values():
                client.close()
    base = series["no auth (TCP)"].median
    stacks.print_table(
        f"GET /api/v1/status, {args.requests} requests each, keep-alive, ms",
        ["variant", "median", "p90", "min", "median - no auth"],
        [
            [
                s.name,
                f"{s.median * 1000:.3f}",
                f"{s.percentile(90) * 1000:.3f}",
                f"{s.best * 1000:.3f}",
                f"{(s.median - base) * 1000:+.3f}",
            ]
            for s in series.values()
        ],
    )
    overhead = {
        name: (series[name].median - base) * 1000
        for name in ("JWT access token (TCP)", "API key (TCP)")
    }
    stacks.print_table(
        "Against the issue's target",
        ["figure", "measured", "target", "verdict"],
        [
            [
                f"auth overhead, {name}",
                f"{ms:.3f} ms",
                f"< {TARGET_MS:g} ms",
                stacks.verdict(ms < 1),
            ]
            for name, ms in overhead.items()
        ],
    )
    stacks.emit_json(
        {
            "benchmark": "auth_overhead",
            "at": datetime.now(UTC).isoformat(),
            "requests": args.requests,
            "machine_before": load_before,
            "machine_after": stacks.machine(),
            "median_ms": {n: round(s.median * 1000, 4) for n, s in series.items()},
            "p90_ms": {n: round(s.percentile(90) * 1000, 4) for n, s in series.items()},
            "overhead_median_ms": {n: round(v, 4) for n, v in overhead.items()},
        },
        args.json,
    )


if __name__ == "__main__":
    main()
