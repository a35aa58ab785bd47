"""What nebulad writes to the audit log: every mutating API request, and every finished sync.

`AuditTrail` appends to the store's hash-chained log (`store.audit`). A failure to record is
logged and never fails the change it describes: the change has happened by then, and a daemon
that stopped syncing because its audit table is locked would be worse.

`AuditRequests` (ASGI middleware, inside `daemon.auth.Authenticate`) records each request that
is not a GET/HEAD/OPTIONS, before its response leaves: the caller (the `Principal` the
authentication left in the scope), the action (`daemon.suspend`, `sync.approve`, ... or
`PATH.METHOD` for a route not named below), the route's parameters as target, the status code,
and for a named route its JSON body when small (masked like every detail: passwords and tokens
never land). Of a route not named below, or one whose body may carry secret values under names
the masking cannot know (an install's `values`), only the body's field names are kept.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nebula.daemon.jsonbody import BodyError, loads
from nebula.errors import NebulaError
from nebula.identity.principal import SCOPE_KEY, Principal
from nebula.store import Store
from nebula.store import audit as audit_log

log = logging.getLogger("nebula.daemon.audit")

PREFIX = "/api/v1"
MAX_RECORDED_BODY = 4096  # larger bodies (webhook payloads) are summarised by their size
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
# Route -> (action, whether its body is fit to record, masked). Bodies that may carry secret
# values under names the masking cannot know (an install's `values`) keep their field names only.
# Every mutating route of the API is named here (a test checks it).
ACTIONS: dict[tuple[str, str], tuple[str, bool]] = {
    ("POST", f"{PREFIX}/sync"): ("sync.request", True),
    ("POST", f"{PREFIX}/installations/{{name}}/restart"): ("installation.restart", True),
    ("POST", f"{PREFIX}/syncs/{{sync_id:int}}/approve"): ("sync.approve", True),
    ("POST", f"{PREFIX}/suspend"): ("daemon.suspend", True),
    ("POST", f"{PREFIX}/resume"): ("daemon.resume", True),
    ("POST", f"{PREFIX}/rollback"): ("daemon.rollback", True),
    ("POST", f"{PREFIX}/webhook"): ("sync.webhook", True),
    ("POST", f"{PREFIX}/auth/login"): ("auth.login", True),
    ("POST", f"{PREFIX}/auth/refresh"): ("auth.refresh", True),
    ("POST", f"{PREFIX}/auth/logout"): ("auth.logout", True),
    ("POST", f"{PREFIX}/apikeys"): ("apikey.create", True),
    ("DELETE", f"{PREFIX}/apikeys/{{prefix}}"): ("apikey.revoke", True),
    ("POST", f"{PREFIX}/marketplace/install"): ("marketplace.install", False),
    ("DELETE", f"{PREFIX}/marketplace/installations/{{name}}"): ("marketplace.uninstall", True),
    ("POST", f"{PREFIX}/resources/domains/{{domain}}/ssl"): ("domain.ssl-check", True),
    ("POST", f"{PREFIX}/incidents/{{incident_id}}/acknowledge"): ("incident.acknowledge", True),
    ("POST", f"{PREFIX}/incidents/{{incident_id}}/resolve"): ("incident.resolve", True),
    ("POST", f"{PREFIX}/alerts"): ("alert.fire", True),
    ("POST", f"{PREFIX}/alerts/alertmanager"): ("alert.alertmanager", True),
    ("POST", f"{PREFIX}/silences"): ("silence.add", True),
    ("DELETE", f"{PREFIX}/silences/{{silence_id}}"): ("silence.remove", True),
    ("POST", f"{PREFIX}/runbooks/{{name}}/run"): ("runbook.run", True),
    ("POST", f"{PREFIX}/runbooks/executions/{{execution_id}}/approve"): ("runbook.approve", True),
    ("POST", f"{PREFIX}/runbooks/executions/{{execution_id}}/reject"): ("runbook.reject", True),
    ("POST", f"{PREFIX}/workflows/{{name}}/run"): ("workflow.run", True),
    ("POST", f"{PREFIX}/workflows/runs/{{run_id}}/cancel"): ("workflow.cancel", True),
    ("POST", f"{PREFIX}/agents"): ("agent.create", True),
    ("PUT", f"{PREFIX}/agents/{{name}}"): ("agent.update", True),
    ("POST", f"{PREFIX}/agents/{{name}}/execute"): ("agent.execute", True),
    ("POST", f"{PREFIX}/agents/executions/{{execution_id}}/approve"): ("agent.approve", True),
    ("POST", f"{PREFIX}/agents/executions/{{execution_id}}/reject"): ("agent.reject", True),
    ("POST", f"{PREFIX}/functions"): ("function.register", True),
    ("POST", f"{PREFIX}/functions/{{name}}/invoke"): ("function.invoke", True),
    ("POST", f"{PREFIX}/ai/chat"): ("ai.chat", False),
    ("POST", f"{PREFIX}/projects"): ("project.create", False),
    ("PUT", f"{PREFIX}/projects/{{name}}"): ("project.update", False),
    ("DELETE", f"{PREFIX}/projects/{{name}}"): ("project.remove", True),
    ("PUT", f"{PREFIX}/projects/{{name}}/files/{{path:path}}"): ("project.file-write", False),
    ("POST", f"{PREFIX}/projects/{{name}}/deploy"): ("project.deploy", True),
    ("POST", f"{PREFIX}/projects/{{name}}/rollback"): ("project.rollback", True),
    ("POST", f"{PREFIX}/projects/{{name}}/open"): ("project.open", True),
}
_ACTOR_KIND = {
    "password": "user",
    "api_key": "apikey",
    "service_token": "node",
    "static_token": "token",
    "socket": "socket",
}


class AuditTrail:
    """Appends to the audit log of `store`; never raises."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def record(
        self,
        actor: str,
        action: str,
        target: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            audit_log.append(self.store, actor=actor, action=action, target=target, detail=detail)
        except NebulaError as exc:
            log.error("could not record %s by %s in the audit log: %s", action, actor, exc)


