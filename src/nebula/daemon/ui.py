"""The web dashboard: server-rendered pages under `/ui`, on the TCP API, off unless enabled.

The pages read what the JSON routes answer (the same `DaemonControl` calls, made plain with
`api.jsonable`): never a secret's value. Nothing here changes anything: every
button and form of a page calls the API's own routes (htmx, with `static/nebula.js` sending
JSON), so a change made here is checked, done and audited as the CLI's is.

A browser logs in at `/ui/login`, which posts to `/api/v1/auth/login` with `"cookie": true`:
the session is then the httpOnly `SESSION_COOKIE` (see `daemon.auth`), and each page carries
that session's CSRF token in `hx-headers`, which htmx sends with every request. A page asked
for without a session sends the browser to log in. Pages show an operator's controls only to
an operator or admin; the routes refuse a viewer's changes anyway.

Front-end pieces are vendored under `dashboard/static` (htmx: see its VENDORED file); no Node
toolchain is needed to run or build this.
"""

from __future__ import annotations

import dataclasses
import json
import mimetypes
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request, cookie_parser
from starlette.responses import HTMLResponse, Response

from nebula.daemon.auth import CSRF_HEADER, PUBLIC, GuardedRoute, caller, route
from nebula.daemon.control import DaemonControl
from nebula.identity.principal import Role
from nebula.identity.sessions import Sessions
from nebula.kinds.routes.types import SESSION_COOKIE

UI = "/ui"
LOGIN = f"{UI}/login"
_HERE = Path(__file__).parent / "dashboard"
_STATIC = _HERE / "static"
_STATIC_FILES = frozenset(p.name for p in _STATIC.iterdir() if p.suffix in {".js", ".css"})
_NO_STORE = {"Cache-Control": "no-store"}
LOG_LINES = 200  # an installation's last lines the logs page shows
Jsonable = Callable[[Any], Any]


@dataclasses.dataclass(frozen=True)
class _Page:
    """What every page's template gets besides its own data."""

    user: str
    role: str
    may_change: bool
    csrf_headers: str


def ui_routes(control: DaemonControl, sessions: Sessions, jsonable: Jsonable) -> list[GuardedRoute]:
    """The dashboard's routes; `jsonable` is the API's (records as its JSON answers them)."""
    ui = _Dashboard(control, sessions, jsonable)
    viewer = Role.viewer
    return [
        route(LOGIN, ui.login, ["GET"], role=PUBLIC),
        route(f"{UI}/static/{{name}}", _static, ["GET"], role=PUBLIC),
        route(UI, ui.overview, ["GET"], role=viewer, login=LOGIN),
        route(f"{UI}/", ui.overview, ["GET"], role=viewer, login=LOGIN),
        route(f"{UI}/installations", ui.installations, ["GET"], role=viewer, login=LOGIN),
        route(f"{UI}/installations/{{name}}/logs", ui.logs, ["GET"], role=viewer, login=LOGIN),
        route(f"{UI}/syncs", ui.syncs, ["GET"], role=viewer, login=LOGIN),
        route(f"{UI}/catalog", ui.catalog, ["GET"], role=viewer, login=LOGIN),
        route(f"{UI}/catalog/{{name}}", ui.package, ["GET"], role=viewer, login=LOGIN),
        route(f"{UI}/secrets", ui.secrets, ["GET"], role=viewer, login=LOGIN),
        route(f"{UI}/audit", ui.audit, ["GET"], role=viewer, login=LOGIN),
    ]


