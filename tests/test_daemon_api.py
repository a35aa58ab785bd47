"""nebulad's HTTP API, served for real by `daemon.server` on a unix socket and on loopback TCP.

The daemon behind it is `FakeControl`: a plain implementation of our own `DaemonControl`
interface that records what it was asked. Everything between it and httpx is the real thing:
uvicorn, the sockets, the auth, the JSON, the event stream, the Prometheus registry.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import queue
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nebula.daemon import metrics
from nebula.daemon.api import create_app
from nebula.daemon.control import ControlError, DaemonStatus, Event, SyncRecord, SyncTrigger
from nebula.daemon.server import ServerError, bind_unix, serve
from nebula.daemon.webhook import verify_and_parse
from nebula.errors import NebulaError
from nebula.store.records import SyncStatus

TOKEN = "tcp-token-0123456789abcdef"
WEBHOOK_SECRET = "webhook-secret-s3cr3t"
JSON = {"Content-Type": "application/json"}
T0 = datetime(2025, 5, 1, 12, 0, 0, tzinfo=UTC)


class FakeControl:
    """Our `DaemonControl`, in memory: records calls, keeps syncs, publishes events.

    With `auto_run`, each requested sync is recorded as running, then finished as `finish_as`
    a moment later, with `sync_started` / `progress` / `sync_finished` events, as
    `daemon.core` sends them.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.records: dict[int, SyncRecord] = {}
        self.suspended = False
        self.pinned: str | None = None
        self.auto_run = False
        self.finish_as: SyncStatus = "succeeded"
        self.fail_with: Exception | None = None
        self.stopped = threading.Event()
        self._subscribers: list[queue.Queue[Event]] = []
        self._lock = threading.Lock()

    # -- helpers for tests -------------------------------------------------------------------

    def add(self, status: SyncStatus, **fields: Any) -> SyncRecord:
        with self._lock:
            sync_id = max(self.records, default=0) + 1
            record = SyncRecord(
                id=sync_id,
                commit=fields.pop("commit", f"{sync_id:02d}" + "ab" * 19),
                author=fields.pop("author", "Ada Lovelace"),
                message=fields.pop("message", f"change {sync_id}\n\nbody"),
                trigger=fields.pop("trigger", "poll"),
                status=status,
                errors=fields.pop("errors", ()),
                summary=fields.pop("summary", {}),
                changes=fields.pop("changes", ()),
                started_at=fields.pop("started_at", T0),
                finished_at=fields.pop("finished_at", None),
                duration_ms=fields.pop("duration_ms", None),
            )
            assert not fields, fields
            self.records[sync_id] = record
        return record

    def publish(self, kind: str, **data: Any) -> None:
        event = Event(kind, data, datetime.now(UTC))
        with self._lock:
            for subscriber in self._subscribers:
                subscriber.put(event)

    def called(self, name: str) -> list[Any]:
        return [args for call, args in self.calls if call == name]

    def _run(self, trigger: str) -> None:
        record = self.add("running", trigger=trigger)
        self.publish("sync_started", id=record.id, commit=record.commit, trigger=trigger)
        self.publish("progress", id=record.id, installation="whoami", message="creating")
        time.sleep(0.2)
        errors: tuple[str, ...] = ()
        if self.finish_as == "failed":
            errors = ("packages/web.yaml:4:7: compose.services.web.imagee: unknown field",)
        done = replace(
            record,
            status=self.finish_as,
            errors=errors,
            summary={"create": 1, "update": 0, "delete": 0, "noop": 2},
            finished_at=T0,
            duration_ms=200,
        )
        with self._lock:
            self.records[record.id] = done
        self.publish("sync_finished", id=record.id, status=self.finish_as, errors=list(errors))

    # -- DaemonControl -------------------------------------------------------------------------

    def status(self) -> DaemonStatus:
        if self.fail_with is not None:
            raise self.fail_with
        newest = max(self.records.values(), key=lambda r: r.id, default=None)
        return DaemonStatus(
            node="node1",
            source="https://git.example/lab.git",
            branch="main",
            subfolder="",
            applied_commit=newest.commit if newest else None,
            suspended=self.suspended,
            pinned_commit=self.pinned,
            last_sync=newest,
            installations=2,
        )

    def installations(self) -> list[dict[str, Any]]:
        return [{"name": "whoami", "applied_commit": "ab" * 20, "updated_at": T0}]

    def syncs(self, limit: int = 20) -> list[SyncRecord]:
        self.calls.append(("syncs", limit))
        with self._lock:
            return sorted(self.records.values(), key=lambda r: -r.id)[:limit]

    def sync(self, sync_id: int) -> SyncRecord | None:
        return self.records.get(sync_id)

    def request_sync(self, trigger: SyncTrigger) -> None:
        self.calls.append(("request_sync", trigger))
        if self.auto_run:
            threading.Thread(target=self._run, args=(trigger,), daemon=True).start()

    def approve(self, sync_id: int) -> SyncRecord:
        self.calls.append(("approve", sync_id))
        record = self.records.get(sync_id)
        if record is None:
            raise ControlError("not_found", f"no sync {sync_id}")
        if record.status != "held":
            raise ControlError("conflict", f"sync {sync_id} is not held (it {record.status})")
        self.records[sync_id] = replace(record, status="succeeded", duration_ms=900)
        return self.records[sync_id]

    def suspend(self) -> None:
        self.calls.append(("suspend", None))
        self.suspended = True

    def resume(self) -> None:
        self.calls.append(("resume", None))
        self.suspended, self.pinned = False, None

    def rollback(self, commit: str) -> str:
        self.calls.append(("rollback", commit))
        if not all(c in "0123456789abcdef" for c in commit):
            raise ControlError("invalid", f"{commit!r} is not a commit of the config repo")
        self.pinned = commit.ljust(40, "0")
        return self.pinned

    def marketplace_packages(self, query: str, category: str | None) -> list[dict[str, Any]]:
        self.calls.append(("marketplace_packages", (query, category)))
        return [{"name": "uptime-kuma", "version": "1.23.16", "category": "monitoring"}]

    def marketplace_package(self, name: str) -> dict[str, Any]:
        self.calls.append(("marketplace_package", name))
        if name != "uptime-kuma":
            raise ControlError("not_found", f"no package {name!r} in the catalog")
        return {"name": name, "versions": ["1.23.16"]}

    def install(self, request: dict[str, Any], actor: str) -> dict[str, Any]:
        self.calls.append(("install", (request, actor)))
        if "package" not in request:
            raise ControlError("invalid", 'give the package to install: {"package": NAME}')
        return {"commit": "c0ffee" * 6 + "c0ff", "message": f"Install {request['package']}"}

    def uninstall(self, name: str, actor: str) -> dict[str, Any]:
        self.calls.append(("uninstall", (name, actor)))
        if name == "postgres":
            raise ControlError("conflict", "cannot uninstall postgres: nextcloud depends on it")
        return {"commit": "c0ffee" * 6 + "c0ff", "message": f"Uninstall {name}"}

    def webhook(self, headers: dict[str, str], body: bytes) -> bool:
        self.calls.append(("webhook", headers))
        event = verify_and_parse(headers, body, WEBHOOK_SECRET)
        if event is None or event.branch != "main":
            return False
        self.request_sync("webhook")
        return True

    def subscribe(self) -> Iterator[Event]:
        inbox: queue.Queue[Event] = queue.Queue()
        with self._lock:
            self._subscribers.append(inbox)

        def events() -> Iterator[Event]:
            try:
                while not self.stopped.is_set():
                    try:
                        yield inbox.get(timeout=0.1)
                    except queue.Empty:
                        continue
            finally:
                with self._lock:
                    self._subscribers.remove(inbox)

        return events()