def actor_of(principal: Principal | None, scope: Scope) -> str:
    """`user:alice`, `apikey:ci`, `uid:1000` (the socket's owner), `token:static`, ..."""
    if principal is None:
        client = scope.get("client")
        return f"anonymous:{client[0]}" if client else "anonymous:socket"
    if principal.method == "static_token":
        return "token:static"
    if ":" in principal.name:
        return principal.name
    return f"{_ACTOR_KIND.get(principal.method, principal.method)}:{principal.name}"


class AuditRequests:
    """Records every mutating request (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, trail: AuditTrail) -> None:
        self.app = app
        self.trail = trail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _READS:
            await self.app(scope, receive, send)
            return
        body = bytearray()
        size = 0

        async def receive_and_keep() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                size += len(chunk)
                if len(body) <= MAX_RECORDED_BODY:
                    body.extend(chunk)
            return message

        recorded = False

        async def record(status: int) -> None:
            nonlocal recorded
            recorded = True
            action, target, known = _action(scope)
            detail = _detail(scope, status, bytes(body), size, known=known)
            actor = actor_of(_principal(scope), scope)
            await run_in_threadpool(self.trail.record, actor, action, target, detail)

        async def send_after_recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                await record(message["status"])
            await send(message)

        try:
            await self.app(scope, receive_and_keep, send_after_recording)
        except Exception:  # answered with a 500 further out: recorded as one
            if not recorded:
                await record(500)
            raise


def _principal(scope: Scope) -> Principal | None:
    found = scope.get(SCOPE_KEY)
    return found if isinstance(found, Principal) else None


def _action(scope: Scope) -> tuple[str, str | None, bool]:
    """The action's name, its target (the route's parameters), and whether its body is fit to
    record (masked): only for routes named above that say so."""
    method, path = scope["method"], scope["path"]
    app = scope.get("app")
    for route in getattr(getattr(app, "router", None), "routes", ()):
        if not isinstance(route, Route):
            continue
        match, child = route.matches(scope)
        if match is Match.FULL:
            params = child.get("path_params", {})
            target = "/".join(str(v) for v in params.values()) or None
            named = ACTIONS.get((method, route.path))
            if named is not None:
                return named[0], target, named[1]
            stem = [p for p in route.path.removeprefix(PREFIX).split("/") if p and "{" not in p]
            return ".".join([*stem, method.lower()]), target, False
    return f"api.{method.lower()}", path, False


def _detail(scope: Scope, status: int, body: bytes, size: int, *, known: bool) -> dict[str, Any]:
    detail: dict[str, Any] = {"method": scope["method"], "path": scope["path"], "status": status}
    if not body.strip():
        return detail
    try:
        parsed = loads(body) if size <= MAX_RECORDED_BODY else None
    except BodyError:
        parsed = None
    if known and parsed is not None:
        detail["body"] = parsed
    elif isinstance(parsed, dict):  # a route not named above: its fields, not their values
        detail["body_fields"] = sorted(str(k) for k in parsed)
    else:
        detail["body_bytes"] = size
    return detail