class _Dashboard:
    def __init__(self, control: DaemonControl, sessions: Sessions, jsonable: Jsonable) -> None:
        self.control = control
        self.sessions = sessions
        self.jsonable = jsonable

    async def login(self, request: Request) -> Response:
        # only ever back to a page of this host: the dashboard's, or that of a route behind
        # the login (`auth_api.check` sends its callers here)
        target = request.query_params.get("next", f"{UI}/")
        if not _local(target):
            target = f"{UI}/"
        return _render("login.html", {"next": target})

    async def overview(self, request: Request) -> Response:
        def read() -> dict[str, Any]:
            installations = self.control.installations()
            return {
                "status": self.control.status(),
                "syncs": self.control.syncs(5),
                "counts": _counts(installations),
            }

        return await self._page(request, "overview.html", read)

    async def installations(self, request: Request) -> Response:
        def read() -> dict[str, Any]:
            return {"installations": self.control.installations()}

        return await self._page(request, "installations.html", read)

    async def logs(self, request: Request) -> Response:
        name: str = request.path_params["name"]

        def read() -> dict[str, Any]:
            return {"installation": name, "lines": self.control.logs(name, None, LOG_LINES)}

        return await self._page(request, "logs.html", read)

    async def syncs(self, request: Request) -> Response:
        def read() -> dict[str, Any]:
            return {"syncs": self.control.syncs(50)}

        return await self._page(request, "syncs.html", read)

    async def catalog(self, request: Request) -> Response:
        query = request.query_params.get("q", "")

        def read() -> dict[str, Any]:
            return {"query": query, "packages": self.control.marketplace_packages(query, None)}

        return await self._page(request, "catalog.html", read)

    async def package(self, request: Request) -> Response:
        name: str = request.path_params["name"]

        def read() -> dict[str, Any]:
            return {"package": self.control.marketplace_package(name)}

        return await self._page(request, "package.html", read)

    async def secrets(self, request: Request) -> Response:
        def read() -> dict[str, Any]:
            return {"secrets": self.control.secret_names()}

        return await self._page(request, "secrets.html", read)

    async def audit(self, request: Request) -> Response:
        actor = request.query_params.get("actor") or None
        target = request.query_params.get("target") or None

        def read() -> dict[str, Any]:
            entries = self.control.audit_entries(actor, target, 200)
            return {"entries": entries, "actor": actor or "", "target": target or ""}

        return await self._page(request, "audit.html", read)

    async def _page(
        self, request: Request, template: str, read: Callable[[], dict[str, Any]]
    ) -> Response:
        principal = caller(request)
        data = self.jsonable(await run_in_threadpool(read))
        session = cookie_parser(request.headers.get("cookie", "")).get(SESSION_COOKIE)
        csrf = self.sessions.csrf_token(session) if session else ""
        page = _Page(
            user=principal.name,
            role=principal.role.name,
            may_change=principal.may(Role.operator),
            csrf_headers=_json_attr({CSRF_HEADER: csrf}),
        )
        return _render(template, {"page": page, "path": request.url.path, **data})


def _local(target: str) -> bool:
    r"""Whether a browser takes `target` as a path of this host, never another host (`//x`,
    `/\x`, and tabs or newlines a browser drops, making `/\t/x` into `//x`)."""
    return (
        target.startswith("/")
        and not target.startswith("//")
        and not any(c == "\\" or c <= " " or c == "\x7f" for c in target)
    )


def _counts(installations: list[dict[str, Any]]) -> dict[str, int]:
    """Installations by status, and those with a failing health check."""
    counts: dict[str, int] = {"total": len(installations), "unhealthy": 0}
    for item in installations:
        counts[item["status"]] = counts.get(item["status"], 0) + 1
        if any(check.get("status") == "unhealthy" for check in item["health"]):
            counts["unhealthy"] += 1
    return counts


def _json_attr(value: Mapping[str, str]) -> str:
    return json.dumps(value, separators=(",", ":"))


@cache
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = _when
    return env


def _when(value: str | None) -> str:
    """An ISO 8601 time as `2026-01-31 12:00:05 UTC`; none as a dash."""
    if not value:
        return "–"
    at = datetime.fromisoformat(value)
    if at.tzinfo is not None:
        at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def _render(template: str, context: dict[str, Any]) -> Response:
    html = _templates().get_template(template).render(context)
    return HTMLResponse(html, headers=_NO_STORE)


async def _static(request: Request) -> Response:
    name: str = request.path_params["name"]
    if name not in _STATIC_FILES:
        return Response("not found", status_code=404, media_type="text/plain")
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    body = await run_in_threadpool((_STATIC / name).read_bytes)
    return Response(body, media_type=kind, headers={"Cache-Control": "max-age=3600"})
