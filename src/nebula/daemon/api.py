"""nebulad's HTTP API: a Starlette app over a `DaemonControl`, served by `daemon.server`.

Routes (JSON in and out; every error is `{"error": message}`, never HTML):

    GET  /api/v1/status                 DaemonStatus
    GET  /api/v1/installations          {"installations": [...]}
    GET  /api/v1/installations/{name}/logs?service=S&tail=N   {"lines": [{service, container,
                                        stream, time, message}]}, the last N (100, at most
                                        10,000) merged, secrets masked; `&follow=1`: then each
                                        new line, as server-sent `log` events
    POST /api/v1/installations/{name}/restart   body {"service"?}: {"restarted": [containers]};
                                        404 when it has no such container
    GET  /api/v1/plan                   {"changes": [...], "problems": [...]}: what a sync of the
                                        last good commit would change now (nothing applied)
    GET  /api/v1/audit?actor=A&target=T&limit=N   {"entries": [...]}, newest first (N: 100)
    GET  /api/v1/secrets                {"secrets": [{name, rotated_at}]}: names, never values
    GET  /api/v1/syncs?limit=N          {"syncs": [SyncRecord, ...]}, newest first (N: 1..1000)
    GET  /api/v1/syncs/{id}             SyncRecord, or 404
    POST /api/v1/sync                   202: a sync is queued; body {"trigger": "hook"} optional
    POST /api/v1/syncs/{id}/approve     the approved SyncRecord; 404/409 when it cannot be
    POST /api/v1/suspend                {"suspended": true}
    POST /api/v1/resume                 {"suspended": false}
    POST /api/v1/rollback               body {"commit": "..."}; {"pinned_commit": full sha}
    GET  /api/v1/resources/domains      {"domains": [...]}: zones, record counts, ssl, last error
    GET  /api/v1/resources/domains/{d}/dns  {"domain": ..., "records": [...]} (d: id or zone)
    POST /api/v1/webhook                a signed push: 202 queued, 200 ping, 401/400/403 refused,
                                        411/413 no or too big a Content-Length, 408 too slow, 409
                                        a delivery already received (nothing is done), 503 too
                                        many at once (`Retry-After`)
    GET  /api/v1/events                 server-sent events: `event: KIND` + `data: JSON`
    GET  /api/v1/marketplace/packages?q=TERM&category=C   {"packages": [...]}, best match first
    GET  /api/v1/marketplace/packages/{name}   versions, variables, requirements; 404
    POST /api/v1/marketplace/install    body {"package", "name"?, "version"?, "values"?, "node"?,
                                        "expose"?, "allow"?}: 202 {commit, message, files}; 400
                                        (values missing, invalid; a grant the package needs not
                                        in "allow"), 409 (refused: exists, conflicts)
    GET  /api/v1/marketplace/installations     as /installations
    DELETE /api/v1/marketplace/installations/{name}   202 {commit, ...}; 409 while depended on
    GET  /metrics                       Prometheus text format (prometheus_client's registry)

plus the identity routes of `daemon.auth_api` (login, refresh, logout, whoami, users, API keys),
the web dashboard's pages under /ui when enabled (`daemon.ui`; `dashboard=True`),
the remediation routes of `daemon.remediation_api` (incidents, alerts, silences, runbooks,
workflows), the AI routes of `daemon.ai_api` (agents, functions, chat, providers) and the
projects routes of `daemon.projects_api` (projects, their files and deployments).

Auth (see `daemon.auth`): every route is declared with `route(path, endpoint, methods,
role=...)`, naming the least role that may call it: GET = viewer, a change = operator, users and
API keys = admin, or `PUBLIC` for a route that proves its caller itself (the webhook's
signature, a login's password, a refresh token). A route without a role rule is a programming
error: `create_app` refuses it, and a test walks every route. The caller is found by the
`Authenticate` middleware and left in `request.scope["nebula.principal"]` (a `Principal`: name,
role, how it was authenticated), for the audit log among others. On the unix socket the owner
(peer credentials: the daemon's uid, or root) is admin and anyone else refused; on TCP a bearer
token (JWT access token, API key, service token, or the configured static token) is required,
with rate limits per client address and per credential (429 with `Retry-After`). `/metrics`
needs a viewer like any read: a Prometheus scraper gets a `read` API key.

Records are dataclasses, serialised with `dataclasses.asdict`; datetimes become ISO 8601
strings. A `RequestError` (`ControlError`, `RemediationError`, `AIError`, ...) maps to 404 (not_found), 409 (conflict) or 400
(invalid), the store's `NotFoundError` to 404 and `StateError` to 409; any other `NebulaError`
to 500 with its message; anything else to 500 with a pointer to the daemon's log.

Request bodies: a body sent to any route but the webhook must be JSON (`Content-Type:
application/json`), else 415 — so a browser's cross-site form post gets nowhere. It is read
by `daemon.jsonbody` (400 for bad JSON, nesting deeper than 32 levels, numbers out of range), at
most `MAX_BODY` (1 MB; 413) within `BODY_TIMEOUT` (30 s; 408). A webhook is refused from its
headers, before its body is read, when no secret is configured (403), its sender is unknown
(400), it has no signature or GitLab token, or the token is wrong (401). A signed one must
give its Content-Length (411; GitHub, Gitea and GitLab do), at most `MAX_WEBHOOK_BODY` (5 MB; 413: a
bigger push is refused, and the next poll syncs it). At most `WEBHOOK_READS` bodies are read
and verified at once per listener, one per client address (`webhook.BodyTurns`), so forged
signatures cost a few times 5 MB of memory at worst and one client trickling them holds one
turn, not all; each body must arrive within `WEBHOOK_BODY_TIMEOUT` (5 s; 408) of its turn.
One that waits over `WEBHOOK_WAIT` for its turn gets 503 with `Retry-After`. Only then, its
signature verified, a replayed delivery (same delivery id, or same body) is answered 409 and
does nothing.

Control calls may block (store, Docker, git), so each runs in Starlette's thread pool. The
event stream reads `control.subscribe()` on a thread of its own per client and sends a
comment line every `heartbeat` seconds (15 by default), so proxies keep the stream open and
a vanished client is noticed. `app.state.closing` (a `threading.Event`) ends every open
stream; `daemon.server` sets it when it stops, so a shutdown never waits on a listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Collection, Iterator, Mapping
from datetime import date, datetime
from pathlib import PurePath
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from nebula.daemon.ai_api import ai_routes
from nebula.daemon.audit import AuditRequests, AuditTrail
from nebula.daemon.auth import PUBLIC, Authenticate, GuardedRoute, principal_of, route
from nebula.daemon.auth_api import auth_routes
from nebula.daemon.control import ControlError, DaemonControl, Event
from nebula.daemon.jsonbody import BodyError, loads
from nebula.daemon.params import query_limit
from nebula.daemon.projects_api import projects_routes
from nebula.daemon.remediation_api import remediation_routes
from nebula.daemon.ui import UI, ui_routes
from nebula.daemon.webhook import (
    BodyTurns,
    Deliveries,
    NoTurnError,
    WebhookError,
    precheck,
    verify,
)
from nebula.errors import NebulaError, NotFoundError, RequestError, StateError
from nebula.identity.principal import Role
from nebula.identity.ratelimit import RateLimit, RateLimiter
from nebula.identity.sessions import Sessions
from nebula.kinds.routes.types import LOGIN_CHECK

log = logging.getLogger("nebula.daemon.api")

PREFIX = "/api/v1"
MARKET = f"{PREFIX}/marketplace"
WEBHOOK_PATH = f"{PREFIX}/webhook"
HEARTBEAT_SECONDS = 15.0
MAX_BODY = 2**20  # a JSON request body; the API's own are a few hundred bytes
MAX_WEBHOOK_BODY = 5 * 2**20  # a signed push payload
MAX_LOG_LINES = 10_000  # lines of logs one request may ask for
WEBHOOK_READS = 4  # webhook bodies read and verified at once, per listener
WEBHOOK_WAIT = 5.0  # seconds a webhook may wait for one of those turns
WEBHOOK_BODY_TIMEOUT = 5.0  # seconds a webhook's body may take once its turn came
BODY_TIMEOUT = 30.0  # seconds a request's whole body may take to arrive
MAX_ID = 2**63 - 1  # the largest id the store can hold
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
API_TRIGGERS = frozenset({"manual", "hook"})  # webhooks come through /webhook, verified
_CONTROL_STATUS = {"not_found": 404, "conflict": 409, "invalid": 400}
_STORE_STATUS: dict[type[Exception], int] = {NotFoundError: 404, StateError: 409}
# Per client address and per credential, on TCP: a dashboard polling every second is far below.
DEFAULT_RATE_LIMIT = RateLimit(rate=20.0, burst=100)


def create_app(
    control: DaemonControl,
    *,
    token: str | None,
    tcp: bool,
    heartbeat: float = HEARTBEAT_SECONDS,
    sessions: Sessions | None = None,
    rate_limit: RateLimit | None = DEFAULT_RATE_LIMIT,
    audit: AuditTrail | None = None,
    body_timeout: float = BODY_TIMEOUT,
    webhook_secret: str | None = None,
    dashboard: bool = False,
) -> Starlette:
    """The API over `control`. On `tcp`, callers need a bearer token: the static `token`, or one
    `sessions` accepts (access tokens, API keys, service tokens); without either it fails closed.
    A request's body must arrive within `body_timeout` seconds. Webhooks are verified against
    `webhook_secret`; without one, every webhook is refused. With `dashboard`, the web
    dashboard is served under /ui; it needs `sessions` to log users in.
    """
    if tcp and not token and sessions is None:
        raise NebulaError(
            "the TCP API needs a bearer token or user accounts to check callers against: "
            "configure one, or listen on the unix socket only"
        )
    # prometheus_client's default registry holds the daemon's metrics once this is imported.
    import nebula.daemon.metrics  # noqa: F401

    api = _Api(control, heartbeat, webhook_secret or "")
    viewer, operator = Role.viewer, Role.operator
    routes: list[BaseRoute] = [
        route(f"{PREFIX}/status", api.status, ["GET"], role=viewer),
        route(f"{PREFIX}/installations", api.installations, ["GET"], role=viewer),
        route(f"{PREFIX}/nodes", api.nodes, ["GET"], role=viewer),
        route(f"{PREFIX}/installations/{{name}}/logs", api.logs, ["GET"], role=viewer),
        route(f"{PREFIX}/installations/{{name}}/restart", api.restart, ["POST"], role=operator),
        route(f"{PREFIX}/plan", api.plan, ["GET"], role=viewer),
        route(f"{PREFIX}/audit", api.audit, ["GET"], role=viewer),
        route(f"{PREFIX}/secrets", api.secrets, ["GET"], role=viewer),
        route(f"{PREFIX}/syncs", api.syncs, ["GET"], role=viewer),
        route(f"{PREFIX}/syncs/{{sync_id:int}}", api.sync, ["GET"], role=viewer),
        route(f"{PREFIX}/syncs/{{sync_id:int}}/approve", api.approve, ["POST"], role=operator),
        route(f"{PREFIX}/sync", api.request_sync, ["POST"], role=operator),
        route(f"{PREFIX}/suspend", api.suspend, ["POST"], role=operator),
        route(f"{PREFIX}/resume", api.resume, ["POST"], role=operator),
        route(f"{PREFIX}/rollback", api.rollback, ["POST"], role=operator),
        route(WEBHOOK_PATH, api.webhook, ["POST"], role=PUBLIC),
        route(f"{PREFIX}/events", api.events, ["GET"], role=viewer),
        route(f"{PREFIX}/resources/domains", api.domains, ["GET"], role=viewer),
        route(f"{PREFIX}/resources/domains/{{domain}}/dns", api.dns, ["GET"], role=viewer),
        route(f"{PREFIX}/resources/domains/{{domain}}/ssl", api.ssl, ["GET"], role=viewer),
        route(f"{PREFIX}/resources/domains/{{domain}}/ssl", api.ssl, ["POST"], role=operator),
        route(f"{MARKET}/packages", api.packages, ["GET"], role=viewer),
        route(f"{MARKET}/packages/{{name}}", api.package, ["GET"], role=viewer),
        route(f"{MARKET}/install", api.install, ["POST"], role=operator),
        route(f"{MARKET}/installations", api.installations, ["GET"], role=viewer),
        route(f"{MARKET}/installations/{{name}}", api.uninstall, ["DELETE"], role=operator),
        route("/metrics", _metrics, ["GET"], role=viewer),
        *auth_routes(sessions, _json_body, _json),
        *remediation_routes(control, _json_body, _json),
        *ai_routes(control, _json_body, _json),
        *projects_routes(control, _json_body, _json),
    ]
    if dashboard:
        if sessions is None:
            raise NebulaError("the web dashboard needs user accounts to log in with")
        routes += ui_routes(control, sessions, jsonable)
    unguarded = [getattr(r, "path", r) for r in routes if not isinstance(r, GuardedRoute)]
    if unguarded:
        raise NebulaError(f"routes without a role rule (use daemon.auth.route): {unguarded}")
    public = [r.path for r in routes if isinstance(r, GuardedRoute) and r.access == PUBLIC]
    limiters = {}
    if tcp and rate_limit is not None:
        limiters = {
            "per_client": RateLimiter(rate_limit),
            "per_credential": RateLimiter(rate_limit),
        }
    middleware = [
        Middleware(
            Authenticate,
            tcp=tcp,
            public_paths=public,
            browser_prefixes=[UI] if dashboard else [],
            proxied_paths=[LOGIN_CHECK],
            static_token=token if tcp else None,
            verifier=sessions if tcp else None,
            **limiters,
        ),
        *([Middleware(AuditRequests, trail=audit)] if audit else []),
        Middleware(JsonOnly, exempt=[WEBHOOK_PATH]),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={
            HTTPException: _http_error,
            RequestError: _control_error,
            NotFoundError: _control_error,
            StateError: _control_error,
            NebulaError: _nebula_error,
            Exception: _internal_error,
        },
    )
    app.state.closing = threading.Event()
    app.state.body_timeout = body_timeout
    return app


class _Api:
    def __init__(self, control: DaemonControl, heartbeat: float, webhook_secret: str) -> None:
        self.control = control
        self.heartbeat = heartbeat
        self.webhook_secret = webhook_secret
        self.deliveries = Deliveries()
        self.webhook_turns = BodyTurns(WEBHOOK_READS, WEBHOOK_WAIT)

    async def status(self, request: Request) -> Response:
        return _json(await run_in_threadpool(self.control.status))

    async def installations(self, request: Request) -> Response:
        found = await run_in_threadpool(self.control.installations)
        return _json({"installations": found})

    async def nodes(self, request: Request) -> Response:
        return _json({"nodes": await run_in_threadpool(self.control.nodes)})

    async def logs(self, request: Request) -> Response:
        params = request.query_params
        name, service = request.path_params["name"], params.get("service") or None
        raw = params.get("tail", "100")
        if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_LOG_LINES):
            raise ControlError(
                "invalid", f"tail must be a number from 1 to {MAX_LOG_LINES}, not {raw!r}"
            )
        if params.get("follow") not in ("1", "true"):
            found = await run_in_threadpool(self.control.logs, name, service, int(raw))
            return _json({"lines": found})
        iterator = await run_in_threadpool(self.control.follow_logs, name, service, int(raw))
        stream = _EventStream(iterator, asyncio.get_running_loop())
        return StreamingResponse(
            stream.lines(request.app.state.closing, self.heartbeat),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def restart(self, request: Request) -> Response:
        service = (await _json_body(request)).get("service")
        if service is not None and not isinstance(service, str):
            raise ControlError("invalid", '"service" is a service\'s name')
        name = request.path_params["name"]
        restarted = await run_in_threadpool(self.control.restart, name, service)
        return _json({"restarted": restarted})

    async def plan(self, request: Request) -> Response:
        return _json(await run_in_threadpool(self.control.plan))

    async def audit(self, request: Request) -> Response:
        params = request.query_params
        limit = query_limit(request, 100)
        found = await run_in_threadpool(
            self.control.audit_entries,
            params.get("actor") or None,
            params.get("target") or None,
            limit,
        )
        return _json({"entries": found})

    async def secrets(self, request: Request) -> Response:
        return _json({"secrets": await run_in_threadpool(self.control.secret_names)})

    async def syncs(self, request: Request) -> Response:
        limit = query_limit(request, 20)
        return _json({"syncs": await run_in_threadpool(self.control.syncs, limit)})

    async def sync(self, request: Request) -> Response:
        sync_id = _sync_id(request)
        record = await run_in_threadpool(self.control.sync, sync_id)
        if record is None:
            raise ControlError("not_found", f"no sync {sync_id}")
        return _json(record)

    async def approve(self, request: Request) -> Response:
        sync_id = _sync_id(request)
        return _json(await run_in_threadpool(self.control.approve, sync_id))

    async def request_sync(self, request: Request) -> Response:
        body = await _json_body(request)
        trigger = body.get("trigger", "manual")
        if trigger not in API_TRIGGERS:
            raise ControlError(
                "invalid", f"trigger must be one of {', '.join(sorted(API_TRIGGERS))}"
            )
        await run_in_threadpool(self.control.request_sync, trigger)
        return _json({"queued": True, "trigger": trigger}, status=202)

    async def suspend(self, request: Request) -> Response:
        await run_in_threadpool(self.control.suspend)
        return _json({"suspended": True})

    async def resume(self, request: Request) -> Response:
        await run_in_threadpool(self.control.resume)
        return _json({"suspended": False})

    async def packages(self, request: Request) -> Response:
        query = request.query_params.get("q", "")
        category = request.query_params.get("category") or None
        found = await run_in_threadpool(self.control.marketplace_packages, query, category)
        return _json({"packages": found})

    async def package(self, request: Request) -> Response:
        name = request.path_params["name"]
        return _json(await run_in_threadpool(self.control.marketplace_package, name))

    async def install(self, request: Request) -> Response:
        body = await _json_body(request)
        done = await run_in_threadpool(self.control.install, body, _actor(request))
        return _json(done, status=202)

    async def uninstall(self, request: Request) -> Response:
        name = request.path_params["name"]
        done = await run_in_threadpool(self.control.uninstall, name, _actor(request))
        return _json(done, status=202)

    async def rollback(self, request: Request) -> Response:
        body = await _json_body(request)
        commit = body.get("commit")
        if not isinstance(commit, str) or not commit.strip():
            raise ControlError("invalid", 'give the commit to roll back to: {"commit": "SHA"}')
        sha = await run_in_threadpool(self.control.rollback, commit.strip())
        return _json({"pinned_commit": sha})

    async def webhook(self, request: Request) -> Response:
        headers = dict(request.headers.items())
        try:  # unsigned, or no secret to check against: refused before the body is read
            precheck(headers, self.webhook_secret)
        except WebhookError as exc:
            return _webhook_refused(request, exc, _CLOSE)
        if "content-length" not in request.headers or "transfer-encoding" in request.headers:
            error = "send the webhook with a Content-Length (not chunked)"
            return _json({"error": error}, status=411, headers=_CLOSE)
        _check_length(request, MAX_WEBHOOK_BODY)
        try:
            async with self.webhook_turns.turn(_client(request)):
                return await self._signed_webhook(request, headers)
        except NoTurnError as exc:
            busy = {**_CLOSE, "Retry-After": str(round(WEBHOOK_WAIT))}
            return _webhook_refused(request, exc, busy)

    async def _signed_webhook(self, request: Request, headers: dict[str, str]) -> Response:
        timeout = min(WEBHOOK_BODY_TIMEOUT, request.app.state.body_timeout)
        body = await _read_body(request, MAX_WEBHOOK_BODY, timeout)
        try:  # before the replay check: a forged request learns nothing and takes no one's place
            verify(headers, body, self.webhook_secret)  # inline: a thread's error would keep body
        except WebhookError as exc:
            return _webhook_refused(request, exc)
        claimed = self.deliveries.claim(headers, body)
        if claimed is None:
            error = "this delivery was received already (same delivery id or payload): ignored"
            return _json({"error": error}, status=409)
        queued = False
        try:
            queued = await run_in_threadpool(self.control.webhook, headers, body)
        except WebhookError as exc:
            return _webhook_refused(request, exc)
        finally:
            if not queued:  # nothing to do, or refused (a bad payload): a retry is not a replay
                self.deliveries.release(claimed)
        if queued:
            return _json({"queued": True}, status=202)
        return _json({"queued": False})

    async def domains(self, request: Request) -> Response:
        return _json({"domains": await run_in_threadpool(self.control.domains)})

    async def dns(self, request: Request) -> Response:
        domain: str = request.path_params["domain"]
        return _json(await run_in_threadpool(self.control.domain_records, domain))

    async def ssl(self, request: Request) -> Response:
        """GET: a domain's certificate status as last checked; POST: check the certificates
        now (Caddy obtains and renews them on its own; this reads what it serves)."""
        domain: str = request.path_params["domain"]
        check = request.method == "POST"
        return _json(await run_in_threadpool(self.control.domain_ssl, domain, check))

    async def events(self, request: Request) -> Response:
        closing: threading.Event = request.app.state.closing
        iterator = await run_in_threadpool(self.control.subscribe)
        stream = _EventStream(iterator, asyncio.get_running_loop())
        return StreamingResponse(
            stream.lines(closing, self.heartbeat),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


class _EventStream:
    """Carries one subscriber's events from the (blocking) iterator to the async response.

    The iterator is read on a daemon thread. When the client goes away the thread is told to
    stop; it closes the iterator at its next event (a blocked `next()` cannot be interrupted
    from another thread), or when the daemon ends the iterator.
    """

    def __init__(self, iterator: Iterator[Event], loop: asyncio.AbstractEventLoop) -> None:
        self.iterator = iterator
        self.loop = loop
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self.done = threading.Event()
        threading.Thread(target=self._pump, name="nebula-api-events", daemon=True).start()

    def _pump(self) -> None:
        try:
            for event in self.iterator:
                if self.done.is_set():
                    break
                if event.kind != "heartbeat":  # the daemon's keep-alive: ours is a comment
                    self._put(event)
        except Exception:
            log.exception("the event subscription failed")
        finally:
            close = getattr(self.iterator, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):
                    close()
            self._put(None)  # the end of the stream

    def _put(self, item: Event | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    async def lines(self, closing: threading.Event, heartbeat: float) -> AsyncIterator[bytes]:
        try:
            yield b": subscribed\n\n"  # the subscription exists from here on
            beat = time.monotonic() + heartbeat
            while not closing.is_set():
                wait = max(0.0, min(0.5, beat - time.monotonic()))
                try:
                    event = await asyncio.wait_for(self.queue.get(), timeout=wait)
                except TimeoutError:
                    if time.monotonic() >= beat:
                        yield b": heartbeat\n\n"
                        beat = time.monotonic() + heartbeat
                    continue
                if event is None:
                    return
                yield format_event(event)
        finally:
            self.done.set()


def format_event(event: Event) -> bytes:
    """`event: KIND` and `data: JSON` (the event's data, with `at` when it has none)."""
    data = {"at": event.at, **event.data}
    kind = "".join(ch for ch in event.kind if ch not in "\r\n") or "message"
    return f"event: {kind}\ndata: {_dumps(data)}\n\n".encode()


async def _metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    payload = await run_in_threadpool(generate_latest, REGISTRY)
    return Response(payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


class JsonOnly:
    """Refuses (415) a request whose body is not JSON, on every route but those `exempt` (the
    webhook: its senders choose the format, its signature guards it). A body with no
    Content-Type is refused too: a browser sends a Blob's that way, cross-site, unasked.
    """

    def __init__(self, app: ASGIApp, *, exempt: Collection[str]) -> None:
        self.app = app
        self.exempt = frozenset(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in _BODY_METHODS
            and scope["path"] not in self.exempt
        ):
            headers = Headers(scope=scope)
            kind = headers.get("content-type")
            body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
            if (kind is None and body) or (kind is not None and not _is_json(kind)):
                sent = (
                    f"a {kind.partition(';')[0]} body" if kind else "a body without a Content-Type"
                )
                error = (
                    f"send the request body as JSON (Content-Type: application/json), not {sent}"
                )
                response = _json({"error": error}, status=415, headers=_CLOSE)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _is_json(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _sync_id(request: Request) -> int:
    """The path's sync id; one beyond what the store holds names no sync (404)."""
    sync_id: int = request.path_params["sync_id"]
    if sync_id > MAX_ID:
        raise ControlError("not_found", f"no sync {sync_id}")
    return sync_id


def _webhook_refused(
    request: Request, exc: WebhookError, headers: Mapping[str, str] | None = None
) -> Response:
    # The reason never carries the secret or a digest (see daemon.webhook).
    log.warning("webhook refused (%s) from %s", exc.reason, _client(request))
    return _json({"error": exc.reason}, status=exc.status, headers=headers)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unix socket"


def _actor(request: Request) -> str:
    """Who asks, as commits and the audit log name them."""
    principal = principal_of(request)
    return principal.name if principal is not None else "unknown"


async def _json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; an empty body is `{}`."""
    raw = await _read_body(request, MAX_BODY)
    if not raw.strip():
        return {}
    try:
        body = loads(raw)
    except BodyError as exc:
        raise ControlError("invalid", str(exc)) from None
    if not isinstance(body, dict):
        raise ControlError("invalid", "the request body must be a JSON object")
    return body


def _check_length(request: Request, limit: int) -> None:
    """Refuse (413) a body declared bigger than `limit` bytes, before it is read."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise _too_big(limit)


def _too_big(limit: int) -> HTTPException:
    return HTTPException(413, f"the request body is over {limit // 2**20} MB", _CLOSE)


async def _read_body(request: Request, limit: int, timeout: float | None = None) -> bytes:
    """The body, refused (413) past `limit` bytes before more is read, and (408) when it has
    not arrived within `timeout` seconds (the app's `body_timeout` by default). Either ends the
    connection: the rest is never read.
    """
    _check_length(request, limit)
    if timeout is None:
        timeout = request.app.state.body_timeout
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise _too_big(limit)
    except TimeoutError:
        message = f"the request body did not arrive within {timeout:g} s"
        raise HTTPException(408, message, _CLOSE) from None
    return bytes(body)


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail
    if exc.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    return _json({"error": message}, status=exc.status_code, headers=exc.headers)


def _control_error(request: Request, exc: Exception) -> Response:
    """A request refused for a reason the caller can act on: 404, 409 or 400."""
    if isinstance(exc, RequestError):
        status = _CONTROL_STATUS.get(exc.reason, 400)
    else:
        status = _STORE_STATUS.get(type(exc), 400)
    return _json({"error": str(exc)}, status=status)


def _nebula_error(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed: %s", request.method, request.url.path, exc)
    return _json({"error": str(exc)}, status=500)


def _internal_error(request: Request, exc: Exception) -> Response:
    return _json({"error": "internal error in nebulad: see its log"}, status=500)


def jsonable(value: Any) -> Any:
    """Plain JSON data from records: dataclasses as dicts, datetimes as ISO 8601 strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, PurePath):
        return str(value)
    return value


def _dumps(value: Any) -> str:
    return json.dumps(jsonable(value), separators=(",", ":"), default=str)


_CLOSE = {"Connection": "close"}  # for an answer given before the whole request was read


def _json(value: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        _dumps(value), status_code=status, headers=headers, media_type="application/json"
    )