@dataclass
class Served:
    control: FakeControl
    socket: Path
    url: str
    stop: threading.Event
    thread: threading.Thread

    def unix(self) -> httpx.Client:
        transport = httpx.HTTPTransport(uds=str(self.socket))
        return httpx.Client(base_url="http://nebulad", transport=transport, timeout=10)

    def tcp(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def short_dir() -> Iterator[Path]:
    """A temp dir short enough for unix socket paths (108 bytes) under a long TMPDIR."""
    short = len(tempfile.gettempdir()) <= 40
    root = Path(tempfile.mkdtemp(prefix="nebula-api-", dir=None if short else "/tmp"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def served(control: FakeControl, heartbeat: float = 15.0) -> Iterator[Served]:
    """Both apps served by `serve`: unix socket in a fresh folder, TCP on a free port."""
    with short_dir() as root:
        path = root / "run" / "nebulad.sock"
        port = free_port()
        stop, ready = threading.Event(), threading.Event()
        failures: list[BaseException] = []

        def run() -> None:
            try:
                serve(
                    create_app(control, token=None, tcp=False, heartbeat=heartbeat),
                    path,
                    app_tcp=create_app(
                        control,
                        token=TOKEN,
                        tcp=True,
                        heartbeat=heartbeat,
                        webhook_secret=WEBHOOK_SECRET,
                    ),
                    tcp_listen=f"127.0.0.1:{port}",
                    stop=stop,
                    ready=ready,
                )
            except BaseException as exc:
                failures.append(exc)
                ready.set()

        thread = threading.Thread(target=run, name="test-nebulad-api", daemon=True)
        thread.start()
        assert ready.wait(10), "the API did not start"
        assert not failures, failures
        try:
            yield Served(control, path, f"http://127.0.0.1:{port}", stop, thread)
        finally:
            stop.set()
            control.stopped.set()
            thread.join(15)
            assert not thread.is_alive(), "serve() did not return after stop"
            assert not failures, failures


@pytest.fixture
def api() -> Iterator[Served]:
    with served(FakeControl()) as s:
        yield s


def github_push(
    branch: str = "main", secret: str = WEBHOOK_SECRET, event: str = "push"
) -> tuple[dict[str, str], bytes]:
    body = json.dumps(
        {"ref": f"refs/heads/{branch}", "after": "cd" * 20, "pusher": {"name": "ada"}}
    ).encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-GitHub-Event": event,
        "X-Hub-Signature-256": f"sha256={digest}",
        "Content-Type": "application/json",
    }, body


# -- the sockets ------------------------------------------------------------------------------


def test_unix_socket_is_0600_in_a_private_folder_and_needs_no_token(api: Served) -> None:
    info = os.stat(api.socket)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(api.socket.parent).st_mode) == 0o700
    api.control.add("succeeded", summary={"create": 1}, duration_ms=1234, finished_at=T0)
    with api.unix() as client:
        response = client.get("/api/v1/status")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        status = response.json()
        assert status["node"] == "node1"
        assert status["last_sync"]["started_at"] == "2025-05-01T12:00:00+00:00"
        assert status["last_sync"]["errors"] == []
        installations = client.get("/api/v1/installations").json()["installations"]
        assert installations == [
            {"name": "whoami", "applied_commit": "ab" * 20, "updated_at": T0.isoformat()}
        ]


def test_tcp_refuses_requests_without_the_right_token(api: Served) -> None:
    for token in (None, "wrong-token"):
        with api.tcp(token) as client:
            for path in ("/api/v1/status", "/metrics", "/api/v1/nowhere"):
                response = client.get(path)
                assert response.status_code == 401, (token, path)
                assert response.headers["www-authenticate"].startswith("Bearer")
                assert "bearer token" in response.json()["error"]
            assert client.post("/api/v1/sync").status_code == 401
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Basic {TOKEN}"}) as client:
        assert client.get("/api/v1/status").status_code == 401
    assert api.control.called("request_sync") == []
    with api.tcp() as client:
        assert client.get("/api/v1/status").json()["branch"] == "main"
        assert client.post("/api/v1/sync").status_code == 202
    assert api.control.called("request_sync") == ["manual"]


def test_the_web_dashboard_is_off_unless_enabled(api: Served) -> None:
    with api.tcp() as client:
        for path in ("/ui/", "/ui/login", "/ui/static/htmx.min.js"):
            answer = client.get(path)
            assert answer.status_code == 404, (path, answer.text)
            assert answer.json() == {"error": f"no such endpoint: GET {path}"}


def test_the_tcp_api_cannot_be_made_without_a_token() -> None:
    with pytest.raises(NebulaError, match="needs a bearer token"):
        create_app(FakeControl(), token=None, tcp=True)
    with pytest.raises(NebulaError, match="needs a bearer token"):
        create_app(FakeControl(), token="", tcp=True)


def test_webhook_needs_no_bearer_token_but_a_valid_signature(api: Served) -> None:
    with api.tcp(token=None) as client:
        headers, body = github_push()
        response = client.post("/api/v1/webhook", content=body, headers=headers)
        assert response.status_code == 202, response.text
        assert response.json() == {"queued": True}
        assert api.control.called("request_sync") == ["webhook"]

        ping_headers, ping_body = github_push(event="ping")
        ping = client.post("/api/v1/webhook", content=ping_body, headers=ping_headers)
        assert ping.status_code == 200
        assert ping.json() == {"queued": False}

        # (Another branch: the same body again would be a replay, refused as such.)
        bad_headers, bad_body = github_push(branch="next", secret="not-the-secret")
        refused = client.post("/api/v1/webhook", content=bad_body, headers=bad_headers)
        assert refused.status_code == 401
        assert "bad signature" in refused.json()["error"]
        assert WEBHOOK_SECRET not in refused.text
        unknown = client.post("/api/v1/webhook", content=b"{}")
        assert unknown.status_code == 400
        assert "unknown sender" in unknown.json()["error"]
    assert api.control.called("request_sync") == ["webhook"]
    # The raw body reached the control as sent: the signature over it verified.
    assert api.control.called("webhook")[0]["x-github-event"] == "push"


# -- requests and errors ------------------------------------------------------------------------


def test_sync_requests_and_commands_reach_the_daemon(api: Served) -> None:
    first = api.control.add("failed", errors=("packages/a.yaml:1:1: bad",))
    api.control.add("held", summary={"delete": 3})
    with api.unix() as client:
        response = client.post("/api/v1/sync")
        assert (response.status_code, response.json()) == (
            202,
            {"queued": True, "trigger": "manual"},
        )
        assert client.post("/api/v1/sync", json={"trigger": "hook"}).status_code == 202
        syncs = client.get("/api/v1/syncs", params={"limit": 1}).json()["syncs"]
        assert [s["id"] for s in syncs] == [2]
        one = client.get(f"/api/v1/syncs/{first.id}").json()
        assert one["errors"] == ["packages/a.yaml:1:1: bad"]
        approved = client.post("/api/v1/syncs/2/approve")
        assert approved.status_code == 200
        assert approved.json()["status"] == "succeeded"
        assert client.post("/api/v1/suspend").json() == {"suspended": True}
        assert client.get("/api/v1/status").json()["suspended"] is True
        pinned = client.post("/api/v1/rollback", json={"commit": "abc123"}).json()
        assert pinned == {"pinned_commit": "abc123".ljust(40, "0")}
        assert client.post("/api/v1/resume").json() == {"suspended": False}
    assert api.control.called("request_sync") == ["manual", "hook"]
    assert api.control.called("syncs") == [1]
    assert api.control.called("rollback") == ["abc123"]
    assert [c for c, _ in api.control.calls if c in {"suspend", "resume"}] == [
        "suspend",
        "resume",
    ]


def test_marketplace_routes_reach_the_daemon_with_the_caller(api: Served) -> None:
    with api.unix() as client:
        found = client.get("/api/v1/marketplace/packages", params={"q": "kuma", "category": "x"})
        assert found.json()["packages"][0]["name"] == "uptime-kuma"
        assert client.get("/api/v1/marketplace/packages/uptime-kuma").json()["versions"]
        assert client.get("/api/v1/marketplace/packages/nope").status_code == 404
        done = client.post("/api/v1/marketplace/install", json={"package": "uptime-kuma"})
        assert (done.status_code, done.json()["message"]) == (202, "Install uptime-kuma")
        assert client.post("/api/v1/marketplace/install", json={}).status_code == 400
        gone = client.delete("/api/v1/marketplace/installations/uptime-kuma")
        assert (gone.status_code, gone.json()["message"]) == (202, "Uninstall uptime-kuma")
        refused = client.delete("/api/v1/marketplace/installations/postgres")
        assert refused.status_code == 409
        assert "nextcloud depends on it" in refused.json()["error"]
        assert client.get("/api/v1/marketplace/installations").status_code == 200
    assert api.control.called("marketplace_packages") == [("kuma", "x")]
    [(request, actor), _] = api.control.called("install")
    assert request == {"package": "uptime-kuma"}
    assert actor.startswith("uid:")  # the socket's owner, named by its uid


def test_errors_are_json_with_the_right_status(api: Served) -> None:
    api.control.add("succeeded")
    with api.unix() as client:
        cases = [
            (client.get("/api/v1/syncs/99"), 404, "no sync 99"),
            (client.post("/api/v1/syncs/99/approve"), 404, "no sync 99"),
            (client.post("/api/v1/syncs/1/approve"), 409, "is not held"),
            (client.post("/api/v1/rollback", json={"commit": "zz"}), 400, "not a commit"),
            (client.post("/api/v1/rollback", json={}), 400, "give the commit"),
            (client.post("/api/v1/rollback", content=b"not json", headers=JSON), 400, "not JSON"),
            (client.post("/api/v1/sync", json={"trigger": "poll"}), 400, "trigger must be"),
            (client.post("/api/v1/sync", json=["hook"]), 400, "JSON object"),
            (client.get("/api/v1/syncs", params={"limit": "x"}), 400, "limit must be"),
            (client.get("/api/v1/syncs", params={"limit": 0}), 400, "limit must be"),
            (client.get("/api/v1/nowhere"), 404, "no such endpoint: GET /api/v1/nowhere"),
            (client.get("/api/v1/sync"), 405, "GET is not allowed"),
        ]
        for response, status, message in cases:
            assert response.status_code == status, (response.request.url, response.text)
            assert response.headers["content-type"] == "application/json"
            assert message in response.json()["error"]

        api.control.fail_with = NebulaError("the store is locked")
        response = client.get("/api/v1/status")
        assert (response.status_code, response.json()) == (500, {"error": "the store is locked"})
        api.control.fail_with = RuntimeError("a bug")
        response = client.get("/api/v1/status")
        assert response.status_code == 500
        assert response.json() == {"error": "internal error in nebulad: see its log"}
    assert api.control.called("request_sync") == []


# -- events and metrics -------------------------------------------------------------------------


def test_event_stream_sends_server_sent_events(api: Served) -> None:
    with api.unix() as client, client.stream("GET", "/api/v1/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        lines = response.iter_lines()
        assert next(lines) == ": subscribed"
        assert next(lines) == ""
        api.control.publish("sync_started", id=7, commit="ab" * 20)
        api.control.publish("heartbeat")  # the daemon's own keep-alive: not forwarded
        api.control.publish("progress", installation="whoami")
        received = [next(lines) for _ in range(6)]
    assert received[0] == "event: sync_started"
    assert received[1].startswith("data: ")
    data = json.loads(received[1].removeprefix("data: "))
    assert data["id"] == 7
    assert data["commit"] == "ab" * 20
    assert datetime.fromisoformat(data["at"]).tzinfo is not None
    assert received[2] == ""
    assert received[3] == "event: progress"
    assert json.loads(received[4].removeprefix("data: "))["installation"] == "whoami"
    assert received[5] == ""


def test_event_stream_sends_heartbeats_and_ends_when_the_server_stops() -> None:
    with served(FakeControl(), heartbeat=0.2) as api, api.unix() as client:
        with client.stream("GET", "/api/v1/events") as response:
            lines = response.iter_lines()
            assert next(lines) == ": subscribed"
            assert next(lines) == ""
            started = time.monotonic()
            assert next(lines) == ": heartbeat"
            assert 0.1 < time.monotonic() - started < 2
            api.stop.set()  # an open stream must not hold up the shutdown
            rest = list(lines)
        api.thread.join(5)
        assert not api.thread.is_alive()
        assert set(rest) <= {"", ": heartbeat"}
        assert not api.socket.exists(), "the socket file is removed on the way out"


def test_metrics_are_prometheus_text(api: Served) -> None:
    before = metrics.SYNCS.labels(status="failed")._value.get()
    metrics.SYNCS.labels(status="failed").inc()
    metrics.SYNC_DURATION.observe(1.5)
    metrics.LAST_SUCCESSFUL_SYNC.set(1_700_000_000)
    with api.unix() as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    text = response.text
    assert "# HELP nebula_syncs_total Syncs of the config repo" in text
    assert "# TYPE nebula_sync_duration_seconds histogram" in text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "nebula_syncs",
        "nebula_sync_duration_seconds",
        "nebula_changes_applied",
        "nebula_drift_corrections",
        "nebula_apply_errors",
        "nebula_last_successful_sync_timestamp_seconds",
    ):
        assert name in families, name
    syncs = {
        s.labels["status"]: s.value
        for s in families["nebula_syncs"].samples
        if s.name == "nebula_syncs_total"
    }
    assert syncs["failed"] >= before + 1  # another daemon of this test process may count too
    assert syncs["succeeded"] >= 0  # present before its first increment
    actions = {s.labels.get("action") for s in families["nebula_changes_applied"].samples}
    assert {"create", "update", "delete"} <= actions
    (last,) = families["nebula_last_successful_sync_timestamp_seconds"].samples
    assert last.value >= 1_700_000_000  # or a later sync's, by another daemon of this process


# -- binding the socket -------------------------------------------------------------------------


def test_a_live_socket_is_refused_and_a_stale_one_replaced(api: Served) -> None:
    with pytest.raises(ServerError, match="another nebulad is already listening"):
        bind_unix(api.socket)
    assert api.socket.exists()

    with short_dir() as root:
        stale = root / "nebulad.sock"
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(str(stale))  # bound, never listening: what a killed daemon leaves behind
        dead.close()
        fresh = bind_unix(stale)
        try:
            assert stat.S_IMODE(os.stat(stale).st_mode) == 0o600
        finally:
            fresh.close()

        not_a_socket = root / "file.sock"
        not_a_socket.write_text("keep me")
        with pytest.raises(ServerError, match="is not a socket"):
            bind_unix(not_a_socket)
        assert not_a_socket.read_text() == "keep me"

        with pytest.raises(ServerError, match="longer than"):
            bind_unix(root / ("x" * 120))
